"""Issue 28 measurement: can full int8 get within 0.5 dB of eager fp32 if the decoder stage's
graph emits only its bounded residual and the classical Malvar-He-Cutler base is added in fp32
outside the quantised graph?

Builds of one preset (768x512 frames, 256/32 tiles, 8 calibration tiles of the training photos,
the compile path of compiler/build.py; BUILDS names them), scored with the evaluation protocol
(evaluation/evaluate.py: the seeded captures of the first N images of Kodak24 and McMaster18, both
looks) against ground truth and against the eager fp32 model:
- int8, qnn-int8, litert-int8: every stage int8, the decoder's output (base + residual) quantised: the
  contract before edge4k.manifest/2, rebuilt here with BaseInside (Decoder.render as the stage, the build's
  config saying raw_skip false so nothing adds the base again);
- resid, qnn-resid, litert-resid: the same, but the decoder graph returns pixel_shuffle(residual) and
  the fp32 base pixel_shuffle(demosaic(packed)) is added outside it: how every build works since this
  measurement (models.e4k.add_classical_base);
- resid-gfp32: resid with the global stage fp32 inside the program;
- mixed: XNNPACK int8 with INT8_MIXED_FP32 in fp32, built as precision int8 with that keep list,
  since the int8-mixed build of e4k-v3-f16 fails its 40 dB per-stage floor at the backbone (35.6 dB);
- NAME+fp32:STAGE[/STAGE]: NAME's build with those stages run by the eager fp32 model.

    PYTHONSAFEPATH=1 .venv/bin/python -m edge4k.studies.int8_residual OUT [N] [BUILDS] [RESULT_NAME]

Builds are cached under OUT/builds; results go to OUT/RESULT_NAME.json (reports/int8_residual has
the measured ones and their Markdown). On a loaded 2-core host an XNNPACK int8 build takes about
2 minutes, a QNN or LiteRT one under 30 s; scoring 18 captures, 10-40 s a capture for 3-5 renderers.
Not one of `edge4k study`'s STUDIES: a one-off measurement that compiles real builds.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge4k.backends.base import PSNR_FLOOR, BuildSpec
from edge4k.backends.registry import open_build
from edge4k.backends.xnnpack import INT8_MIXED_FP32
from edge4k.compiler.build import compile_build
from edge4k.datasets.dng import write_dng
from edge4k.evaluation.evaluate import clean_linear, finished, load_set, metrics, protocol_cases, run_edge4k
from edge4k.kernels.raw import prepare, read_raw
from edge4k.kernels.threads import set_threads
from edge4k.models import add_classical_base
from edge4k.models.checkpoint import load_for_preset
from edge4k.runtime.backends import Backend

PRESET = "e4k-v3-f16"
VARIANTS = ("int8", "resid", "resid-gfp32", "mixed")
LOOKS = ("neutral", "natural")
SETS = ("kodak24", "mcmaster18")


class BaseInside(nn.Module):
    """The decoder stage as it was compiled before edge4k.manifest/2: the image, base + residual."""

    def __init__(self, dec):
        super().__init__()
        self.dec = dec

    def forward(self, latent, packed):
        return self.dec.render(latent, packed)


def base_inside_model(model):
    """A copy of model whose decoder stage returns the image; its config says raw_skip false, so
    neither the build's verification nor the pipeline adds the base a second time (clip_input and
    residual_gate need raw_skip in a config; the copied decoder keeps them)."""
    old = copy.deepcopy(model)
    old.decoder = BaseInside(old.decoder)
    old.cfg = dataclasses.replace(old.cfg, raw_skip=False, clip_input=False, residual_gate=False)
    return old


class EagerStages(Backend):
    """A build with the stages in fp32_stages run by the eager fp32 model instead."""

    def __init__(self, inner, model, fp32_stages: tuple[str, ...]):
        self.inner, self.model, self.fp32_stages = inner, model, fp32_stages
        self.manifest, self.cfg, self.name = inner.manifest, inner.cfg, inner.name

    def run(self, stage, *inputs):
        if stage in self.fp32_stages:
            with torch.inference_mode():
                return self.model.stage(stage)(*inputs)
        return self.inner.run(stage, *inputs)


# name -> (target, decoder returns the residual, options). NAME+fp32:STAGE[/STAGE]: NAME's build with
# those stages run by the eager fp32 model, e.g. the global branch as a separate fp32 stage beside an NPU.
BUILDS = {
    "int8": ("host-xnnpack", False, {"observer": "histogram"}),
    "resid": ("host-xnnpack", True, {"observer": "histogram"}),
    "resid-gfp32": ("host-xnnpack", True, {"observer": "histogram", "keep_fp32": ["global"]}),
    "mixed": ("host-xnnpack", False, {"observer": "histogram", "keep_fp32": list(INT8_MIXED_FP32)}),
    "litert-int8": ("android-litert", False, {}),
    "litert-resid": ("android-litert", True, {}),
    "qnn-int8": ("android-qnn", False, {}),
    "qnn-resid": ("android-qnn", True, {}),
}


def build(name: str, model, old_model, weights: str, out: Path) -> tuple[Backend, dict]:
    """A cached build. The int8 accuracy floor is lifted while compiling (a LiteRT int8 build fails
    it); each build's per-stage verification against eager is recorded instead."""
    base_name, _, fp32 = name.partition("+fp32:")
    fp32_stages = tuple(fp32.split("/")) if fp32 else ()
    target, resid, options = BUILDS[base_name]
    path = out / "builds" / base_name
    t = time.perf_counter()
    if (path / "manifest.json").is_file():
        manifest = json.loads((path / "manifest.json").read_text())
    else:
        spec = BuildSpec(target=target, preset=PRESET, width=768, height=512, tile=256, overlap=32,
                         precision="int8", calib=8, calib_sources=("photos",), options=options)
        floor, PSNR_FLOOR["int8"] = PSNR_FLOOR["int8"], 0.0
        try:
            manifest = compile_build(model if resid else old_model, spec, path, weights=weights,
                                     progress=lambda msg: print(f"  {name}: {msg}", flush=True))
        finally:
            PSNR_FLOOR["int8"] = floor
    backend = open_build(path)
    if fp32_stages:
        if not resid:
            raise SystemExit(f"{name}: eager stages beside a base-inside build would mix contracts")
        backend = EagerStages(backend, model, fp32_stages)
    return backend, {"target": target, "eager_fp32_stages": list(fp32_stages),
                     "compile_s": round(time.perf_counter() - t, 1), "options": options,
                     "verification": manifest["verification"]}


