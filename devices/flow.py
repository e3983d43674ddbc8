"""`edge4k profile --target T --device D`: compile for the target, run on the device,
bring the profile back, print the per-stage table. The Make targets
(make android-xnnpack / android-qnn / ios-coreml) wrap this.

A dry run prints every command the flow would run (adb, cmake, xcrun, edge4k) and
then still compiles the artifacts, so the plan is shown even when a step would fail."""
from __future__ import annotations

import os
import shlex
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edge4k.compiler.request import CompileRequest, compile_request, format_manifest
from edge4k.devices import ios
from edge4k.devices.adb import Adb
from edge4k.devices.android import RunOptions, profile_on_phone, qnn_library_dirs
from edge4k.devices.commands import Shell
from edge4k.devices.host import profile_on_host
from edge4k.devices.native import build_android
from edge4k.errors import DeviceNotFound, Edge4KError
from edge4k.kernels.raw import read_raw, write_bayer
from edge4k.kernels.rawcolour import ColourOptions
from edge4k.runtime.manifest import load_manifest
from edge4k.runtime.pipeline import format_table

DEVICES = ("host", "android", "ios")
ANDROID_BUILD_DIR = Path("build") / "native-android-arm64-v8a"


@dataclass
class ProfileRequest:
    target: str
    device: str
    raw_input: str
    out_dir: Path
    compile: CompileRequest | None = None   # what to compile (None: req.artifacts is a build to use)
    artifacts: Path | None = None        # a build to use instead of compiling
    run: RunOptions = field(default_factory=RunOptions)
    serial: str | None = None
    runner: str | None = None
    compute_units: str = "all"
    dry_run: bool = False
    qnn_libs: str | None = None          # android-qnn: --qnn-libs DIR[:DIR...] (else $EDGE4K_QNN_LIBS)


def profile(req: ProfileRequest, *, echo: Callable[[str], None] = print,
            progress: Callable[[str], None] = lambda msg: None) -> dict | None:
    """Run the whole flow; returns the profile (None for a dry run). progress: the compiler's."""
    if req.device not in DEVICES:
        raise Edge4KError(f"unknown device '{req.device}'; valid devices: {', '.join(DEVICES)}")
    if req.artifacts is None and req.compile is None:
        raise Edge4KError("profile needs a build to use (artifacts) or one to compile (compile)")
    shell = Shell(dry_run=req.dry_run, echo=echo)
    artifacts = req.artifacts or req.out_dir / "build"
    compile_argv = compile_command(req.compile, artifacts) if req.artifacts is None else []

    def compile_now():
        echo(format_manifest(compile_request(req.compile, artifacts, progress=progress)))
        echo(f"wrote {artifacts}")
    if req.dry_run:
        echo(f"# edge4k profile --target {req.target} --device {req.device}: dry run, commands are printed, "
             "then the artifacts are compiled")

    def build():   # in a dry run, only printed here; compiled at the very end
        if req.artifacts is not None:
            _check_build(req.artifacts, req.target)
        elif req.dry_run:
            echo("$ edge4k " + shlex.join(compile_argv))
        else:
            echo("compiling: edge4k " + shlex.join(compile_argv))
            compile_now()

    # The build comes first: with no phone (or no Mac) everything up to the push still
    # happens, and the device error says where the artifacts are.
    if req.device == "android":
        build()
        result = _android(req, shell, artifacts, echo)
    elif req.device == "ios":
        build()
        with _naming_the_build(req, artifacts):
            ios.check_host(shell)
        phones = ios.list_devices(shell)
        if not req.dry_run:
            echo("iOS devices: " + (", ".join(f"{p['name']} ({p['model']}, iOS {p['os']})" for p in phones) or "none")
                 + f"; profiling the Core ML build on this Mac with compute units '{req.compute_units}'")
        result = _host(req, shell, artifacts, echo, configure=ios.compute_units_setter(req.compute_units))
    else:
        build()
        result = _host(req, shell, artifacts, echo)
    if req.dry_run and req.artifacts is None:
        echo("compiling the artifacts (a dry run still compiles): edge4k " + shlex.join(compile_argv))
        compile_now()
    return result


def compile_command(request: CompileRequest, artifacts: Path) -> list[str]:
    """The `edge4k compile` command line that makes the same build, for the printed plan."""
    default = CompileRequest(target=request.target, preset=request.preset, width=0, height=0)
    t = request.tiling
    argv = ["compile", "--target", request.target, "--preset", request.preset, "--seed", str(request.seed)]
    argv += ["--checkpoint", str(request.checkpoint)] if request.checkpoint else []
    argv += ["--resolution", f"{request.width}x{request.height}"]
    argv += ["--native"] if t.native else [] if t.fit else ["--tile", str(t.tile)]
    argv += ["--overlap", str(t.overlap)] if not t.native and t.overlap != default.tiling.overlap else []
    argv += ["--batch", str(t.batch)] if t.batch != default.tiling.batch else []
    argv += ["--calib", str(request.calib)] if request.calib != default.calib else []
    argv += ["--quant", request.precision] if request.precision else []
    argv += ["--soc", request.soc] if request.soc else []
    return [*argv, "-o", str(artifacts)]


