"""Research question 4: native 4K against tiled 4K.

One 3840x2160 synthetic RAW through model v2, the default when it was run (e4k-s-f16, eager
PyTorch fp32), natively (one tile) and tiled with 256/512/1024-pixel tiles and
16/32/64-pixel overlaps. Each configuration runs in its own process (`edge4k run
--profile`, 16-bit TIFF output), so its latency, per-stage split and peak resident
memory (VmHWM: the whole process, Python and torch included) are its own. For
each tiling: PSNR of the tiled image against the native one, and the runtime's seam
metric (kernels/tiling.py:seam_ratio: the jump across the lines where tiles start or
end over the jump at every line, ~1 means no seam), measured on the tiled image and
on the native image at the same lines (what the scene itself gives there).

A tiling is acceptable when it is within FIDELITY_FLOOR_DB of native (PSNR of
tiled against native at least that) and shows no seam (its seam ratio at most
SEAM_TOLERANCE times the native image's at the same lines); the answer is the
fastest acceptable one, and the one with the smallest peak memory.

Time (idle 2-core x86): about 4 minutes: 10 configurations, each 1 warm-up + 2 timed
runs in a fresh process (eager at 4K: about 3.5 s a run tiled, 8 s native, in the 4K
benchmark) plus start-up and reading the 16-bit images back; nothing is compiled or
trained (--budget-minutes does not change what it does). Eager PyTorch's threads
spin when the cores are shared: a reduced run (native + 512/64 only) on a machine
busy with three other jobs took 28-34 s per run. Quick mode (CI): a 256x256 frame,
128-pixel tiles with 32 overlap against native, one run each: about 20 s.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import torch

from edge4k.errors import Edge4KError
from edge4k.kernels.tiling import plan_tiles, seam_ratio
from edge4k.models.checkpoint import load_for_preset
from edge4k.runtime.memory import estimate_tile_bytes
from edge4k.studies.common import bench_raw, profile_run
from edge4k.studies.report import StudyContext

TITLE = "Native 4K against tiled 4K"
QUESTION = ("How do tiled 4K outputs compare with the native (one tile) output in quality, seams, latency and "
            "peak memory, and what is the cheapest tiling that is as good as native?")
DEFAULT_BUDGET_MINUTES = 4   # expected wall clock; nothing is trained

PRESET = "e4k-s-f16"
FIDELITY_FLOOR_DB = 40.0   # tiled vs native: differences below 1% of full scale, invisible
SEAM_TOLERANCE = 1.05      # seam ratio may exceed the native image's at the same lines by 5%
FULL = dict(width=3840, height=2160, tiles=(256, 512, 1024), overlaps=(16, 32, 64), runs=2, warmup=1)
QUICK = dict(width=256, height=256, tiles=(128,), overlaps=(32,), runs=1, warmup=0)


def load_rgb(path: Path) -> torch.Tensor:
    """16-bit TIFF -> (3, H, W) float64 in [0, 1]."""
    return torch.from_numpy(tifffile.imread(path).astype(np.float64) / 65535.0).permute(2, 0, 1)


def psnr_db(reference: torch.Tensor, test: torch.Tensor) -> float | None:
    """PSNR with a peak of 1 (full scale); None when the images are identical."""
    mse = float(torch.mean((reference - test) ** 2))
    return None if mse == 0 else 10 * math.log10(1.0 / mse)


def measure(raw: Path, flags: list[str], work: Path, cfg: dict) -> tuple[dict, torch.Tensor]:
    """One configuration in its own process; its 16-bit output image for the quality columns."""
    image = work / "out.tif"
    # a later -o wins in argparse: the run writes this TIFF instead of profile_run's 8-bit PNG
    result = profile_run(raw, work, *flags, "-o", str(image), runs=cfg["runs"], warmup=cfg["warmup"])
    return {"status": "measured", "tiles": result["tiles"], "total_ms": result["total_ms"],
            "latency_ms": result["stages_ms"], "peak_rss_mib": result["peak_rss_mib"]}, load_rgb(image)


def quality(rgb: torch.Tensor, native_rgb: torch.Tensor | None, plan) -> dict:
    """Seam ratio of the tiled image; against native (when there is one): PSNR, the largest
    difference, the native image's seam ratio at the same lines, and the verdict."""
    out = {"seam_ratio": round(seam_ratio(rgb, plan), 4)}
    if native_rgb is None:
        return out
    psnr = psnr_db(native_rgb, rgb)
    out.update(psnr_vs_native_db=None if psnr is None else round(psnr, 2), identical_to_native=psnr is None,
               max_error_vs_native_8bit=round(float((rgb - native_rgb).abs().max()) * 255, 2),
               native_seam_ratio=round(seam_ratio(native_rgb, plan), 4))
    out["acceptable"] = acceptable(out)
    return out


