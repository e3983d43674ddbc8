"""Research question 3: at 4K, is the decoder the real bottleneck?

Per-stage latency (the runtime's StageTimer, through `edge4k run --profile`, each
configuration in its own process) of model v2, the default when it was run (e4k-s-f16 and its
checkpoint) at 1K (1024x1024), 2K (1920x1080, full HD) and 4K (3840x2160), native
(one tile) and tiled (512-pixel tiles, 64 overlap), as ExecuTorch/XNNPACK builds in
fp32 and int8; plus where the Qualcomm HTP (QAIRT's x86 emulation) places each
stage's nodes in an android-qnn int8 build. A native configuration whose estimated
working set does not fit in memory, or whose build fails, is recorded as skipped
with the reason.

Time (idle 2-core x86): about 13 minutes, nearly all of it compiling: 8 XNNPACK
builds (2 tiled, 6 native), about 30-55 s per fp32 build and 100-170 s per int8
build (ExecuTorch's graph passes dominate, not the frame size: the 4K benchmark's
builds took 46 s fp32 and 167 s int8 native, 109 s int8 tiled; a reduced run of this
study, 4K fp32 only, on a machine shared with three other jobs took 111 s and 69 s for
the fp32 tiled and native builds, about twice the idle time), one android-qnn build
(about 30 s) and the timed runs (1 warm-up + 3 runs at 1K and 2K, 1 + 2 at 4K, each
in a fresh process): about 1.5 minutes. The study trains nothing: --budget-minutes
does not change what it does. Quick mode (CI): the tiny test preset on a 256x256
frame with 128-pixel tiles, fp32 builds only (int8 recorded as skipped), one run
each: about a minute (two on a busy machine).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edge4k.backends.base import BuildSpec
from edge4k.compiler.build import compile_build
from edge4k.errors import Edge4KError
from edge4k.kernels.tiling import plan_tiles
from edge4k.models import NETWORK_STAGES, STAGES
from edge4k.models.checkpoint import load_for_preset
from edge4k.models.cost import stage_macs
from edge4k.runtime import memory
from edge4k.studies.common import bench_raw, profile_run
from edge4k.studies.report import StudyContext

TITLE = "Is the decoder the bottleneck at 4K?"
QUESTION = ("At 4K, is the decoder the real bottleneck: what share of the network time does each stage take, "
            "native and tiled, fp32 and int8, at 1K, 2K and 4K?")
DEFAULT_BUDGET_MINUTES = 13   # expected wall clock; nothing is trained

# Native builds calibrate on crops of the largest frame: a 1080-line frame pads to 1088 lines,
# so it cannot give a crop of its own padded size; one sample keeps the int8 compiles short.
FULL = dict(preset="e4k-s-f16", resolutions=(("1K", 1024, 1024), ("2K", 1920, 1080), ("4K", 3840, 2160)),
            tile=512, overlap=64, precisions=("fp32", "int8"), tiled_calib=8, native_calib=1, qnn_tile=256,
            qnn_calib=4)
# Quick mode compiles the tiny test preset: an XNNPACK compile's cost is ExecuTorch's graph
# passes, which grow with the number of layers, not with the frame size.
QUICK = dict(preset="e4k-t-f16", resolutions=(("256", 256, 256),), tile=128, overlap=32, precisions=("fp32",),
             tiled_calib=1, native_calib=1, qnn_tile=128, qnn_calib=1)
QUICK_SKIPS = {"int8": "quick mode compiles fp32 only (one int8 XNNPACK build takes 1-3 minutes to compile)"}
PRECISIONS = ("fp32", "int8")


def repeats(ctx: StudyContext, width: int, height: int) -> tuple[int, int]:
    """(timed runs, warm-up runs): fewer at 4K, where one run takes seconds."""
    if ctx.quick:
        return 1, 0
    return (2, 1) if width * height >= 3840 * 2160 else (3, 1)


def compile_xnnpack(model, weights: str, out: Path, *, width: int, height: int, native: bool, precision: str,
                    cfg: dict, calib_sources: tuple[str, ...]) -> dict:
    spec = BuildSpec(target="host-xnnpack", preset=cfg["preset"], width=width, height=height,
                     tile=None if native else cfg["tile"], overlap=0 if native else cfg["overlap"], native=native,
                     precision=precision, calib=cfg["native_calib" if native else "tiled_calib"],
                     calib_sources=calib_sources)
    start = time.perf_counter()
    manifest = compile_build(model, spec, out, weights=weights)
    return {**manifest, "compile_seconds": round(time.perf_counter() - start, 1)}


def native_fits(model, width: int, height: int) -> str | None:
    """None if one native tile of this frame fits in memory, else why not."""
    plan = plan_tiles(height, width, compression=model.cfg.compression, native=True)
    try:
        memory.check_fits(memory.estimate_tile_bytes(model, plan.padded_height, plan.padded_width),
                          f"a native {width}x{height} tile")
    except Edge4KError as e:
        return str(e)
    return None


def measure(raw: Path, build: Path, *, runs: int, warmup: int, work: Path) -> dict:
    """One configuration's per-stage medians (ms), shares and peak memory, in its own process."""
    result = profile_run(raw, work / "run", "--backend", "executorch", "--artifacts", str(build),
                         runs=runs, warmup=warmup)
    lat = {**result["stages_ms"], "total": result["total_ms"]}
    network = sum(lat[s] for s in NETWORK_STAGES)
    return {"status": "measured", "runs": runs, "warmup": warmup, "tiles": result["tiles"],
            "latency_ms": lat, "network_ms": round(network, 3),
            "share_of_total": {s: round(lat[s] / lat["total"], 4) for s in STAGES},
            "share_of_network": {s: round(lat[s] / network, 4) for s in NETWORK_STAGES},
            "peak_rss_mib": result["peak_rss_mib"], "planned_arena_mib": result["planned_arena_mib"]}


