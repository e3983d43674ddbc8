"""`edge4k train`: a seeded training loop, single process or data-parallel under torchrun.

Loss (see losses()): L1 in display space for both looks + SSIM_WEIGHT * (1 - SSIM), with
the exact finishing applied to output and target alike, so the network is judged only on
what it learns (demosaicing detail, denoising). The learning rate warms up, then follows a
cosine to 5 %. With --bf16 the network runs under bfloat16 autocast (weights, optimiser, loss in fp32).

Outputs in --out: model.safetensors (weights + config, what eval and run load),
train_state.pt (optimizer and step, for --resume), train_log.jsonl, loss_curve.png
and summary.json. Every file is written atomically, so an interrupted run always
leaves the last complete checkpoint. Data parallel: under `torchrun
--nproc_per_node N` each process draws its own batches (the rank is in the
sampler's seed), DDP averages the gradients (gloo on CPU, nccl on GPU), rank 0 writes.

The loop is shared by every training command through a task (an nn.Module whose
forward(batch, step) returns the loss terms): DirectTask here (`edge4k train`),
TeacherTask in flow.py (`edge4k train-teacher`) and DistillTask in distill.py
(`edge4k distill`). Same data, budget, resume, logging and torchrun for all.
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from edge4k.datasets.photos import load_folder, load_split
from edge4k.datasets.shards import open_shards
from edge4k.errors import Edge4KError
from edge4k.files import atomic_output
from edge4k.kernels.postprocess import srgb_encode
from edge4k.models.checkpoint import describe, load_model, read_safetensors, save_checkpoint, warm_start
from edge4k.models.config import get_preset
from edge4k.models.e4k import build_model
from edge4k.optional import require
from edge4k.training.data import PairSampler

SSIM_WEIGHT = 0.2
WARMUP_STEPS = 100
MIN_LR_FRACTION = 0.05


@dataclass
class TrainOptions:
    preset: str
    out: str
    budget_minutes: float = 30.0
    steps: int | None = None          # fixes the LR schedule; None: the schedule follows the time budget
    batch: int = 8                    # per process
    crop: int = 192
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    data: str | None = None           # folder of sRGB images; None: the bundled training photos
    checkpoint_every: int = 200
    log_every: int = 10
    resume: bool = False
    threads: int | None = None        # CPU threads per process (None: torch's default, or cores / processes)
    workers: int = 0                  # data-loading processes (0: batches are made in the training process)
    init: str | None = None           # start from this checkpoint's weights (fine-tuning; same preset)
    warm_start: str | None = None     # start from another preset's checkpoint: tensors of equal name and shape
    freeze_norm: bool = False         # keep BatchNorm statistics fixed: train what the deployed model computes
    command: str | None = None        # the command line that started this run (recorded in summary.json)
    compile: bool = False             # torch.compile the loss (finishing + L1 + SSIM): ~1 min once, ~10 % a step on CPU
    bf16: bool = False                # the network under bfloat16 autocast (weights, optimiser, loss and the
                                      # classical base fp32): ~1.3x a step on an AVX512-BF16 CPU


# ---- losses -----------------------------------------------------------------------------------

def _gaussian_taps(size=11, sigma=1.5):
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _blur(x: torch.Tensor) -> torch.Tensor:
    """The SSIM window over every channel of (B, C, H, W), valid positions only. The 11x11 Gaussian is
    the outer product of its 1-D taps, so it runs as an 11x1 then a 1x11 depthwise conv: 22 taps a pixel
    instead of 121, and in channels-last, where oneDNN's depthwise kernels (and their backward) are fast."""
    c = x.shape[1]
    g = _gaussian_taps().to(x)
    x = x.contiguous(memory_format=torch.channels_last)
    x = F.conv2d(x, g.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, g.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5, data range 1) of (B, 3, H, W) images.
    The local means of x, x^2 and xy are one blur, those of y and y^2 (the target: no gradient) another."""
    mu_x, exx, exy = _blur(torch.cat([x, x * x, x * y], 1)).split(3, 1)
    mu_y, eyy = _blur(torch.cat([y, y * y], 1)).split(3, 1)
    sxx, syy, sxy = exx - mu_x ** 2, eyy - mu_y ** 2, exy - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.mean()


def finish_looks(rgb: torch.Tensor, matrix: torch.Tensor, exposure: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """finish(rgb, matrix, exposure, look) for the neutral and the natural look, the same numbers, with
    the work the two share (clamp, square, colour matrix, clip) done once. Channels-first: the loss's
    3-channel images gain nothing from channels-last, and mixed layouts take torch's slow strided loops."""
    x = rgb.contiguous()
    lin = torch.einsum("bij,bjhw->bihw", matrix.to(x.dtype), x.clamp(0, 1) ** 2).clamp(0, 1)
    natural = srgb_encode((lin * exposure.to(x.dtype).reshape(-1, 1, 1, 1)).clamp(0, 1))
    return srgb_encode(lin), natural * natural * (3 - 2 * natural)


