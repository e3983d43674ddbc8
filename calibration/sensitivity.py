"""Per-layer int8 sensitivity: quantise one conv/linear layer at a time (everything
else fp32) and measure the stage output's PSNR against fp32. The analyse step of
mixed precision: it writes a JSON plan whose keep_fp32 list the compile step takes."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from edge4k.backends.base import psnr
from edge4k.backends.passes import fold_batchnorm
from edge4k.backends.xnnpack.quantize import int8_recipe, quantize_stage
from edge4k.models import NETWORK_STAGES, E4KNet


def layer_sensitivity(model: E4KNet, inputs: dict, calib: list[dict], held_out: list[dict], *,
                      stages=NETWORK_STAGES, observer: str = "minmax", threshold_db: float = 40.0,
                      progress=lambda msg: None) -> dict:
    """{"layers": [{"layer": "decoder.head.0", "psnr_db": ...}, ...] worst first,
    "keep_fp32": layers below threshold_db, ...}."""
    rows = []
    for stage in stages:
        module = fold_batchnorm(model.stage(stage))
        layers = [n for n, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            ref = torch.cat([module(*h[stage]) for h in held_out])
        for i, layer in enumerate(layers):
            progress(f"{stage}: layer {i + 1}/{len(layers)} {layer}")
            recipe = dataclasses.replace(int8_recipe(observer), only=(layer,))
            q = quantize_stage(module, inputs[stage], [c[stage] for c in calib], recipe)
            with torch.no_grad():
                out = torch.cat([q(*h[stage]) for h in held_out])
            rows.append({"layer": f"{stage}.{layer}", "psnr_db": round(psnr(ref, out), 2)})
    rows.sort(key=lambda r: r["psnr_db"])
    return {"observer": observer, "threshold_db": threshold_db, "layers": rows,
            "keep_fp32": [r["layer"] for r in rows if r["psnr_db"] < threshold_db]}
