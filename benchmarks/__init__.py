"""Benchmarks: the scripts whose numbers the README and model card quote (never timed tests)."""