def losses(out: torch.Tensor, batch: dict, *, ssim_of=ssim, finish_of=None) -> dict[str, torch.Tensor]:
    """The image loss of companded network output against the batch's target, in display
    space: both looks are rendered from each (same matrix and exposure), L1 on both, SSIM on
    the natural look. Finishing is exact, so only demosaicing and denoising errors remain.
    ssim_of, finish_of: the SSIM and the finishing (rgb, matrix, exposure -> both looks) to use
    (the training benchmark passes its reference ones; default ssim and finish_looks)."""
    m, e, target = batch["matrix"], batch["exposure"], batch["target"]
    looks = finish_of or finish_looks
    parts = {}
    for look, o, t in zip(("neutral", "natural"), looks(out, m, e), looks(target, m, e)):
        parts[f"l1_{look}"] = (o - t).abs().mean()
    parts["ssim"] = ssim_of(o, t)
    parts["l1"] = parts["l1_neutral"] + parts["l1_natural"]
    parts["loss"] = parts["l1"] + SSIM_WEIGHT * (1 - parts["ssim"])
    return parts


# ---- one step ---------------------------------------------------------------------------------

def memory_format_for(device: torch.device) -> torch.memory_format:
    """Channels-last on CPU: oneDNN's depthwise and 1x1 convolutions, and their backward, run 3-6x
    faster on activations in that layout than in NCHW (python -m edge4k.benchmarks.training)."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def batch_to(batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
    fmt = memory_format_for(device)
    return {k: v.to(device, non_blocking=True).contiguous(memory_format=fmt) if v.dim() == 4
            else v.to(device, non_blocking=True) for k, v in batch.items()}


def retain_freed_memory() -> bool:
    """Keep freed blocks in this process's heap (glibc's mallopt), as jemalloc or tcmalloc would. glibc
    hands blocks over its mmap threshold (at most 32 MiB: the loss's 9-channel images are larger) back to
    the kernel when freed, so each step faults fresh pages in: 77,000 minor faults a step of e4k-s-f16,
    batch 16, crop 256, under 1,000 with this. The CPU time it saves measured 0-20 % on a loaded host
    (python -m edge4k.benchmarks.training, `bf16` against `bf16-glibc`). The heap then keeps the step's
    peak. Returns False where there is no glibc (macOS, musl): nothing changed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 31))
    except (OSError, AttributeError):
        return False


def make_optimizer(params, opts: TrainOptions, device: torch.device) -> torch.optim.Optimizer:
    # On CPU torch's AdamW otherwise loops over the ~240 tensors one op at a time; fused is one kernel each.
    return torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay,
                             fused=True if device.type == "cpu" else None)


def train_step(net, optim: torch.optim.Optimizer, trainable: list, batch: dict, step: int) -> dict:
    """Loss, backward, gradient clipping at norm 1, optimiser step; returns the loss terms."""
    parts = net(batch, step)
    optim.zero_grad(set_to_none=True)
    parts["loss"].backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    optim.step()
    return parts


def lr_at(progress: float, step: int, base: float) -> float:
    if step < WARMUP_STEPS:
        return base * (step + 1) / WARMUP_STEPS
    p = min(max(progress, 0.0), 1.0)
    return base * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * p)))


# ---- distributed helpers ----------------------------------------------------------------------

def _dist_setup() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():   # fixed crop shapes: let cuDNN pick its fastest kernels; TF32 matmuls
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if world == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        device = torch.device("cuda", local)
    else:
        dist.init_process_group("gloo")
        device = torch.device("cpu")
        # Share the cores between the processes on this machine instead of oversubscribing.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    return dist.get_rank(), world, device


