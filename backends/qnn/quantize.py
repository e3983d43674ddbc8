"""QDQ quantisation recipes for Qualcomm's HTP (onnxruntime's QNN QDQ configuration).

A recipe is a named factory returning a frozen config: per-channel symmetric int8
weights, asymmetric uint8 activations calibrated on real tiles, and uint16
activations (w8a16) for the stages or layers that need them. The int8-a16 precision
is the same recipe with uint16 activations everywhere.

Both leave the core of SANA's ReLU linear attention (LiteLA's own ops: the three
bmm, the token mean and the division, not its q/k/v/proj convs) unquantised; the
HTP runs it in fp16. A token whose ReLU'd query is zero in a head has numerator and
denominator both exactly 0, and the model returns 0/(0+eps) = 0; quantised, the
numerator comes back one step off zero and is divided by ~eps, so such tokens blow
up to the end of the output range (measured on the HTP emulation: the tiny test
model's backbone falls to 17 dB at uint8 and 34 dB at uint16, and is 50 dB with
the fp16 core)."""
from __future__ import annotations

import ast
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge4k.errors import Edge4KError
from edge4k.models import NETWORK_STAGES

OBSERVERS = ("minmax", "histogram")
NAME_SCOPES = "pkg.torch.onnx.name_scopes"   # module path of each node, written by torch.onnx (dynamo)


@dataclass(frozen=True)
class QnnQuantRecipe:
    name: str
    activation: str = "uint8"                 # default activation type: uint8 or uint16
    a16: tuple[str, ...] = ()                 # stages ("backbone") or layers ("backbone.blocks.0.attn") in uint16
    observer: str = "minmax"                  # minmax, or histogram (onnxruntime's percentile calibration)
    fp16_cores: tuple[str, ...] = ("LiteLA",)  # module classes whose own ops stay unquantised (fp16 on HTP)

    def stage_activation(self, stage: str) -> str:
        return "uint16" if self.activation == "uint16" or stage in self.a16 else self.activation

    def a16_layers(self, stage: str) -> tuple[str, ...]:
        """Module paths inside `stage` whose activations are uint16."""
        return tuple(t.split(".", 1)[1] for t in self.a16 if "." in t and t.split(".", 1)[0] == stage)


def qnn_recipe(precision: str, *, a16: tuple[str, ...] = (), observer: str = "minmax") -> QnnQuantRecipe:
    if observer not in OBSERVERS:
        raise Edge4KError(f"observer must be one of {', '.join(OBSERVERS)}, got {observer}")
    for target in a16:
        if target.split(".", 1)[0] not in NETWORK_STAGES:
            raise Edge4KError(f"--a16 takes a stage ({', '.join(NETWORK_STAGES)}) or stage.module.path "
                              f"(e.g. backbone.blocks.0.attn), got {target!r}")
    if precision == "int8":
        return QnnQuantRecipe("qnn_qdq_a8w8_per_channel" + ("_mixed_a16" if a16 else ""), "uint8", tuple(a16), observer)
    if precision == "int8-a16":
        return QnnQuantRecipe("qnn_qdq_a16w8_per_channel", "uint16", (), observer)
    raise Edge4KError(f"no QNN quantisation recipe for precision {precision}")


def node_scopes(node) -> list[str]:
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES:
            with contextlib.suppress(ValueError, SyntaxError):
                return list(ast.literal_eval(prop.value))
    return []


def innermost_class(node) -> str:
    """Class name of the module whose forward() emitted `node` (torch.onnx's namespace:
    "path: pkg.Class/path: pkg.Class/op: aten.op")."""
    for prop in node.metadata_props:
        if prop.key == "namespace":
            parts = prop.value.split("/")
            return parts[-2].rsplit(".", 1)[-1] if len(parts) >= 2 else ""
    return ""


def fp16_nodes(model, classes: tuple[str, ...]) -> list[str]:
    """Nodes emitted directly by a module of one of `classes` (not by its child modules)."""
    return [n.name for n in model.graph.node if classes and innermost_class(n) in classes]


def a16_overrides(model, layers: tuple[str, ...], skip: set[str] = frozenset()) -> tuple[dict, set[str]]:
    """Tensor overrides that put the outputs of every node inside `layers` in uint16,
    and the layers that matched at least one node."""
    from onnxruntime.quantization import QuantType

    overrides, matched = {}, set()
    for node in model.graph.node:
        if node.name in skip:
            continue
        scopes = node_scopes(node)
        hit = [p for p in layers if any(s == p or s.startswith(p + ".") for s in scopes)]
        if hit and node.op_type not in ("Reshape", "Transpose"):   # layout ops keep their input's type
            matched.update(hit)
            for out in node.output:
                overrides[out] = [{"quant_type": QuantType.QUInt16}]
    return overrides, matched


class _Reader:
    """onnxruntime CalibrationDataReader over a list of input tuples, read in strides
    (one sample at a time: ranges are reduced after each, so memory stays bounded)."""

    def __init__(self, names, samples):
        self._feeds = [{n: t.numpy().astype(np.float32) for n, t in zip(names, s)} for s in samples]
        self._it = iter(self._feeds)

    def get_next(self):
        return next(self._it, None)

    def __len__(self):
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int):
        self._it = iter(self._feeds[start_index:end_index])


def check_calibration(stage: str, example: tuple, samples: list[tuple]) -> None:
    if not samples:
        raise Edge4KError(f"the calibration set for {stage} is empty")
    want = [tuple(t.shape) for t in example]
    for i, sample in enumerate(samples):
        got = [tuple(t.shape) for t in sample]
        if got != want:
            raise Edge4KError(f"calibration sample {i} for {stage} has input shapes {got}; the build takes {want}")


def quantize_stage(fp32: Path, out: Path, *, stage: str, names: tuple[str, ...], example: tuple,
                   samples: list[tuple], recipe: QnnQuantRecipe) -> dict:
    """Calibrate the fp32 ONNX model of one stage on `samples` and write its QDQ model.
    Returns what the manifest records about the quantisation."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    check_calibration(stage, example, samples)
    model = onnx.load(fp32)
    layers = recipe.a16_layers(stage)
    keep = fp16_nodes(model, recipe.fp16_cores)
    overrides, matched = a16_overrides(model, layers, set(keep))
    missing = sorted(set(layers) - matched)
    if missing:
        raise Edge4KError(f"--a16 {stage}.{missing[0]}: no such layer in the {stage} stage")
    act = QuantType.QUInt16 if recipe.stage_activation(stage) == "uint16" else QuantType.QUInt8
    method = CalibrationMethod.MinMax if recipe.observer == "minmax" else CalibrationMethod.Percentile
    with _quiet():
        config = get_qnn_qdq_config(model, _Reader(names, samples), calibrate_method=method, activation_type=act,
                                    weight_type=QuantType.QInt8, per_channel=True, init_overrides=overrides or None,
                                    nodes_to_exclude=keep or None, stride=1)
        quantize(fp32, out, config)
    return {"activations": recipe.stage_activation(stage), "weights": "int8 per-channel symmetric",
            "a16_layers": list(layers), "a16_tensors": len(overrides), "observer": recipe.observer,
            "fp16_nodes": len(keep), "fp16_cores": list(recipe.fp16_cores) if keep else [],
            "calibration_samples": len(samples)}


@contextlib.contextmanager
def _quiet():
    """onnxruntime's quantiser logs advice (pre-processing, ...) on the root logger."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
