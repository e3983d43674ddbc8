"""Devices the pipeline runs on: host (the Python runtime), an adb-connected
Android phone (the native runner) and iOS (a Mac with Xcode). `flow.profile` is
`edge4k profile`; the Make targets android-xnnpack, android-qnn and ios-coreml
wrap it."""
