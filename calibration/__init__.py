"""INT8/INT4 calibration: representative inputs per network stage and per-layer sensitivity."""
