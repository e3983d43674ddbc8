"""Which Android delegates a LiteRT build is meant for, and the ops of a stage that
are known to fall back to the CPU on each.

The op sets come from the delegates' published sources and op lists (TFLite GPU
delegate model_builder.cc, Android NNAPI NeuralNetworks.h feature levels, the
Qualcomm QNN delegate's HTP precision rules). They are a static check of the
graph, not a measurement on a phone: re-check them on a device when versions move.
"""
from __future__ import annotations

# Builtin ops the GPU delegate (OpenCL / ML Drift) parses that Edge4K's graphs can
# contain; QUANTIZE/DEQUANTIZE only for quantised models. Tensors must be rank <= 4.
GPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CONCATENATION", "CONV_2D", "DEPTH_TO_SPACE",
    "DEPTHWISE_CONV_2D", "DEQUANTIZE", "DIV", "FULLY_CONNECTED", "LOGISTIC", "MAX_POOL_2D", "MEAN",
    "MUL", "PAD", "QUANTIZE", "RELU", "RESHAPE", "RESIZE_BILINEAR", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH",
    "SQRT", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV"})

# NNAPI (deprecated from Android 15 on; LiteRT's NPU path replaces it): ops and the
# NNAPI feature level that added them. Below that level the op runs on the CPU.
NNAPI_OPS = {"ADD": 1, "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "LOGISTIC": 1,
             "MUL": 1, "RESHAPE": 1, "DEQUANTIZE": 1, "DEPTH_TO_SPACE": 1, "SPACE_TO_DEPTH": 1,
             "PAD": 2, "MEAN": 2, "DIV": 2, "TRANSPOSE": 2, "SUB": 2, "QUANTIZE": 3, "SQRT": 3,
             "TRANSPOSE_CONV": 3, "BATCH_MATMUL": 6}

DELEGATES = {
    "gpu": "LiteRT GPU delegate (OpenCL/ML Drift): fp32 and fp16 builds, fp16 arithmetic",
    "nnapi": "Android NNAPI (Android 8.1-14; deprecated in 15): int8 builds on vendor drivers",
    "qnn": "Qualcomm QNN delegate on the Hexagon HTP (SM8550/SM8650/SM8750): int8 builds, "
           "fp16 for float builds on HTP v73 and later",
}


def intended_delegates(precision: str) -> list[str]:
    return {"fp32": ["gpu", "qnn"], "fp16": ["gpu", "qnn"], "int8": ["qnn", "nnapi", "gpu"]}[precision]


def cpu_fallbacks(ops: list[dict], precision: str) -> dict[str, dict[str, str]]:
    """Per delegate: {op name: why it is expected to run on the CPU}. `ops` are
    {"op": NAME, "max_rank": R, "float": bool} records, one per graph node."""
    gpu, nnapi, qnn = {}, {}, {}
    for rec in ops:
        op = rec["op"]
        if op not in GPU_OPS:
            gpu[op] = "not supported by the GPU delegate"
        elif rec["max_rank"] > 4:
            gpu[op] = f"rank-{rec['max_rank']} tensor (the GPU delegate takes rank <= 4)"
        level = NNAPI_OPS.get(op)
        if level is None:
            nnapi[op] = "no NNAPI equivalent"
        elif level > 3:
            nnapi[op] = f"needs NNAPI feature level {level}; older drivers run it on the CPU"
        if precision == "int8" and rec["float"] and op not in ("QUANTIZE", "DEQUANTIZE"):
            qnn[op] = "float op inside the int8 graph: runs on the HTP only with fp16 enabled, else on the CPU"
            nnapi[op] = "float op inside the int8 graph: most NNAPI NPU drivers run it on the CPU"
    return {"gpu": gpu, "nnapi": nnapi, "qnn": qnn}
