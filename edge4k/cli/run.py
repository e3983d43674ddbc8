"""`edge4k run`: RAW file(s) -> image(s), a thin layer over edge4k.Renderer (render, profile,
render_many)."""
from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from edge4k.api import Renderer
from edge4k.backends.registry import BACKENDS
from edge4k.batch import FORMATS, expand_inputs, is_batch, plan_batch
from edge4k.cli import EXIT_ERROR
from edge4k.cli.common import check_flag, check_tiling, colour_args, colour_kwargs, look_arg, tiling_args, weights_args
from edge4k.errors import Edge4KError
from edge4k.files import check_output, sample_path
from edge4k.kernels.colourspace import OUTPUT_SPACES, check_bits, get_space
from edge4k.kernels.postprocess import bit_depth_for, check_quality
from edge4k.models import DEFAULT_PRESET
from edge4k.runtime.pipeline import format_table


def add_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("input", nargs="*", help="RAW files (DNG or any Bayer format LibRaw reads), folders (the RAW "
                                            "files in them) or globs; default: the embedded sample")
    r.add_argument("-o", "--output", required=True, help="output image (.png 8/16-bit, .tif 16/8-bit or float, .jpg), "
                                                        "tagged with the output space's ICC profile and the RAW's "
                                                        "EXIF facts; with several inputs, a folder")
    r.add_argument("--bits", type=int, choices=[8, 16, 32],
                   help="output bit depth (default: 8 for .png and .jpg, 16 for .tif; 32: float TIFF)")
    _output_args(r)
    r.add_argument("--backend", default="eager", choices=sorted(BACKENDS),
                   help="eager (PyTorch, default) or a compiled build's backend (needs --artifacts)")
    r.add_argument("--artifacts", metavar="DIR", help="compiled build folder (from `edge4k compile`)")
    r.add_argument("--soc", help="Qualcomm SoC the android-qnn build must have been compiled for (refused otherwise)")
    r.add_argument("--preset", help=f"model preset (default {DEFAULT_PRESET}; see `edge4k presets`)")
    weights_args(r)
    tiling_args(r)
    look_arg(r)
    colour_args(r)
    r.add_argument("--profile", metavar="JSON", help="write the edge4k.profile/1 JSON here")
    r.add_argument("--runs", type=int, default=1, help="timed runs (default 1)")
    r.add_argument("--warmup", type=int, default=0, help="untimed warm-up runs (default 0)")
    r.add_argument("--threads", type=int, help="CPU threads for the network stages (default: torch's)")


def _output_args(p: argparse.ArgumentParser) -> None:
    """What `edge4k run` writes: space, format, quality, preview, and the batch controls."""
    p.add_argument("--output-space", default="srgb", choices=list(OUTPUT_SPACES),
                   help="output colour space, its ICC profile embedded (rawpy's output_color; default srgb); "
                        "prophoto and rec2020-linear need 16 bits or float")
    p.add_argument("--quality", type=int, help="JPEG quality 1-100 (default 95)")
    p.add_argument("--half-size", action="store_true",
                   help="fast preview: each 2x2 Bayer cell one pixel, no network (rawpy's half_size)")
    p.add_argument("--mkdir", action="store_true", help="create the output's missing folders (else refused)")
    p.add_argument("--format", choices=list(FORMATS),
                   help="several inputs: the output files' format (default jpg; tif for prophoto and rec2020-linear)")
    p.add_argument("--skip-existing", action="store_true", help="several inputs: leave files whose output exists")
    p.add_argument("--workers", type=int, help="several inputs: threads decoding ahead and writing behind the "
                                               "network (default: 1 when a core is free, else 0)")


def _check_backend(args) -> None:
    """The Renderer's own refusals, said with the flags."""
    if args.backend == "eager" and (args.artifacts or args.soc):
        raise Edge4KError(f"--{'artifacts' if args.artifacts else 'soc'} needs a compiled backend, "
                          "e.g. --backend executorch or qnn-htp-sim")
    if args.backend != "eager" and args.checkpoint:
        raise Edge4KError("--checkpoint is for the eager backend; a compiled build carries its own weights")
    if args.backend in BACKENDS and args.backend != "eager" and not args.artifacts:
        raise Edge4KError(f"--backend {args.backend} runs a compiled build: pass --artifacts build/NAME")


