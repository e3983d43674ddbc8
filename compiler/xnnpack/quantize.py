"""PT2E quantisation recipes for XNNPACK (torchao's prepare_pt2e / convert_pt2e).

A recipe is a named factory returning a frozen config, in the spirit of ExecuTorch's
recipe enums: int8 = per-channel symmetric int8 weights, int8 activations calibrated
with a min-max or a histogram observer."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from edge4k.errors import Edge4KError

OBSERVERS = ("minmax", "histogram")


@dataclass(frozen=True)
class QuantRecipe:
    name: str
    observer: str = "minmax"
    keep_fp32: tuple[str, ...] = ()   # module paths (e.g. "blocks.0.attn") left in fp32


def int8_recipe(observer: str = "minmax", keep_fp32: tuple[str, ...] = ()) -> QuantRecipe:
    if observer not in OBSERVERS:
        raise Edge4KError(f"observer must be one of {', '.join(OBSERVERS)}, got {observer}")
    return QuantRecipe("xnnpack_pt2e_int8_static_per_channel", observer, tuple(keep_fp32))


def _quantizer(recipe: QuantRecipe):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e import MinMaxObserver

    config = get_symmetric_quantization_config(is_per_channel=True)   # histogram activations
    if recipe.observer == "minmax":
        act = dataclasses.replace(config.input_activation,
                                  observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    quantizer = XNNPACKQuantizer().set_global(config)
    if recipe.keep_fp32:
        # set_module_name annotates nothing in executorch 1.5.1 (its filter also sees weight
        # get_attr nodes, which carry no module stack), so filter call nodes ourselves.
        quantizer.set_filter_function(lambda n: n.op != "call_function" or not _inside(n, recipe.keep_fp32))
    return quantizer


def _inside(node, prefixes: tuple[str, ...]) -> bool:
    for path, _type in node.meta.get("nn_module_stack", {}).values():
        path = path.removeprefix("L['self'].").removeprefix("L__self__.")
        if any(path == p or path.startswith(p + ".") for p in prefixes):
            return True
    return False


def quantize_stage(module: torch.nn.Module, example: tuple, calib: list[tuple], recipe: QuantRecipe):
    """Export, insert observers, run the calibration inputs, convert to q/dq form."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(module, example).module()
    prepared = prepare_pt2e(graph, _quantizer(recipe))
    with torch.no_grad():
        for inputs in calib:
            prepared(*inputs)
    return convert_pt2e(prepared)