def run(ctx: StudyContext) -> None:
    cfg = QUICK if ctx.quick else FULL
    model, weights = load_for_preset(PRESET, None)
    width, height = cfg["width"], cfg["height"]
    raw = bench_raw(ctx, width, height)
    runs = f"{cfg['warmup']} warm-up + {cfg['runs']} runs"
    with tempfile.TemporaryDirectory(prefix="edge4k-tiling-") as tmp:
        ctx.progress(f"  native {width}x{height} ({runs})")
        try:
            native, native_rgb = measure(raw, ["--native"], Path(tmp) / "native", cfg)
        except Edge4KError as e:
            native, native_rgb = {"status": "skipped", "reason": str(e)}, None
        native["estimated_working_set_mib"] = round(estimate_tile_bytes(model, height, width) / 2**20)
        tilings = []
        for tile in cfg["tiles"]:
            for overlap in cfg["overlaps"]:
                ctx.progress(f"  tile {tile} overlap {overlap} ({runs})")
                entry = {"tile": tile, "overlap": overlap,
                         "estimated_working_set_mib": round(estimate_tile_bytes(model, tile, tile) / 2**20)}
                tilings.append(entry)
                try:
                    result, rgb = measure(raw, ["--tile", str(tile), "--overlap", str(overlap)],
                                          Path(tmp) / "tiled", cfg)
                except Edge4KError as e:
                    entry.update(status="skipped", reason=str(e))
                    continue
                plan = plan_tiles(height, width, compression=model.cfg.compression, tile=tile, overlap=overlap)
                entry.update(result, **quality(rgb, native_rgb, plan))
    ctx.data.update(preset=PRESET, weights=weights, width=width, height=height, backend="eager fp32",
                    runs=cfg["runs"], warmup=cfg["warmup"], fidelity_floor_db=FIDELITY_FLOOR_DB,
                    seam_tolerance=SEAM_TOLERANCE, native=native, tilings=tilings)
    report(ctx, native, tilings)


def acceptable(entry: dict) -> bool:
    """Within FIDELITY_FLOOR_DB of native and no seam beyond what the native image has at the same lines."""
    close = entry["identical_to_native"] or entry["psnr_vs_native_db"] >= FIDELITY_FLOOR_DB
    return bool(close and entry["seam_ratio"] <= SEAM_TOLERANCE * entry["native_seam_ratio"])


def choose(tilings: list[dict]) -> dict:
    """The fastest and the smallest-memory acceptable tilings (None where there is none)."""
    ok = [t for t in tilings if t.get("acceptable")]
    return {"fastest": min(ok, key=lambda t: (t["total_ms"], t["peak_rss_mib"]), default=None),
            "smallest_memory": min(ok, key=lambda t: (t["peak_rss_mib"], t["total_ms"]), default=None)}