def htp_placement(model, weights: str, raw: Path, width: int, height: int, cfg: dict, work: Path) -> dict:
    """Where QAIRT's HTP (x86 emulation) puts each stage's ONNX nodes in an android-qnn int8 build."""
    spec = BuildSpec(target="android-qnn", preset=cfg["preset"], width=width, height=height, tile=cfg["qnn_tile"],
                     overlap=cfg["overlap"], precision="int8", calib=cfg["qnn_calib"], calib_sources=(str(raw),))
    start = time.perf_counter()
    manifest = compile_build(model, spec, work / "qnn", weights=weights)
    seconds = round(time.perf_counter() - start, 1)
    stages = {s: {k: manifest["stages"][s]["placement"][k] for k in ("nodes", "htp", "cpu", "cpu_ops", "htp_ops")}
              for s in NETWORK_STAGES}
    return {"status": "measured", "soc": manifest["qnn"]["soc"], "htp_arch": manifest["qnn"]["htp_arch"],
            "qairt": manifest["qnn"]["qairt"], "tile": cfg["qnn_tile"], "emulated": True,
            "tile_psnr_db": manifest["verification"]["tile_psnr_db"], "compile_seconds": seconds, "stages": stages}


@dataclass
class Session:
    """What every configuration needs: the settings, the model, the frames, the tiled builds."""
    ctx: StudyContext
    cfg: dict
    model: object
    weights: str
    raws: dict[str, Path]
    work: Path
    tiled: dict = field(default_factory=dict)   # precision -> (manifest, None) or (None, reason)

    @property
    def largest_raw(self) -> Path:
        return self.raws[self.cfg["resolutions"][-1][0]]

    def compile_tiled(self, precision: str) -> None:
        """One tiled build per precision serves every resolution (tiles have one fixed shape)."""
        cfg = self.cfg
        self.ctx.progress(f"  compile host-xnnpack {precision} tiled {cfg['tile']}/{cfg['overlap']}")
        _, width, height = cfg["resolutions"][-1]
        self.tiled[precision] = _attempt(lambda: compile_xnnpack(
            self.model, self.weights, self.work / f"tiled-{precision}", width=width, height=height, native=False,
            precision=precision, cfg=cfg, calib_sources=("photos",)))

    def config(self, name: str, width: int, height: int, mode: str, precision: str) -> dict:
        """Build (native) and time one configuration, or say why it is skipped."""
        cfg = self.cfg
        entry = {"resolution": name, "width": width, "height": height, "mode": mode, "precision": precision,
                 "tile": cfg["tile"] if mode == "tiled" else None,
                 "overlap": cfg["overlap"] if mode == "tiled" else None}
        if precision not in cfg["precisions"]:
            return {**entry, "status": "skipped", "reason": QUICK_SKIPS[precision]}
        if mode == "tiled":
            path, (build, reason) = self.work / f"tiled-{precision}", self.tiled[precision]
        else:
            path, build = self.work / f"native-{name}-{precision}", None
            reason = native_fits(self.model, width, height)
            if reason is None:
                self.ctx.progress(f"  compile host-xnnpack {precision} native {width}x{height}")
                build, reason = _attempt(lambda: compile_xnnpack(
                    self.model, self.weights, path, width=width, height=height, native=True, precision=precision,
                    cfg=cfg, calib_sources=(str(self.largest_raw),)))
        if reason is not None:
            return {**entry, "status": "skipped", "reason": reason}
        runs, warmup = repeats(self.ctx, width, height)
        self.ctx.progress(f"  run {name} {mode} {precision} ({warmup} warm-up + {runs} runs)")
        result, reason = _attempt(lambda: measure(self.raws[name], path, runs=runs, warmup=warmup, work=self.work))
        if mode == "native":   # native builds are per resolution: free the disk now
            shutil.rmtree(path, ignore_errors=True)
        return {**entry, **(result or {"status": "skipped", "reason": reason}),
                "build_psnr_db": build["verification"]["tile_psnr_db"], "build_seconds": build["compile_seconds"]}