def run(args) -> int:
    for name, minimum in (("runs", 1), ("warmup", 0)):
        check_flag(name, getattr(args, name), minimum)
    inputs = args.input or [sample_path()]
    batch = is_batch(inputs, args.output)
    if batch:
        refused = [flag for flag, given in (("--profile", args.profile), ("--runs", args.runs != 1),
                                            ("--warmup", args.warmup)) if given]
        if refused:
            raise Edge4KError(f"{refused[0]} times one file; with several inputs, give one at a time")
        # everything a batch can check, before the model loads
        plan_batch(inputs, args.output, format=_batch_format(args), look=args.look, bits=args.bits,
                   output_space=args.output_space, quality=args.quality, mkdir=args.mkdir)
    else:
        for flag, given in (("--format", args.format), ("--skip-existing", args.skip_existing),
                            ("--workers", args.workers is not None)):
            if given:
                raise Edge4KError(f"{flag} is for several inputs (-o a folder); one file's format is -o's extension")
        if args.half_size and (args.profile or args.runs != 1 or args.warmup):
            raise Edge4KError("--half-size runs no network: --profile, --runs and --warmup time the network")
        # everything about the output is checked before the model loads
        check_bits(args.output_space, bit_depth_for(args.output, args.bits))
        check_quality(args.output, args.quality)
        check_output(args.output, mkdir=args.mkdir)
    check_flag("threads", args.threads)
    check_tiling(args)
    _check_backend(args)
    # lazy: the model loads for the first file that runs the network (none for --half-size, nor for a
    # batch whose files are all skipped or unreadable)
    with Renderer(preset=args.preset, checkpoint=args.checkpoint, seed=args.seed, backend=args.backend,
                  artifacts=args.artifacts, soc=args.soc, tile=args.tile, overlap=args.overlap, native=args.native,
                  batch=args.batch, threads=args.threads, lazy=True) as renderer:
        if batch:
            return _run_batch(renderer, inputs, args)
        if args.half_size:
            renderer.render(inputs[0], output=args.output, look=args.look, bits=args.bits,
                            output_space=args.output_space, quality=args.quality, half_size=True,
                            **colour_kwargs(args))
            print(f"wrote {args.output}")
            return 0
        profile = renderer.profile(inputs[0], args.output, look=args.look, bits=args.bits,
                                   runs=args.runs, warmup=args.warmup, profile_path=args.profile,
                                   progress=sys.stderr.isatty(), output_space=args.output_space,
                                   quality=args.quality, **colour_kwargs(args))
    print(format_table(profile))
    print(f"wrote {args.output}" + (f" and {args.profile}" if args.profile else ""))
    return 0


def _batch_format(args) -> str:
    return args.format or ("tif" if get_space(args.output_space).min_bits > 8 else "jpg")


def _run_batch(renderer, inputs: list[str], args) -> int:
    """`edge4k run IN... -o DIR`: a progress bar (one line per file when stderr is not a
    terminal), one line per failed file, a summary; exit status 1 when any failed."""
    results = renderer.render_many(inputs, args.output, format=_batch_format(args), look=args.look, bits=args.bits,
                                   output_space=args.output_space, quality=args.quality, half_size=args.half_size,
                                   skip_existing=args.skip_existing, mkdir=args.mkdir, workers=args.workers,
                                   **colour_kwargs(args))
    total, tty = len(expand_inputs(inputs)), sys.stderr.isatty()
    counts, started = {"rendered": 0, "skipped": 0, "failed": 0}, time.perf_counter()
    with tqdm(total=total, unit="file", disable=not tty, file=sys.stderr) as bar:
        for n, result in enumerate(results, 1):
            kind = "failed" if result.error else "skipped" if result.skipped else "rendered"
            counts[kind] += 1
            if result.error:
                (bar.write if tty else print)(f"edge4k: failed: {result.error}", file=sys.stderr)
            elif not tty:
                print(f"[{n}/{total}] {kind} {result.source} -> {result.output}"
                      + (f" ({result.seconds:.2f} s)" if kind == "rendered" else ""), file=sys.stderr, flush=True)
            bar.update()
    seconds = time.perf_counter() - started
    per = f", {seconds / counts['rendered']:.2f} s per rendered file" if counts["rendered"] else ""
    print(f"{counts['rendered']} rendered, {counts['skipped']} skipped, {counts['failed']} failed of {total} "
          f"in {seconds:.1f} s{per}; output in {args.output}")
    return EXIT_ERROR if counts["failed"] else 0


COMMANDS = {"run": (add_arguments, run)}
