"""Accuracy benchmark of the android-qnn target on the HTP emulation: the numbers in
the README's Qualcomm HTP section.

    python -m edge4k.benchmarks.qnn [-o out/qnn-bench.json]

For each weight set and precision it compiles the preset for one SoC, calibrated on
tiles of three RAWs (the embedded sample, astronaut, plus RAWs it makes from the
immunohistochemistry and Hubble deep-field photos: the global stage sees one
thumbnail per file, so it needs several files and cameras), then runs `edge4k check`'s comparison against
eager fp32 on held-out RAWs made from other scikit-image photos (coffee, chelsea,
rocket: other scenes, other CFA layouts and camera matrices):
per-stage PSNR on held-out tiles, the chained tile, and each whole image through
the tiled pipeline, plus how many nodes of each stage the HTP took.

Weight sets: `trained` is the shipped checkpoint, what `edge4k compile` builds by
default; `seed` is the seed-initialised model (its zero-initialised output heads
make backbone and decoder close to identity and base render, so it flatters
quantisation); `default-heads` gives those heads and the AdaLN gates PyTorch's
default initialisation, so every stage's output matters (the tests do the same
with the tiny preset)."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from edge4k.backends.base import BuildSpec
from edge4k.backends.qnn import require_qnn
from edge4k.backends.qnn.soc import DEFAULT_SOC
from edge4k.compiler.build import check_build, compile_build
from edge4k.datasets.dng import write_dng
from edge4k.datasets.unprocess import unprocess
from edge4k.errors import Edge4KError
from edge4k.files import atomic_output, sample_path
from edge4k.models import DEFAULT_PRESET, build_model, get_preset
from edge4k.models.checkpoint import default_checkpoint, load_model
from edge4k.optional import require
from edge4k.runtime.manifest import load_manifest

HELD_OUT = (("coffee", "BGGR"), ("chelsea", "GRBG"), ("rocket", "GBRG"))   # scikit-image photos, none is astronaut
CALIBRATION = (("immunohistochemistry", "RGGB"), ("hubble_deep_field", "BGGR"))   # plus the embedded sample (astronaut)
WEIGHTS = ("trained", "seed", "default-heads")


def photo_raws(folder: Path, photos, seed: int) -> list[str]:
    """Unprocess scikit-image's bundled photos into DNGs (even sizes, ISO 400 noise,
    a random camera matrix each)."""
    data = require("skimage.data", "the benchmark's held-out RAWs (scikit-image's photos)")
    paths = []
    for i, (name, cfa) in enumerate(photos):
        img = getattr(data, name)()[..., :3].astype(np.float32) / 255.0
        img = img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]
        capture = unprocess(img, cfa=cfa, camera=None, iso=400.0, rng=np.random.default_rng(seed + i))
        paths.append(str(write_dng(folder / f"{name}.dng", capture)))
    return paths


def make_model(preset: str, weights: str):
    if weights == "trained":
        path = default_checkpoint(preset)
        if path is None:
            raise Edge4KError(f"no shipped checkpoint for {preset}")
        return load_model(path, preset)[0]
    model = build_model(get_preset(preset), seed=0)
    if weights == "default-heads":
        torch.manual_seed(1)
        for module in (model.decoder.head[-1], model.backbone.out,
                       model.backbone.adaln.proj["gate_attn"], model.backbone.adaln.proj["gate_ffn"]):
            module.reset_parameters()
    return model.eval()


def run(args) -> dict:
    versions = require_qnn()
    results = {"preset": args.preset, "soc": args.soc, "tile": args.tile, "overlap": args.overlap,
               "calibration": {"sources": ["sample.dng (astronaut)", *(n for n, _ in CALIBRATION)],
                               "samples": args.calib},
               "held_out": [n for n, _ in HELD_OUT], "versions": versions, "runs": []}
    with tempfile.TemporaryDirectory(prefix="edge4k-qnn-bench-") as tmp:
        images = photo_raws(Path(tmp), HELD_OUT, seed=100)
        calib_sources = (sample_path(), *photo_raws(Path(tmp), CALIBRATION, seed=200))
        for weights in args.weights:
            model = make_model(args.preset, weights)
            for precision in args.precisions:
                t0 = time.perf_counter()
                log(f"{weights} {precision}: compile for {args.soc}")
                out = Path(tmp) / f"{weights}-{precision}"
                spec = BuildSpec(target="android-qnn", preset=args.preset, width=512, height=512, tile=args.tile,
                                 overlap=args.overlap, precision=precision, calib=args.calib,
                                 calib_sources=calib_sources, options={"soc": args.soc})
                try:
                    compile_build(model, spec, out, weights=weights, progress=lambda m: log("  " + m))
                except Edge4KError as e:      # a build under its floor is a result too
                    results["runs"].append({"weights": weights, "precision": precision, "error": str(e)})
                    log(f"  {e}")
                    continue
                compiled = time.perf_counter() - t0
                log(f"{weights} {precision}: check on {len(images)} held-out RAWs (HTP emulation)")
                report = check_build(model, out, images=images, samples=args.samples, floor=35.0,
                                     progress=lambda m: log("  " + m))
                manifest = load_manifest(out)
                results["runs"].append({
                    "weights": weights, "precision": precision, "compile_seconds": round(compiled, 1),
                    "check_seconds_emulated": round(time.perf_counter() - t0 - compiled, 1),
                    "stage_psnr_db": report["psnr_db"], "tile_psnr_db": report["tile_psnr_db"],
                    "image_psnr_db": report["image_psnr_db"], "below_35_db": report["failing"],
                    "placement": {s: {k: e["placement"][k] for k in ("nodes", "htp", "cpu", "cpu_ops")}
                                  for s, e in manifest["stages"].items()},
                    "activations": {s: e["quantization"]["activations"] for s, e in manifest["stages"].items()},
                    "fp16_nodes": {s: e["quantization"]["fp16_nodes"] for s, e in manifest["stages"].items()}})
    return results


def table(results: dict) -> str:
    stages = ("global", "encoder", "backbone", "decoder")
    rows = ["| weights | precision | " + " | ".join(stages) + " | tile | " +
            " | ".join(results["held_out"]) + " | nodes not on HTP |",
            "|---" * (4 + len(stages) + len(results["held_out"])) + "|"]
    for r in results["runs"]:
        if "error" in r:
            rows.append(f"| {r['weights']} | {r['precision']} | {r['error']} |")
            continue
        off = sum(p["cpu"] for p in r["placement"].values())
        total = sum(p["nodes"] for p in r["placement"].values())
        rows.append(f"| {r['weights']} | {r['precision']} | "
                    + " | ".join(f"{r['stage_psnr_db'][s]:.1f}" for s in stages)
                    + f" | {r['tile_psnr_db']:.1f} | "
                    + " | ".join(f"{r['image_psnr_db'][n + '.dng']:.1f}" for n in results["held_out"])
                    + f" | {off} of {total} |")
    return "\n".join(rows)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge4k.benchmarks.qnn", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default=DEFAULT_PRESET)
    p.add_argument("--soc", default=DEFAULT_SOC)
    p.add_argument("--tile", type=int, default=256, help="tile size (default 256: the held-out photos are small)")
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--calib", type=int, default=12, help="calibration tiles (default 12)")
    p.add_argument("--samples", type=int, default=4, help="held-out tiles per stage comparison (default 4)")
    p.add_argument("--precisions", nargs="+", default=["int8", "int8-a16"])
    p.add_argument("--weights", nargs="+", default=list(WEIGHTS), choices=WEIGHTS)
    p.add_argument("-o", "--output", default="out/qnn-bench.json")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)   # torch.export's own deprecations
    try:
        results = run(args)
    except Edge4KError as e:
        print(f"edge4k: error: {e}", file=sys.stderr)
        return 1
    with atomic_output(args.output) as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