def run(ctx: StudyContext) -> None:
    cfg = QUICK if ctx.quick else FULL
    threads = torch.get_num_threads()   # verifying a build loads ExecuTorch, which pins torch to one thread
    model, weights = load_for_preset(cfg["preset"], None)
    work = Path(tempfile.mkdtemp(prefix="edge4k-decoder-share-"))
    try:
        session = Session(ctx, cfg, model, weights, {n: bench_raw(ctx, w, h) for n, w, h in cfg["resolutions"]}, work)
        for precision in cfg["precisions"]:
            session.compile_tiled(precision)
        configs = [session.config(name, width, height, mode, precision)
                   for name, width, height in cfg["resolutions"] for mode in ("tiled", "native")
                   for precision in PRECISIONS]
        ctx.progress("  compile android-qnn int8 (HTP placement)")
        _, width, height = cfg["resolutions"][-1]
        placement, reason = _attempt(lambda: htp_placement(model, weights, session.largest_raw, width, height,
                                                           cfg, work))
        placement = placement or {"status": "skipped", "reason": reason}
    finally:
        shutil.rmtree(work, ignore_errors=True)
        torch.set_num_threads(threads)

    macs = stage_macs(model, cfg["tile"])
    per_tile = sum(macs[s] for s in NETWORK_STAGES if s != "global")
    ctx.data.update(preset=cfg["preset"], weights=weights, resolutions={n: [w, h] for n, w, h in cfg["resolutions"]},
                    tile=cfg["tile"], overlap=cfg["overlap"], configs=configs, htp_placement=placement,
                    tiled_build_seconds={p: b["compile_seconds"] for p, (b, _) in session.tiled.items() if b},
                    macs_per_tile={s: macs[s] for s in NETWORK_STAGES},
                    mac_share_per_tile={s: round(macs[s] / per_tile, 4) for s in NETWORK_STAGES if s != "global"})
    report(ctx, configs, placement, cfg)


def _attempt(fn):
    """(result, None), or (None, the one-line reason) when the step cannot be done here."""
    try:
        return fn(), None
    except Edge4KError as e:
        return None, str(e)


def bottleneck_summary(configs: list[dict], resolution: str) -> dict:
    """Per measured configuration at `resolution`: the largest network stage and the decoder's shares."""
    rows = {}
    for c in configs:
        if c["resolution"] == resolution and c["status"] == "measured":
            net = c["share_of_network"]
            rows[f"{c['mode']} {c['precision']}"] = {
                "largest_stage": max(net, key=net.get), "decoder_share_of_network": net["decoder"],
                "decoder_share_of_total": c["share_of_total"]["decoder"]}
    return rows


