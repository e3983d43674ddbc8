"""`edge4k train`: a seeded training loop, single process or data-parallel under torchrun.

Loss = L1 + SSIM_WEIGHT * (1 - SSIM) + COLOUR_WEIGHT * colour, where colour is the
L1 distance of CIELAB a*, b* (chroma only, /100) after 4x4 average pooling, so the
network is pushed towards the right hue and saturation, not just the right
RGB values. The learning rate warms up, then follows a cosine to 5 %.

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

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from edge4k.errors import Edge4KError
from edge4k.files import atomic_output

from .checkpoint import save_checkpoint
from .config import get_preset
from .data import PairSampler
from .e4k import build_model

SSIM_WEIGHT, COLOUR_WEIGHT = 0.2, 1.0
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


# ---- losses -----------------------------------------------------------------------------------

def _gaussian_window(size=11, sigma=1.5):
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5, data range 1) of (B, 3, H, W) images."""
    w = _gaussian_window().to(x)
    mu_x, mu_y = F.conv2d(x, w, groups=3), F.conv2d(y, w, groups=3)
    sxx = F.conv2d(x * x, w, groups=3) - mu_x ** 2
    syy = F.conv2d(y * y, w, groups=3) - mu_y ** 2
    sxy = F.conv2d(x * y, w, groups=3) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.mean()


_XYZ_FROM_SRGB = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                               [0.2126729, 0.7151522, 0.0721750],
                               [0.0193339, 0.1191920, 0.9503041]])
_D65 = torch.tensor([0.95047, 1.0, 1.08883])


def lab_ab(srgb: torch.Tensor) -> torch.Tensor:
    """CIELAB a*, b* (D65) of (B, 3, H, W) sRGB-encoded images, differentiable."""
    x = srgb.clamp(0, 1)
    lin = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).clamp_min(1e-8) ** 2.4)
    xyz = torch.einsum("ij,bjhw->bihw", _XYZ_FROM_SRGB.to(x), lin) / _D65.to(x)[None, :, None, None]
    d = 6 / 29
    f = torch.where(xyz > d ** 3, xyz.clamp_min(1e-8) ** (1 / 3), xyz / (3 * d ** 2) + 4 / 29)
    return torch.stack([500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def losses(out: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    l1 = (out - target).abs().mean()
    s = ssim(out.clamp(0, 1), target)
    colour = (lab_ab(F.avg_pool2d(out, 4)) - lab_ab(F.avg_pool2d(target, 4))).abs().mean() / 100
    return {"loss": l1 + SSIM_WEIGHT * (1 - s) + COLOUR_WEIGHT * colour, "l1": l1, "ssim": s, "colour": colour}


def lr_at(progress: float, step: int, base: float) -> float:
    if step < WARMUP_STEPS:
        return base * (step + 1) / WARMUP_STEPS
    p = min(max(progress, 0.0), 1.0)
    return base * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * p)))


# ---- distributed helpers ----------------------------------------------------------------------

def _dist_setup() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    import torch.distributed as dist
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
    import torch.distributed as dist
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# ---- outputs ----------------------------------------------------------------------------------

def plot_loss_curve(log_path: Path, png_path: Path, keys=("loss", "l1", "colour", "1-ssim")) -> None:
    import matplotlib
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

