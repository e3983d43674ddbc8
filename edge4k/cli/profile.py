"""`edge4k profile` (compile, run on a device, bring the profile back: devices/flow.py) and
`edge4k build-runner` (the native runner, for this host or a phone: devices/native.py)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from edge4k.cli.common import check_flag, look_arg, parse_resolution, progress, tiling_args, tiling_of, weights_args
from edge4k.compiler.request import CompileRequest
from edge4k.devices.android import RunOptions
from edge4k.devices.commands import Shell
from edge4k.devices.flow import ANDROID_BUILD_DIR, DEVICES, ProfileRequest, format_profile, profile
from edge4k.devices.ios import COMPUTE_UNITS
from edge4k.devices.native import KERNELS_LIB, RUNNER, build_aarch64_linux, build_android, build_host
from edge4k.errors import Edge4KError
from edge4k.files import sample_path
from edge4k.kernels.colourspace import OUTPUT_SPACES
from edge4k.kernels.cpp import default_library_path
from edge4k.kernels.postprocess import HIGHLIGHT_MODES
from edge4k.kernels.raw import read_raw
from edge4k.models import DEFAULT_PRESET


def add_profile_arguments(f: argparse.ArgumentParser) -> None:
    f.add_argument("input", nargs="?", help="RAW file; default: the embedded sample")
    f.add_argument("--target", required=True, help="compiler target, e.g. android-xnnpack, android-qnn, ios-coreml")
    f.add_argument("--device", required=True, choices=DEVICES, help="where to run")
    f.add_argument("-o", "--out", metavar="DIR", help="folder for the build, the pulled profile.json and "
                                                      "output.png (default out/TARGET)")
    f.add_argument("--artifacts", metavar="DIR", help="use this compiled build instead of compiling")
    f.add_argument("--preset", default=DEFAULT_PRESET, help=f"model preset (default {DEFAULT_PRESET})")
    weights_args(f)
    f.add_argument("--resolution", help="frame size WxH to compile for (default: the input's size)")
    tiling_args(f)
    f.add_argument("--quant", help="precision (default: int8 for android-qnn, fp16 for ios-coreml, else fp32)")
    f.add_argument("--calib", type=int, help="calibration samples (default: edge4k compile's)")
    f.add_argument("--soc", help="Qualcomm SoC for android-qnn, e.g. SM8650 (passed to edge4k compile)")
    look_arg(f)
    f.add_argument("--exposure", type=float, default=0.0, metavar="EV", help="exposure compensation in stops, on "
                                                                           "top of either look (default 0)")
    f.add_argument("--highlights", choices=list(HIGHLIGHT_MODES), default="clip",
                   help="clip (default) or reconstruct clipped channels from the unclipped ones")
    f.add_argument("--output-space", default="srgb", choices=list(OUTPUT_SPACES),
                   help="output colour space of output.png, its ICC profile embedded (default srgb; prophoto and "
                        "rec2020-linear are written at 16 bits)")
    f.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    f.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs (default 3)")
    f.add_argument("--threads", type=int, help="CPU threads (default: the runtime's)")
    f.add_argument("--idle-seconds", type=float, default=2.0,
                   help="idle power baseline before the timed runs, phone only (default 2; 0: none)")
    f.add_argument("--serial", help="phone to use (default $ANDROID_SERIAL, or the only one connected)")
    f.add_argument("--runner", help="edge4k_runner built for the phone (default $EDGE4K_ANDROID_RUNNER, else "
                                    "built from ANDROID_NDK and EXECUTORCH_ANDROID_PREFIX)")
    f.add_argument("--qnn-libs", metavar="DIR", help="android-qnn on a phone: folder(s) (':'-separated) with ONNX "
                                                    "Runtime for Android and QAIRT's libraries (default $EDGE4K_QNN_LIBS; "
                                                    "README lists the files)")
    f.add_argument("--compute-units", default="all", choices=COMPUTE_UNITS, help="Core ML compute units (ios)")
    f.add_argument("--timeout", type=float, default=1800, help="seconds allowed for the run on the phone")
    f.add_argument("--dry-run", action="store_true", help="print every command, run none; still compile")


def add_build_runner_arguments(b: argparse.ArgumentParser) -> None:
    b.add_argument("--android", action="store_true",
                   help="cross-compile the runner and libedge4k.so for arm64 Android (needs ANDROID_NDK and "
                        "EXECUTORCH_ANDROID_PREFIX)")
    b.add_argument("--target", choices=["host", "aarch64-linux"], default="host",
                   help="aarch64-linux: cross-compile for arm64 Linux (glibc) against the aarch64 executorch wheel "
                        "(fetched into build/wheels-aarch64), to run here under qemu-aarch64 (needs Debian's "
                        "crossbuild-essential-arm64, zlib1g-dev:arm64 and qemu-user; libjpeg62-turbo-dev:arm64 for JPEG "
                        "output; `make arm64`)")
    b.add_argument("--without-executorch", action="store_true",
                   help="--android: leave ExecuTorch out; the runner then runs android-qnn builds only (ONNX Runtime "
                        "is opened at run time) and needs ANDROID_NDK alone")
    b.add_argument("-o", "--output", metavar="DIR", help="build folder (default build/native-host, "
                                                        "build/native-aarch64-linux or build/native-android-arm64-v8a)")
    b.add_argument("--kernels-only", action="store_true",
                   help="only the CPU kernels library the host pipeline calls (libedge4k_kernels.so; needs a C++ "
                        "compiler and CMake, not ExecuTorch); `make setup` builds it into build/native-kernels")
    b.add_argument("--sanitize", action="store_true",
                   help="host: AddressSanitizer + UndefinedBehaviorSanitizer in the runner, libedge4k and the kernels "
                        "(`make sanitize` builds build/native-sanitize and runs the native tests against it)")
    b.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (default 2)")
    b.add_argument("--dry-run", action="store_true", help="print the cmake commands instead of running them")


def run_profile(args) -> int:
    for name, minimum in (("runs", 1), ("warmup", 0), ("threads", 1), ("calib", 1)):
        check_flag(name, getattr(args, name), minimum)
    raw_input = args.input or sample_path()
    out = Path(args.out or Path("out") / args.target)
    req = ProfileRequest(target=args.target, device=args.device, raw_input=raw_input, out_dir=out,
                         artifacts=Path(args.artifacts) if args.artifacts else None,
                         compile=None if args.artifacts else _compile_request(args, raw_input),
                         run=RunOptions(runs=args.runs, warmup=args.warmup, threads=args.threads,
                                        idle_seconds=args.idle_seconds, timeout=args.timeout, look=args.look,
                                        exposure=args.exposure, highlights=args.highlights,
                                        output_space=args.output_space),
                         serial=args.serial, runner=args.runner, compute_units=args.compute_units,
                         dry_run=args.dry_run, qnn_libs=args.qnn_libs)
    result = profile(req, progress=progress("compile"))
    if result is not None:
        print(format_profile(result))
        print(f"wrote {out / 'profile.json'} and {out / 'output.png'}")
    return 0


def _compile_request(args, raw_input: str) -> CompileRequest:
    """The build a profile run compiles (the frame size defaults to the input's)."""
    if args.resolution:
        width, height = parse_resolution(args.resolution)
    else:
        frame = read_raw(raw_input)
        width, height = frame.width, frame.height
    return CompileRequest(target=args.target, preset=args.preset, width=width, height=height, tiling=tiling_of(args),
                          precision=args.quant, checkpoint=args.checkpoint, seed=args.seed, soc=args.soc,
                          **({"calib": args.calib} if args.calib is not None else {}))


def run_build_runner(args) -> int:
    shell = Shell(dry_run=args.dry_run)
    check_flag("jobs", args.jobs)
    if args.target != "host" and (args.android or args.kernels_only):
        raise Edge4KError(f"--target {args.target} builds the runner, libedge4k and the kernels together; "
                          "leave out --android and --kernels-only")
    if args.target == "aarch64-linux":
        runner = build_aarch64_linux(args.output or "build/native-aarch64-linux", shell=shell, jobs=args.jobs) / RUNNER
    elif args.android:
        runner = build_android(args.output or ANDROID_BUILD_DIR, ndk=os.environ.get("ANDROID_NDK") or
                               os.environ.get("ANDROID_NDK_HOME"),
                               executorch_prefix=os.environ.get("EXECUTORCH_ANDROID_PREFIX"), shell=shell,
                               jobs=args.jobs, extra_libraries=os.environ.get("EDGE4K_ANDROID_EXTRA_LIBS"),
                               executorch=not args.without_executorch)
    elif args.kernels_only:
        runner = build_host(args.output or default_library_path().parent, shell=shell, jobs=args.jobs,
                            kernels_only=True) / KERNELS_LIB
    else:
        runner = build_host(args.output or "build/native-host", shell=shell, jobs=args.jobs,
                            sanitize=args.sanitize) / RUNNER
    if not args.dry_run:
        print(f"built {runner}")
    return 0


COMMANDS = {"profile": (add_profile_arguments, run_profile),
            "build-runner": (add_build_runner_arguments, run_build_runner)}
