"""What one training step costs on this CPU, by phase, and what the training loop gains over the
loop as it was before issue 28. Run as

    python -m edge4k.benchmarks.training [--preset e4k-s-f16] [--batch 16] [--crop 256] [--threads 2]
                                        [--rounds 5] [--variants before,after,bf16] [--compile] [--json PATH]

Phases of a step: synthesis (the batch of synthetic RAW captures, calibration.unprocess + the
frontend, as `edge4k train --workers 0` makes it), forward (the network), loss (finishing of
output and target, L1, SSIM), backward, optimiser (gradient clipping + AdamW).

Variants (each its own copy of the same seed-initialised model, stepping on the same batches):
- before: NCHW activations, torch's default (per-tensor) AdamW on CPU, the loss as it was
  (reference_losses: a full 11x11 SSIM window, five convolutions);
- after: `edge4k train` in fp32 (training.train: memory_format_for, make_optimizer, losses with
  finish_looks, one finishing for both looks);
- bf16: `after` with the network under bfloat16 autocast, as `edge4k train --bf16` (TrainOptions.bf16:
  weights, optimiser, loss and the classical base stay fp32);
- after-nchw, after-unfused, after-refloss, after-reffinish, after-glibc, bf16-glibc: `after` (or `bf16`)
  less one change each, to see what each gives (refloss: the old SSIM and finishing; reffinish: the
  old finishing, once per look; glibc: glibc's allocator, which gives freed memory back to the kernel).
The variants are timed in turn, round after round, in this one process, and medians reported:
on a shared machine the neighbours' load then falls on all alike. Wall-clock and CPU time both.
The C allocator is set before each variant's step: glibc's own behaviour for `before` and the
`-glibc` variants (at its steady state: blocks over 32 MiB mmapped, free memory over 64 MiB at
the heap's top handed back), freed memory kept in the heap
for the others (training.train.retain_freed_memory, what `edge4k train` does).

Also measured: the CPU's fp32 matmul rate (torch.mm, 2048^3, same threads) and the network's
MACs in one training step (3x the forward's by torch's flop counter; the loss left out), so
the achieved GMAC/s can be set beside it. --compile adds `after` with its loss under torch.compile
(`edge4k train --compile`), and `bf16` too if it is timed, with the compile time (the first step's wall time).
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from edge4k.errors import Edge4KError
from edge4k.kernels.postprocess import finish
from edge4k.models.config import get_preset
from edge4k.models.e4k import build_model
from edge4k.training.data import PairSampler
from edge4k.training.train import (
    TrainOptions,
    batch_to,
    keep_base_fp32,
    losses,
    make_optimizer,
    retain_freed_memory,
    training_images,
)

PHASES = ("synthesis", "forward", "loss", "backward", "optimiser")
VARIANTS = ("before", "after", "bf16", "after-nchw", "after-unfused", "after-refloss", "after-reffinish",
            "after-glibc", "bf16-glibc")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def glibc_malloc() -> None:
    """glibc's allocator as it behaves by default once large blocks have been freed (its adaptive mmap
    threshold at its 32 MiB ceiling, trim threshold twice that)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx512", "avx2", "fma")))
    except OSError:
        pass
    return []


def matmul_gflops(n: int = 2048, reps: int = 5) -> tuple[float, float]:
    """fp32 torch.mm rate with the current thread count (GFLOP/s, 2 n^3 a product): by the wall clock
    (best of ``reps``) and per CPU-second (median), which the neighbours on a shared machine disturb less."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    wall, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return 2 * n ** 3 / min(wall) / 1e9, 2 * n ** 3 / statistics.median(cpu) / 1e9


def _reference_window(size=11, sigma=1.5):
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()


def reference_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM as models.train computed it before: five 11x11 depthwise convolutions."""
    w = _reference_window().to(x)
    mu_x, mu_y = F.conv2d(x, w, groups=3), F.conv2d(y, w, groups=3)
    sxx = F.conv2d(x * x, w, groups=3) - mu_x ** 2
    syy = F.conv2d(y * y, w, groups=3) - mu_y ** 2
    sxy = F.conv2d(x * y, w, groups=3) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.mean()


def reference_looks(rgb: torch.Tensor, matrix: torch.Tensor, exposure: torch.Tensor):
    """The finishing as the loss did it before: kernels.postprocess.finish once per look."""
    return finish(rgb, matrix, exposure, "neutral"), finish(rgb, matrix, exposure, "natural")


