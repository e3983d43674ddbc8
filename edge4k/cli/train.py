"""`edge4k train`, `edge4k train-teacher` and `edge4k distill`: the training loops of training/
with their options from the flags."""
from __future__ import annotations

import argparse
import os
import shlex
import sys

from edge4k.models import DEFAULT_PRESET
from edge4k.training.distill import DistillOptions, distill
from edge4k.training.flow import TeacherOptions, train_teacher
from edge4k.training.train import TrainOptions, train


def training_args(p: argparse.ArgumentParser, *, lr: float = 2e-3) -> None:
    """What every training command shares (edge4k.training.train.TrainOptions)."""
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET})")
    p.add_argument("--budget-minutes", type=float, required=True, help="wall-clock budget; training stops after it")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (checkpoints, log, loss curve)")
    p.add_argument("--steps", type=int, help="number of steps (fixes the learning-rate schedule; "
                                             "default: the schedule follows the time budget)")
    p.add_argument("--batch", type=int, default=8, help="crops per step per process (default 8)")
    p.add_argument("--crop", type=int, default=192, help="crop size in output pixels (default 192)")
    p.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {lr:g})")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and data (default 0)")
    p.add_argument("--data", metavar="DIR", help="folder of sRGB images to train on (default: the bundled photos)")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default 200)")
    p.add_argument("--log-every", type=int, default=10, help="steps between log lines (default 10)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--threads", type=int, help="CPU threads per process (on a busy machine 1 avoids "
                                               "threads waiting on each other)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes that synthesise the RAW "
                                                          "batches (default 0: in the training process)")
    p.add_argument("--init", metavar="PATH", help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument("--warm-start", metavar="PATH", help="start a new preset from another preset's checkpoint: "
                                                        "every tensor of the same name and shape is copied")
    p.add_argument("--freeze-norm", action="store_true",
                   help="keep BatchNorm statistics fixed, so training sees what the deployed model computes")
    p.add_argument("--compile", action="store_true", help="torch.compile the loss (edge4k train only): about a "
                                                          "minute once, then about 10%% faster steps on CPU")
    p.add_argument("--bf16", action="store_true", help="the network under bfloat16 autocast (edge4k train only; "
                                                       "weights, optimiser and loss fp32): 1.2-1.3x a step on a CPU "
                                                       "with AVX512-BF16, slightly noisier gradients near convergence")


def add_teacher_arguments(h: argparse.ArgumentParser) -> None:
    training_args(h, lr=1e-3)
    h.add_argument("--base", metavar="PATH", help="one-step checkpoint whose latent space the teacher uses "
                                                  "(default: the shipped one)")
    h.add_argument("--width", type=int, default=192, help="velocity net width (default 192)")
    h.add_argument("--depth", type=int, default=6, help="velocity net blocks (default 6)")
    h.add_argument("--heads", type=int, default=6, help="attention heads (default 6)")
    h.add_argument("--source-noise", type=float, default=0.5, help="sigma of the flow's source c + sigma * noise")
    h.add_argument("--ae-steps", type=int, default=300, help="first steps: the target encoder only (default 300)")
    h.add_argument("--anchor-weight", type=float, default=0.1,
                   help="pull of the target latent towards the base model's latent (default 0.1)")


def add_distill_arguments(d: argparse.ArgumentParser) -> None:
    training_args(d, lr=2e-4)
    d.add_argument("--teacher", required=True, metavar="PATH", help="teacher.safetensors from `edge4k train-teacher`")
    d.add_argument("--consistency-weight", type=float, default=1.0, help="weight of the consistency term (0: off)")
    d.add_argument("--adversarial-weight", type=float, default=0.1, help="weight of the adversarial term (0: off)")


TRAINING_FIELDS = ("preset", "budget_minutes", "steps", "batch", "crop", "lr", "seed", "data", "checkpoint_every",
                   "log_every", "resume", "threads", "workers", "init", "warm_start", "freeze_norm", "compile", "bf16")


def _run_training(args, options_cls, run, **extra) -> int:
    opts = options_cls(out=args.out, **{k: getattr(args, k) for k in TRAINING_FIELDS},
                       command=shlex.join(["edge4k", *args.argv]), **extra)
    summary = run(opts, progress=sys.stderr.isatty())
    if int(os.environ.get("RANK", "0")) == 0:
        done = {"train": "trained", "train-teacher": "trained the teacher on", "distill": "distilled"}[summary["task"]]
        print(f"{done} {summary['preset']}: {summary['steps']} steps ({summary['stopped_by']}), "
              f"{summary['crops_seen']} crops of {summary['crop']} px in {summary['elapsed_s']:.0f} s "
              f"on {summary['world']} process(es); wrote {args.out}/{summary['weights']}")
    return 130 if summary["stopped_by"] == "interrupted" else 0


def run_train(args) -> int:
    return _run_training(args, TrainOptions, train)


def run_train_teacher(args) -> int:
    return _run_training(args, TeacherOptions, train_teacher, base=args.base, width=args.width, depth=args.depth,
                         heads=args.heads, source_noise=args.source_noise, ae_steps=args.ae_steps,
                         anchor_weight=args.anchor_weight)


def run_distill(args) -> int:
    return _run_training(args, DistillOptions, distill, teacher=args.teacher,
                         consistency_weight=args.consistency_weight, adversarial_weight=args.adversarial_weight)


COMMANDS = {"train": (training_args, run_train), "train-teacher": (add_teacher_arguments, run_train_teacher),
            "distill": (add_distill_arguments, run_distill)}
