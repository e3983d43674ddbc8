"""Study: the largest latent compression RAW-to-RGB tolerates (f8 vs f16 vs f32), on model v3.

Each arm is model v3 (e4k-v3-f16: clip input, residual gate, a 96-wide 2-deep DiT, decoder
(64, 48, 32, 24)) at one compression: e4k-v3-f8, e4k-v3-f16, e4k-v3-f32 (models/config.py:
the encoder and decoder levels the compression needs, the DiT unchanged). Each is trained
from the same seed for the same wall-clock budget with the same settings (common.trained_model:
16 crops of 256 px a step, bf16 autocast, on the shipped model's shards where ./data holds
them; cached and shared with the other studies), then measured:
- held-out PSNR / SSIM / CIEDE2000 (common.quality, eager, native);
- MACs per output megapixel (models.cost) and latent tokens per tile and for the
  native frame;
- whole-pipeline latency at 1K (1024x1024), tiled at the default 512/64 tile, eager
  fp32 (runtime.backends.EagerBackend) and an int8 ExecuTorch/XNNPACK build
  (compiler.build.compile_build, PT2E calibrated on the training photos): each
  configuration is one `edge4k run --profile` in its own process. The 4K frame is not
  profiled here (at one thread it cost about 4 of the 45 minutes the three studies had;
  `edge4k bench` measures 4K, reports/bench-v3); its latent tokens are still counted;
- memory: that process's peak RSS (measured; includes the Python/torch runtime),
  beside the runtime's own estimate of one tile's working set (eager) and the
  build's memory-planned arena (int8).

Time, one torch thread on the 2-core host: training 3 x the budget (f16 is shared with
`attention` and `tricks`), 3 int8 XNNPACK builds of 1.5-2 min each (the ExecuTorch
lowering passes dominate, whatever the tile), 6 profiled runs (~1.5 min with process
start-up), quality ~15 s a model: about 8 min besides training. Quick (--quick): 3
training steps per preset, 256x256 and 384x256 frames at 128-pixel tiles, one int8
build (f16): about 2 min, almost all of it that build's lowering.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from edge4k.models.cost import gmac_per_megapixel, param_count
from edge4k.runtime.memory import estimate_tile_bytes
from edge4k.studies.common import (
    bench_raw,
    checkpoint_of,
    compiled_build,
    profile_run,
    quality,
    trained_model,
    training_record,
    training_text,
)

TITLE = "Latent compression: f8 vs f16 vs f32"
QUESTION = ("What is the largest latent compression (f8, f16, f32) that RAW-to-RGB tolerates, "
            "and what does it cost or save in latency and memory?")
DEFAULT_BUDGET_MINUTES = 2.5     # training minutes per model; the same in attention and tricks (shared cache)
PRESETS = ("e4k-v3-f8", "e4k-v3-f16", "e4k-v3-f32")
TOLERANCE_DB = 0.5               # "tolerates": PSNR within this of the best preset


@dataclass(frozen=True)
class Settings:
    resolutions: dict            # label -> (width, height): profiled
    counted: dict                # label -> (width, height): latent tokens counted only
    tile: int
    overlap: int
    runs: int
    warmup: int
    calib: int                   # int8 calibration tiles
    int8_presets: tuple          # presets that get an int8 build (quick: one, each build lowers for ~1.5 min)


DEFAULT = Settings({"1K": (1024, 1024)}, {"4K": (3840, 2160)}, tile=512, overlap=64, runs=3, warmup=1, calib=4,
                   int8_presets=PRESETS)
QUICK = Settings({"256x256": (256, 256), "384x256": (384, 256)}, {}, tile=128, overlap=32, runs=1, warmup=0,
                 calib=2, int8_presets=("e4k-v3-f16",))


def settings(ctx) -> Settings:
    return QUICK if ctx.quick else DEFAULT


def latent_tokens(compression: int, width: int, height: int) -> int:
    """Tokens of the latent grid of a width x height frame (padded to a multiple of f)."""
    return math.ceil(width / compression) * math.ceil(height / compression)


def measure_preset(ctx, preset: str, s: Settings) -> dict:
    model, info = trained_model(ctx, preset)
    ckpt = checkpoint_of(info)
    f = model.cfg.compression
    ctx.progress(f"  {preset}: quality")
    row = {"preset": preset, "compression": f, "params": param_count(model),
           "gmac_per_mp": round(gmac_per_megapixel(model, s.tile), 3),
           "training": training_record(info),
           "quality": quality(ctx, model),
           "tokens": {"per_tile": latent_tokens(f, s.tile, s.tile),
                      "native": {label: latent_tokens(f, w, h)
                                 for label, (w, h) in {**s.resolutions, **s.counted}.items()}},
           "eager_tile_estimate_mib": round(estimate_tile_bytes(model, s.tile, s.tile) / 2**20, 1)}
    tiling = ["--tile", str(s.tile), "--overlap", str(s.overlap)]
    backends = {"eager": ["--preset", preset, "--checkpoint", str(ckpt), *tiling]}
    if preset in s.int8_presets:
        build, manifest = compiled_build(ctx, model, ckpt, target="host-xnnpack", precision="int8", tile=s.tile,
                                         overlap=s.overlap, calib=s.calib)
        row["int8_build"] = ({"error": manifest["error"]} if build is None else
                             {"tile_psnr_db_vs_fp32": manifest["verification"]["tile_psnr_db"],
                              "planned_arena_mib": round(sum(st["planned_arena_bytes"] for st in
                                                             manifest["stages"].values()) / 2**20, 2),
                              "ops_outside_delegate": {k: v["ops_outside_delegate"]
                                                       for k, v in manifest["stages"].items()}})
        if build is not None:
            backends["int8"] = ["--backend", "executorch", "--artifacts", str(build)]
    else:
        row["int8_build"] = {"error": "not built in quick mode (one build lowers for ~1.5 min)"}
    row["latency"] = {}
    for label, (w, h) in s.resolutions.items():
        raw = bench_raw(ctx, w, h)
        row["latency"][label] = {}
        for name, flags in backends.items():
            ctx.progress(f"  {preset}: {name} at {label}")
            try:
                row["latency"][label][name] = profile_run(raw, ctx.models_dir / "runs" / f"{preset}-{name}-{label}",
                                                          *flags, runs=s.runs, warmup=s.warmup)
            except Exception as e:   # record why, keep measuring the others
                row["latency"][label][name] = {"error": str(e)}
    return row


def total_s(row, label, backend):
    r = row["latency"][label].get(backend, {})
    return r["total_ms"] / 1e3 if "total_ms" in r else None


def peak_mib(row, label, backend):
    return row["latency"][label].get(backend, {}).get("peak_rss_mib")


def answer_text(rows, s: Settings) -> str:
    best = max(rows, key=lambda r: r["quality"]["psnr"])
    within = [r for r in rows if r["quality"]["psnr"] >= best["quality"]["psnr"] - TOLERANCE_DB]
    largest = max(within, key=lambda r: r["compression"])
    big = list(s.resolutions)[-1]

    def cost(r):
        parts = [f"{b} {total_s(r, big, b):.2f} s" for b in ("eager", "int8") if total_s(r, big, b) is not None]
        mem = peak_mib(r, big, "eager")
        return (f"{', '.join(parts) or 'no latency measured'} per {big} frame"
                + (f", {mem:.0f} MiB peak RSS (eager)" if mem else "")
                + f", {r['gmac_per_mp']:.2f} GMAC/MP, {r['tokens']['per_tile']} tokens per {s.tile}-pixel tile")
    trained = f"after {trained_minutes(rows)} of training each"
    if largest is best:
        text = (f"f{largest['compression']} ({largest['preset']}) scores the best held-out PSNR, "
                f"{best['quality']['psnr']:.2f} dB (CIEDE2000 {best['quality']['de2000_mean']:.2f}) {trained}, "
                f"and no larger compression is within {TOLERANCE_DB} dB of it. It costs {cost(largest)}.")
    else:
        text = (f"f{largest['compression']} ({largest['preset']}) is the largest compression whose held-out PSNR "
                f"is within {TOLERANCE_DB} dB of the best: {largest['quality']['psnr']:.2f} dB against "
                f"{best['quality']['psnr']:.2f} dB for f{best['compression']} (CIEDE2000 "
                f"{largest['quality']['de2000_mean']:.2f} against {best['quality']['de2000_mean']:.2f}) {trained}. "
                f"It costs {cost(largest)}; f{best['compression']} costs {cost(best)}.")
    dropped = [r for r in rows if r not in within]
    if dropped:
        text += " Outside the tolerance: " + ", ".join(
            f"f{r['compression']} ({r['quality']['psnr'] - best['quality']['psnr']:+.2f} dB)" for r in dropped) + "."
    return text


def trained_minutes(rows) -> str:
    return f"{rows[0]['training']['elapsed_s'] / 60:.1f} min"


def plot_quality(ctx, rows):
    with ctx.figure("quality", size=(8, 3.5)) as fig:
        fs = [r["compression"] for r in rows]
        for i, (key, label) in enumerate((("psnr", "PSNR dB (higher is better)"),
                                          ("ssim", "SSIM (higher is better)"),
                                          ("de2000_mean", "CIEDE2000 (lower is better)"))):
            ax = fig.add_subplot(1, 3, i + 1)
            ax.plot(fs, [r["quality"][key] for r in rows], "o-")
            ax.set_xscale("log", base=2)
            ax.set_xticks(fs, [f"f{f}" for f in fs])
            ax.set_title(label, fontsize=9)
            ax.set_xlabel("latent compression")


def plot_latency(ctx, rows, s: Settings):
    with ctx.figure("latency", size=(9, 3.8)) as fig:
        fs = [r["compression"] for r in rows]
        lat, mem = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for label, colour in zip(s.resolutions, ("tab:blue", "tab:red")):
            for backend, style in (("eager", "o-"), ("int8", "s--")):
                for ax, value in ((lat, total_s), (mem, peak_mib)):
                    pts = [(r["compression"], value(r, label, backend)) for r in rows]
                    pts = [(f, v) for f, v in pts if v is not None]
                    if pts:
                        ax.plot(*zip(*pts), style, color=colour, label=f"{backend} {label}")
        lat.set_yscale("log")
        for ax, ylabel in ((lat, "seconds per frame (median)"), (mem, "peak RSS MiB (own process)")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(fs, [f"f{f}" for f in fs])
            ax.set_xlabel(f"latent compression (tiled {s.tile}/{s.overlap})")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8)


def run(ctx) -> None:
    s = settings(ctx)
    rows = []
    for preset in PRESETS:
        ctx.progress(f"compression: {preset}")
        rows.append(measure_preset(ctx, preset, s))
    ctx.data.update(presets=rows, tolerance_db=TOLERANCE_DB,
                    settings={"resolutions": s.resolutions, "tokens_only": s.counted, "tile": s.tile,
                              "overlap": s.overlap, "runs": s.runs, "warmup": s.warmup, "int8_calibration_tiles": s.calib},
                    memory_method="peak RSS of a separate `edge4k run` process per configuration (includes the "
                                  "Python/torch runtime); eager_tile_estimate_mib is runtime.memory's estimate of "
                                  "one tile's working set, planned_arena_mib the int8 build's ExecuTorch arena")
    labels = list(s.resolutions)
    ctx.md += [f"Model v3 at each compression, {training_text([r['training'] for r in rows])}; "
               f"quality on the held-out photos (eager, native). Latency: whole pipeline, tiled "
               f"{s.tile}/{s.overlap}, median of {s.runs} runs after {s.warmup} warm-up, each configuration in its "
               "own process; peak RSS is that process's (Python and torch included).", ""]
    ctx.table(["preset", "train steps", "train crops", "PSNR dB", "SSIM", "CIEDE2000", "GMAC/MP", "tokens/tile",
               *[f"tokens {lb} native" for lb in [*labels, *s.counted]]],
              [[r["preset"], r["training"]["steps"], r["training"]["crops_seen"], r["quality"]["psnr"], r["quality"]["ssim"],
                r["quality"]["de2000_mean"], r["gmac_per_mp"], r["tokens"]["per_tile"],
                *[r["tokens"]["native"][lb] for lb in [*labels, *s.counted]]] for r in rows])
    ctx.table(["preset", *[f"{b} {lb} s" for lb in labels for b in ("eager", "int8")],
               *[f"{b} {lb} peak MiB" for lb in labels for b in ("eager", "int8")],
               "eager tile est. MiB", "int8 arena MiB", "int8 tile PSNR vs fp32 dB"],
              [[r["preset"], *[total_s(r, lb, b) for lb in labels for b in ("eager", "int8")],
                *[peak_mib(r, lb, b) for lb in labels for b in ("eager", "int8")],
                r["eager_tile_estimate_mib"], r["int8_build"].get("planned_arena_mib"),
                r["int8_build"].get("tile_psnr_db_vs_fp32")] for r in rows])
    for r in rows:
        if "error" in r["int8_build"]:
            ctx.md += [f"- {r['preset']} int8: {r['int8_build']['error']}"]
        for lb in labels:
            for b, v in r["latency"][lb].items():
                if "error" in v:
                    ctx.md += [f"- {r['preset']} {b} {lb}: {v['error']}"]
    ctx.md.append("")
    plot_quality(ctx, rows)
    plot_latency(ctx, rows, s)
    ctx.answer(answer_text(rows, s))
