"""Benchmark: LiteRT PSNR per precision on held-out tiles, Core ML sizes per variant,
and one 4K frame through the litert and executorch backends, per stage.

    python -m edge4k.benchmarks.litert [--preset e4k-s-f16] [--out out/bench] [--skip-4k]

Writes out/bench/bench.json and prints a summary. Builds use 512-pixel tiles."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edge4k.backends.base import BuildSpec
from edge4k.backends.registry import open_build
from edge4k.compiler.build import compile_build
from edge4k.datasets.dng import write_dng
from edge4k.datasets.unprocess import unprocess
from edge4k.files import atomic_output
from edge4k.models import build_model, get_preset
from edge4k.runtime.pipeline import TileOptions, run_and_profile


def write_frame(path: Path) -> None:
    """A smooth, colourful 4K scene unprocessed into a noisy RAW DNG (ISO 400)."""
    yy, xx = np.mgrid[0:2160, 0:3840] / 3840.0
    img = np.stack([0.5 + 0.4 * np.sin(9 * xx + c + 5 * yy * (c + 1)) for c in range(3)], -1).astype(np.float32)
    rng = np.random.default_rng(0)
    write_dng(path, unprocess(img, cfa="RGGB", camera=None, iso=400.0, rng=rng))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="edge4k.benchmarks.litert")
    p.add_argument("--preset", default="e4k-s-f16")
    p.add_argument("--out", default="out/bench")
    p.add_argument("--calib", type=int, default=4)
    p.add_argument("--skip-4k", action="store_true", help="only the builds and their PSNR/sizes")
    args = p.parse_args(argv)
    out = Path(args.out)
    model = build_model(get_preset(args.preset), seed=0)
    base = dict(preset=args.preset, width=3840, height=2160, tile=512, overlap=64, batch=1, calib=args.calib)
    log = lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True)   # noqa: E731
    report = {"preset": args.preset, "weights": "seed:0", "tile": 512, "litert": {}, "coreml": {}}
    for precision in ("fp32", "fp16", "int8"):
        t0 = time.perf_counter()
        m = compile_build(model, BuildSpec(target="android-litert", precision=precision, **base),
                          out / f"litert-{precision}", weights="seed:0", progress=log)
        report["litert"][precision] = {"psnr_db": m["verification"]["psnr_db"],
                                       "tile_psnr_db": m["verification"]["tile_psnr_db"],
                                       "bytes": {s: e["bytes"] for s, e in m["stages"].items()},
                                       "transpose_ops": {s: e["transpose_ops"] for s, e in m["stages"].items()},
                                       "compile_seconds": round(time.perf_counter() - t0, 1)}
    for precision in ("fp16", "int8-weights", "palette4", "w8a8"):
        m = compile_build(model, BuildSpec(target="ios-coreml", precision=precision, **base),
                          out / f"coreml-{precision}", weights="seed:0", progress=log)
        report["coreml"][precision] = {"bytes": {s: e["bytes"] for s, e in m["stages"].items()},
                                       "verification": m["verification"]}
    if not args.skip_4k:
        frame = out / "frame-4k.dng"
        if not frame.exists():
            log("synthesising a 3840x2160 RAW frame")
            write_frame(frame)
        report["frame_4k"] = {}
        m = compile_build(model, BuildSpec(target="host-xnnpack", precision="fp32", **base),
                          out / "xnnpack-fp32", weights="seed:0", progress=log)
        for name, path in (("litert-fp32", out / "litert-fp32"), ("litert-int8", out / "litert-int8"),
                           ("executorch-fp32", out / "xnnpack-fp32")):
            backend = open_build(path)
            log(f"4K frame through {name}")
            prof = run_and_profile(str(frame), out / f"{name}.png", backend=backend,
                                   opts=TileOptions.from_manifest(backend.manifest), runs=1, progress=False)
            report["frame_4k"][name] = {s: v["median"] for s, v in prof["latency_ms"].items()}
        report["threads"] = torch.get_num_threads()
    with atomic_output(out / "bench.json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