class DirectTask(torch.nn.Module):
    """Supervised one-step training: the image loss of the model's output against the ground truth."""

    name = "train"
    weights_name = "model.safetensors"
    curve_keys = ("loss", "l1", "colour", "1-ssim")

    def __init__(self, opts: TrainOptions):
        super().__init__()
        self.model = build_model(get_preset(opts.preset), seed=opts.seed).train()

    def forward(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        return losses(self.model(batch["packed"], batch["thumb"], batch["meta"]), batch["target"])

    def save(self, path: Path, **info) -> None:
        save_checkpoint(path, self.model, **info)


def train(opts: TrainOptions, *, progress: bool = True) -> dict:
    """`edge4k train`: until opts.steps or the time budget, whichever comes first. Returns the summary."""
    return run_training(opts, DirectTask, progress=progress)


def run_training(opts: TrainOptions, make_task, *, progress: bool = True) -> dict:
    """Run make_task(opts)'s loss under the shared loop (budget, resume, log, torchrun)."""
    from tqdm import tqdm
    from edge4k.calibration.photos import load_folder, load_split

    cfg = get_preset(opts.preset)
    if opts.budget_minutes <= 0:
        raise Edge4KError(f"--budget-minutes must be > 0, got {opts.budget_minutes:g}")
    for name in ("batch", "checkpoint_every", "log_every"):
        if getattr(opts, name) < 1:
            raise Edge4KError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(opts, name)}")
    if opts.steps is not None and opts.steps < 1:
        raise Edge4KError(f"--steps must be >= 1, got {opts.steps}")
    out = Path(opts.out)
    state_path, log_path = out / "train_state.pt", out / "train_log.jsonl"

    elapsed_before, step = 0.0, 0
    state = None
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
                if k not in ("budget_minutes", "steps", "resume", "out", "threads")}
        opts = type(opts)(**{**asdict(opts), **kept})
        step, elapsed_before = int(state["step"]), float(state["elapsed_s"])
    elif state_path.exists():
        raise Edge4KError(f"{out} already holds a training run; pass --resume to continue it or pick another --out")

    images = load_folder(opts.data) if opts.data else load_split("train")
    # Near-zero activations and gradients (zero-initialised heads) fall into float32
    # denormals, which run 10-20x slower on x86 CPUs; flushing them to zero costs nothing.
    torch.set_flush_denormal(True)
    rank, world, device = _dist_setup()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        sampler = PairSampler(images, crop=opts.crop, thumb_size=cfg.thumb_size, multiple=cfg.compression,
                              seed=opts.seed, rank=rank)
        task = make_task(opts).train().to(device)
        optim = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=opts.lr,
                                  weight_decay=opts.weight_decay)
        if state is not None:
            task.load_state_dict(state["task"])
            optim.load_state_dict(state["optimizer"])
        net = task
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel
            # Teacher training has phases that leave some parameters unused.
            net = DistributedDataParallel(task, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            if not opts.resume and log_path.exists():
                log_path.unlink()
        return _loop(opts, cfg, net, task, optim, sampler, step, elapsed_before, rank, world, device,
                     out / task.weights_name, state_path, log_path, progress and rank == 0, tqdm)
    finally:
        if world > 1:
            import torch.distributed as dist
            dist.destroy_process_group()


def _loop(opts, cfg, net, task, optim, sampler, step, elapsed_before, rank, world, device,
          weights_path, state_path, log_path, progress, tqdm) -> dict:
    stop_signal = []
    handlers = {s: signal.signal(s, lambda *_: stop_signal.append(True)) for s in (signal.SIGINT, signal.SIGTERM)}
    budget_s = opts.budget_minutes * 60
    start = time.perf_counter()
    elapsed = lambda: elapsed_before + time.perf_counter() - start  # noqa: E731
    window_t, window_crops = time.perf_counter(), 0
    last_saved = step

    def save():
        nonlocal last_saved
        if rank == 0:
            info = {"step": step, "seed": opts.seed, "elapsed_s": round(elapsed(), 1),
                    "global_batch": opts.batch * world, "crop": opts.crop}
            task.save(weights_path, **info)
            with atomic_output(state_path) as tmp:
                torch.save({"task": task.state_dict(), "optimizer": optim.state_dict(), "step": step,
                            "elapsed_s": elapsed(), "options": asdict(opts), "world": world,
                            "kind": task.name}, tmp)
            if log_path.exists():
                plot_loss_curve(log_path, log_path.with_name("loss_curve.png"), task.curve_keys)
        last_saved = step

    trainable = [p for p in task.parameters() if p.requires_grad]
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
            batch = {k: v.to(device) for k, v in sampler.batch(step, opts.batch).items()}
            parts = net(batch, step)
            optim.zero_grad(set_to_none=True)
            parts["loss"].backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optim.step()
            step += 1
            window_crops += opts.batch * world
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
               "global_batch": opts.batch * world, "crops_seen": step * opts.batch * world, "crop": opts.crop,
               "seed": opts.seed, "lr": opts.lr,
               "data": opts.data or "bundled training photos (edge4k.calibration.photos, split 'train')",
               "budget_minutes": opts.budget_minutes, "torch_threads": torch.get_num_threads(),
               "device": str(device), "weights": weights_path.name, "options": asdict(opts)}
    if rank == 0:
        _write_json(weights_path.with_name("summary.json"), summary)
    return summary
