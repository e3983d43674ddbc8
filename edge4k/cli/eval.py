"""`edge4k eval`: evaluation/run.py's reports (a set, the sweep, the gallery, a teacher comparison,
the README's tables) from the flags."""
from __future__ import annotations

import argparse
import sys

from edge4k.cli.common import check_flag
from edge4k.errors import Edge4KError
from edge4k.evaluation.evaluate import METHODS, SETS
from edge4k.evaluation.run import run_compare, run_eval, run_summary, subject
from edge4k.kernels.threads import set_threads
from edge4k.models import DEFAULT_PRESET


def add_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET})")
    e.add_argument("--checkpoint", metavar="PATH", help="weights to evaluate (default: the shipped checkpoint)")
    e.add_argument("--artifacts", metavar="DIR", help="evaluate this compiled build (its backend and tiling) "
                                                    "instead of the eager model")
    e.add_argument("--set", dest="set_name", default="held-out", choices=SETS,
                   help="evaluation set (default held-out: the bundled photos never trained on; kodak24 and "
                        "mcmaster18 are read from DATA/eval/SET)")
    e.add_argument("--data", metavar="DIR", help="data folder holding eval/kodak24 and eval/mcmaster18 "
                                                 "(default $EDGE4K_DATA, else ./data)")
    e.add_argument("--look", choices=["neutral", "natural", "both"], default="both",
                   help="finishing look(s) to score (default both)")
    e.add_argument("--sweep", action="store_true", help="the robustness sweep (exposure x ISO x illuminant, "
                                                        "held-out cameras, charts) instead of a set")
    e.add_argument("--quick", action="store_true", help="with --sweep: a reduced grid at small size")
    e.add_argument("--summary", metavar="EVAL_DIR", help="print the README's quality tables from the eval JSON in "
                   "EVAL_DIR (kodak24, mcmaster18, held-out); with --build LABEL=DIR for compiled builds' evals")
    e.add_argument("--build", action="append", default=[], metavar="LABEL=DIR",
                   help="with --summary: a compiled build's `eval --artifacts` folder (repeatable)")
    e.add_argument("--anchors", metavar="EVAL_DIR", help="with --summary: take the methods EVAL_DIR's reports "
                   "lack (the classical anchors, demosaicnet) from this folder's reports of the same captures")
    e.add_argument("--gallery", nargs="+", metavar="RAW", help="real camera RAW files: LibRaw beside Edge4K, both "
                                                             "looks, as a crop sheet (no ground truth, no scores)")
    e.add_argument("-o", "--output", default="out/eval", metavar="DIR", help="output folder (default out/eval)")
    e.add_argument("--methods", nargs="+", metavar="M", help=f"subset of: {' '.join(METHODS)} (default: all)")
    e.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    e.add_argument("--teacher", metavar="PATH", help="compare one-step models instead: this flow teacher at "
                                                    "--steps, the --student, and the one-step --checkpoint")
    e.add_argument("--student", metavar="PATH", help="distilled one-step checkpoint (with --teacher)")
    e.add_argument("--steps", default="1,2,4,8", help="teacher steps to compare (default 1,2,4,8)")
    e.add_argument("--solver", default="euler", choices=["euler", "heun"], help="teacher ODE solver (default euler)")


def run(args) -> int:
    check_flag("threads", args.threads)
    set_threads(args.threads)
    if args.summary:
        builds = dict(b.split("=", 1) for b in args.build if "=" in b)
        if len(builds) != len(args.build):
            raise Edge4KError("--build takes LABEL=DIR, e.g. --build 'XNNPACK int8=out/eval-builds/xnnpack-int8'")
        print(run_summary(args.summary, builds, args.anchors), end="")
        return 0
    progress = sys.stderr.isatty()
    if args.teacher:
        try:
            steps = [int(n) for n in args.steps.split(",")]
        except ValueError:
            raise Edge4KError(f"--steps must be a comma list of integers, got {args.steps}") from None
        check_flag("steps", min(steps))
        paths = run_compare(args.preset, args.teacher, args.output, steps=steps, solver=args.solver,
                            student=args.student, checkpoint=args.checkpoint, set_name=args.set_name, data=args.data,
                            look=args.look, progress=progress)
    else:
        if args.student:
            raise Edge4KError("--student is compared against a --teacher; give both")
        if args.artifacts and args.checkpoint:
            raise Edge4KError("--checkpoint is for the eager model; a compiled build carries its own weights")
        methods = args.methods or list(METHODS)
        model, cfg, weights = subject(args.preset, checkpoint=args.checkpoint, artifacts=args.artifacts,
                                      methods=methods)
        if weights is not None and weights.startswith("seed:"):
            print(f"note: no checkpoint for {cfg.name}; evaluating seed-initialised weights", file=sys.stderr)
        paths = run_eval(model, cfg, weights, args.output, set_name=args.set_name, data=args.data, look=args.look,
                         methods=methods, sweep_grid=args.sweep, quick=args.quick, gallery_paths=args.gallery,
                         progress=progress)
    print(open(paths["md"]).read())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


COMMANDS = {"eval": (add_arguments, run)}
