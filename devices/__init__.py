"""Devices the pipeline runs on: host, adb-connected Android, iOS."""