def report(ctx: StudyContext, configs: list[dict], placement: dict, cfg: dict) -> None:
    top = cfg["resolutions"][-1][0]
    summary = bottleneck_summary(configs, top)
    ctx.data["bottleneck_at_" + top] = summary
    ctx.md += [f"Preset `{cfg['preset']}` ({ctx.data['weights']}), ExecuTorch/XNNPACK builds on this host's CPU; "
               f"tiled = {cfg['tile']}-pixel tiles with {cfg['overlap']} overlap; the frame is a synthetic RGGB "
               "RAW made from the astronaut photo. Latencies are medians in ms; a stage's time is summed over "
               "its tiles. Shares of the network are of global + encoder + backbone + decoder.", ""]
    rows = []
    for c in configs:
        label = f"{c['resolution']} {c['mode']} {c['precision']}"
        if c["status"] != "measured":
            rows.append([label, "skipped: " + c["reason"]] + [""] * (len(STAGES) + 2))
            continue
        lat = c["latency_ms"]
        rows.append([label, f"{lat['total']:.0f}"] + [f"{lat[s]:.0f}" for s in STAGES]
                    + [f"{100 * c['share_of_network']['decoder']:.0f}%", c["peak_rss_mib"]])
    ctx.table(["configuration", "total ms", *STAGES, "decoder share of network", "peak RSS MiB"], rows)
    share = ctx.data["mac_share_per_tile"]
    ctx.md += ["Share of the per-tile MACs (torch's flop counter, one "
               f"{cfg['tile']}x{cfg['tile']} tile): " + ", ".join(f"{s} {100 * v:.0f}%" for s, v in share.items())
               + ".", ""]
    plot(ctx, configs)
    if placement["status"] == "measured":
        ctx.md += [f"Node placement of an android-qnn int8 build for {placement['soc']} (HTP v{placement['htp_arch']}, "
                   f"QAIRT {placement['qairt']}, emulated on x86; {placement['tile']}-pixel tiles; the chained tile "
                   f"checks at {placement['tile_psnr_db']:.1f} dB against eager fp32):", ""]
        ctx.table(["stage", "ONNX nodes", "on the HTP", "on the CPU", "CPU ops"],
                  [[s, p["nodes"], p["htp"], p["cpu"],
                    ", ".join(f"{k} x{v}" for k, v in p["cpu_ops"].items()) or "none"]
                   for s, p in placement["stages"].items()])
    else:
        ctx.md += [f"HTP placement: skipped: {placement['reason']}", ""]
    ctx.answer(answer_text(summary, top, share["decoder"]))


def answer_text(summary: dict, resolution: str, decoder_mac_share: float) -> str:
    if not summary:
        return f"No {resolution} configuration could be measured here, so this cannot be told on this machine."
    decoder_first = [k for k, v in summary.items() if v["largest_stage"] == "decoder"]
    shares = [v["decoder_share_of_network"] for v in summary.values()]
    detail = "; ".join(f"{k}: decoder {100 * v['decoder_share_of_network']:.0f}% of the network time, largest "
                       f"stage {v['largest_stage']}" for k, v in summary.items())
    verdict = ("Yes" if len(decoder_first) == len(summary) else "No" if not decoder_first else "Partly")
    return (f"{verdict}: at {resolution} the decoder is the largest network stage in {len(decoder_first)} of "
            f"{len(summary)} measured configurations, taking {100 * min(shares):.0f}-{100 * max(shares):.0f}% of "
            f"the network time while holding {100 * decoder_mac_share:.0f}% of the per-tile MACs ({detail}). "
            "Host CPU numbers: on a phone's NPU the split can differ, see the phone study.")


def plot(ctx: StudyContext, configs: list[dict]) -> None:
    labels = [f"{c['resolution']} {c['mode']} {c['precision']}" for c in configs]
    with ctx.figure("stage-shares", size=(8, 0.35 * len(configs) + 1.6)) as fig:
        ax = fig.add_subplot(111)
        left = [0.0] * len(configs)
        for stage in STAGES:
            widths = [100 * c["share_of_total"][stage] if c["status"] == "measured" else 0 for c in configs]
            ax.barh(labels, widths, left=left, label=stage)
            left = [a + b for a, b in zip(left, widths)]
        for i, c in enumerate(configs):
            if c["status"] != "measured":
                ax.text(1, i, "skipped", va="center", fontsize=8)
        ax.set_xlabel("share of total latency (%)")
        ax.set_xlim(0, 100)
        ax.invert_yaxis()
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
