"""`edge4k compile` (a build for a target), `edge4k analyze` (which layers to keep in fp32) and
`edge4k check` (a build's accuracy against eager fp32): compiler/request.py's CompileRequest from
the flags, then the compiler."""
from __future__ import annotations

import argparse
import json

from edge4k.backends.xnnpack import require_executorch
from edge4k.calibration.sensitivity import layer_sensitivity
from edge4k.cli.common import check_flag, parse_resolution, progress, tiling_args, tiling_of, weights_args
from edge4k.compiler.build import check_build, prepare_inputs
from edge4k.compiler.request import CompileRequest, compile_request, format_manifest, model_of_build
from edge4k.errors import BuildMismatch, Edge4KError
from edge4k.files import atomic_output, sample_path
from edge4k.models import DEFAULT_PRESET, NETWORK_STAGES
from edge4k.runtime.manifest import load_manifest


def add_compile_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--target", required=True,
                   help="compiler target: host-xnnpack, android-xnnpack, android-qnn, android-litert, ios-coreml")
    c.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET})")
    weights_args(c)
    c.add_argument("--resolution", default="3840x2160", help="frame size WxH the build is for (default 3840x2160)")
    tiling_args(c)
    c.add_argument("--quant", default=None,
                   help="precision (default: the target's first): fp32, int8, int8-mixed or w4a8 (XNNPACK); int8 or int8-a16 "
                        "(android-qnn); fp32, fp16 or int8 (LiteRT); fp16, int8-weights, palette4 or w8a8 (Core ML)")
    c.add_argument("--calib", type=int, default=8, help="calibration samples (default 8)")
    c.add_argument("--calib-source", action="append", default=[], metavar="RAW",
                   help="RAW file to cut calibration tiles from (repeatable), or 'photos' for synthetic captures "
                        "of the bundled training photos (needs the train extra); default: the embedded sample")
    c.add_argument("--observer", choices=["minmax", "histogram"], default=None,
                   help="int8 activation observer (default: histogram for host-xnnpack, minmax for android-qnn)")
    c.add_argument("--keep-fp32", action="append", default=[], metavar="MODULE",
                   help="module path to leave unquantised, e.g. blocks.0.attn (repeatable)")
    c.add_argument("--soc", help="android-qnn: Qualcomm SoC for the context binaries, SM8550, SM8650 (default) "
                   "or SM8750")
    c.add_argument("--a16", action="append", default=[], metavar="STAGE[.LAYER]",
                   help="android-qnn: uint16 activations for a stage (backbone) or a layer "
                        "(backbone.blocks.0.attn) (repeatable)")
    c.add_argument("--fp32-plan", metavar="JSON", help="keep the layers listed by `edge4k analyze` in fp32")
    c.add_argument("-o", "--output", required=True,
                   help="build folder to write (an older build there is replaced; any other non-empty folder "
                        "is refused unless --force)")
    c.add_argument("--force", action="store_true", help="replace -o even if it is a non-empty folder that is not "
                                                        "an Edge4K build")


def add_analyze_arguments(a: argparse.ArgumentParser) -> None:
    a.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET})")
    weights_args(a)
    a.add_argument("--resolution", default="3840x2160", help="frame size WxH (default 3840x2160)")
    tiling_args(a)
    a.add_argument("--calib", type=int, default=8, help="calibration samples (default 8)")
    a.add_argument("--calib-source", action="append", default=[], metavar="RAW",
                   help="RAW file for calibration tiles, or 'photos' (as for compile)")
    a.add_argument("--observer", choices=["minmax", "histogram"], default="histogram",
                   help="int8 activation observer (default histogram, as host-xnnpack builds)")
    a.add_argument("--stages", default="global,encoder,backbone,decoder", help="stages to analyse (comma list)")
    a.add_argument("--threshold", type=float, default=40.0, help="layers below this PSNR (dB) go in keep_fp32")
    a.add_argument("-o", "--output", required=True, help="JSON plan to write")


def add_check_arguments(k: argparse.ArgumentParser) -> None:
    k.add_argument("inputs", nargs="*", metavar="RAW",
                   help="RAW files to check on (tiles and whole images); default: the embedded sample")
    k.add_argument("--artifacts", required=True, metavar="DIR", help="compiled build folder")
    k.add_argument("--samples", type=int, default=2, help="tiles per stage comparison (default 2)")
    k.add_argument("--floor", type=float, help="PSNR floor in dB (default: the precision's floor, as at compile time)")
    k.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    k.add_argument("--checkpoint", metavar="PATH", help="the checkpoint the build was compiled from "
                                                       "(default: the shipped one; checked by sha256)")


