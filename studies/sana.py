"""SANA's real architecture through Edge4K's profiler: research question 3 (is the
decoder the bottleneck at 4K?) asked of SANA itself, side by side with Edge4K's default.

SANA is built with diffusers' own classes from configs written in this repo
(studies/configs/: the published Sana_600M_1024px DiT and the DC-AE f32c32 of
SANA 1.0, each file citing where its values come from), with seeded random
weights: no hub weights reach this machine, and latency, memory and MACs do not
depend on the weight values. Three stages mirror Edge4K's:

- encoder: DC-AE encoder on a 3-channel image at the output resolution. As a
  RAW-to-RGB model SANA would take a demosaiced frame (a bilinear demosaic costs
  next to nothing and is not timed); feeding packed RAW instead would change its
  first conv and its compression relative to output pixels.
- backbone: the DiT, one evaluation (the 1-NFE SANA-Sprint setting), conditioned
  on a fixed random caption embedding of SanaPipeline's caption length (300
  tokens x 2304 Gemma channels). The Gemma text encoder runs once per prompt, not
  per image, and is excluded. SANA-Sprint's 0.6B adds a guidance embedding and
  q/k RMS norms to this config: a negligible share of the MACs.
- decoder: DC-AE decoder, latent -> RGB.

Each SANA stage is timed in its own process (forked from a server that has
imported diffusers), fp32 (the precision of Edge4K's eager pipeline; this CPU
has AVX2 but no AVX512-BF16 or AMX, so a bf16 timing would mostly measure
conversions), under torch.inference_mode, with subnormals flushed to zero
(random weights can push activations into the subnormal range, which slows
x86 for reasons that are not the architecture's). Peak memory is that
process's resident high-water mark (VmHWM) over the timed runs, reset just
before them through /proc/self/clear_refs; the resident size before the first
run (interpreter, torch, the stage's weights) is recorded next to it. MACs
are counted by torch's FlopCounterMode (convolutions and matrix products;
element-wise ops not counted), the way models/cost.py counts Edge4K's, on the
meta device, so 4K counts need neither memory nor time.

Edge4K's side is model v2, the default when it was run: preset e4k-s-f16 with its checkpoint
(`load_for_preset`), tiled 512/64, eager fp32; per-stage latency and peak RSS
come from the runtime's own pipeline profile (`edge4k run --profile` in a
subprocess, on a synthetic RAW of the same size), MACs from models/cost.py times
the tile count.

At 1024x1024 every stage is timed: median of 3 runs, no separate warm-up (one
run is a minute here; the median discards a slow first run); a stage stops
repeating when it has used twice its MAC-proportional share of the time left
in the study's budget (--budget-minutes, default 15), so a loaded machine gets
fewer runs instead of a longer study. At 4K SANA needs sides divisible by 32:
3840x2176 (the 3840x2160 frame padded by 16 rows, as Edge4K pads to its own
compression). Each 4K stage is estimated first from its 1024x1024 run (time x
MAC ratio plus the build, activation memory x pixel ratio) and timed once only
if it fits runtime.memory.available_bytes() and the budget left; otherwise the
JSON says 'skipped' with the reason and the estimate, and the 4K decoder share
is answered from counted MACs, labelled as such.

Time, measured on this 2-core AMD EPYC while shared with other jobs: --quick
28-34 s (load 2-3; tiny configs of the same classes at 64x64 and 128x96). A
reduced default run (1 run per stage, budget 9 min, load 4-6) took 11 min:
Edge4K's two profiles 3 min, SANA's encoder 2.9 min, DiT 1.0 min and decoder
4.1 min at 1024x1024 (15-17 GMAC/s), all three 4K stages skipped (encoder and
decoder need about 21 and 20 GiB against 19 available; the DiT, 4.3 TMAC, for
the budget). Idle, this CPU does about 90 GMAC/s on a large matmul (README:
186 GFLOP/s) and about three quarters of that on a 3x3 convolution; at ~50
GMAC/s overall the default's 3 x 7.3 TMAC at 1024x1024 take about 7 minutes,
and the whole study, 4K DiT included, about 10-12 (an estimate: no idle run
was possible here). On a loaded machine it ends near the budget, plus at most
one run of each 1024x1024 stage.
"""
from __future__ import annotations