@contextmanager
def _naming_the_build(req: ProfileRequest, artifacts: Path):
    try:
        yield
    except DeviceNotFound as e:
        if req.dry_run:
            raise
        raise DeviceNotFound(f"{e} (the {req.target} build is ready in {artifacts})") from None


def _android(req: ProfileRequest, shell: Shell, artifacts: Path, echo) -> dict | None:
    adb = Adb(shell, serial=req.serial)
    with _naming_the_build(req, artifacts):
        adb.select()                  # no phone: DeviceNotFound, exit 2
    if not req.dry_run:
        _check_runner_runs(artifacts)
    qnn = req.target == "android-qnn"
    runner = _android_runner(req, shell, executorch=not qnn)
    sidecar = req.out_dir / "input" / "frame.json"
    if req.dry_run:
        echo(f"# decode {req.raw_input} with rawpy -> {sidecar} + {sidecar.with_suffix('.u16')}")
    else:
        # the phone gets the host's colour decisions (as-shot white or its auto fallback, CFA warning)
        colour = ColourOptions()
        write_bayer(colour.apply(read_raw(req.raw_input)), sidecar, source=req.raw_input, colour=colour.record())
    return profile_on_phone(adb, runner=runner, artifacts=artifacts, sidecar=sidecar, out_dir=req.out_dir,
                            opts=req.run, echo=echo, qnn_libs=qnn_library_dirs(req.qnn_libs) if qnn else None)


def _android_runner(req: ProfileRequest, shell: Shell, *, executorch: bool = True) -> Path:
    given = req.runner or os.environ.get("EDGE4K_ANDROID_RUNNER")
    if given:
        if not shell.dry_run and not Path(given).is_file():
            raise Edge4KError(f"runner {given} does not exist")
        return Path(given)
    # android-qnn runs on ONNX Runtime, opened at run time: that runner needs the NDK only,
    # and links ExecuTorch too when it is there.
    prefix = os.environ.get("EXECUTORCH_ANDROID_PREFIX")
    return build_android(ANDROID_BUILD_DIR, ndk=os.environ.get("ANDROID_NDK") or os.environ.get("ANDROID_NDK_HOME"),
                         executorch_prefix=prefix, shell=shell, executorch=executorch or bool(prefix),
                         extra_libraries=os.environ.get("EDGE4K_ANDROID_EXTRA_LIBS"))


def _host(req: ProfileRequest, shell: Shell, artifacts: Path, echo, configure=None) -> dict | None:
    if req.dry_run:
        echo("$ edge4k " + shlex.join(["run", req.raw_input, "-o", str(req.out_dir / "output.png"), "--backend",
                                       "<the build's backend>", "--artifacts", str(artifacts), "--runs",
                                       str(req.run.runs), "--warmup", str(req.run.warmup), "--look", req.run.look,
                                       *req.run.finishing_args(),
                                       "--profile",
                                       str(req.out_dir / "profile.json")]))
        return None
    return profile_on_host(artifacts=artifacts, raw_input=req.raw_input, out_dir=req.out_dir, runs=req.run.runs,
                           warmup=req.run.warmup, threads=req.run.threads, configure_backend=configure,
                           look=req.run.look, exposure=req.run.exposure, highlights=req.run.highlights,
                           output_space=req.run.output_space)


# Build backends the phone runner has an engine for.
RUNNER_BACKENDS = {"executorch": "ExecuTorch", "qnn-htp-sim": "ONNX Runtime + QNN"}


def _check_runner_runs(artifacts: Path) -> None:
    """Say before pushing anything when the phone runner has no engine for the build."""
    manifest = load_manifest(artifacts)
    if manifest["backend"] not in RUNNER_BACKENDS:
        raise Edge4KError(
            f"the phone runner runs ExecuTorch (android-xnnpack) and QNN (android-qnn) builds; {artifacts} is a "
            f"{manifest['target']} build for the {manifest['backend']} runtime, which this tree cannot run on a "
            "phone yet (profile it here with --device host)")


def _check_build(artifacts: Path, target: str) -> None:
    built = load_manifest(artifacts)["target"]
    if built != target:
        raise Edge4KError(f"{artifacts} was compiled for target {built}, not {target}")


def format_profile(profile: dict) -> str:
    """The per-stage table plus where it ran."""
    d = profile["device"]
    lines = [f"{d['name']} ({d['soc']}, {d['os']}): {d['backend']}/{d['delegate'] or 'cpu'}, {d['threads']} threads, "
             f"{profile['model']['preset']} {profile['model']['precision']}, {profile['tiling']['tiles']} tiles",
             format_table(profile)]
    thermal = profile.get("thermal")
    if thermal:
        lines.append("thermal: " + (("THROTTLED: " + "; ".join(thermal["evidence"])) if thermal.get("throttled")
                                    else "no throttling seen" if thermal["available"] else thermal["reason"]))
    return "\n".join(lines)