def report(ctx: StudyContext, native: dict, tilings: list[dict]) -> None:
    d = ctx.data
    ctx.md += [f"Preset `{PRESET}` ({d['weights']}), eager PyTorch fp32 on this host's CPU, a {d['width']}x"
               f"{d['height']} synthetic RGGB RAW; each configuration in its own process, {d['warmup']} warm-up + "
               f"{d['runs']} timed runs, median latency. Peak RSS is the whole process (VmHWM). "
               f"Acceptable = PSNR against native >= {FIDELITY_FLOOR_DB:g} dB and seam ratio <= "
               f"{SEAM_TOLERANCE:g} x the native image's at the same lines.", ""]
    rows = []
    if native["status"] == "measured":
        rows.append(["native", 1, f"{native['total_ms']:.0f}", native["peak_rss_mib"],
                     native["estimated_working_set_mib"], "-", "-", "-", "-", "-"])
    else:
        rows.append(["native", "", "skipped: " + native["reason"], "", native["estimated_working_set_mib"],
                     "", "", "", "", ""])
    for t in tilings:
        name = f"{t['tile']}/{t['overlap']}"
        if t["status"] != "measured":
            rows.append([name, "", "skipped: " + t["reason"], "", t["estimated_working_set_mib"], "", "", "", "", ""])
            continue
        psnr = "identical" if t.get("identical_to_native") else t.get("psnr_vs_native_db", "n/a")
        rows.append([name, t["tiles"], f"{t['total_ms']:.0f}", t["peak_rss_mib"], t["estimated_working_set_mib"],
                     psnr, t.get("max_error_vs_native_8bit", "n/a"), t["seam_ratio"],
                     t.get("native_seam_ratio", "n/a"), {True: "yes", False: "no"}.get(t.get("acceptable"), "n/a")])
    ctx.table(["tiling (tile/overlap)", "tiles", "latency ms", "peak RSS MiB", "est. network working set MiB",
               "PSNR vs native dB", "max error vs native (8-bit levels)", "seam ratio",
               "native seam ratio (same lines)", "acceptable"], rows)
    plot(ctx, native, tilings)
    picks = choose(tilings)
    d["choice"] = {k: None if v is None else {"tile": v["tile"], "overlap": v["overlap"]} for k, v in picks.items()}
    ctx.answer(answer_text(native, tilings, picks))


def answer_text(native: dict, tilings: list[dict], picks: dict) -> str:
    if native["status"] != "measured":
        return ("Cannot tell on this machine: the native run could not be done (" + native["reason"] + "), so "
                "there is no reference; a machine with more memory running this study would tell.")
    fast, small = picks["fastest"], picks["smallest_memory"]
    if fast is None:
        return (f"No tiling tried is within {FIDELITY_FLOOR_DB:g} dB of native without a seam; native takes "
                f"{native['total_ms'] / 1e3:.2f} s and {native['peak_rss_mib']} MiB.")

    def describe(t):
        psnr = "identical to native" if t["identical_to_native"] else f"{t['psnr_vs_native_db']:.1f} dB from native"
        return (f"{t['tile']}-pixel tiles with {t['overlap']} overlap ({psnr}, seam ratio {t['seam_ratio']:.3f} "
                f"against {t['native_seam_ratio']:.3f} natively; {t['total_ms'] / 1e3:.2f} s, {t['peak_rss_mib']} MiB)")
    ok = sum(bool(t.get("acceptable")) for t in tilings)
    text = (f"{ok} of {len(tilings)} tilings are within {FIDELITY_FLOOR_DB:g} dB of native with no seam. The "
            f"fastest is {describe(fast)}")
    text += ("; it also has the smallest peak memory of them" if small is fast
             else f"; the smallest in memory is {describe(small)}")
    return (text + f". Native takes {native['total_ms'] / 1e3:.2f} s and {native['peak_rss_mib']} MiB "
            "(eager fp32 on this host).")


def plot(ctx: StudyContext, native: dict, tilings: list[dict]) -> None:
    done = [t for t in tilings if t["status"] == "measured"]
    labels = [f"{t['tile']}/{t['overlap']}" for t in done]
    x = np.arange(len(done))
    panels = [("PSNR vs native (dB)", [t.get("psnr_vs_native_db") or 0 for t in done], FIDELITY_FLOOR_DB, "floor"),
              ("latency (s)", [t["total_ms"] / 1e3 for t in done],
               native.get("total_ms", 0) / 1e3 or None, "native"),
              ("peak RSS (MiB)", [t["peak_rss_mib"] for t in done], native.get("peak_rss_mib"), "native")]
    with ctx.figure("tilings", size=(10, 3.4)) as fig:
        for i, (title, values, line, line_label) in enumerate(panels):
            ax = fig.add_subplot(1, 3, i + 1)
            colours = ["tab:green" if t.get("acceptable") else "tab:grey" for t in done]
            ax.bar(x, values, color=colours)
            if line:
                ax.axhline(line, color="tab:red", linestyle="--", label=line_label)
                ax.legend(fontsize=7)
            ax.set_xticks(x, labels, rotation=60, fontsize=7)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("tile/overlap (green: acceptable)", fontsize=7)
