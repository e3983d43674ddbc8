"""Synthetic RAW capture tools: colour maths, Brooks et al. unprocessing and a DNG writer."""
