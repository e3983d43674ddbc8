"""Study: model v3's changes, one at a time, at equal training budget on this CPU (issue 28).

v3 (e4k-v3-f16, models/config.py) moves cost off the latent grid, where no detail is made (a
narrower, shallower DiT and lighter low-resolution decoder levels: 3.44 against v2's 5.70 GMAC
per output MP), and gives the decoder two inputs where detail is made: which sites of a cell are
at the clip (ClippedSites, a 1x1 conv into the skip) and a learned gate on the residual over the
classical base. Each change is an arm, every arm trained for the same number of steps (equal
crops: fair on a shared machine, unlike equal minutes) on the shipped model's shards where
./data has them (else the bundled photos):

- from the shipped v2 checkpoint: v2 itself (the control: what the same fine-tune does without
  the change), v2 + the clip input, v2 + the gate. The new layers start at zero (gate at 1), so
  all three start from exactly v2's output and differ only in what they can learn;
- from a seed: v2, v3's cost cut alone (e4k-v3-f16-plain), v3 whole;
- v3 warm-started from v2 (every tensor of the same name and shape: encoder, global branch, the
  decoder's half-resolution levels).

Measured per arm: 12 Kodak24 and McMaster18 images where ./data holds them, else the held-out photos
(both looks, Edge4K and its own classical base), a bright and
flat subset of the robustness sweep (EV 0 and +1.5, ISO 100 and 12800: where v2 loses to classical
converters), against the model's own classical base, MACs, parameters, training crops/s and an
eager 512-tile forward. The budget is far below the shipped model's 371,040 crops: this ranks
changes by what they do early in training, it does not measure what a converged v3 reaches.

Time, defaults, 2-core host: 7 arms x 250 steps of 16 x 256^2 crops (5-8 min each), evaluation
about 2 min for each of 8 rows: about 70 min. Quick: 2 steps of 2 x 64^2 and a one-cell sweep at 64 px.
"""
from __future__ import annotations

import json
import time

import numpy as np
import torch

from edge4k.errors import Edge4KError
from edge4k.evaluation.evaluate import evaluate, load_set, sweep
from edge4k.models.checkpoint import default_checkpoint, load_model
from edge4k.models.cost import gmac_per_megapixel, param_count
from edge4k.studies.common import data_root, heldout_images, median_seconds, training_data
from edge4k.studies.report import StudyContext
from edge4k.training.train import TrainOptions, train

TITLE = "Model v3, one change at a time"
QUESTION = ("At equal training budget on this CPU, what do v3's changes (a cheaper latent path, the clip mask as "
            "an input, a gate on the residual) do to quality, highlights and flat fields, and to cost?")
DEFAULT_BUDGET_MINUTES = 20.0      # a cap per arm; the budget that is equal across arms is STEPS
V2 = "e4k-s-f16"
# (label, preset, start): "init" continues the shipped checkpoint, "warm" copies its tensors of the same
# name and shape into the new preset, "scratch" is the seed init.
ARMS = (
    ("v2 fine-tuned (control)", V2, "init"),
    ("v2 + clip input", "e4k-s-f16-clipin", "warm"),
    ("v2 + residual gate", "e4k-s-f16-gate", "warm"),
    ("v2 from a seed", V2, "scratch"),
    ("v3 cost cut alone, from a seed", "e4k-v3-f16-plain", "scratch"),
    ("v3 from a seed", "e4k-v3-f16", "scratch"),
    ("v3 warm-started from v2", "e4k-v3-f16", "warm"),
)
STEPS, BATCH, CROP = 250, 16, 256
LR = {"init": 5e-4, "warm": 5e-4, "scratch": 2e-3}
# Where v2 loses to classical converters (EV 0 to +1.5) and where flat fields get a cast (ISO 12800), against
# the model's own classical base (MHC: anchors cost minutes a cell and do not change between arms).
BRIGHT_GRID = {"ev": (0.0, 1.5), "iso": (100.0, 12800.0), "illuminant": (6500.0,)}
SWEEP_METHODS = ("edge4k", "mhc")
QUICK = dict(steps=2, batch=2, crop=64)
EVAL_PER_SET = 6        # the first images of Kodak24 and McMaster18 (3 captures each: ISO 100, 800, 3200)


