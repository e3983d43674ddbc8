"""Study: does SANA's ReLU linear attention cost ISP accuracy against softmax attention,
and how do the two scale with the number of latent tokens? On model v3.

- Quality: e4k-v3-f16 (ReLU linear attention) and e4k-v3-f16-softmax, each trained from
  the same seed for the same budget with the same settings (common.trained_model: bf16,
  the shipped model's shards where ./data holds them; the softmax model is reused by
  `tricks`), scored on the held-out photos.
- Scaling: the backbone stage alone (batch 1, eager fp32, seed-initialised weights:
  time and memory do not depend on the values) on latent grids from 16x16 = 256 tokens
  (a 256-pixel tile at f16) up to 135x240 = 32400 tokens (the latent grid of a native
  3840x2160 frame at f16). Each point runs in its own process: latency is the median
  of the timed runs, memory the rise of the process's peak resident set (VmHWM, reset
  through /proc/self/clear_refs) over its resident set before the first forward.
- Before a softmax point runs, its attention matrices are estimated (heads x N^2 x 4
  bytes, x2 for the scores and their softmax) against runtime.memory.available_bytes();
  a point that cannot fit is recorded as "does not fit: needs X GiB" instead of run.
  Each point's forward time is predicted from the series' last measured time, scaled
  by the log-log slope of its last two points (at least linear): a point predicted
  over long_point_s (10 s) is timed once without warm-up, one over point_limit_s
  (120 s) is skipped as too slow.

Time, one torch thread on the 2-core host: training 2 x the budget (the ReLU model is
e4k-v3-f16, shared with `compression` and `tricks`; the softmax one with `tricks`),
quality ~10 s, the sweep at most about 2.5 min (14 processes; softmax's 16384-token
point, timed once, is the longest; v1's wider, deeper DiT took 139 s): about 3 min
besides the ReLU model's training. Softmax's 32400-token point needs 31.3 GiB (4
heads), so it is not run on a host with less. Quick: 3 training steps, 256 to 4096
tokens, one run per point: about 40 s.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass

import torch

from edge4k.models import build_model, get_preset
from edge4k.runtime.memory import available_bytes
from edge4k.studies.common import median_seconds, quality, trained_model, training_record, training_text

TITLE = "Linear vs softmax attention"
QUESTION = ("Does ReLU linear attention cost ISP accuracy against softmax attention, and where does softmax stop "
            "fitting or fall behind as the latent grows to a native 4K frame?")
DEFAULT_BUDGET_MINUTES = 2.5     # the same in compression and tricks: they share the trained models
PRESETS = {"relu-linear": "e4k-v3-f16", "softmax": "e4k-v3-f16-softmax"}
NATIVE_4K_GRID = (2160 // 16, 3840 // 16)      # 135 x 240 latent at f16


@dataclass(frozen=True)
class Sweep:
    grids: tuple                 # latent (height, width) per point
    runs: int
    warmup: int
    point_limit_s: float         # skip a point whose predicted (warm-up + runs) time is longer
    long_point_s: float          # a forward predicted this long is timed once, without warm-up


DEFAULT_SWEEP = Sweep(grids=((16, 16), (32, 32), (48, 48), (64, 64), (96, 96), (128, 128), NATIVE_4K_GRID),
                      runs=3, warmup=1, point_limit_s=120.0, long_point_s=10.0)
QUICK_SWEEP = Sweep(grids=((16, 16), (32, 32), (64, 64)), runs=1, warmup=0, point_limit_s=20.0, long_point_s=10.0)


def softmax_matrix_bytes(heads: int, tokens: int) -> int:
    """The N x N attention scores per head and their softmax, fp32, batch 1."""
    return 2 * heads * tokens * tokens * 4


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def measure_point(preset: str, height: int, width: int, runs: int, warmup: int) -> dict:
    """Backbone latency and peak memory rise on a height x width latent; run in a fresh process."""
    cfg = get_preset(preset)
    backbone = build_model(cfg).backbone
    gen = torch.Generator().manual_seed(0)
    latent = torch.randn(1, cfg.latent_channels, height, width, generator=gen)
    g = torch.randn(1, cfg.global_dim, generator=gen)
    with open("/proc/self/clear_refs", "w") as f:   # reset VmHWM to the current resident set
        f.write("5")
    before = _status_bytes("VmRSS")
    with torch.inference_mode():
        seconds = median_seconds(lambda: backbone(latent, g), runs=runs, warmup=warmup)
    return {"ms": round(seconds * 1e3, 2), "peak_rise_mib": round((_status_bytes("VmHWM") - before) / 2**20, 1),
            "threads": torch.get_num_threads()}


def run_point(preset: str, height: int, width: int, runs: int, warmup: int) -> dict:
    args = json.dumps({"preset": preset, "height": height, "width": width, "runs": runs, "warmup": warmup})
    proc = subprocess.run([sys.executable, "-P", "-m", __name__, args], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {"error": f"the measuring process failed: {last}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def predicted_seconds(measured: list[tuple[int, float]], tokens: int) -> float | None:
    """One forward's time at `tokens`, from the series' last two measured points (log-log)."""
    if not measured:
        return None
    n1, t1 = measured[-1]
    slope = 1.0
    if len(measured) > 1:
        n0, t0 = measured[-2]
        slope = max(1.0, math.log(t1 / t0) / math.log(n1 / n0))
    return t1 * (tokens / n1) ** slope


def sweep_series(ctx, kind: str, sweep: Sweep) -> list[dict]:
    preset, heads = PRESETS[kind], get_preset(PRESETS[kind]).heads
    points, measured = [], []
    for h, w in sweep.grids:
        n = h * w
        point = {"tokens": n, "grid": [h, w]}
        if kind == "softmax":
            need, have = softmax_matrix_bytes(heads, n), available_bytes()
            point["attention_matrix_gib"] = round(need / 2**30, 3)
            if need > have:
                point["skipped"] = (f"does not fit: needs {need / 2**30:.1f} GiB for the {heads} heads' "
                                    f"{n}x{n} attention scores and their softmax (fp32), "
                                    f"{have / 2**30:.1f} GiB available")
        guess = predicted_seconds(measured, n)
        long = guess is not None and guess > sweep.long_point_s
        runs, warmup = (1, 0) if long else (sweep.runs, sweep.warmup)
        if "skipped" not in point and long and guess > sweep.point_limit_s:
            point["skipped"] = f"too slow: predicted {guess:.0f} s per forward > the {sweep.point_limit_s:.0f} s point limit"
        if "skipped" in point:
            ctx.progress(f"  {kind} {n} tokens: {point['skipped']}")
        else:
            ctx.progress(f"  {kind} {n} tokens")
            point.update(run_point(preset, h, w, runs, warmup), runs=runs, warmup=warmup)
            if "ms" in point:
                measured.append((n, point["ms"] / 1e3))
        points.append(point)
    return points


def crossover(relu: list[dict], softmax: list[dict]) -> dict:
    """First measured token count where softmax is slower than ReLU, with the last one where it was not."""
    last_faster = None
    for r, s in zip(relu, softmax):
        if "ms" in r and "ms" in s:
            if s["ms"] > r["ms"]:
                return {"slower_from": s["tokens"], "not_slower_at": last_faster}
            last_faster = s["tokens"]
    return {"slower_from": None, "not_slower_at": last_faster}


def answer_text(q: dict, relu: list[dict], softmax: list[dict], cross: dict) -> str:
    d_psnr = q["softmax"]["psnr"] - q["relu-linear"]["psnr"]
    d_de = q["softmax"]["de2000_mean"] - q["relu-linear"]["de2000_mean"]
    text = (f"Quality: softmax attention scores {q['softmax']['psnr']:.2f} dB PSNR against "
            f"{q['relu-linear']['psnr']:.2f} dB for ReLU linear attention ({d_psnr:+.2f} dB; CIEDE2000 "
            f"{d_de:+.2f}) after the same training budget: "
            + (f"ReLU linear attention costs {d_psnr:.2f} dB here. " if d_psnr > 0 else
               f"ReLU linear attention costs nothing here ({abs(d_psnr):.2f} dB better). "))
    if cross["slower_from"] is None:
        text += (f"Latency: softmax was never slower than ReLU over the points measured for both (up to "
                 f"{cross['not_slower_at']} tokens). ")
    else:
        since = f" (not yet at {cross['not_slower_at']})" if cross["not_slower_at"] else ""
        r = next(p for p in relu if p["tokens"] == cross["slower_from"])
        s = next(p for p in softmax if p["tokens"] == cross["slower_from"])
        text += (f"Latency: the softmax backbone is slower than the ReLU one from {cross['slower_from']} tokens"
                 f"{since}: {s['ms']:.0f} ms against {r['ms']:.0f} ms. ")
    no_fit = next((p for p in softmax if p.get("skipped", "").startswith("does not fit")), None)
    measured = [p for p in softmax if "ms" in p]
    if no_fit:
        text += f"Softmax stops fitting at {no_fit['tokens']} tokens ({no_fit['skipped'].split(': ', 1)[1]}). "
    elif softmax and "skipped" in softmax[-1]:
        text += f"At {softmax[-1]['tokens']} tokens softmax was not run ({softmax[-1]['skipped']}). "
    if measured:
        text += f"Its largest measured point is {measured[-1]['tokens']} tokens ({measured[-1]['ms']:.0f} ms). "
    top = relu[-1]
    if "ms" in top:
        text += f"ReLU linear attention runs the largest grid ({top['tokens']} tokens) in {top['ms']:.0f} ms."
    return text


def plot(ctx, series: dict):
    from matplotlib.ticker import NullFormatter
    with ctx.figure("scaling", size=(10, 4)) as fig:
        lat, mem = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for (kind, points), colour in zip(series.items(), ("tab:blue", "tab:red")):
            ok = [p for p in points if "ms" in p]
            if ok:
                lat.plot([p["tokens"] for p in ok], [p["ms"] for p in ok], "o-", color=colour, label=kind)
                mem.plot([p["tokens"] for p in ok], [max(p["peak_rise_mib"], 0.1) for p in ok], "o-", color=colour,
                         label=f"{kind} (measured)")
            skipped = [p for p in points if "skipped" in p]
            for p in skipped:
                lat.axvline(p["tokens"], color=colour, ls=":", lw=1)
            if kind == "softmax":
                est = [(p["tokens"], p["attention_matrix_gib"] * 1024) for p in points]
                mem.plot(*zip(*est), "x--", color=colour, label="softmax scores, estimate")
        mem.axhline(available_bytes() / 2**20, color="grey", ls="--", lw=1, label="available")
        native = NATIVE_4K_GRID[0] * NATIVE_4K_GRID[1]
        for ax, ylabel in ((lat, "backbone ms (median, batch 1)"), (mem, "memory MiB")):
            ax.axvline(native, color="black", lw=0.8, alpha=0.5, label=f"4K native at f16 ({native})")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("latent tokens (dotted: a skipped point)")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8)


def run(ctx) -> None:
    sweep = QUICK_SWEEP if ctx.quick else DEFAULT_SWEEP
    q, training = {}, {}
    for kind, preset in PRESETS.items():
        ctx.progress(f"attention: {preset}")
        model, info = trained_model(ctx, preset)
        training[kind] = training_record(info)
        q[kind] = quality(ctx, model)
    series = {kind: sweep_series(ctx, kind, sweep) for kind in PRESETS}
    cross = crossover(series["relu-linear"], series["softmax"])
    ctx.data.update(presets=PRESETS, quality=q, training=training, sweep=series, crossover=cross,
                    sweep_settings={"grids": sweep.grids, "runs": sweep.runs, "warmup": sweep.warmup,
                                    "point_limit_s": sweep.point_limit_s, "long_point_s": sweep.long_point_s, "batch": 1,
                                    "memory": "peak RSS rise of the measuring process (VmHWM after clear_refs)",
                                    "weights": "seed-initialised (time and memory do not depend on the values)"})
    ctx.md += [f"Quality: model v3 with each attention, {training_text(list(training.values()))}; held-out photos, "
               "eager, native:", ""]
    ctx.table(["attention", "preset", "train steps", "train crops", "PSNR dB", "SSIM", "CIEDE2000"],
              [[k, PRESETS[k], training[k]["steps"], training[k]["crops_seen"], q[k]["psnr"], q[k]["ssim"],
                q[k]["de2000_mean"]] for k in PRESETS])
    ctx.md += [f"Backbone stage alone, batch 1, median of {sweep.runs} runs after {sweep.warmup} warm-up, one process "
               f"per point; a point whose forward is predicted (log-log from the series' last two points) to take over "
               f"{sweep.long_point_s:.0f} s is timed once. Skipped: a softmax point whose attention matrices do not "
               f"fit in the available memory, or a point predicted over {sweep.point_limit_s:.0f} s.", ""]

    def cell(p, key):   # the number, or why there is none (the reasons in full follow the table)
        return p[key] if key in p else p.get("skipped", p.get("error", "")).split(":")[0]
    ctx.table(["tokens", "grid", "ReLU ms", "softmax ms", "ReLU MiB", "softmax MiB", "softmax scores GiB (est.)"],
              [[r["tokens"], f"{r['grid'][0]}x{r['grid'][1]}", cell(r, "ms"), cell(s, "ms"),
                cell(r, "peak_rise_mib"), cell(s, "peak_rise_mib"), s.get("attention_matrix_gib")]
               for r, s in zip(series["relu-linear"], series["softmax"])])
    ctx.md += [f"- {kind} at {p['tokens']} tokens: {p.get('skipped') or p['error']}"
               for kind, points in series.items() for p in points if "skipped" in p or "error" in p] + [""]
    plot(ctx, series)
    ctx.answer(answer_text(q, series["relu-linear"], series["softmax"], cross))


if __name__ == "__main__":     # one sweep point, in its own process (run_point)
    spec = json.loads(sys.argv[1])
    print(json.dumps(measure_point(spec["preset"], spec["height"], spec["width"], spec["runs"], spec["warmup"])))
