"""Lowering steps for the android-qnn target, each a small function:
export a stage to ONNX at its fixed shape, then (quantize.py) QDQ-quantise it,
then compile an EPContext model for one SoC and read back where its nodes went."""
from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
from pathlib import Path

import torch

from edge4k.errors import Edge4KError

OPSET = 21            # 16-bit QuantizeLinear/DequantizeLinear need opset 21
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def export_onnx(module: torch.nn.Module, example: tuple, path: Path, *, input_names, output_name: str) -> None:
    """torch.export -> ONNX at the example's fixed shapes, weights inside the file."""
    with _quiet_exporter():
        try:
            torch.onnx.export(module, example, os.fspath(path), input_names=list(input_names),
                              output_names=[output_name], dynamo=True, external_data=False,
                              opset_version=OPSET, verbose=False)
        except Exception as e:   # the exporter raises several of its own types
            raise Edge4KError(f"ONNX export of {path.stem} failed: {str(e).strip().splitlines()[0]}") from None


@contextlib.contextmanager
def _quiet_exporter():
    """The dynamo exporter prints its progress to stdout and warns about torchvision."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        log.setLevel(level)


def placement(fp32_model, context_model) -> dict:
    """Where a stage's nodes run once compiled: every node of the fp32 graph that did
    not survive as an ONNX node beside the EPContext node(s) is inside a context
    binary, on the HTP; the survivors fall back to the CPU."""
    network = [n for n in fp32_model.graph.node]
    left = [n for n in context_model.graph.node if n.op_type != "EPContext"]
    cpu = [n for n in left if n.op_type not in QDQ_OPS]
    cpu_names = {n.name for n in cpu}
    return {"nodes": len(network), "htp": len(network) - len(cpu), "cpu": len(cpu),
            "cpu_ops": dict(collections.Counter(n.op_type for n in cpu)),
            "cpu_nodes": [n.name for n in cpu],
            "cpu_qdq": len(left) - len(cpu),
            "context_binaries": sum(n.op_type == "EPContext" for n in context_model.graph.node),
            "htp_ops": dict(collections.Counter(n.op_type for n in network if n.name not in cpu_names))}


def context_info(context_model) -> dict:
    """The QAIRT build that wrote the context binaries, and their total size."""
    import onnx

    sdk, size = set(), 0
    for node in context_model.graph.node:
        if node.op_type == "EPContext":
            attrs = {a.name: a for a in node.attribute}
            if "ep_sdk_version" in attrs:
                sdk.add(onnx.helper.get_attribute_value(attrs["ep_sdk_version"]).decode())
            if "ep_cache_context" in attrs:
                size += len(attrs["ep_cache_context"].s)
    return {"context_sdk": sorted(sdk), "context_binary_bytes": size}