def eval_images(ctx: StudyContext) -> tuple[str, dict]:
    """(what, images): EVAL_PER_SET images of Kodak24 and of McMaster18 where DATA/eval holds them,
    else the bundled held-out photos."""
    if not ctx.quick:
        try:
            picked = {f"{name}/{k}": img for name in ("kodak24", "mcmaster18")
                      for k, img in sorted(load_set(name, data_root()).items())[:EVAL_PER_SET]}
            return f"the first {EVAL_PER_SET} images of Kodak24 and of McMaster18", picked
        except Edge4KError:
            pass
    return "the bundled held-out photos", heldout_images(ctx)


def train_arm(ctx: StudyContext, preset: str, start: str):
    """(model, summary) of one arm, trained once into ctx.models_dir (a finished run is reused)."""
    quick = ctx.quick
    run_dir = ctx.models_dir / f"v3-{preset}-{start}-{'quick' if quick else STEPS}"
    summary_path = run_dir / "summary.json"
    finished = summary_path.is_file() and json.loads(summary_path.read_text())["stopped_by"] == "steps"
    if not finished:                 # none yet, or one interrupted or cut by the time cap: train it again
        if run_dir.exists():
            for p in run_dir.iterdir():
                p.unlink()
        shipped = str(default_checkpoint(V2))
        opts = TrainOptions(preset=preset, out=str(run_dir), budget_minutes=ctx.budget_minutes,
                            lr=LR[start], data=training_data(ctx), init=shipped if start == "init" else None,
                            warm_start=shipped if start == "warm" else None,
                            **(QUICK if quick else dict(steps=STEPS, batch=BATCH, crop=CROP)),
                            command=f"edge4k study model_v3 (arm {preset} {start})")
        ctx.progress(f"  train {preset} ({start}) -> {run_dir}")
        train(opts, progress=False)
    model, _ = load_model(run_dir / "model.safetensors", preset)
    summary = json.loads(summary_path.read_text())
    rates = [json.loads(line)["crops_per_s"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()
             if line.strip()] if (run_dir / "train_log.jsonl").is_file() else []
    summary["median_crops_per_s"] = float(np.median(rates)) if rates else None
    return model.eval(), summary


def measure(ctx: StudyContext, model, images: dict) -> dict:
    looks = ("neutral", "natural")
    held = evaluate(model, images, methods=("edge4k", "mhc"), looks=looks, progress=False)["mean"]
    grid = {"ev": (1.5,), "iso": (3200.0,), "illuminant": (6500.0,)} if ctx.quick else BRIGHT_GRID
    sw = sweep(model, grid=grid, size=64 if ctx.quick else 192, methods=SWEEP_METHODS, progress=False)
    tile = 128 if ctx.quick else 512
    packed = torch.rand(1, 4, tile // 2, tile // 2)
    thumb, meta = torch.rand(1, 4, model.cfg.thumb_size, model.cfg.thumb_size), torch.rand(1, model.cfg.meta_dim)
    with torch.inference_mode():
        forward_s = median_seconds(lambda: model(packed, thumb, meta), runs=1 if ctx.quick else 5)
    s = sw["summary"]
    return {"quality": {look: {m: held[look][m] for m in ("edge4k", "mhc")} for look in looks},
            "bright_sweep": {"cells_below_0.5db": s["cells_below_0.5db"], "cell_looks": 2 * len(sw["cells"]),
                             "mean_delta_db": s["mean_delta_db"], "worst_delta_db": s["worst_delta_db"],
                             "worst_flat_cast_de2000": s["worst_flat_cast_de2000"],
                             "white_cast_above_best_classical": s["white_cast_above_best_classical"]},
            "gmac_per_mp": round(gmac_per_megapixel(model), 3), "params": param_count(model),
            "tile_forward_ms": round(forward_s * 1000, 1), "tile": tile}


def run(ctx: StudyContext) -> None:
    torch.set_flush_denormal(True)
    start = time.perf_counter()
    evaluated_on, images = eval_images(ctx)     # read and hash-checked once, scored for every row
    ctx.progress("model_v3: the shipped v2 (no further training)")
    shipped, _ = load_model(default_checkpoint(V2), V2)
    rows = [{"label": "shipped v2 (no further training)", "preset": V2, "start": "shipped", **measure(ctx, shipped, images)}]
    for label, preset, how in ARMS:
        ctx.progress(f"model_v3: {label}")
        model, summary = train_arm(ctx, preset, how)
        rows.append({"label": label, "preset": preset, "start": how, "lr": LR[how],
                     "training": {k: summary.get(k) for k in ("steps", "crops_seen", "elapsed_s", "stopped_by",
                                                              "median_crops_per_s", "init")},
                     **measure(ctx, model, images)})
    shape = QUICK if ctx.quick else dict(steps=STEPS, batch=BATCH, crop=CROP)
    data = training_data(ctx)
    ctx.data.update(arms=rows, **shape, training_data=data or "bundled photos", evaluated_on=evaluated_on,
                    bright_grid=BRIGHT_GRID, sweep_methods=list(SWEEP_METHODS),
                    wall_s_measured=round(time.perf_counter() - start, 1))
    steps = ctx.data["steps"]
    ctx.md += [f"Every trained arm: {steps} steps of {ctx.data['batch']} crops of {ctx.data['crop']} px on "
               f"{data or 'the bundled photos'} (equal crops), learning rate 5e-4 from the shipped checkpoint and 2e-3 "
               f"from a seed. Quality: {evaluated_on}, mean PSNR / CIEDE2000 over their captures. Bright sweep: the "
               "robustness sweep's cells at EV 0 and +1.5 x ISO 100 and 12800 (D65), both looks; 'below' counts "
               "cell-looks more than 0.5 dB under the model's own classical base (Malvar-He-Cutler); flat cast: the "
               "worst grey or white field's CIEDE2000 cast. "
               f"Forward: eager fp32, one {rows[0]['tile']} tile, median of 5 on this host (noisy: other jobs shared "
               "the CPU).", ""]
    ctx.table(["arm", "preset", "neutral PSNR / dE", "natural PSNR / dE", "its base (MHC): neutral PSNR",
               "bright: below MHC / cell-looks", "bright: mean dB over MHC", "worst flat cast", "GMAC/MP", "params",
               "train crops/s", f"{rows[0]['tile']} tile ms"],
              [[r["label"], r["preset"],
                f"{r['quality']['neutral']['edge4k']['psnr']:.2f} / {r['quality']['neutral']['edge4k']['de2000_mean']:.2f}",
                f"{r['quality']['natural']['edge4k']['psnr']:.2f} / {r['quality']['natural']['edge4k']['de2000_mean']:.2f}",
                r["quality"]["neutral"]["mhc"]["psnr"],
                f"{r['bright_sweep']['cells_below_0.5db']} / {r['bright_sweep']['cell_looks']}",
                r["bright_sweep"]["mean_delta_db"], r["bright_sweep"]["worst_flat_cast_de2000"], r["gmac_per_mp"],
                r["params"], (r.get("training") or {}).get("median_crops_per_s"), r["tile_forward_ms"]] for r in rows])
    ctx.answer(answer_text(rows))


def _psnr(row, look="neutral"):
    return row["quality"][look]["edge4k"]["psnr"]


def answer_text(rows: list[dict]) -> str:
    by = {(r["preset"], r["start"]): r for r in rows}
    control, scratch = by[(V2, "init")], by[(V2, "scratch")]
    parts = []
    for preset, how, what, against in (("e4k-s-f16-clipin", "warm", "the clip input", control),
                                       ("e4k-s-f16-gate", "warm", "the residual gate", control),
                                       ("e4k-v3-f16-plain", "scratch", "v3's cost cut alone", scratch),
                                       ("e4k-v3-f16", "scratch", "v3 whole", scratch)):
        r = by[(preset, how)]
        natural = _psnr(r, "natural") - _psnr(against, "natural")
        parts.append(f"{what}: {_psnr(r) - _psnr(against):+.2f} dB neutral, {natural:+.2f} dB natural, "
                     f"bright cell-looks below its base {r['bright_sweep']['cells_below_0.5db']} against "
                     f"{against['bright_sweep']['cells_below_0.5db']}, MACs x{r['gmac_per_mp'] / against['gmac_per_mp']:.2f}")
    warm = by[("e4k-v3-f16", "warm")]
    return ("Against the arm without the change at the same budget: " + "; ".join(parts)
            + f". v3 warm-started from v2 reaches {_psnr(warm):.2f} dB neutral against the v2 control's "
            f"{_psnr(control):.2f} and the shipped v2's {_psnr(by[(V2, 'shipped')]):.2f}.")