import gc
import json
import math
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from edge4k.benchmarks.frame4k import make_input
from edge4k.errors import Edge4KError
from edge4k.kernels.tiling import plan_tiles
from edge4k.models.checkpoint import load_for_preset
from edge4k.models.cost import param_count, stage_macs
from edge4k.optional import missing
from edge4k.runtime.memory import available_bytes
from edge4k.studies.report import StudyContext

TITLE = "SANA's architecture under Edge4K's profiler"
QUESTION = ("Built from SANA's published 0.6B DiT and DC-AE f32c32 configurations and profiled one step at "
            "1024x1024 and 4K, where do the time, memory and MACs go, is the decoder the bottleneck at 4K, "
            "and how does that compare with Edge4K's default?")
DEFAULT_BUDGET_MINUTES = 15

CONFIG_DIR = Path(__file__).parent / "configs"
CONFIG_FILES = {"transformer": "sana_600m_1024px_transformer.json", "autoencoder": "dc_ae_f32c32_sana_1.0.json"}
CAPTION_TOKENS = 300          # SanaPipeline / SanaSprintPipeline max_sequence_length
SANA_MULTIPLE = 32            # DC-AE f32: the frame's sides must divide by 32
STAGES = ("encoder", "backbone", "decoder")
DIFFUSERS_MODULES = ("diffusers.models.autoencoders.autoencoder_dc", "diffusers.models.transformers.sana_transformer")
E4K_PRESET = "e4k-s-f16"
RESERVE_S = 30                # kept back from the budget for the report itself

# Quick mode (CI): the same classes and block structure, narrow and shallow.
QUICK_OVERRIDES = {
    "transformer": dict(num_attention_heads=2, attention_head_dim=8, num_layers=2, num_cross_attention_heads=2,
                        cross_attention_head_dim=8, cross_attention_dim=16, caption_channels=32),
    "autoencoder": dict(attention_head_dim=8, encoder_block_out_channels=[8, 8, 16, 16, 32, 32],
                        decoder_block_out_channels=[8, 8, 16, 16, 32, 32], encoder_layers_per_block=[1] * 6,
                        decoder_layers_per_block=[1] * 6),
}


