"""LiteRT (TFLite) target: android-litert.

Each network stage is lowered with litert-torch (the maintained successor of
ai-edge-torch) to its own `<stage>.tflite` at a fixed shape. Every 4-D input and
output is NHWC: litert-torch's to_channel_last_io wraps the NCHW stage in a layout
adapter, and its layout pass then runs the whole graph channels-last, so the phone
gets NHWC buffers without transposes at the boundary. Transposes the converter
still leaves inside the graph are counted in the manifest (`transpose_ops`).

Precisions: fp32, fp16 weights, and full-integer int8 (ai-edge-quantizer, see
quantize.py) calibrated on packed-RAW tiles from `calibration/`."""
from __future__ import annotations

import collections
import hashlib
import os
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from edge4k.backends.base import BuildSpec, Target
from edge4k.backends.litert.delegates import DELEGATES, cpu_fallbacks, intended_delegates
from edge4k.backends.litert.quantize import RECIPES, quantize_tflite
from edge4k.backends.passes import fold_batchnorm
from edge4k.models import NETWORK_STAGES, E4KNet
from edge4k.optional import missing
from edge4k.stderr import captured_native_stderr

SIGNATURE = "serving_default"


def require_litert(convert: bool = False) -> str:
    """Import the LiteRT runtime (and litert-torch for conversion); return its version."""
    try:
        with captured_native_stderr():
            import ai_edge_litert  # noqa: F401
            from ai_edge_litert import interpreter  # noqa: F401
            if convert:
                os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
                import ai_edge_quantizer  # noqa: F401
                import litert_torch  # noqa: F401
    except ImportError as e:
        raise missing("the LiteRT target", "litert_torch" if convert else "ai_edge_litert", e) from None
    return version("ai-edge-litert")


def to_nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1).contiguous() if t.dim() == 4 else t


def signature_inputs(inputs: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    """A stage's NCHW inputs as the .tflite signature takes them (float, NHWC)."""
    return {f"args_{i}": to_nhwc(t).numpy() for i, t in enumerate(inputs)}


_FLOAT_MODELS: dict[str, bytes] = {}   # per process: precisions of one model share one conversion


def _fingerprint(module: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> str:
    h = hashlib.sha256(repr([tuple(t.shape) for t in example]).encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def lower_stage(module: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    """One NCHW stage -> float .tflite bytes with NHWC 4-D inputs and outputs."""
    key = _fingerprint(module, example)
    if key not in _FLOAT_MODELS:
        if len(_FLOAT_MODELS) >= 8:   # the four stages of two models
            _FLOAT_MODELS.pop(next(iter(_FLOAT_MODELS)))
        _FLOAT_MODELS[key] = _convert(module, example)
    return _FLOAT_MODELS[key]


def _convert(module: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    import litert_torch

    with torch.no_grad():
        out = module(*example)
    wrapped = litert_torch.to_channel_last_io(
        module, args=[i for i, t in enumerate(example) if t.dim() == 4], outputs=[0] if out.dim() == 4 else [])
    nhwc = tuple(to_nhwc(t) for t in example)
    with captured_native_stderr():
        return bytes(litert_torch.convert(wrapped.eval(), nhwc).model_content())


def graph_ops(path: Path) -> tuple[list[dict], dict, dict]:
    """(one record per op: name, largest tensor rank, float output?), input and output details."""
    from ai_edge_litert.interpreter import Interpreter

    with captured_native_stderr():
        it = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    records = []
    for op in it._get_ops_details():
        idx = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0 and i in tensors]
        records.append({"op": op["op_name"], "max_rank": max((len(tensors[i]["shape"]) for i in idx), default=0),
                        "float": any(tensors[i]["dtype"] == np.float32 for i in op["outputs"] if i in tensors)})
    runner = it.get_signature_runner(SIGNATURE)

    def io(details):
        return {name: {"shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                       "quantization": [float(d["quantization"][0]), int(d["quantization"][1])]}
                for name, d in details.items()}
    return records, io(runner.get_input_details()), io(runner.get_output_details())


class LiteRTTarget(Target):
    backend = "litert"
    precisions = ("fp32", "fp16", "int8")
    delegate = "xnnpack"   # on the host; the manifest's `delegates` says what it is meant for on Android

    def lower(self, model: E4KNet, spec: BuildSpec, inputs, calib, out_dir: Path, progress):
        require_litert(convert=True)

        recipe = RECIPES[spec.precision]() if spec.precision != "fp32" else None
        result = {}
        for stage in NETWORK_STAGES:
            t0 = time.perf_counter()
            progress(f"convert {stage} with litert-torch")
            module = fold_batchnorm(model.stage(stage))
            flat = lower_stage(module, inputs[stage])
            if recipe is not None:
                progress(f"quantise {stage} ({recipe.name}"
                         + (f", {len(calib)} calibration samples)" if recipe.needs_calibration else ")"))
                with captured_native_stderr():
                    flat = quantize_tflite(flat, recipe, [signature_inputs(c[stage]) for c in calib])
            path = out_dir / f"{stage}.tflite"
            path.write_bytes(flat)
            records, ins, outs = graph_ops(path)
            ops = dict(collections.Counter(r["op"] for r in records))
            fallbacks = cpu_fallbacks(records, spec.precision)
            result[stage] = {
                "file": path.name, "bytes": os.path.getsize(path), "layout": "NHWC",
                "signature": SIGNATURE, "tflite_inputs": ins, "tflite_outputs": outs,
                "weight_bytes": sum(t.numel() * t.element_size() for t in module.state_dict().values()),
                "precision": spec.precision, "quantization": recipe.name if recipe else None,
                "ops": ops, "transpose_ops": ops.get("TRANSPOSE", 0),
                "float_ops": sorted({r["op"] for r in records if r["float"]} - {"DEQUANTIZE"})
                if spec.precision == "int8" else None,
                "delegates": {d: {"about": DELEGATES[d], "cpu_fallback_ops": fallbacks[d]}
                              for d in intended_delegates(spec.precision)},
                "export_seconds": round(time.perf_counter() - t0, 2)}
        if recipe is not None:
            (out_dir / "quant_recipe.json").write_text(recipe.entries + "\n")
        return result

    def tool_versions(self):
        return {"ai-edge-litert": require_litert(), "litert-torch": version("litert-torch"),
                "ai-edge-quantizer": version("ai-edge-quantizer")}


class AndroidLiteRT(LiteRTTarget):
    name = "android-litert"
