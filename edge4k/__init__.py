"""Edge4K: an on-device SDK and model compiler for a one-step 4K RAW-to-RGB network."""
__version__ = "0.1.0"
