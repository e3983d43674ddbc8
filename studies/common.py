"""Helpers the studies share: a preset trained once per budget (cached across
studies), held-out quality, and wall-clock timing."""
from __future__ import annotations

import json
import time
import numpy as np
from .report import StudyContext

# Quick mode (CI): a few steps on small crops; the numbers only prove the plumbing.
QUICK_TRAIN = dict(steps=3, batch=2, crop=64)


def trained_model(ctx: StudyContext, preset: str, *, seed: int = 0):
    """(model, info) for `preset` trained for ctx.budget_minutes on the bundled photos,
    from ctx.models_dir/<preset>-<budget>m if a finished run is there, else trained now."""
    from edge4k.models.checkpoint import load_model
    from edge4k.models.train import TrainOptions, train
    tag = "quick" if ctx.quick else f"{ctx.budget_minutes:g}m"
    run_dir = ctx.models_dir / f"{preset}-{tag}-s{seed}"
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        if (run_dir / "train_state.pt").exists():       # an interrupted run: start it again
            for p in run_dir.iterdir():
                p.unlink()
        ctx.progress(f"  train {preset} for {tag} -> {run_dir}")
        extra = QUICK_TRAIN if ctx.quick else {}
        train(TrainOptions(preset=preset, out=str(run_dir), budget_minutes=ctx.budget_minutes, seed=seed,
                           **extra), progress=False)
    model, _ = load_model(run_dir / "model.safetensors", preset)
    return model.eval(), json.loads(summary_path.read_text())


def heldout_images(ctx: StudyContext) -> dict[str, np.ndarray]:
    """The held-out photos (quick: one photo, centre 128 px)."""
    from edge4k.calibration.photos import load_split
    images = load_split("held-out")
    if ctx.quick:
        name = sorted(images)[0]
        img = images[name]
        y, x = (img.shape[0] - 128) // 2, (img.shape[1] - 128) // 2
        images = {name: img[y:y + 128, x:x + 128]}
    return images


def quality(ctx: StudyContext, model) -> dict[str, float]:
    """Mean PSNR / SSIM / CIEDE2000 of the model (eager, native) on the held-out set."""
    from edge4k.models.evaluate import evaluate
    report = evaluate(model, heldout_images(ctx), methods=("edge4k",), progress=False)
    return report["mean"]["edge4k"]


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


