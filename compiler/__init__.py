"""Model compiler: lowers the staged network for on-device targets."""
