"""CPU kernels: the raw_preprocess and postprocess stages."""
