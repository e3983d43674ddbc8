"""One folder per backend: its lowering, quantisation and runtime side together
(xnnpack: ExecuTorch/XNNPACK, qnn: Qualcomm HTP, litert: LiteRT, coreml: Core ML); registry.py
names them all. Each is independent of the others."""
