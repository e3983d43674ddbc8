"""`edge4k study`: a research question of DESIGN.md answered with data (studies/)."""
from __future__ import annotations

import argparse
import os
import sys

from edge4k.cli.common import check_flag
from edge4k.kernels.threads import set_threads
from edge4k.studies import run_all, run_study


def add_arguments(y: argparse.ArgumentParser) -> None:
    y.add_argument("name", help="compression, attention, tricks, model_v3, decoder_share, tiling, phone, sana, or all")
    y.add_argument("--budget-minutes", type=float,
                   help="training budget per trained model (default: the study's own, see docs/RESEARCH.md)")
    y.add_argument("-o", "--out", metavar="DIR",
                   help="output folder (default reports/NAME; for `all`, the parent folder, default reports)")
    y.add_argument("--doc", default="docs/RESEARCH.md", help="report `all` writes (default docs/RESEARCH.md)")
    y.add_argument("--quick", action="store_true", help="tiny shapes and a few steps: checks the plumbing (CI)")
    y.add_argument("--reuse", action="store_true", help="all: keep studies that already have a report in the "
                                                        "output folder, run only the missing ones")
    y.add_argument("--threads", type=int, help="CPU threads for training and measuring, also in the processes a "
                                               "study starts (default: torch's)")


def run(args) -> int:
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    check_flag("threads", args.threads)
    if args.threads:
        set_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)   # the `edge4k run` and sweep processes it starts
    if args.name == "all":
        doc = run_all(args.out or "reports", args.doc, budget_minutes=args.budget_minutes, quick=args.quick,
                      reuse=args.reuse, progress=progress)
        print(f"wrote {doc}")
        return 0
    ctx = run_study(args.name, args.out or f"reports/{args.name}", budget_minutes=args.budget_minutes,
                    quick=args.quick, progress=progress)
    print((ctx.out_dir / f"{ctx.name}.md").read_text())
    print(f"wrote {ctx.out_dir}")
    return 0


COMMANDS = {"study": (add_arguments, run)}
