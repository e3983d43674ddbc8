"""Research question 5: can a phone do 4K in one step in under 5 s, and how far under?

No phone is attached here, so this study puts together what can be known and labels
what is estimated:
- host measurements of the 4K pipeline, per stage: from the 4K benchmark
  (`python -m edge4k.benchmarks.frame4k`, reports/bench/bench.json: every compiled build with
  the C++ CPU stages) when it is in the same reports folder, else the decoder_share and
  tiling studies' JSON there, else measured now (eager fp32, tiled, one process);
- the workload of model v2, the default when it was run (e4k-s-f16), per stage at the 4K native
  tile and at 512-pixel tiles: MACs (torch's flop counter) and bytes moved (weights +
  stage inputs/outputs as a lower bound, every op's inputs/outputs unfused as an upper
  bound), in int8 or fp16 (devices/cost_model.py);
- a roofline ESTIMATE per SoC and compute unit from published peaks and memory
  bandwidth (devices/cost_model.py, every figure with its source URL), at stated
  utilisations, plus the CPU stages (raw_preprocess, postprocess) as measured on this
  host; set beside published on-device RAW-to-RGB networks' throughput (MicroISP,
  PyNET-V2 Mobile: devices/cost_model.py ANCHORS); and the exact commands that measure
  it on a connected phone.

Time (idle 2-core x86): under a minute when the decoder_share and tiling reports are
present (counting the workload runs on the meta device, no compute); about 1.5 minutes
when it has to measure the host itself. Nothing is compiled or trained
(--budget-minutes does not change what it does). Quick mode (CI): a 256x256 frame with
128-pixel tiles: about 15 s.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from edge4k.devices.cost_model import (
    ANCHORS,
    BANDWIDTH_UTILISATION,
    BYTES_PER_ELEMENT,
    COMPUTE_UTILISATION,
    SOCS,
    roofline_seconds,
    workload,
)
from edge4k.errors import Edge4KError
from edge4k.kernels.tiling import plan_tiles
from edge4k.models import NETWORK_STAGES
from edge4k.models.checkpoint import load_for_preset
from edge4k.runtime.pipeline import TileOptions
from edge4k.studies.common import bench_raw, profile_run
from edge4k.studies.report import StudyContext

TITLE = "Can a phone do 4K in one step in under 5 s?"
QUESTION = "Can a phone turn a 4K RAW into RGB in one network pass in under 5 s, and how far under?"
DEFAULT_BUDGET_MINUTES = 1   # expected wall clock; nothing is trained

PRESET = "e4k-s-f16"
TARGET_S = 5.0
CPU_STAGES = ("raw_preprocess", "postprocess")
# The SDK's default tiling (what `edge4k run` and the 4K benchmark use), so the benchmark's rows apply.
FULL = dict(width=3840, height=2160, tile=TileOptions().tile, overlap=TileOptions().overlap)
QUICK = dict(width=256, height=256, tile=128, overlap=32)


def host_measurements(ctx: StudyContext, cfg: dict) -> list[dict]:
    """Host rows {name, mode, source, latency_ms}: from the sibling bench report at this frame
    size and tiling, else the decoder_share and tiling reports, else one eager tiled run
    measured now."""
    rows, reports = [], ctx.out_dir.parent
    size = [cfg["width"], cfg["height"]]
    bench_path = reports / "bench" / "bench.json"
    bench = json.loads(bench_path.read_text()) if bench_path.is_file() else {}
    if (bench.get("preset"), bench.get("resolution"), bench.get("tile"), bench.get("overlap")) == \
            (PRESET, size, cfg["tile"], cfg["overlap"]):
        return [{"name": r["name"], "mode": r["name"].split()[2], "source": str(bench_path),
                 "latency_ms": {**r["stages_ms"], "total": r["total_s"] * 1e3}} for r in bench["results"]]
    share_path, tiling_path = reports / "decoder_share" / "decoder_share.json", reports / "tiling" / "tiling.json"
    share = json.loads(share_path.read_text()) if share_path.is_file() else {}
    if share.get("preset") == PRESET:
        for c in share["configs"]:
            if [c["width"], c["height"]] == size and c["status"] == "measured":
                rows.append({"name": f"xnnpack {c['precision']} {c['mode']}", "mode": c["mode"],
                             "source": str(share_path), "latency_ms": c["latency_ms"]})
    tiling = json.loads(tiling_path.read_text()) if tiling_path.is_file() else {}
    if tiling.get("preset") == PRESET and [tiling["width"], tiling["height"]] == size:
        native = tiling["native"]
        if native["status"] == "measured":
            rows.append({"name": "eager fp32 native", "mode": "native", "source": str(tiling_path),
                         "latency_ms": {**native["latency_ms"], "total": native["total_ms"]}})
        for t in tiling["tilings"]:
            if t["status"] == "measured" and (t["tile"], t["overlap"]) == (cfg["tile"], cfg["overlap"]):
                rows.append({"name": "eager fp32 tiled", "mode": "tiled", "source": str(tiling_path),
                             "latency_ms": {**t["latency_ms"], "total": t["total_ms"]}})
    if not rows:
        ctx.progress("  no decoder_share/tiling report at this size: measuring eager fp32 tiled here")
        raw = bench_raw(ctx, cfg["width"], cfg["height"])
        with tempfile.TemporaryDirectory(prefix="edge4k-phone-") as tmp:
            result = profile_run(raw, tmp, "--tile", str(cfg["tile"]), "--overlap", str(cfg["overlap"]),
                                 runs=1, warmup=0 if ctx.quick else 1)
        rows.append({"name": "eager fp32 tiled", "mode": "tiled", "source": "measured by this study",
                     "latency_ms": {**result["stages_ms"], "total": result["total_ms"]}})
    return rows


def frame_workloads(model, cfg: dict) -> dict:
    """Per mode: tile count and per-stage workload of one tile (global: once per frame)."""
    f = model.cfg.compression
    native = plan_tiles(cfg["height"], cfg["width"], compression=f, native=True)
    tiled = plan_tiles(cfg["height"], cfg["width"], compression=f, tile=cfg["tile"], overlap=cfg["overlap"])
    return {"native": {"tiles": 1, "tile": [native.padded_height, native.padded_width],
                       "stages": workload(model, native.padded_height, native.padded_width)},
            "tiled": {"tiles": tiled.num_tiles, "tile": [cfg["tile"], cfg["tile"]],
                      "stages": workload(model, cfg["tile"], cfg["tile"])}}


def frame_totals(mode: dict, precision: str) -> dict:
    """Per stage over the whole frame: MACs and bytes (lower and upper bound) at `precision`."""
    b = BYTES_PER_ELEMENT[precision]
    out = {}
    for stage, w in mode["stages"].items():
        n = 1 if stage == "global" else mode["tiles"]
        out[stage] = {"macs": n * w["macs"], "bytes_lower": n * b * (w["weight_elements"] + w["io_elements"]),
                      "bytes_upper": n * b * w["unfused_elements"]}
    return out


def estimate(soc, unit, mode_name: str, mode: dict, cpu_s: float) -> dict:
    """ESTIMATE for one SoC compute unit (None: memory term only) and one tiling mode."""
    precision = unit.precision if unit else "int8"   # memory floor alone: the fewest bytes, a lower bound
    totals = frame_totals(mode, precision)
    stages = {}
    for stage, t in totals.items():
        upper = roofline_seconds(t["macs"], t["bytes_upper"], unit, soc)
        lower = roofline_seconds(t["macs"], t["bytes_lower"], unit, soc)
        stages[stage] = {"seconds": upper["seconds"], "seconds_fused": lower["seconds"], "bound": upper["bound"],
                         "compute_s": upper["compute_s"], "memory_s": upper["memory_s"],
                         "memory_fused_s": lower["memory_s"]}
    network = sum(s["seconds"] for s in stages.values())
    macs = sum(t["macs"] for t in totals.values())
    row = {"soc": soc.name, "marketing": soc.marketing, "unit": unit.name if unit else "memory bandwidth only",
           "precision": precision, "mode": mode_name, "complete": unit is not None and soc.bandwidth is not None,
           "stages": stages, "network_s": network,
           "network_fused_s": sum(s["seconds_fused"] for s in stages.values()),
           "cpu_stages_s": cpu_s, "total_s": network + cpu_s, "macs": macs}
    if unit is not None and cpu_s < TARGET_S:
        # the utilisation at which the compute term alone would use up what the CPU stages leave of 5 s
        row["utilisation_for_5s"] = macs / (unit.peak_macs_per_s * (TARGET_S - cpu_s))
    return row


def cpu_stage_seconds(host: list[dict], mode: str) -> float:
    """The smallest raw_preprocess + postprocess the host measured in this mode (in any mode if
    none; 0 if nothing was measured, and the totals are then the network alone)."""
    same = [h for h in host if h["mode"] == mode] or host
    return min((sum(h["latency_ms"][s] for s in CPU_STAGES) / 1e3 for h in same), default=0.0)


def phone_commands(raw: str, cfg: dict) -> dict:
    tiling = f"--tile {cfg['tile']} --overlap {cfg['overlap']}"
    return {
        "android_cpu_xnnpack": {
            "make": f"make android-xnnpack INPUT={raw} QUANT=int8 TILE={cfg['tile']} OVERLAP={cfg['overlap']}",
            "edge4k": f"edge4k profile {raw} --target android-xnnpack --device android --quant int8 {tiling} "
                      "--runs 10 --warmup 3",
            "note": "runs today on an adb-connected arm64 phone (the native runner; README, Android step by step)"},
        "android_npu_qnn": {
            "make": f"make android-qnn SOC=SM8650 INPUT={raw} TILE={cfg['tile']} OVERLAP={cfg['overlap']}",
            "edge4k": f"edge4k profile {raw} --target android-qnn --device android --soc SM8650 {tiling}",
            "note": "compiles the HTP context binaries, then stops before the push: the phone runner hosts ExecuTorch "
                    "programs only; timing them on the phone needs onnxruntime for Android with the QNN execution "
                    "provider and QAIRT's Android libraries (README, Qualcomm HTP)"},
        "ios_coreml": {
            "make": f"make ios-coreml INPUT={raw} TILE={cfg['tile']} OVERLAP={cfg['overlap']}",
            "note": "on a Mac with Xcode; profiles the Core ML build on the Mac itself, not on the iPhone"}}


def run(ctx: StudyContext) -> None:
    cfg = QUICK if ctx.quick else FULL
    model, weights = load_for_preset(PRESET, None)
    try:
        host = host_measurements(ctx, cfg)
    except Edge4KError as e:
        host, ctx.data["host_error"] = [], str(e)
    modes = frame_workloads(model, cfg)
    for h in host:
        mode = modes[h["mode"]]
        macs = sum(frame_totals(mode, "int8")[s]["macs"] for s in NETWORK_STAGES)
        net_ms = sum(h["latency_ms"][s] for s in NETWORK_STAGES)
        h["network_gmac_per_s"] = float(f"{macs / net_ms / 1e6:.3g}")   # 3 significant digits: tiny in quick mode
    cpu = {mode: cpu_stage_seconds(host, mode) for mode in modes}
    estimates = [estimate(soc, unit, name, mode, cpu[name])
                 for soc in SOCS.values() for unit in (soc.units or (None,)) for name, mode in modes.items()
                 if unit is not None or soc.bandwidth is not None]
    raw = str(ctx.models_dir / "inputs" / f"input_{cfg['width']}x{cfg['height']}.dng")
    ctx.data.update(preset=PRESET, weights=weights, width=cfg["width"], height=cfg["height"], tile=cfg["tile"],
                    overlap=cfg["overlap"], target_s=TARGET_S, host=host, workload=modes,
                    devices={name: soc.to_dict() for name, soc in SOCS.items()},
                    assumptions={"compute_utilisation": COMPUTE_UTILISATION,
                                 "bandwidth_utilisation": BANDWIDTH_UTILISATION,
                                 "bytes_per_element": BYTES_PER_ELEMENT, "cpu_stages_s": cpu,
                                 "cpu_stages_from": "this host's measured raw_preprocess + postprocess (x86, includes "
                                                    "LibRaw decoding), the smallest per mode; 0 if none was measured"},
                    estimate={"label": "ESTIMATE (roofline from published peaks; not measured on a phone)",
                              "rows": estimates},
                    anchors=[{"name": a.name, "megapixels": a.megapixels, "seconds": a.seconds,
                              "megapixels_per_s": a.megapixels_per_s, "hardware": a.hardware, "source": a.source}
                             for a in ANCHORS],
                    measure_on_phone=phone_commands(raw, cfg))
    report(ctx, host, modes, estimates, cfg)


def report(ctx: StudyContext, host: list[dict], modes: dict, estimates: list[dict], cfg: dict) -> None:
    size = f"{cfg['width']}x{cfg['height']}"
    ctx.md += [f"Preset `{PRESET}` ({ctx.data['weights']}), a {size} frame, native (one "
               f"{modes['native']['tile'][1]}x{modes['native']['tile'][0]} tile) or tiled ({modes['tiled']['tiles']} "
               f"tiles of {cfg['tile']} with {cfg['overlap']} overlap).", "", "**Measured on this host** (x86 CPU, "
               "not a phone):", ""]
    if host:
        ctx.table(["configuration", "total s", "network s", "raw_preprocess + postprocess s", "network GMAC/s",
                   "from"],
                  [[h["name"], h["latency_ms"]["total"] / 1e3,
                    sum(h["latency_ms"][s] for s in NETWORK_STAGES) / 1e3,
                    sum(h["latency_ms"][s] for s in CPU_STAGES) / 1e3, h["network_gmac_per_s"],
                    Path(h["source"]).name] for h in host])
    else:
        ctx.md += [f"none: {ctx.data.get('host_error', 'no measurement')}", ""]
    ctx.md += ["**Workload** per frame (MACs: torch's flop counter; bytes in int8, fp16 doubles them; lower bound = "
               "weights + stage inputs and outputs, upper bound = every op's inputs and outputs unfused):", ""]
    rows = []
    for name, mode in modes.items():
        totals = frame_totals(mode, "int8")
        for stage in NETWORK_STAGES:
            t = totals[stage]
            rows.append([name, stage, t["macs"] / 1e9, t["bytes_lower"] / 1e6, t["bytes_upper"] / 1e6])
    ctx.table(["mode", "stage", "GMAC", "MB moved (lower)", "MB moved (upper)"], rows)
    ctx.md += [f"**ESTIMATE** (roofline, not a measurement): per stage max(MACs / ({COMPUTE_UTILISATION:g} x peak), "
               f"bytes / ({BANDWIDTH_UTILISATION:g} x bandwidth)) with the unfused (upper) bytes, summed, plus the "
               "CPU stages (raw_preprocess + postprocess, the smallest this host measured per mode; its raw_preprocess "
               "includes LibRaw decoding, which the phone runner leaves to the host). Peaks and bandwidths with "
               "their sources (every URL is in `devices/cost_model.py` and under `devices` in the JSON):", ""]
    ctx.table(["SoC", "memory", "bandwidth GB/s", "compute peaks used", "left out"],
              [[f"{soc.name} ({soc.marketing})", soc.memory, soc.bandwidth.value if soc.bandwidth else "",
                "; ".join(f"{u.name} {u.peak_tops.value:g} {u.peak_tops.unit} {u.precision}" for u in soc.units),
                "; ".join(m.split(":")[0] for m in soc.missing)] for soc in SOCS.values()])
    megapixels = cfg["width"] * cfg["height"] / 1e6
    ctx.table(["SoC", "unit", "precision", "mode", "network s (ESTIMATE)", "network s, fused bytes", "bound by",
               "total s incl. CPU stages", "MP/s", "what is missing"],
              [[e["soc"], e["unit"], e["precision"], e["mode"], f"{e['network_s']:.3f}",
                f"{e['network_fused_s']:.3f}", bound_of(e), f"{e['total_s']:.2f}", f"{megapixels / e['total_s']:.1f}",
                missing_of(e)] for e in estimates])
    ctx.md += ["**Published anchors**: on-device RAW-to-RGB networks measured on phones by their authors "
               "(each paper's own figure; other models, data and phones, so a scale, not a comparison):", ""]
    ctx.table(["network", "MP", "under s", "MP/s", "on", "source"],
              [[a.name, a.megapixels, a.seconds, a.megapixels_per_s, a.hardware, a.source] for a in ANCHORS])
    cmds = ctx.data["measure_on_phone"]
    ctx.md += ["**To measure it on a phone:**", "",
               f"- Android CPU (XNNPACK, runs today): `{cmds['android_cpu_xnnpack']['make']}` "
               f"(= `{cmds['android_cpu_xnnpack']['edge4k']}`)",
               f"- Android NPU: `{cmds['android_npu_qnn']['make']}`: {cmds['android_npu_qnn']['note']}",
               f"- iOS: `{cmds['ios_coreml']['make']}`: {cmds['ios_coreml']['note']}", ""]
    plot(ctx, host, estimates)
    ctx.answer(answer_text(host, estimates, megapixels))


def bound_of(e: dict) -> str:
    bounds = {s["bound"] for s in e["stages"].values()}
    return "/".join(sorted(bounds))


def missing_of(e: dict) -> str:
    if e["complete"]:
        return ""
    return "compute peak (lower bound)" if e["unit"] == "memory bandwidth only" else "bandwidth (lower bound)"


def answer_text(host: list[dict], estimates: list[dict], megapixels: float) -> str:
    complete = [e for e in estimates if e["complete"]]
    best_host = min(host, key=lambda h: h["latency_ms"]["total"]) if host else None
    parts = []
    if complete:
        worst = max(complete, key=lambda e: e["total_s"])
        verdict = "yes" if worst["total_s"] < TARGET_S else "no"
        parts.append(
            f"ESTIMATE, not measured on a phone: {verdict}. With both roofline terms sourced ("
            + ", ".join(f"{e['soc']} {e['unit']} {e['mode']}" for e in complete)
            + f"), the slowest case is {worst['soc']} {worst['unit']} {worst['mode']}: {worst['network_s']:.2f} s of "
            f"network (roofline, unfused bytes, {COMPUTE_UTILISATION:g} of peak compute and "
            f"{BANDWIDTH_UTILISATION:g} of peak bandwidth) + {worst['cpu_stages_s']:.2f} s of CPU stages as measured "
            f"on this host = {worst['total_s']:.2f} s, {TARGET_S / worst['total_s']:.1f}x under {TARGET_S:g} s")
        if "utilisation_for_5s" in worst:
            parts[-1] += (f"; its network would still fit in {TARGET_S:g} s at "
                          f"{100 * worst['utilisation_for_5s']:.2f}% of the unit's peak")
        parts.append(f"that is {megapixels / worst['total_s']:.1f} MP/s, where published phone RAW-to-RGB networks "
                     "reach " + ", ".join(f"{a.name} {a.megapixels_per_s:g}" for a in ANCHORS) + " MP/s")
    else:
        parts.append("ESTIMATE: no SoC has both a sourced compute peak and a sourced bandwidth, so only lower "
                     "bounds exist")
    partial = [e for e in estimates if not e["complete"]]
    if partial:
        slowest = max(partial, key=lambda e: e["total_s"])
        parts.append(f"where only one term is sourced the lower bounds reach at most {slowest['total_s']:.2f} s "
                     f"({slowest['soc']}, {slowest['unit']}, {slowest['mode']})")
    if best_host:
        parts.append(f"measured: this 2-core x86 host already takes {best_host['latency_ms']['total'] / 1e3:.2f} s "
                     f"({best_host['name']})")
    return "; ".join(parts) + ". A phone run (`make android-xnnpack`, see above) replaces the estimate."


def plot(ctx: StudyContext, host: list[dict], estimates: list[dict]) -> None:
    labels, segments = [], []
    for e in estimates:
        tag = "" if e["complete"] else " (lower bound)"
        labels.append(f"ESTIMATE {e['soc']} {e['unit']} {e['mode']}{tag}")
        segments.append({**{s: v["seconds"] for s, v in e["stages"].items()}, "cpu stages": e["cpu_stages_s"]})
    for h in host:
        labels.append(f"measured host {h['name']}")
        segments.append({**{s: h["latency_ms"][s] / 1e3 for s in NETWORK_STAGES},
                         "cpu stages": sum(h["latency_ms"][s] for s in CPU_STAGES) / 1e3})
    with ctx.figure("seconds", size=(9, 0.32 * len(labels) + 1.8)) as fig:
        ax = fig.add_subplot(111)
        left = [0.0] * len(labels)
        for part in (*NETWORK_STAGES, "cpu stages"):
            widths = [max(s[part], 0.0) for s in segments]
            ax.barh(labels, widths, left=left, label=part)
            left = [a + b for a, b in zip(left, widths)]
        ax.axvline(TARGET_S, color="tab:red", linestyle="--", label=f"{TARGET_S:g} s")
        ax.set_xlabel("seconds per frame")
        ax.tick_params(axis="y", labelsize=7)
        ax.invert_yaxis()
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
