"""Datasets: synthetic RAW captures from photographs (camera models, illuminants, DNG writing), the
data manifest and its guards, and the training shards."""
