"""ai-edge-quantizer recipes for the LiteRT target.

Why ai-edge-quantizer and not litert-torch's PT2E quantizer: the PT2E quantizer
only annotates conv, linear, add and pooling, so SiLU (LOGISTIC + MUL), the
attention's BATCH_MATMUL, MEAN and the decoder's SQRT would stay in float and
the model would not be full-integer. ai-edge-quantizer works on the converted
.tflite graph, quantises every op LiteRT has an int8 kernel for, and calibrates
the graph that actually ships (after the NHWC layout rewrite). It also does the
fp16-weight variant, so one tool covers both.

A recipe is a named factory returning a frozen config; `entries` is
ai-edge-quantizer's own JSON recipe format, written into the build folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

# The linear-attention normaliser num / (mean(K)^T Q + eps): in int8 its small
# denominators round to the zero point, which the int8 DIV kernel refuses and which
# costs ~35 dB even when it runs, so those ops (tensor names of LiteLA's own ops,
# not its 1x1 convs) stay in float.
ATTENTION_CORE = r".*LiteLA_attn;.*"


@dataclass(frozen=True)
class LiteRTRecipe:
    name: str
    entries: str                         # JSON list, ai-edge-quantizer's recipe format
    needs_calibration: bool = False
    float_regexes: tuple[str, ...] = ()

    def recipe(self) -> list[dict]:
        return json.loads(self.entries)


def fp16_recipe() -> LiteRTRecipe:
    """fp16 weights (dequantised at load on CPU; the GPU delegate computes in fp16)."""
    entry = {"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
             "op_config": {"weight_tensor_config": {"num_bits": 16, "symmetric": True,
                                                    "granularity": "CHANNELWISE", "dtype": "FLOAT"},
                           "compute_precision": "FLOAT", "explicit_dequantize": True}}
    return LiteRTRecipe("litert_fp16_weights", json.dumps([entry]))


def int8_recipe(float_regexes: tuple[str, ...] = (ATTENTION_CORE,)) -> LiteRTRecipe:
    """Full-integer int8: per-channel symmetric int8 weights, per-tensor asymmetric int8
    activations from min/max calibration, int8 model inputs and outputs."""
    entries = [{"regex": ".*", "operation": "*", "algorithm_key": "min_max_uniform_quantize",
                "op_config": {"activation_tensor_config": {"num_bits": 8, "symmetric": False,
                                                           "granularity": "TENSORWISE", "dtype": "INT"},
                              "weight_tensor_config": {"num_bits": 8, "symmetric": True,
                                                       "granularity": "CHANNELWISE", "dtype": "INT"},
                              "compute_precision": "INTEGER", "explicit_dequantize": False,
                              "skip_checks": False, "min_weight_elements": 0}}]
    entries += [{"regex": r, "operation": "*", "algorithm_key": "no_quantize"} for r in float_regexes]
    return LiteRTRecipe("litert_static_wi8_ai8", json.dumps(entries), True, tuple(float_regexes))


RECIPES = {"fp16": fp16_recipe, "int8": int8_recipe}


def quantize_tflite(float_model: bytes, recipe: LiteRTRecipe, calibration: list[dict] | None = None) -> bytes:
    """Apply a recipe to a float .tflite; `calibration` is a list of signature inputs
    ({"args_0": array, ...}) for recipes that need activation ranges."""
    from ai_edge_quantizer import quantizer

    q = quantizer.Quantizer(float_model)
    q.load_quantization_recipe(recipe.recipe())
    result = None
    if recipe.needs_calibration:
        result = q.calibrate({"serving_default": calibration}, num_threads=1)
    return bytes(q.quantize(result, enable_progress_report=False).quantized_model)