@dataclass(frozen=True)
class Settings:
    base: tuple[int, int]      # (height, width): every stage timed, `runs` times
    high: tuple[int, int]      # the 4K frame (Edge4K's); SANA's is padded to a multiple of 32
    runs: int
    e4k_warmup: int
    tile: int                  # Edge4K's default tiling
    overlap: int
    caption_tokens: int

    @property
    def sana_high(self) -> tuple[int, int]:
        return tuple(-(-s // SANA_MULTIPLE) * SANA_MULTIPLE for s in self.high)


DEFAULT = Settings(base=(1024, 1024), high=(2160, 3840), runs=3, e4k_warmup=1, tile=512, overlap=64,
                   caption_tokens=CAPTION_TOKENS)
QUICK = Settings(base=(64, 64), high=(96, 128), runs=1, e4k_warmup=0, tile=64, overlap=16, caption_tokens=8)


def size_name(hw: tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"


# ---- SANA's stages --------------------------------------------------------------------

def sana_configs(quick: bool = False) -> dict[str, dict]:
    """Constructor arguments of the DiT and the DC-AE from studies/configs/ (keys starting
    with '_' are notes: source, comment, class name); quick: the tiny CI variant."""
    out = {}
    for key, name in CONFIG_FILES.items():
        raw = json.loads((CONFIG_DIR / name).read_text())
        out[key] = {k: v for k, v in raw.items() if not k.startswith("_")}
        if quick:
            out[key].update(QUICK_OVERRIDES[key])
    return out


class DiTStep(torch.nn.Module):
    """One DiT evaluation, the whole per-image network cost of a 1-step (SANA-Sprint) sampler."""

    def __init__(self, transformer):
        super().__init__()
        self.transformer = transformer

    def forward(self, latent, caption, timestep):
        return self.transformer(latent, encoder_hidden_states=caption, timestep=timestep, return_dict=False)[0]


def build_stage(stage: str, configs: dict) -> torch.nn.Module:
    """One SANA stage with torch's default random init (seed it first), eval, no grads.
    Builds on whatever device is current (meta for counting)."""
    from diffusers.models.autoencoders.autoencoder_dc import AutoencoderDC
    from diffusers.models.transformers.sana_transformer import SanaTransformer2DModel
    if stage == "backbone":
        module = DiTStep(SanaTransformer2DModel(**configs["transformer"]))
    else:   # build the autoencoder, keep one half; the other is freed with `ae`
        ae = AutoencoderDC(**configs["autoencoder"])
        module = ae.encoder if stage == "encoder" else ae.decoder
    return module.eval().requires_grad_(False)


def stage_inputs(stage: str, configs: dict, height: int, width: int, caption_tokens: int,
                 device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """Fixed seeded inputs: a demosaiced RGB frame in [-1, 1] (encoder), a latent (backbone,
    decoder), the caption embedding and one timestep (backbone)."""
    gen = torch.Generator().manual_seed(0)

    def tensor(*shape):
        return torch.empty(shape, device="meta") if device == "meta" else torch.randn(shape, generator=gen)

    ae, dit = configs["autoencoder"], configs["transformer"]
    f = 2 ** (len(ae["encoder_block_out_channels"]) - 1)     # one 2x down-sampling per stage after the first
    latent = tensor(1, ae["latent_channels"], height // f, width // f)
    if stage == "encoder":
        return (tensor(1, ae["in_channels"], height, width).clamp(-1, 1),)
    if stage == "decoder":
        return (latent,)
    timestep = torch.empty(1, device="meta") if device == "meta" else torch.tensor([999.0])
    return latent, tensor(1, caption_tokens, dit["caption_channels"]), timestep


def sana_counts(configs: dict, sizes: dict[str, tuple[int, int]], caption_tokens: int) -> dict[str, dict]:
    """Parameters and MACs of each stage at each size, counted on the meta device (nothing runs)."""
    out = {}
    for stage in STAGES:
        with torch.device("meta"):
            module = build_stage(stage, configs)
        params = sum(p.numel() for p in module.parameters())
        macs = {}
        for key, (h, w) in sizes.items():
            inputs = stage_inputs(stage, configs, h, w, caption_tokens, device="meta")
            with torch.inference_mode(), FlopCounterMode(display=False) as fc:
                module(*inputs)
            macs[key] = fc.get_total_flops() // 2
        out[stage] = {"params": params, "weight_bytes": params * 4, "macs": macs}
    return out


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> str:
    """Reset this process's resident high-water mark (Linux >= 4.0); returns the method used."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM after reset via /proc/self/clear_refs"
    except OSError:
        return "VmHWM since process start (clear_refs not writable)"


def time_stage(stage: str, configs: dict, height: int, width: int, caption_tokens: int, runs: int,
               seconds: float = math.inf) -> dict:
    """Child process: build one SANA stage and run it at least once, up to `runs` times while
    another run still fits in `seconds` (build included); latency and memory."""
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    module = build_stage(stage, configs)
    inputs = stage_inputs(stage, configs, height, width, caption_tokens)
    build_s = time.perf_counter() - t0
    gc.collect()
    rss_before = _status_kib("VmRSS") * 1024
    method = _reset_peak_rss()
    times = []
    with torch.inference_mode():
        while len(times) < runs and (not times or time.perf_counter() - t0 + max(times) <= seconds):
            t = time.perf_counter()
            out = module(*inputs)
            times.append(time.perf_counter() - t)
    peak = _status_kib("VmHWM") * 1024
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "times_s": times,
            "runs": len(times), "runs_asked": runs, "build_s": build_s, "rss_before_bytes": rss_before,
            "peak_rss_bytes": peak, "activation_peak_bytes": max(peak - rss_before, 0), "peak_method": method,
            "threads": torch.get_num_threads(), "output_shape": list(out.shape),
            "output_finite": bool(torch.isfinite(out).all())}


def in_child(fn, *args):
    """fn(*args) in a fresh process forked from a server that has already imported diffusers'
    SANA classes (that import alone takes seconds), so each stage's memory is its own and
    diffusers never loads in the study's own process."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(DIFFUSERS_MODULES) + [__name__])
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def estimate_high(base_run: dict, macs_base: int, macs_high: int, pixel_ratio: float) -> dict:
    """A stage's 4K run estimated from its base-size run: time scales with MACs (plus the
    build), activation memory with pixels (weights and runtime stay)."""
    return {"estimate_s": round(base_run["build_s"] + base_run["median_s"] * macs_high / macs_base, 4),
            "estimate_peak_rss_bytes": int(base_run["rss_before_bytes"]
                                           + base_run["activation_peak_bytes"] * pixel_ratio)}


def skip_reason(estimate: dict, seconds_left: float, bytes_available: int) -> str | None:
    """Why an estimated run cannot be done here, or None if it fits."""
    need = estimate["estimate_peak_rss_bytes"]
    if need > bytes_available:
        return f"needs about {need / 2**30:.1f} GiB, {bytes_available / 2**30:.1f} GiB available"
    if estimate["estimate_s"] > seconds_left:
        return f"about {estimate['estimate_s']:.0f} s estimated, {max(seconds_left, 0):.0f} s left in the budget"
    return None


# ---- Edge4K's default ---------------------------------------------------------------------

def edge4k_counts(settings: Settings, sizes: dict[str, tuple[int, int]]) -> dict:
    """The default preset (shipped checkpoint): parameters per stage and MACs per frame in
    its default tiling (per-tile count x tiles; the global branch once per image)."""
    model, weights = load_for_preset(E4K_PRESET, None)
    per_tile = stage_macs(model, settings.tile)
    stages, tiles = {}, {}
    for key, (h, w) in sizes.items():
        tiles[key] = plan_tiles(h, w, compression=model.cfg.compression, tile=settings.tile,
                                overlap=settings.overlap).num_tiles
    for stage, macs in per_tile.items():
        stages[stage] = {"params": param_count(model.stage(stage)),
                         "macs": {k: macs * (1 if stage == "global" else n) for k, n in tiles.items()}}
    return {"preset": E4K_PRESET, "weights": weights, "tile": settings.tile, "overlap": settings.overlap,
            "tiles": tiles, "stages": stages}


def edge4k_profile(settings: Settings, hw: tuple[int, int], workdir: Path) -> dict:
    """`edge4k run --profile` on a synthetic RAW of this size, in its own process."""
    h, w = hw
    raw = make_input(workdir / f"input_{w}x{h}.dng", w, h)
    profile = workdir / f"profile_{w}x{h}.json"
    cmd = [sys.executable, "-P", "-m", "edge4k", "run", str(raw), "-o", str(workdir / f"out_{w}x{h}.png"),
           "--preset", E4K_PRESET, "--tile", str(settings.tile), "--overlap", str(settings.overlap),
           "--runs", str(settings.runs), "--warmup", str(settings.e4k_warmup), "--profile", str(profile)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Edge4KError(f"edge4k run failed: {proc.stderr.strip().splitlines()[-1:]}")
    p = json.loads(profile.read_text())
    return {"latency_ms": p["latency_ms"], "peak_rss_bytes": p["memory"]["peak_rss_bytes"],
            "tiles": p["tiling"]["tiles"], "runs": settings.runs, "warmup": settings.e4k_warmup,
            "threads": p["device"].get("threads")}


# ---- shares and the answer ------------------------------------------------------------------

def decoder_share(values: dict[str, float]) -> dict:
    """Decoder share of the three tile stages, and which stage is the largest."""
    total = sum(values[s] for s in STAGES)
    return {"decoder_share": values["decoder"] / total, "largest_stage": max(STAGES, key=values.get)}


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _label(key: str) -> str:
    return key.replace("sana", "SANA").replace("edge4k", "Edge4K").replace("macs", "MACs").replace("_", " ")


def _fmt_s(seconds: float | None) -> str:
    return "" if seconds is None else (f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s")


def run(ctx: StudyContext) -> None:
    start = time.perf_counter()
    s = QUICK if ctx.quick else DEFAULT
    sizes = {"base": s.base, "high": s.high}
    sana_sizes = {"base": s.base, "high": s.sana_high}
    pixel_ratio = (s.sana_high[0] * s.sana_high[1]) / (s.base[0] * s.base[1])
    ctx.data["settings"] = {**asdict(s), "sana_high": list(s.sana_high), "quick": ctx.quick}
    ctx.data["resolutions"] = {"base": size_name(s.base), "high": size_name(s.high),
                               "sana_high": size_name(s.sana_high)}
    ctx.data["method"] = {
        "sana_weights": "random, seeded (torch default init); no hub weights on this machine",
        "sana_precision": "fp32, torch.inference_mode, subnormals flushed",
        "sana_encoder_input": "demosaiced 3-channel frame at output resolution (demosaic not timed)",
        "sana_backbone": f"one DiT step; fixed random caption embedding of {s.caption_tokens} tokens; "
                         "Gemma text encoder excluded (once per prompt, not per image)",
        "sana_latency": f"wall clock, own process per stage; median of up to {s.runs} runs at the base size "
                        "(fewer if the stage's share of the time budget runs out), 1 run at 4K",
        "sana_memory": "stage process's resident high-water mark over its runs (VmHWM)",
        "macs": "torch FlopCounterMode (conv and matmul), MACs = FLOPs / 2; SANA counted on the meta device",
        "edge4k": f"{E4K_PRESET}, shipped checkpoint, tiled {s.tile}/{s.overlap}, eager fp32; latency and peak "
                  "RSS from the runtime's pipeline profile (`edge4k run --profile`, own process)",
    }

    ctx.progress("  Edge4K: MACs and pipeline profiles")
    e4k = edge4k_counts(s, sizes)
    with tempfile.TemporaryDirectory() as tmp:
        e4k["profile"] = {key: edge4k_profile(s, hw, Path(tmp)) for key, hw in sizes.items()}
    ctx.data["edge4k"] = e4k

    sana: dict = {"available": find_spec("diffusers") is not None}
    ctx.data["sana"] = sana
    if sana["available"]:
        _measure_sana(ctx, s, sana, sana_sizes, pixel_ratio, deadline=start + ctx.budget_minutes * 60 - RESERVE_S)
    else:
        sana["reason"] = str(missing("the SANA study", "diffusers"))
    _report(ctx, s, sana, e4k)


def _measure_sana(ctx, s: Settings, sana: dict, sizes: dict, pixel_ratio: float, deadline: float) -> None:
    configs = sana_configs(ctx.quick)
    sana["configs"] = {**configs, "files": {k: f"studies/configs/{v}" for k, v in CONFIG_FILES.items()},
                       "quick_overrides": QUICK_OVERRIDES if ctx.quick else None}
    sana["caption_tokens"] = s.caption_tokens
    ctx.progress("  SANA: counting MACs on the meta device")
    stages = in_child(sana_counts, configs, sizes, s.caption_tokens)
    sana["stages"] = stages
    # base size: every stage runs at least once; repeats (up to s.runs) while within twice its
    # MAC-proportional share of the time left (per MAC the DiT runs slower than the convolutions)
    macs_left = sum(stages[x]["macs"]["base"] for x in STAGES)
    for stage in STAGES:
        share = min(1.0, 2 * stages[stage]["macs"]["base"] / macs_left)
        macs_left -= stages[stage]["macs"]["base"]
        seconds = share * (deadline - time.perf_counter())
        ctx.progress(f"  SANA {stage} at {size_name(s.base)}, up to {s.runs} run(s) in {seconds:.0f} s")
        stages[stage]["base"] = _timed(stage, configs, s.base, s.caption_tokens, s.runs, seconds)
    # 4K: cheapest first, each only if its estimate fits the memory and the time left
    estimates = {}
    for stage in STAGES:
        base = stages[stage]["base"]
        if "error" in base:
            stages[stage]["high"] = {"skipped": f"no base-size run to estimate from ({base['error']})"}
        else:
            estimates[stage] = estimate_high(base, stages[stage]["macs"]["base"], stages[stage]["macs"]["high"],
                                             pixel_ratio)
    for stage in sorted(estimates, key=lambda k: estimates[k]["estimate_s"]):
        est = estimates[stage]
        reason = skip_reason(est, deadline - time.perf_counter(), available_bytes())
        if reason:
            ctx.progress(f"  SANA {stage} at {size_name(s.sana_high)}: skipped, {reason}")
            stages[stage]["high"] = {**est, "skipped": reason}
        else:
            ctx.progress(f"  SANA {stage} at {size_name(s.sana_high)}, 1 run (estimated {est['estimate_s']:.0f} s)")
            stages[stage]["high"] = {**est, **_timed(stage, configs, s.sana_high, s.caption_tokens, 1)}


def _timed(stage, configs, hw, caption_tokens, runs, seconds=math.inf) -> dict:
    try:
        return in_child(time_stage, stage, configs, hw[0], hw[1], caption_tokens, runs, seconds)
    except Exception as e:   # e.g. the process killed for memory: record it, keep going
        return {"error": f"{type(e).__name__}: {e}"}


def _report(ctx: StudyContext, s: Settings, sana: dict, e4k: dict) -> None:
    base, high, sana_high = size_name(s.base), size_name(s.high), size_name(s.sana_high)
    lat = {k: p["latency_ms"] for k, p in e4k["profile"].items()}
    e4k_time = {k: decoder_share({st: lat[k][st]["median"] for st in STAGES}) for k in lat}
    e4k_macs = {k: decoder_share({st: e4k["stages"][st]["macs"][k] for st in STAGES}) for k in ("base", "high")}
    for k in lat:
        e4k_time[k]["decoder_share_of_total"] = lat[k]["decoder"]["median"] / lat[k]["total"]["median"]
    e4k["shares"] = {"time": e4k_time, "macs": e4k_macs}

    ctx.md += [f"SANA's network, built with diffusers' `SanaTransformer2DModel` and `AutoencoderDC` from the "
               "published configurations (`studies/configs/`), against Edge4K's default "
               f"`{E4K_PRESET}` (shipped checkpoint, tiled {s.tile}/{s.overlap}). Method:", ""]
    ctx.md += [f"- {_label(k)}: {v}" for k, v in ctx.data["method"].items()] + [""]
    if not sana["available"]:
        ctx.md += [f"SANA not measured: {sana['reason']}.", ""]
        ctx.answer(f"Not answered for SANA: {sana['reason']}. Edge4K's default decoder takes "
                   f"{_pct(e4k_time['high']['decoder_share'])} of its network time at {high}.")
        return
    st = sana["stages"]
    timed_base = all("median_s" in st[x]["base"] for x in STAGES)
    sana_macs = {k: decoder_share({x: st[x]["macs"][k] for x in STAGES}) for k in ("base", "high")}
    sana_time = {k: decoder_share({x: st[x][k]["median_s"] for x in STAGES})
                 for k in ("base", "high") if all("median_s" in st[x].get(k, {}) for x in STAGES)}
    sana["shares"] = {"time": sana_time, "macs": sana_macs}

    def sana_ms(run: dict) -> str:
        if "median_s" in run:
            n = run["runs"]
            spread = f"{1e3 * run['min_s']:.0f}-{1e3 * run['max_s']:.0f}, {n} runs" if n > 1 else "1 run"
            return f"{1e3 * run['median_s']:.0f} ({spread})"
        return run.get("skipped") or run.get("error", "")

    mib = 2 ** 20
    rows = []
    for x in STAGES:
        r, e = st[x]["base"], e4k["stages"][x]
        rows.append([x, sana_ms(r), f"{r['peak_rss_bytes'] / mib:.0f}" if "peak_rss_bytes" in r else "",
                     f"{st[x]['macs']['base'] / 1e9:.1f}", f"{st[x]['params'] / 1e6:.1f}",
                     f"{lat['base'][x]['median']:.0f}", f"{e['macs']['base'] / 1e9:.2f}", f"{e['params'] / 1e6:.3f}"])
    for x in ("raw_preprocess", "global", "postprocess"):
        rows.append([x, "", "", "", "", f"{lat['base'][x]['median']:.0f}",
                     f"{e4k['stages'][x]['macs']['base'] / 1e9:.3f}" if x in e4k["stages"] else "",
                     f"{e4k['stages'][x]['params'] / 1e6:.3f}" if x in e4k["stages"] else ""])
    rows.append(["total", f"{1e3 * sum(st[x]['base']['median_s'] for x in STAGES):.0f}" if timed_base else "", "",
                 f"{sum(st[x]['macs']['base'] for x in STAGES) / 1e9:.1f}",
                 f"{sum(st[x]['params'] for x in STAGES) / 1e6:.1f}",
                 f"{lat['base']['total']['median']:.0f}",
                 f"{sum(e['macs']['base'] for e in e4k['stages'].values()) / 1e9:.2f}",
                 f"{sum(e['params'] for e in e4k['stages'].values()) / 1e6:.3f}"])
    ctx.md += [f"**{base}, per stage.** SANA: each stage in its own process, median (min-max, runs) of up to "
               f"{s.runs} runs, peak RSS of that process (weights included). Edge4K: its pipeline profile "
               f"({e4k['profile']['base']['tiles']} tiles, median of {s.runs} runs after "
               f"{s.e4k_warmup} warm-up), peak RSS of the whole pipeline "
               f"{e4k['profile']['base']['peak_rss_bytes'] / mib:.0f} MiB.", ""]
    ctx.table(["stage", "SANA ms", "SANA peak RSS MiB", "SANA GMAC", "SANA params M",
               "Edge4K ms", "Edge4K GMAC", "Edge4K params M"], rows)

    rows = []
    for x in STAGES:
        r = st[x]["high"]
        est = (f"{r['estimate_s']:.0f} s, {r['estimate_peak_rss_bytes'] / 2**30:.1f} GiB"
               if "estimate_s" in r else "")
        rows.append([x, sana_ms(r), f"{r['peak_rss_bytes'] / mib:.0f}" if "peak_rss_bytes" in r else "", est,
                     f"{st[x]['macs']['high'] / 1e9:.0f}", f"{lat['high'][x]['median']:.0f}",
                     f"{e4k['stages'][x]['macs']['high'] / 1e9:.2f}"])
    ctx.md += [f"**4K, per stage.** SANA at {sana_high} (sides divisible by 32), one run where the estimate "
               f"from {base} fits the memory available and the time budget ({ctx.budget_minutes:g} min); GMAC "
               f"counted, not timed. Edge4K at {high} ({e4k['profile']['high']['tiles']} tiles; pipeline total "
               f"{lat['high']['total']['median']:.0f} ms, peak RSS "
               f"{e4k['profile']['high']['peak_rss_bytes'] / mib:.0f} MiB).", ""]
    ctx.table(["stage", "SANA ms", "SANA peak RSS MiB", "SANA estimate (time, memory)", "SANA GMAC (counted)",
               "Edge4K ms", "Edge4K GMAC"], rows)

    share_rows = [["SANA", _pct(sana_time["base"]["decoder_share"]) if "base" in sana_time else "not timed",
                   _pct(sana_time["high"]["decoder_share"]) if "high" in sana_time else "not timed (see above)",
                   _pct(sana_macs["high"]["decoder_share"]),
                   sana_time["base"]["largest_stage"] if "base" in sana_time else "",
                   sana_macs["high"]["largest_stage"]],
                  ["Edge4K", _pct(e4k_time["base"]["decoder_share"]), _pct(e4k_time["high"]["decoder_share"]),
                   _pct(e4k_macs["high"]["decoder_share"]), e4k_time["base"]["largest_stage"],
                   e4k_macs["high"]["largest_stage"]]]
    ctx.md += ["**Decoder share** of the three tile stages (encoder + backbone + decoder; Edge4K's "
               "raw_preprocess, global and postprocess left out so both sides count the same stages).", ""]
    ctx.table(["model", f"time, {base}", "time, 4K", "MACs, 4K (counted)", f"largest by time, {base}",
               "largest by MACs, 4K"], share_rows)
    _figure(ctx, st, e4k, sana_time, base)
    _answer(ctx, s, st, sana_time, sana_macs, e4k_time, e4k_macs, e4k)


def _figure(ctx, st: dict, e4k: dict, sana_time: dict, base: str) -> None:
    """Stacked stage shares: time at the base size, MACs at 4K, for both models."""
    lat = {k: p["latency_ms"] for k, p in e4k["profile"].items()}
    bars = {}
    if "base" in sana_time:
        bars[f"SANA\ntime {base}"] = [st[x]["base"]["median_s"] for x in STAGES]
    bars[f"Edge4K\ntime {base}"] = [lat["base"][x]["median"] for x in STAGES]
    if "high" in sana_time:
        bars["SANA\ntime 4K"] = [st[x]["high"]["median_s"] for x in STAGES]
    bars["Edge4K\ntime 4K"] = [lat["high"][x]["median"] for x in STAGES]
    bars["SANA\nMACs 4K"] = [st[x]["macs"]["high"] for x in STAGES]
    bars["Edge4K\nMACs 4K"] = [e4k["stages"][x]["macs"]["high"] for x in STAGES]
    with ctx.figure("stage-shares", size=(8, 4)) as fig:
        ax = fig.add_subplot(111)
        names = list(bars)
        bottom = [0.0] * len(names)
        for i, stage in enumerate(STAGES):
            shares = [bars[n][i] / sum(bars[n]) * 100 for n in names]
            ax.bar(names, shares, bottom=bottom, label=stage)
            for k, (b, v) in enumerate(zip(bottom, shares)):
                if v >= 6:
                    ax.text(k, b + v / 2, f"{v:.0f}%", ha="center", va="center", fontsize=8)
            bottom = [b + v for b, v in zip(bottom, shares)]
        ax.set_ylabel("share of encoder + backbone + decoder (%)")
        ax.set_title("Where SANA's and Edge4K's network cost goes")
        ax.tick_params(axis="x", labelsize=8)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)


def _answer(ctx, s, st, sana_time, sana_macs, e4k_time, e4k_macs, e4k) -> None:
    base, sana_high = size_name(s.base), size_name(s.sana_high)
    macs_high = {x: st[x]["macs"]["high"] for x in STAGES}
    parts = []
    if "base" in sana_time:
        t = {x: st[x]["base"]["median_s"] for x in STAGES}
        parts.append(f"at {base} its DC-AE decoder takes {_pct(sana_time['base']['decoder_share'])} of the "
                     f"network time ({_fmt_s(t['decoder'])} of {_fmt_s(sum(t.values()))}, fp32 on this CPU; "
                     f"largest stage: {sana_time['base']['largest_stage']})")
    if "high" in sana_time:
        parts.append(f"timed at {sana_high}, {_pct(sana_time['high']['decoder_share'])}")
    parts.append(f"at {sana_high} the decoder is {_pct(sana_macs['high']['decoder_share'])} of the counted MACs "
                 f"({macs_high['decoder'] / 1e12:.1f} of {sum(macs_high.values()) / 1e12:.1f} TMAC; "
                 f"largest: {sana_macs['high']['largest_stage']})")
    verdicts = [sana_macs["high"]["largest_stage"] == "decoder"]
    if "base" in sana_time:
        verdicts.append(sana_time["base"]["largest_stage"] == "decoder")
    verdict = "is" if all(verdicts) else ("is not" if not any(verdicts) else "is only partly")
    e4k_total_high = sum(e4k["stages"][x]["macs"]["high"] for x in STAGES)
    ratio = macs_high["decoder"] / e4k_total_high
    ctx.answer(
        f"For SANA's real architecture the decoder {verdict} the bottleneck: " + "; ".join(parts) + ". "
        f"Edge4K's default decoder takes {_pct(e4k_time['base']['decoder_share'])} of its network time at "
        f"{base} and {_pct(e4k_time['high']['decoder_share'])} at 4K "
        f"({_pct(e4k_time['high']['decoder_share_of_total'])} of the whole pipeline), and "
        f"{_pct(e4k_macs['high']['decoder_share'])} of its MACs at 4K (largest: "
        f"{e4k_macs['high']['largest_stage']}). SANA's decoder alone counts {ratio:,.0f}x the MACs of Edge4K's "
        f"whole tiled network at 4K." + _what_would_tell(st))


def _what_would_tell(st: dict) -> str:
    """The skipped 4K runs: what they would need, from their estimates."""
    skipped = {x: st[x]["high"] for x in STAGES if "skipped" in st[x]["high"] and "estimate_s" in st[x]["high"]}
    if not skipped:
        return ""
    need = max(r["estimate_peak_rss_bytes"] for r in skipped.values()) / 2**30
    secs = sum(r["estimate_s"] for r in skipped.values())
    return (f" Timing SANA's 4K {', '.join(skipped)} here would need about {need:.0f} GiB free and "
            f"{secs / 60:.0f} more minutes (--budget-minutes); they are answered from counted MACs instead.")