def compile_request_of(args, target: str, precision: str | None, keep_fp32=()) -> CompileRequest:
    """The CompileRequest the flags of compile or analyze ask for."""
    width, height = parse_resolution(args.resolution)
    tiling = tiling_of(args)
    check_flag("calib", args.calib)
    return CompileRequest(target=target, preset=args.preset, width=width, height=height, tiling=tiling,
                          precision=precision, checkpoint=args.checkpoint, seed=args.seed, calib=args.calib,
                          calib_sources=tuple(args.calib_source), observer=args.observer,
                          keep_fp32=tuple(keep_fp32), soc=getattr(args, "soc", None), a16=tuple(getattr(args, "a16", ())))


def run_compile(args) -> int:
    keep = list(args.keep_fp32)
    if args.fp32_plan:
        try:
            keep += json.loads(open(args.fp32_plan).read())["keep_fp32"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise Edge4KError(f"cannot read keep_fp32 from {args.fp32_plan}: {e}") from None
    request = compile_request_of(args, args.target, args.quant, keep)
    manifest = compile_request(request, args.output, progress=progress("compile"), force=args.force)
    print(format_manifest(manifest))
    print(f"wrote {args.output}")
    return 0


def run_analyze(args) -> int:
    require_executorch()
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(NETWORK_STAGES)
    if unknown:
        raise Edge4KError(f"unknown stages {', '.join(sorted(unknown))}; valid: {', '.join(NETWORK_STAGES)}")
    model, _, spec = compile_request_of(args, "host-xnnpack", "int8").spec()
    _, inputs, calib, held_out = prepare_inputs(model, spec)
    report = layer_sensitivity(model, inputs, calib, held_out, stages=stages, observer=args.observer,
                               threshold_db=args.threshold, progress=progress("analyze"))
    report.update(preset=args.preset, resolution=args.resolution, calib=args.calib)
    with atomic_output(args.output) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    for row in report["layers"][:10]:
        print(f"{row['psnr_db']:8.2f} dB  {row['layer']}")
    print(f"{len(report['keep_fp32'])} of {len(report['layers'])} layers below {args.threshold} dB; "
          f"wrote {args.output} (use it with `edge4k compile --fp32-plan {args.output}`)")
    return 0


def run_check(args) -> int:
    check_flag("samples", args.samples)
    manifest = load_manifest(args.artifacts)
    try:
        model = model_of_build(manifest, args.artifacts, args.checkpoint)
    except BuildMismatch as e:   # the weights: the flag that gives them
        raise BuildMismatch(f"{e} with --checkpoint") from None
    report = check_build(model, args.artifacts, images=args.inputs or [sample_path()], samples=args.samples,
                         floor=args.floor, progress=progress("check"))
    print(format_check(manifest, report))
    if args.json:
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    if report["failing"]:
        worst = ", ".join(f"{k} {v:.1f} dB" for k, v in report["failing"].items())
        floor = "--floor" if args.floor is not None else f"the {manifest['precision']} floor"
        raise Edge4KError(f"{args.artifacts} fails the accuracy check: {worst} < {report['floor_db']:.1f} dB "
                          f"({floor})")
    return 0


def format_check(manifest: dict, report: dict) -> str:
    rows = [f"{manifest['target']} {manifest['precision']} {manifest['preset']} against eager fp32 "
            f"(floor {report['floor_db']:.1f} dB)", f"{'':<24}{'PSNR dB':>9}"]
    scores = {**report["psnr_db"], "whole tile (chained)": report["tile_psnr_db"],
              **{f"image {k}": v for k, v in report["image_psnr_db"].items()}}
    for name, value in scores.items():
        rows.append(f"{name:<24}{value:>9.1f}" + ("  FAIL" if value < report["floor_db"] else ""))
    return "\n".join(rows)


COMMANDS = {"compile": (add_compile_arguments, run_compile), "analyze": (add_analyze_arguments, run_analyze),
            "check": (add_check_arguments, run_check)}
