"""Helpers the studies share: a preset trained once per budget (cached across
studies), held-out quality, and wall-clock timing."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge4k.backends.base import BuildSpec
from edge4k.benchmarks.frame4k import make_input
from edge4k.compiler.build import compile_build
from edge4k.datasets.photos import load_split
from edge4k.errors import Edge4KError
from edge4k.evaluation.evaluate import DEFAULT_DATA, evaluate
from edge4k.models.checkpoint import describe, load_model
from edge4k.runtime.manifest import MANIFEST, load_manifest
from edge4k.studies.report import StudyContext
from edge4k.training.train import TrainOptions, train

# The training loop of model v3's CPU run (docs/training/v3-cpu): 16 crops of 256 px a step, the network under
# bf16 autocast. Quick mode (CI): a few steps on small crops; the numbers only prove the plumbing.
TRAIN = dict(batch=16, crop=256, bf16=True)
QUICK_TRAIN = dict(steps=3, batch=2, crop=64, bf16=True)


def data_root() -> Path:
    return Path(os.environ.get("EDGE4K_DATA") or DEFAULT_DATA)


def training_data(ctx: StudyContext) -> str | None:
    """The shipped model's training shards (DATA/shards-gpu, datasets/DATA.md) where they are built,
    else None: the bundled photos (six images, so models overfit sooner; the reports say which)."""
    shards = data_root() / "shards-gpu"
    return None if ctx.quick or not shards.is_dir() else str(shards)


def trained_model(ctx: StudyContext, preset: str, *, seed: int = 0):
    """(model, info) for `preset` trained from `seed` for ctx.budget_minutes with TRAIN's settings on
    training_data(), from ctx.models_dir/<preset>-<budget>m-s<seed> if a finished run is there, else
    trained now. info["data"] names the training data (None: the bundled photos)."""
    tag = "quick" if ctx.quick else f"{ctx.budget_minutes:g}m"
    run_dir = ctx.models_dir / f"{preset}-{tag}-s{seed}"
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        if (run_dir / "train_state.pt").exists():       # an interrupted run: start it again
            for p in run_dir.iterdir():
                p.unlink()
        ctx.progress(f"  train {preset} for {tag} -> {run_dir}")
        train(TrainOptions(preset=preset, out=str(run_dir), budget_minutes=ctx.budget_minutes, seed=seed,
                           data=training_data(ctx), **(QUICK_TRAIN if ctx.quick else TRAIN),
                           command=f"edge4k study {ctx.name} (arm {preset})"), progress=False)
    model, _ = load_model(run_dir / "model.safetensors", preset)
    return model.eval(), json.loads(summary_path.read_text())


def training_record(info: dict) -> dict:
    """What a study reports of an arm's training run (trained_model's info)."""
    return {k: info.get(k) for k in ("steps", "elapsed_s", "crops_seen", "crop", "bf16", "torch_threads", "data")}


def training_text(records: list[dict]) -> str:
    """How the arms were trained, for a study's section (training_record()s of its arms)."""
    r = records[0]
    return (f"trained from seed 0 for {r['elapsed_s'] / 60:.1f} min each on {r['data']}: steps of "
            f"{r['crops_seen'] // max(r['steps'], 1)} crops of {r['crop']} px, "
            f"{'bf16 autocast' if r['bf16'] else 'fp32'}, {r['torch_threads']} torch thread(s)")


def heldout_images(ctx: StudyContext) -> dict[str, np.ndarray]:
    """The held-out photos (quick: one photo, centre 128 px)."""
    images = load_split("held-out")
    if ctx.quick:
        name = sorted(images)[0]
        img = images[name]
        y, x = (img.shape[0] - 128) // 2, (img.shape[1] - 128) // 2
        images = {name: img[y:y + 128, x:x + 128]}
    return images


def quality(ctx: StudyContext, model, look: str = "neutral") -> dict[str, float]:
    """Mean PSNR / SSIM / CIEDE2000 of the model (eager, native) on the held-out set, in one look."""
    report = evaluate(model, heldout_images(ctx), methods=("edge4k",), looks=(look,), progress=False)
    return report["mean"][look]["edge4k"]


def median_seconds(fn, *, runs: int = 3, warmup: int = 1) -> float:
    """Median wall-clock seconds of fn() over `runs` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


# ---- compiled builds and per-process profiles (compression, tricks) ----------------------------

def checkpoint_of(info: dict):
    """The checkpoint file behind trained_model()'s (model, info)."""
    return Path(info["options"]["out"]).resolve() / info["weights"]


def compiled_build(ctx: StudyContext, model, checkpoint, *, target: str, precision: str, tile: int, overlap: int,
                   calib: int, options: dict | None = None):
    """(build folder, manifest) of `model` compiled with compile_build for a tiled frame,
    cached under ctx.models_dir/builds by checkpoint and spec; (None, {"error": reason})
    when the build fails (e.g. its accuracy check), so a study records why, not crashes."""
    weights = describe(checkpoint)
    spec = BuildSpec(target=target, preset=model.cfg.name, width=2 * tile, height=2 * tile, tile=tile,
                     overlap=overlap, precision=precision, calib=calib, calib_sources=("photos",),
                     options=options or {})
    key = hashlib.sha256(f"{weights}|{spec}".encode()).hexdigest()[:10]
    out = ctx.models_dir / "builds" / f"{model.cfg.name}-{target}-{precision}-t{tile}-{key}"
    if (out / MANIFEST).is_file():
        try:
            return out, load_manifest(out)
        except Edge4KError:   # built under an older manifest schema: compiled again below, replacing it
            pass
    ctx.progress(f"  compile {model.cfg.name} {target} {precision} (tile {tile}) -> {out}")
    try:
        return out, compile_build(model, spec, out, weights=weights)
    except Edge4KError as e:
        return None, {"error": str(e)}


def bench_raw(ctx: StudyContext, width: int, height: int):
    """A synthetic RAW of width x height (runtime.bench's input), made once per models_dir."""
    folder = ctx.models_dir / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    return make_input(folder / f"input_{width}x{height}.dng", width, height)


def profile_run(raw, out_dir, *flags: str, runs: int, warmup: int = 1) -> dict:
    """`edge4k run RAW ... --profile` in its own process, so its peak RSS is this
    configuration's alone. Returns the profile's latency (total and per stage, median ms),
    peak RSS and planned arena; raises Edge4KError with the run's last error line."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prof = out_dir / "profile.json"
    cmd = [sys.executable, "-P", "-m", "edge4k", "run", str(raw), "-o", str(out_dir / "output.png"), "--profile", str(prof),
           "--runs", str(runs), "--warmup", str(warmup), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no error output"])[-1]
        raise Edge4KError(f"edge4k run {' '.join(flags)} failed: {last}")
    p = json.loads(prof.read_text())
    return {"total_ms": p["latency_ms"]["total"]["median"],
            "stages_ms": {s: v["median"] for s, v in p["latency_ms"].items() if s != "total"},
            "peak_rss_mib": round(p["memory"]["peak_rss_bytes"] / 2**20, 1),
            "planned_arena_mib": (round(p["memory"]["planned_arena_bytes"] / 2**20, 2)
                                  if p["memory"]["planned_arena_bytes"] else None),
            "tiles": p["tiling"]["tiles"], "runs": runs, "warmup": warmup, "threads": p["device"]["threads"]}