def _any(flag: bool, world: int, device) -> bool:
    """True on every rank if it is true on any (so all ranks stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# ---- outputs ----------------------------------------------------------------------------------

def plot_loss_curve(log_path: Path, png_path: Path, keys=("loss", "l1_neutral", "l1_natural", "1-ssim")) -> None:
    matplotlib = require("matplotlib", "the loss-curve plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    value = lambda r, key: 1 - r["ssim"] if key == "1-ssim" and "ssim" in r else r.get(key)  # noqa: E731
    for key in keys:
        pts = [(r["step"], value(r, key)) for r in rows if value(r, key) is not None]
        if pts:
            ax.plot(*zip(*pts), label=key, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(f"{rows[-1]['preset']} {rows[-1].get('task', 'train')} loss (batch {rows[-1]['global_batch']})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_output(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _write_json(path: Path, obj) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


# ---- the loop ---------------------------------------------------------------------------------

def training_images(data: str | None):
    """The photos to train on: the bundled training split, a shard folder (`edge4k data build`,
    its train split) or a plain folder of images."""
    if data is None:
        return load_split("train", np.uint8)
    if (Path(data) / "index.json").is_file():
        return open_shards(data).split("train")
    return load_folder(data, np.uint8)


class _StepBatches(torch.utils.data.Dataset):
    """Batch number `step` of the sampler (a batch depends only on its step, so workers may make them)."""

    def __init__(self, sampler: PairSampler, size: int):
        self.sampler, self.size = sampler, size

    def __len__(self):
        return 1 << 30

    def __getitem__(self, step: int):
        return self.sampler.batch(step, self.size)


def _batches(sampler: PairSampler, opts: TrainOptions, first_step: int, device):
    """Batches for steps first_step, first_step + 1, ...; made by opts.workers processes if > 0."""
    if opts.workers <= 0:
        step = first_step
        while True:
            yield sampler.batch(step, opts.batch)
            step += 1
    loader = torch.utils.data.DataLoader(
        _StepBatches(sampler, opts.batch), batch_size=None, sampler=range(first_step, 1 << 30),
        num_workers=opts.workers, prefetch_factor=4, persistent_workers=False,
        pin_memory=device.type == "cuda", worker_init_fn=lambda _: torch.set_num_threads(1))
    yield from loader


def _autocast_off(module: torch.nn.Module, args: tuple) -> tuple:
    module._fp32_region = torch.autocast(args[0].device.type, enabled=False)
    module._fp32_region.__enter__()
    return tuple(a.float() if torch.is_tensor(a) else a for a in args)


def _autocast_restore(module: torch.nn.Module, args: tuple, output) -> None:
    module._fp32_region.__exit__(None, None, None)


def keep_base_fp32(model: torch.nn.Module) -> None:
    """Under autocast, run the decoder's classical base (and its clip mask) in fp32, so the output is
    the fp32 base plus a bf16 residual: rounded to bf16's 8 bits, the output would blur the L1's gradient,
    the sign of a small error (the gradient's cosine to fp32's on smooth images the shipped model renders
    almost exactly, one step: 0.977 without, 0.990 with). Forward hooks; the network and its weights are
    unchanged, and without autocast nothing changes."""
    if model.decoder.raw_skip:
        for m in (model.decoder.demosaic, model.decoder.clipped):
            m.register_forward_pre_hook(_autocast_off)
            m.register_forward_hook(_autocast_restore)


class DirectTask(torch.nn.Module):
    """Supervised one-step training: the image loss of the model's output against the ground truth."""

    name = "train"
    weights_name = "model.safetensors"
    curve_keys = ("loss", "l1_neutral", "l1_natural", "1-ssim")

    def __init__(self, opts: TrainOptions):
        super().__init__()
        self.freeze_norm = opts.freeze_norm
        self.losses = torch.compile(losses) if opts.compile else losses
        self.bf16 = opts.bf16
        self.warm_started = None
        if opts.init:
            self.model = load_model(opts.init, opts.preset)[0].train()
        else:
            self.model = build_model(get_preset(opts.preset), seed=opts.seed).train()
            if opts.warm_start:
                self.warm_started = warm_start(self.model, opts.warm_start)
        keep_base_fp32(self.model)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_norm:   # BatchNorm normalises with its running statistics, as at inference
            for m in self.model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        packed = batch["packed"]
        # bf16: the network's convolutions, matmuls and elementwise passes in bfloat16 (half the memory
        # traffic of this memory-bound network; python -m edge4k.benchmarks.training); the loss in fp32.
        with torch.autocast(packed.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(packed, batch["thumb"], batch["meta"])
        return self.losses(out.float(), batch)

    def save(self, path: Path, **info) -> None:
        save_checkpoint(path, self.model, **info)


def train(opts: TrainOptions, *, progress: bool = True) -> dict:
    """`edge4k train`: until opts.steps or the time budget, whichever comes first. Returns the summary."""
    return run_training(opts, DirectTask, progress=progress)


def run_training(opts: TrainOptions, make_task, *, progress: bool = True) -> dict:
    """Run make_task(opts)'s loss under the shared loop (budget, resume, log, torchrun)."""
    cfg = get_preset(opts.preset)
    if opts.budget_minutes <= 0:
        raise Edge4KError(f"--budget-minutes must be > 0, got {opts.budget_minutes:g}")
    for name in ("batch", "checkpoint_every", "log_every"):
        if getattr(opts, name) < 1:
            raise Edge4KError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(opts, name)}")
    if opts.steps is not None and opts.steps < 1:
        raise Edge4KError(f"--steps must be >= 1, got {opts.steps}")
    if (opts.init or opts.warm_start or opts.freeze_norm) and make_task is not DirectTask:
        raise Edge4KError("--init, --warm-start and --freeze-norm start from a one-step model: they are for "
                          "`edge4k train` only")
    if opts.init and opts.warm_start:
        raise Edge4KError("--init and --warm-start both name the starting weights; give one")
    if opts.compile and make_task is not DirectTask:
        raise Edge4KError("--compile is for `edge4k train` only")
    if opts.bf16 and make_task is not DirectTask:
        raise Edge4KError("--bf16 is for `edge4k train` only")
    out = Path(opts.out)
    state_path, log_path = out / "train_state.pt", out / "train_log.jsonl"

    elapsed_before, step = 0.0, 0
    state = None
    start_from = opts.init or opts.warm_start
    record = {"crops_seen": 0, "runs": [], "init": init_record(start_from) if start_from else None}
    if opts.resume:
        if not state_path.is_file():
            raise Edge4KError(f"nothing to resume: {state_path} does not exist")
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise Edge4KError(f"cannot read {state_path}: {str(e).splitlines()[0]}") from None
        kind = state.get("kind", "train")
        if kind != make_task.name:
            raise Edge4KError(f"{out} holds an `edge4k {kind}` run, not `edge4k {make_task.name}`")
        if state["options"]["preset"] != opts.preset:
            raise Edge4KError(f"{out} holds a {state['options']['preset']} run, not {opts.preset}")
        # The data and model settings of the run being resumed win; only the budget and step count may change.
        kept = {k: v for k, v in state["options"].items()
                if k not in ("budget_minutes", "steps", "resume", "out", "threads", "workers", "command",
                              "compile", "bf16")}
        opts = type(opts)(**{**asdict(opts), **kept})
        step, elapsed_before = int(state["step"]), float(state["elapsed_s"])
        record = {"crops_seen": int(state.get("crops_seen", step * opts.batch * int(state.get("world", 1)))),
                  "runs": list(state.get("runs", [])), "init": state.get("init")}
    elif state_path.exists():
        raise Edge4KError(f"{out} already holds a training run; pass --resume to continue it or pick another --out")

    images = training_images(opts.data)
    # Near-zero activations and gradients (zero-initialised heads) fall into float32
    # denormals, which run 10-20x slower on x86 CPUs; flushing them to zero costs nothing.
    torch.set_flush_denormal(True)
    rank, world, device = _dist_setup()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if device.type == "cpu":
        retain_freed_memory()
    try:
        sampler = PairSampler(images, crop=opts.crop, thumb_size=cfg.thumb_size, multiple=cfg.compression,
                              seed=opts.seed, rank=rank)
        task = make_task(opts).train().to(device, memory_format=memory_format_for(device))
        if getattr(task, "warm_started", None) and not opts.resume:
            record["init"] = {**record["init"], "warm_start": task.warm_started}
        optim = make_optimizer([p for p in task.parameters() if p.requires_grad], opts, device)
        if state is not None:
            task.load_state_dict(state["task"])
            optim.load_state_dict(state["optimizer"])
        net = task
        if world > 1:
            # Teacher training has phases that leave some parameters unused.
            net = DistributedDataParallel(task, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            if not opts.resume and log_path.exists():
                log_path.unlink()
        return _loop(opts, cfg, net, task, optim, sampler, step, elapsed_before, record, rank, world, device,
                     out / task.weights_name, state_path, log_path, progress and rank == 0, tqdm)
    finally:
        if world > 1:
            dist.destroy_process_group()


def init_record(path: str) -> dict:
    """What a run started from --init: the checkpoint (name + sha256 prefix) and the crops it had seen."""
    meta = read_safetensors(path)[1]
    # Checkpoints from before this record: their own run's steps x batch (a fine-tune's parent not counted).
    crops = meta.get("crops_seen_total") or int(meta.get("step", 0)) * int(meta.get("global_batch", 0))
    return {"checkpoint": describe(path), "crops_seen_total": int(crops)}


def _loop(opts, cfg, net, task, optim, sampler, step, elapsed_before, record, rank, world, device,
          weights_path, state_path, log_path, progress, tqdm) -> dict:
    stop_signal = []
    handlers = {s: signal.signal(s, lambda *_: stop_signal.append(True)) for s in (signal.SIGINT, signal.SIGTERM)}
    budget_s = opts.budget_minutes * 60
    start = time.perf_counter()
    elapsed = lambda: elapsed_before + time.perf_counter() - start  # noqa: E731
    window_t, window_crops = time.perf_counter(), 0
    last_saved = step
    # This invocation's entry in the run's history (a resumed run appends one per invocation).
    this_run = {"command": opts.command, "from_step": step, "to_step": step, "crops": 0, "world": world,
                "global_batch": opts.batch * world, "crop": opts.crop,
                "bf16": opts.bf16}
    runs = record["runs"] + [this_run]
    # A fine-tune has seen its parent's crops too; a warm start into another architecture only partly
    # (its init record keeps the parent's count), so its total is its own.
    init = record["init"] or {}
    init_crops = 0 if init.get("warm_start") else init.get("crops_seen_total", 0)

    def save():
        nonlocal last_saved
        if rank == 0:
            info = {"step": step, "seed": opts.seed, "elapsed_s": round(elapsed(), 1),
                    "global_batch": opts.batch * world, "crop": opts.crop, "crops_seen": record["crops_seen"],
                    "crops_seen_total": init_crops + record["crops_seen"]}
            if record["init"]:
                info["init"] = record["init"]["checkpoint"]
            task.save(weights_path, **info)
            with atomic_output(state_path) as tmp:
                torch.save({"task": task.state_dict(), "optimizer": optim.state_dict(), "step": step,
                            "elapsed_s": elapsed(), "options": asdict(opts), "world": world,
                            "kind": task.name, "crops_seen": record["crops_seen"], "runs": runs,
                            "init": record["init"]}, tmp)
            if log_path.exists():
                plot_loss_curve(log_path, log_path.with_name("loss_curve.png"), task.curve_keys)
        last_saved = step

    trainable = [p for p in task.parameters() if p.requires_grad]
    batches = _batches(sampler, opts, step, device)
    bar = tqdm(total=opts.steps, initial=step, desc=f"{task.name} {cfg.name}", unit="step", disable=not progress,
               dynamic_ncols=True)
    reason = "steps"
    try:
        while True:
            done_steps = opts.steps is not None and step >= opts.steps
            out_of_time = elapsed() >= budget_s
            if _any(bool(stop_signal) or done_steps or out_of_time, world, device):
                reason = "interrupted" if stop_signal else "steps" if done_steps else "budget"
                break
            progress_frac = step / opts.steps if opts.steps else elapsed() / budget_s
            lr = lr_at(progress_frac, step, opts.lr)
            for group in optim.param_groups:
                group["lr"] = lr
            parts = train_step(net, optim, trainable, batch_to(next(batches), device), step)
            step += 1
            window_crops += opts.batch * world
            record["crops_seen"] += opts.batch * world
            this_run["crops"] += opts.batch * world
            this_run["to_step"] = step
            loss = parts["loss"].item()
            if not math.isfinite(loss):
                raise Edge4KError(f"training diverged at step {step} (loss {loss}); try a lower --lr")
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.1e}")
            if rank == 0 and step % opts.log_every == 0:
                now = time.perf_counter()
                row = {"step": step, **{k: round(v.item(), 6) for k, v in parts.items()}, "lr": lr,
                       "elapsed_s": round(elapsed(), 2), "crops_per_s": round(window_crops / (now - window_t), 2),
                       "preset": cfg.name, "task": task.name, "global_batch": opts.batch * world, "world": world}
                with open(log_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                window_t, window_crops = now, 0
            if step % opts.checkpoint_every == 0:
                save()
    finally:
        bar.close()
        for s, h in handlers.items():
            signal.signal(s, h)
    if step != last_saved or not weights_path.exists():
        save()
    summary = {"task": task.name, "preset": cfg.name, "config_hash": cfg.config_hash(), "steps": step,
               "stopped_by": reason, "elapsed_s": round(elapsed(), 1), "world": world,
               "global_batch": opts.batch * world, "crops_seen": record["crops_seen"],
               "crops_seen_total": init_crops + record["crops_seen"], "init": record["init"],
               "command": opts.command, "runs": runs, "crop": opts.crop,
               "seed": opts.seed, "lr": opts.lr,
               "data": opts.data or "bundled training photos (edge4k.datasets.photos, split 'train')",
               "budget_minutes": opts.budget_minutes, "torch_threads": torch.get_num_threads(), "bf16": this_run["bf16"],
               "device": str(device), "weights": weights_path.name, "options": asdict(opts)}
    if rank == 0:
        _write_json(weights_path.with_name("summary.json"), summary)
    return summary
