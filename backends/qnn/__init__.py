"""Qualcomm HTP target (android-qnn): calibrated QDQ int8 (uint16 activations where
a stage or layer needs them), one EPContext model per stage whose embedded QNN
context binary targets one Snapdragon SoC. Runs here on the HTP emulation that
onnxruntime-qnn ships for x86-64 (runtime backend qnn-htp-sim)."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from edge4k.backends.base import BuildSpec, Target
from edge4k.backends.passes import fold_batchnorm, space_to_channel_as_conv
from edge4k.backends.qnn.ep import compile_context, require_qnn
from edge4k.backends.qnn.lower import context_info, export_onnx, placement
from edge4k.backends.qnn.quantize import qnn_recipe, quantize_stage
from edge4k.backends.qnn.soc import DEFAULT_SOC, SOCS, Soc, get_soc
from edge4k.errors import Edge4KError
from edge4k.models import NETWORK_STAGES, E4KNet
from edge4k.runtime.manifest import INPUT_NAMES, OUTPUT_NAMES


def prepare(model: E4KNet, stage: str):
    """The stage as the HTP gets it: BatchNorm folded, pixel_unshuffle + 1x1 conv as a strided conv."""
    return space_to_channel_as_conv(fold_batchnorm(model.stage(stage)))


def context_file(stage: str) -> str:
    return f"{stage}.ctx.onnx"


class AndroidQnn(Target):
    name = "android-qnn"
    backend = "qnn-htp-sim"
    precisions = ("int8", "int8-a16")
    default_precision = "int8"
    delegate = "qnn-htp"
    options = ("observer", "keep_fp32", "soc", "a16")
    accuracy_hint = "give the weakest stage or layer uint16 activations (--a16 backbone.blocks.0.attn) or use more calibration"

    def validate(self, spec: BuildSpec) -> None:
        get_soc(spec.options.get("soc") or DEFAULT_SOC)
        if spec.options.get("keep_fp32"):
            raise Edge4KError("android-qnn keeps no layer in fp32 (the HTP runs integer graphs); "
                              "use --a16 STAGE[.LAYER] for uint16 activations instead")
        qnn_recipe(spec.precision, a16=tuple(spec.options.get("a16", ())),
                   observer=spec.options.get("observer", "minmax"))
        require_qnn()

    def soc(self, spec: BuildSpec) -> Soc:
        return get_soc(spec.options.get("soc") or DEFAULT_SOC)

    def lower(self, model: E4KNet, spec: BuildSpec, inputs, calib, out_dir: Path, progress):
        import onnx

        soc = self.soc(spec)
        recipe = qnn_recipe(spec.precision, a16=tuple(spec.options.get("a16", ())),
                            observer=spec.options.get("observer", "minmax"))
        stages = {}
        with tempfile.TemporaryDirectory(prefix="edge4k-qnn-") as tmp:
            for stage in NETWORK_STAGES:
                t0 = time.perf_counter()
                fp32, qdq, ctx = Path(tmp) / f"{stage}.onnx", out_dir / f"{stage}.qdq.onnx", out_dir / context_file(stage)
                progress(f"export {stage} to ONNX")
                export_onnx(prepare(model, stage), inputs[stage], fp32,
                            input_names=INPUT_NAMES[stage], output_name=OUTPUT_NAMES[stage])
                progress(f"quantise {stage} ({recipe.stage_activation(stage)} activations, "
                         f"{len(calib)} calibration samples)")
                quant = quantize_stage(fp32, qdq, stage=stage, names=INPUT_NAMES[stage], example=inputs[stage],
                                       samples=[c[stage] for c in calib], recipe=recipe)
                progress(f"compile {stage} context binary for {soc.name} (HTP v{soc.htp_arch})")
                compile_context(qdq, ctx, soc)
                ctx_model = onnx.load(ctx)
                place = placement(onnx.load(fp32), ctx_model)
                stages[stage] = {
                    "file": ctx.name, "qdq_file": qdq.name, "bytes": os.path.getsize(ctx),
                    **context_info(ctx_model), "planned_arena_bytes": None,
                    "weight_bytes": sum(t.numel() * t.element_size() for t in model.stage(stage).state_dict().values()),
                    "precision": "int8-a16" if quant["activations"] == "uint16" else spec.precision,
                    "quantization": {"recipe": recipe.name, **quant},
                    "placement": place, "ops_outside_delegate": place["cpu_ops"],
                    "compile_seconds": round(time.perf_counter() - t0, 2)}
        return stages

    def manifest_extra(self, spec: BuildSpec) -> dict:
        soc = self.soc(spec)
        return {"qnn": {"soc": soc.name, "soc_model": soc.soc_model, "htp_arch": soc.htp_arch,
                        "device": soc.marketing, "backend": "HTP", "qairt": require_qnn()["qairt"],
                        "emulated_here": True}}

    def tool_versions(self):
        return require_qnn()


__all__ = ["AndroidQnn", "SOCS", "DEFAULT_SOC", "get_soc", "require_qnn", "context_file"]