def reference_losses(out: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
    """training.train.losses as it was before: the same terms, reference_ssim and reference_looks."""
    return losses(out, batch, ssim_of=reference_ssim, finish_of=reference_looks)


class _Clock:
    """Wall and CPU seconds of each phase."""

    def __init__(self):
        self.wall, self.cpu = {p: [] for p in PHASES}, {p: [] for p in PHASES}
        self._t = None

    def start(self):
        self._t = (time.perf_counter(), time.process_time())

    def lap(self, phase: str):
        w, c = time.perf_counter(), time.process_time()
        self.wall[phase].append(w - self._t[0])
        self.cpu[phase].append(c - self._t[1])
        self._t = (w, c)


class Variant:
    def __init__(self, name: str, model: torch.nn.Module, opts, *, compile_: bool = False):
        self.name = name
        name = name.split(":")[-1]          # "PRESET:VARIANT": the variant of another preset's model
        cpu = torch.device("cpu")
        nchw = name in ("before", "after-nchw")
        self.model = copy.deepcopy(model).train()
        if not nchw:
            self.model = self.model.to(memory_format=torch.channels_last)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.trainable = params
        if name in ("before", "after-unfused"):
            self.optim = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
        else:
            self.optim = make_optimizer(params, opts, cpu)
        self.loss_fn = reference_losses if name in ("before", "after-refloss") else losses
        if name == "after-reffinish":
            self.loss_fn = lambda out, b: losses(out, b, finish_of=reference_looks)
        self.bf16 = name.startswith("bf16")
        if self.bf16:
            keep_base_fp32(self.model)
        self.malloc = glibc_malloc if name == "before" or name.endswith("-glibc") else retain_freed_memory
        self.to_device = (lambda b: dict(b)) if nchw else (lambda b: batch_to(b, cpu))
        self.forward = self.model
        self.compile_s = None
        if compile_:     # as `edge4k train --compile`: the loss only (compiling the network gained nothing here)
            self.loss_fn = torch.compile(self.loss_fn)
        self.clock = _Clock()

    def step(self, batch: dict, synthesis: tuple[float, float]) -> None:
        c = self.clock
        self.malloc()
        c.wall["synthesis"].append(synthesis[0])
        c.cpu["synthesis"].append(synthesis[1])
        c.start()
        b = self.to_device(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):   # as training.train.DirectTask
            out = self.forward(b["packed"], b["thumb"], b["meta"]).float()
        c.lap("forward")
        parts = self.loss_fn(out, b)
        c.lap("loss")
        self.optim.zero_grad(set_to_none=True)
        parts["loss"].backward()
        c.lap("backward")
        torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
        self.optim.step()
        c.lap("optimiser")

    def reset(self):
        self.clock = _Clock()


def step_macs(model: torch.nn.Module, batch: dict) -> int:
    """MACs of the network's forward + backward for one batch: 3x the forward's (torch's flop counter / 2),
    the forward, the input gradient and the weight gradient (the counter's own figure for the backward
    of grouped convolutions is several times too high)."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        copy.deepcopy(model).train()(batch["packed"], batch["thumb"], batch["meta"])
    return 3 * fc.get_total_flops() // 2


def run(preset: str = "e4k-s-f16", *, batch: int = 16, crop: int = 256, threads: int | None = 2, rounds: int = 5,
        variants=("before", "after", "bf16"), compile_: bool = False, data: str | None = None, seed: int = 0) -> dict:
    torch.set_flush_denormal(True)
    if threads:
        torch.set_num_threads(threads)
    cfg = get_preset(preset)
    opts = TrainOptions(preset=preset, out="", batch=batch, crop=crop)
    sampler = PairSampler(training_images(data), crop=crop, thumb_size=cfg.thumb_size, multiple=cfg.compression,
                          seed=seed)
    # A variant named PRESET:VARIANT steps another preset's model on the same batches, so that two
    # models' training steps compare interleaved in one process.
    models = {preset: build_model(cfg, seed=seed)}
    for v in variants:
        other = v.split(":")[0] if ":" in v else preset
        if other not in models:
            ocfg = get_preset(other)
            if (ocfg.thumb_size, ocfg.compression) != (cfg.thumb_size, cfg.compression):
                raise Edge4KError(f"{other} needs other batches than {preset} (thumbnail or compression differ)")
            models[other] = build_model(ocfg, seed=seed)
    model_of = {v: models[v.split(":")[0] if ":" in v else preset] for v in variants}
    runs = [Variant(v, model_of[v], opts) for v in variants]
    if compile_:
        runs += [Variant(f"{v}+compile", model_of[v], opts, compile_=True) for v in variants
                 if v.split(":")[-1] in ("after", "bf16")]
    first_batch = sampler.batch(0, batch)
    macs_of = {name: step_macs(m, first_batch) for name, m in models.items()}
    macs = macs_of[preset]
    gflops, gflops_cpu = matmul_gflops()
    # First step of each: warm-up (oneDNN primitive creation; with --compile, the compilation).
    first = sampler.batch(0, batch)
    for v in runs:
        t = time.perf_counter()
        v.step(first, (0.0, 0.0))
        if v.name.endswith("+compile"):
            v.compile_s = round(time.perf_counter() - t, 1)
        v.reset()
    for r in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        b = sampler.batch(1 + r, batch)
        synthesis = (time.perf_counter() - t, time.process_time() - c)
        for v in runs if r % 2 == 0 else runs[::-1]:    # alternate the order: no variant always runs first
            v.step(b, synthesis)
    med = lambda xs: statistics.median(xs)  # noqa: E731
    result = {"schema": "edge4k.train_bench/1", "cpu": cpu_name(), "cpu_flags": cpu_flags(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "preset": preset, "batch": batch,
              "crop": crop, "rounds": rounds, "matmul_gflops": round(gflops, 1),
              "matmul_gflops_per_cpu_s": round(gflops_cpu, 1),
              "network_gmac_per_step": round(macs / 1e9, 2), "variants": {}}
    for v in runs:
        macs = macs_of[v.name.split(":")[0] if ":" in v.name else preset]
        wall = {p: med(v.clock.wall[p]) for p in PHASES}
        cpu = {p: med(v.clock.cpu[p]) for p in PHASES}
        steps_wall = [sum(x) for x in zip(*(v.clock.wall[p] for p in PHASES))]
        steps_cpu = [sum(x) for x in zip(*(v.clock.cpu[p] for p in PHASES))]
        train_wall = [sum(x) for x in zip(*(v.clock.wall[p] for p in PHASES[1:]))]
        train_cpu = [sum(x) for x in zip(*(v.clock.cpu[p] for p in PHASES[1:]))]
        row = {"phases_wall_s": {p: round(x, 3) for p, x in wall.items()},
               "phases_cpu_s": {p: round(x, 3) for p, x in cpu.items()},
               "step_wall_s": round(med(steps_wall), 3), "step_cpu_s": round(med(steps_cpu), 3),
               "crops_per_s": round(batch / med(steps_wall), 2),
               "crops_per_cpu_s": round(batch / med(steps_cpu), 2),
               "crops_per_s_without_synthesis": round(batch / med(train_wall), 2),
               "network_gmac_per_step": round(macs / 1e9, 2),
               "network_gmac_per_s": round(macs / 1e9 / med(train_wall), 1),
               "network_gmac_per_cpu_s": round(macs / 1e9 / med(train_cpu), 1)}
        if v.compile_s is not None:
            row["compile_s"] = v.compile_s
        # Speed-up over the first variant, round by round (the same batch, moments apart): median and range.
        base = [sum(x) for x in zip(*(runs[0].clock.cpu[p] for p in PHASES))]
        ratios = sorted(b / s for b, s in zip(base, steps_cpu))
        row["speedup_per_cpu_s"] = {"over": runs[0].name, "median": round(med(ratios), 2),
                                    "min": round(ratios[0], 2), "max": round(ratios[-1], 2)}
        result["variants"][v.name] = row
    return result


def report(res: dict) -> str:
    avx512 = ', '.join(f for f in res['cpu_flags'] if f.startswith('avx512')) or 'no AVX-512'
    lines = ["phases: wall/CPU seconds, medians", f"{res['cpu']} ({avx512}), "
             f"torch {res['torch']}, {res['threads']} threads; {res['preset']} batch {res['batch']} crop {res['crop']}, "
             f"{res['rounds']} rounds interleaved",
             f"fp32 matmul: {res['matmul_gflops']} GFLOP/s (wall, best), {res['matmul_gflops_per_cpu_s']} per "
             f"CPU-s; network forward+backward: "
             f"{res['network_gmac_per_step']} GMAC a step",
             "variant | " + " | ".join(PHASES) + " | step s (wall/CPU) | crops/s | crops/CPU-s | net GMAC/s (wall/CPU) | "
             "speed-up per CPU-s, median of rounds (range)"]
    for name, r in res["variants"].items():
        ph = " | ".join(f"{r['phases_wall_s'][p]:.3f}/{r['phases_cpu_s'][p]:.3f}" for p in PHASES)
        extra = f" (compile {r['compile_s']} s)" if "compile_s" in r else ""
        lines.append(f"{name}{extra} | {ph} | {r['step_wall_s']:.2f}/{r['step_cpu_s']:.2f} | {r['crops_per_s']} | "
                     f"{r['crops_per_cpu_s']} | {r['network_gmac_per_s']}/{r['network_gmac_per_cpu_s']} | "
                     f"{r['speedup_per_cpu_s']['median']}x ({r['speedup_per_cpu_s']['min']}-{r['speedup_per_cpu_s']['max']}) "
                     f"over {r['speedup_per_cpu_s']['over']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge4k.benchmarks.training", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="e4k-s-f16")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--variants", default="before,after,bf16",
                   help=f"comma-separated, of {', '.join(VARIANTS)} (default before,after,bf16; speed-ups are "
                        "over the first); PRESET:VARIANT runs that variant on another preset's model")
    p.add_argument("--compile", action="store_true", help="also time `after` and `bf16` with the loss under "
                                                          "torch.compile (slow to compile)")
    p.add_argument("--data", help="training data (default: the bundled training photos)")
    p.add_argument("--json", help="write the result here")
    args = p.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    bad = [v for v in names if v.split(":")[-1] not in VARIANTS]
    if bad:
        p.error(f"unknown variant(s) {', '.join(bad)}; valid: {', '.join(VARIANTS)}")
    res = run(args.preset, batch=args.batch, crop=args.crop, threads=args.threads, rounds=args.rounds,
              variants=names, compile_=args.compile, data=args.data)
    res["command"] = "python -m edge4k.benchmarks.training " + " ".join(argv if argv is not None else sys.argv[1:])
    print(report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