def main(out: Path, n: int, variants: tuple[str, ...], result_name: str = "int8_residual") -> dict:
    set_threads(1)
    model, weights = load_for_preset(PRESET, None)
    old_model = base_inside_model(model)
    with torch.no_grad():   # the split is exact in fp32: the runtime's sum against the old in-graph stage
        z, x = torch.randn(1, model.cfg.latent_channels, 16, 16), torch.rand(1, 4, 128, 128)
        split = add_classical_base(model.cfg, model.decoder(z, x), x)
        split_diff = (old_model.decoder(z, x) - split).abs().max().item()
    backends, info = {}, {}
    for name in variants:
        backends[name], info[name] = build(name, model, old_model, weights, out)
    runners = {"eager": run_edge4k(model), **{k: run_edge4k(b) for k, b in backends.items()}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for set_name in SETS:
            images = load_set(set_name)
            for case in protocol_cases({k: images[k] for k in sorted(images)[:n]}):
                path = write_dng(Path(tmp) / (case.name.replace("/", "_") + ".dng"), case.capture)
                frame = read_raw(path)
                exposure = prepare(frame, 64).exposure
                truth = clean_linear(case.capture, frame)
                outs = {m: run(path, frame) for m, run in runners.items()}
                row = {"set": set_name, "case": case.name, "exposure_gain": round(exposure, 3)}
                for look in LOOKS:
                    target = finished(truth, frame, exposure, look)
                    fin = {m: finished(o, frame, exposure, look) for m, o in outs.items()}
                    for m in fin:
                        row[f"{look}/{m}/gt"] = round(metrics(target, fin[m])["psnr"], 3)
                        if m != "eager":
                            row[f"{look}/{m}/eager"] = round(metrics(fin["eager"], fin[m])["psnr"], 3)
                rows.append(row)
                print(case.name, flush=True)
    summary = {}
    for set_name in (*SETS, "all"):
        sel = [r for r in rows if set_name in ("all", r["set"])]
        summary[set_name] = {k: round(float(np.mean([r[k] for r in sel])), 3) for k in sel[0] if "/" in k}
    result = {"preset": PRESET, "weights": weights, "images_per_set": n, "captures": len(rows),
              "fp32_split_max_abs_diff": split_diff, "builds": info, "summary": summary, "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{result_name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def markdown_table(result: dict) -> str:
    """dB per build: against ground truth (and its difference from eager fp32), and against eager."""
    lines = ["| set | look | eager fp32 | " + " | ".join(result["builds"]) + " |",
             "|---|---|---|" + "---|" * len(result["builds"])]
    for set_name, v in result["summary"].items():
        for look in LOOKS:
            eager = v[f"{look}/eager/gt"]
            cells = [f"{v[f'{look}/{m}/gt']:.2f} ({v[f'{look}/{m}/gt'] - eager:+.2f}; {v[f'{look}/{m}/eager']:.1f})"
                     for m in result["builds"]]
            lines.append(f"| {set_name} | {look} | {eager:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def per_iso_table(result: dict) -> str:
    """Mean dB against ground truth per ISO (captures of both sets), eager fp32 and each build
    with its difference from eager."""
    isos = sorted({r["case"].rsplit("/", 1)[-1] for r in result["rows"]}, key=lambda c: int(c.removeprefix("iso")))
    lines = ["| look | ISO | captures | eager fp32 | " + " | ".join(result["builds"]) + " |",
             "|---|---|---|---|" + "---|" * len(result["builds"])]
    for look in LOOKS:
        for iso in isos:
            rows = [r for r in result["rows"] if r["case"].endswith("/" + iso)]
            mean = {m: float(np.mean([r[f"{look}/{m}/gt"] for r in rows])) for m in ("eager", *result["builds"])}
            cells = [f"{mean[m]:.2f} ({mean[m] - mean['eager']:+.2f})" for m in result["builds"]]
            lines.append(f"| {look} | {iso.removeprefix('iso')} | {len(rows)} | {mean['eager']:.2f} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def worst(result: dict) -> list[str]:
    """Per build and look: the worst capture against eager (ground-truth PSNR difference) and how
    many captures are more than 0.5 dB below eager."""
    lines = []
    for m in result["builds"]:
        for look in LOOKS:
            deltas = sorted((r[f"{look}/{m}/gt"] - r[f"{look}/eager/gt"], r["case"]) for r in result["rows"])
            below = sum(d < -0.5 for d, _ in deltas)
            lines.append(f"| {m} | {look} | {deltas[0][0]:+.2f} ({deltas[0][1]}) | {below} of {len(deltas)} |")
    return lines


def verification_rows(result: dict) -> list[str]:
    return [f"| {m} | {b['target']} | " + " | ".join(f"{v:.1f}" for v in b["verification"]["psnr_db"].values())
            + f" | {b['verification']['tile_psnr_db']:.1f} |" for m, b in result["builds"].items()]


if __name__ == "__main__":
    args = sys.argv[1:]
    result = main(Path(args[0]), int(args[1]) if len(args) > 1 else 3,
                  tuple(args[2].split(",")) if len(args) > 2 else VARIANTS, *args[3:4])
    print(markdown_table(result) + "\n" + per_iso_table(result))
