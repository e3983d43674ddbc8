"""PT2E quantisation recipes for XNNPACK (torchao's prepare_pt2e / convert_pt2e).

A recipe is a named factory returning a frozen config, in the spirit of ExecuTorch's
recipe enums: int8 = per-channel symmetric int8 weights, int8 activations calibrated
with a min-max or a histogram observer."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from edge4k.backends.passes import PointwiseLinear, pointwise_convs_to_linear
from edge4k.errors import Edge4KError

OBSERVERS = ("minmax", "histogram")


@dataclass(frozen=True)
class QuantRecipe:
    name: str
    observer: str = "minmax"
    keep_fp32: tuple[str, ...] = ()   # module paths in the stage (e.g. "blocks.0.attn") left in fp32
    only: tuple[str, ...] = ()        # if set, quantise nothing but these module paths


def int8_recipe(observer: str = "minmax", keep_fp32: tuple[str, ...] = ()) -> QuantRecipe:
    if observer not in OBSERVERS:
        raise Edge4KError(f"observer must be one of {', '.join(OBSERVERS)}, got {observer}")
    return QuantRecipe("xnnpack_pt2e_int8_static_per_channel", observer, tuple(keep_fp32))


def _quantizer(recipe: QuantRecipe):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e import MinMaxObserver

    config = get_symmetric_quantization_config(is_per_channel=True)   # histogram activations
    if recipe.observer == "minmax":
        act = dataclasses.replace(config.input_activation,
                                  observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    quantizer = XNNPACKQuantizer().set_global(config)
    if recipe.keep_fp32 or recipe.only:
        # set_module_name annotates nothing in executorch 1.5.1 (its filter also sees weight
        # get_attr nodes, which carry no module stack), so filter call nodes ourselves.
        def wanted(n):
            if n.op != "call_function":
                return True
            return not _inside(n, recipe.keep_fp32) and (not recipe.only or _inside(n, recipe.only))
        quantizer.set_filter_function(wanted)
    return quantizer


def _inside(node, prefixes: tuple[str, ...]) -> bool:
    for path, _type in node.meta.get("nn_module_stack", {}).values():
        path = path.removeprefix("L['self'].").removeprefix("L__self__.")
        if any(path == p or path.startswith(p + ".") for p in prefixes):
            return True
    return False


def stage_keep_list(keep_fp32: tuple[str, ...], stage: str) -> tuple[str, ...] | None:
    """The entries of a build-wide keep list ("decoder.head.0", or "decoder" for the
    whole stage) that concern one stage, as paths inside it; None = whole stage fp32."""
    if stage in keep_fp32:
        return None
    return tuple(k.split(".", 1)[1] for k in keep_fp32 if k.startswith(stage + "."))


def quantize_stage(module: torch.nn.Module, example: tuple, calib: list[tuple], recipe: QuantRecipe):
    """Export, insert observers, run the calibration inputs, convert to q/dq form."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(module, example).module()
    prepared = prepare_pt2e(graph, _quantizer(recipe))
    with torch.no_grad():
        for inputs in calib:
            prepared(*inputs)
    return convert_pt2e(prepared)


W4A8 = QuantRecipe("torchao_8da4w_groupwise", observer="dynamic")


def w4a8_stage(module: torch.nn.Module, group_size: int = 32) -> torch.nn.Module:
    """int4 group-wise weights with dynamically quantised int8 activations (8da4w,
    torchao) on the stage's 1x1 convs, rewritten as linear layers first. XNNPACK
    lowers groups of 32 or a multiple of it only, so 1x1 convs whose input width is
    not a multiple of group_size stay fp32 convs."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    module = pointwise_convs_to_linear(module, lambda conv: conv.in_channels % group_size == 0)
    for pw in [m for m in module.modules() if isinstance(m, PointwiseLinear)]:
        quantize_(pw, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                            weight_granularity=PerGroup(group_size)))
    return module
