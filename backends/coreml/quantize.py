"""Core ML precision recipes (coremltools.optimize.coreml), applied to the fp16 mlprogram.

- fp16: the converted program as is (fp16 weights and activations).
- int8-weights: per-channel symmetric int8 weights (constexpr_blockwise_shift_scale).
- palette4: 4-bit k-means palettised weights, one 16-entry palette per group of 16
  output channels (constexpr_lut_to_dense).
- w8a8: int8 activations (quantize/dequantize pairs around conv, linear, add and
  pooling, as coremltools' linear_quantize_activations places them) plus int8 weights.

Activation ranges for w8a8: coremltools gathers them by running the model through
Core ML, which only exists on macOS. Here the same ranges come from running the
exported torch program on the calibration tiles, per graph node; the converter names
each MIL value after the torch node it came from (plus a `_cast_fp16` suffix), and a
range is used only where the names and shapes agree. coremltools' own graph passes
then insert the quantize/dequantize pairs. (coremltools.optimize.torch's PT2E
quantizer would be the torch-side route, but it imports torch.ao.quantization.quantizer,
which torch 2.13 no longer has.)"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from edge4k.errors import Edge4KError

CAST_SUFFIXES = ("_cast_fp16", "_to_fp16")
# MIL ops the converter names after themselves, not after the torch node, with its own counter
# in graph order: MIL `clip_2` is torch `clamp_2` (and `clip_0` is `clamp`).
RENAMED_OPS = {"clip": "clamp"}


@dataclass(frozen=True)
class CoreMLRecipe:
    name: str
    weights: str | None = None      # "int8" or "palette4"
    activations: bool = False       # int8 activations (w8a8)
    weight_threshold: int = 256     # tensors with fewer elements stay fp16 (biases, tiny kernels)
    ios: int = 17                   # minimum deployment target


RECIPES = {
    "fp16": lambda: CoreMLRecipe("coreml_fp16"),
    "int8-weights": lambda: CoreMLRecipe("coreml_int8_linear_symmetric_per_channel", weights="int8"),
    # grouped-channel palettes need the iOS 18 constexpr_lut_to_dense
    "palette4": lambda: CoreMLRecipe("coreml_palettize_kmeans_4bit_grouped16", weights="palette4", ios=18),
    "w8a8": lambda: CoreMLRecipe("coreml_w8a8_linear_symmetric", weights="int8", activations=True),
}


def activation_ranges(program: torch.export.ExportedProgram, calib: list[tuple]) -> dict[str, dict]:
    """{torch node name: {"rmin", "rmax", "shape"}} over the calibration inputs."""
    stats: dict[str, dict] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            out = super().run_node(node)
            if isinstance(out, torch.Tensor) and out.is_floating_point():
                lo, hi = out.min().item(), out.max().item()
                s = stats.setdefault(node.name, {"rmin": lo, "rmax": hi, "shape": tuple(out.shape)})
                s["rmin"], s["rmax"] = min(s["rmin"], lo), max(s["rmax"], hi)
            return out

    module = program.module()
    with torch.no_grad():
        for inputs in calib:
            Recorder(module).run(*inputs)
    return stats


def mil_activation_stats(mlmodel, ranges: dict[str, dict]) -> tuple[dict, int, int]:
    """Map torch ranges onto the MIL program's value names; returns (stats, matched, total)."""
    stats, total = {}, 0
    for function in mlmodel._mil_program.functions.values():
        values = list(function.inputs.values()) + [v for op in function.operations for v in op.outputs
                                                    if op.op_type != "const"]
        for var in values:
            total += 1
            base = var.name
            for suffix in CAST_SUFFIXES:
                base = base.removesuffix(suffix)
            op, _, index = base.rpartition("_")
            if op in RENAMED_OPS and index.isdigit():
                base = RENAMED_OPS[op] + ("" if index == "0" else f"_{index}")
            r = ranges.get(base)
            if r is None and base.endswith("_0"):   # the converter's de-duplicated name for the first use
                r = ranges.get(base[:-2])
            if r is not None and tuple(var.shape) == r["shape"]:
                stats[var.name] = {"rmin": r["rmin"], "rmax": r["rmax"]}
    return stats, len(stats), total


def apply_recipe(mlmodel, recipe: CoreMLRecipe, ranges: dict[str, dict] | None = None):
    """Return (compressed MLModel, notes for the manifest)."""
    import coremltools.optimize as cto

    notes = {}
    if recipe.activations:
        from coremltools import _SPECIFICATION_VERSION_IOS_17
        from coremltools.converters.mil.frontend.milproto.load import load as milproto_load
        from coremltools.converters.mil.mil.passes.graph_pass import PassOption
        from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY
        from coremltools.models import utils as model_utils

        stats, matched, total = mil_activation_stats(mlmodel, ranges or {})
        config = cto.coreml.OptimizationConfig(
            global_config=cto.coreml.OpLinearQuantizerConfig(mode="linear_symmetric"))
        passes = []
        for name in ("compression::insert_prefix_quantize_dequantize_pair",
                     "compression::insert_suffix_quantize_dequantize_pair"):
            graph_pass = PASS_REGISTRY[name]
            graph_pass.set_options([PassOption("config", config), PassOption("activation_stats", stats)])
            passes.append(graph_pass)
        passes.append(PASS_REGISTRY["common::dequantize_quantize_pair_elimination"])
        try:
            mlmodel = model_utils._apply_graph_pass(mlmodel, passes, spec_version=_SPECIFICATION_VERSION_IOS_17,
                                                    pymil_load_func=milproto_load, skip_model_load=True)
        except KeyError as e:
            raise Edge4KError(f"w8a8: no calibrated range for MIL value {e}; the torch and MIL graphs differ "
                              "there") from None
        notes["activation_ranges"] = {"matched": matched, "values": total}
    if recipe.weights == "int8":
        config = cto.coreml.OptimizationConfig(global_config=cto.coreml.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel",
            weight_threshold=recipe.weight_threshold))
        mlmodel = cto.coreml.linear_quantize_weights(mlmodel, config)
    elif recipe.weights == "palette4":
        config = cto.coreml.OptimizationConfig(global_config=cto.coreml.OpPalettizerConfig(
            mode="kmeans", nbits=4, granularity="per_grouped_channel", group_size=16,
            weight_threshold=recipe.weight_threshold))
        mlmodel = cto.coreml.palettize_weights(mlmodel, config)
    return mlmodel, notes
