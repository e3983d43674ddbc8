"""Host runtime: tiling, backends, the pipeline and its profile."""
