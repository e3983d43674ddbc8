"""Profiling on an adb-connected Android phone with the native runner: push the
runner, the build, the input and (android-qnn) ONNX Runtime plus QAIRT's libraries
to /data/local/tmp/edge4k, run, pull the profile and the image back, clean up.
Everything that can be checked is checked before the first change to the phone;
host files change only when everything came back: pulled files land in a staging
folder and are renamed into place at the end."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge4k.devices.adb import Adb
from edge4k.devices.native import RUNNER, elf_abi
from edge4k.errors import Edge4KError
from edge4k.files import sha256_file
from edge4k.kernels.colourspace import get_space
from edge4k.kernels.rawcolour import ColourOptions
from edge4k.runtime.manifest import MANIFEST
from edge4k.runtime.profile import validate_profile

REMOTE = "/data/local/tmp/edge4k"
PROPS = {"model": "ro.product.model", "manufacturer": "ro.product.manufacturer", "soc": "ro.soc.model",
         "platform": "ro.board.platform", "android": "ro.build.version.release", "abi": "ro.product.cpu.abi"}


# ADSP_LIBRARY_PATH: where the Hexagon DSP loads Skel libraries from, our lib/ first
# (';'-separated, the FastRPC convention), then the system's own locations.
ADSP_SYSTEM_DIRS = ("/system/lib/rfsa/adsp", "/system/vendor/lib/rfsa/adsp", "/dsp")
QNN_LIBS_ENV = "EDGE4K_QNN_LIBS"


@dataclass
class RunOptions:
    runs: int = 10
    warmup: int = 3
    threads: int | None = None
    idle_seconds: float = 2.0
    look: str = "natural"        # finishing (kernels/postprocess.py: LOOKS)
    exposure: float = 0.0        # --exposure: stops on top of the look (kernels/rawcolour.py: ColourOptions)
    highlights: str = "clip"     # --highlights (kernels/postprocess.py: HIGHLIGHT_MODES)
    output_space: str = "srgb"   # --output-space (kernels/colourspace.py: OUTPUT_SPACES)
    timeout: float = 1800.0      # the whole on-phone run


    def __post_init__(self):   # bad finishing values: one line, before anything runs
        ColourOptions(exposure=self.exposure, highlights=self.highlights)
        get_space(self.output_space)

    def finishing_args(self) -> list[str]:
        """The finishing beyond the look as the runner's (and `edge4k run`'s) flags, with 16 bits for
        the spaces that band at 8."""
        args = ["--exposure", repr(float(self.exposure)), "--highlights", self.highlights,
                "--output-space", self.output_space]
        return args + (["--bits", "16"] if get_space(self.output_space).min_bits > 8 else [])


def phone_info(adb: Adb) -> dict[str, str]:
    info = {key: adb.getprop(prop) for key, prop in PROPS.items()}
    info["soc"] = info["soc"] or info["platform"]
    return info


def _read_manifest(artifacts: Path) -> dict:
    try:
        manifest = json.loads((artifacts / MANIFEST).read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise Edge4KError(f"{artifacts}/{MANIFEST} is not valid JSON: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(manifest, dict):
        raise Edge4KError(f"{artifacts}/{MANIFEST} is not a build manifest")
    return manifest


def build_files(artifacts: Path) -> list[Path]:
    """manifest.json and every stage file it names: what the runner reads."""
    manifest = _read_manifest(artifacts)
    try:
        names = dict.fromkeys([MANIFEST] + [str(s["file"]) for s in manifest["stages"].values()])
    except (KeyError, TypeError, AttributeError):
        raise Edge4KError(f"{artifacts}/{MANIFEST} does not list its stage files; recompile it") from None
    missing = [n for n in names if not (artifacts / n).is_file()]
    if missing:
        raise Edge4KError(f"{artifacts} is missing {', '.join(missing)}; recompile it")
    return [artifacts / n for n in names]


def qnn_required_files(abi: str, htp_arch: int) -> list[str]:
    """What a phone of this ABI needs beside the runner to run an android-qnn build:
    ONNX Runtime with the QNN execution provider and QAIRT's HTP libraries. An x86-64
    "phone" (an emulator, or the tests' fake one) runs QAIRT's x86 HTP emulation,
    which needs no DSP-side Stub/Skel pair but the QNN EP as a plugin library."""
    if abi == "x86_64":
        return ["libonnxruntime.so", "libonnxruntime_providers_qnn.so", "libQnnHtp.so", "libQnnSystem.so"]
    return ["libonnxruntime.so", "libQnnHtp.so", "libQnnSystem.so", f"libQnnHtpV{htp_arch}Stub.so",
            f"libQnnHtpV{htp_arch}Skel.so"]


def qnn_library_dirs(given: str | None) -> list[Path]:
    """--qnn-libs DIR[:DIR...], else $EDGE4K_QNN_LIBS."""
    value = given or os.environ.get(QNN_LIBS_ENV) or ""
    return [Path(p) for p in value.split(os.pathsep) if p]


def qairt_version(library: Path) -> str | None:
    """The QAIRT release a QNN library belongs to, from the version string QAIRT's
    libraries carry (AISW_VERSION: 2.51.0); None if it has none."""
    with open(library, "rb") as f:
        found = re.search(rb"AISW_VERSION: ?(\d+\.\d+\.\d+)", f.read())
    return found.group(1).decode() if found else None


def check_qnn_phone(manifest: dict, info: dict[str, str], lib_dirs: list[Path], serial: str) -> list[Path]:
    """Everything an android-qnn run needs, checked before anything is pushed: the
    phone's SoC is the build's, every library is there, QAIRT's version is the
    build's. Returns the libraries to push (each file of the folders, by name)."""
    qnn = manifest["qnn"]
    if info["soc"] and info["soc"].upper() != qnn["soc"].upper():
        raise Edge4KError(f"the build holds context binaries for {qnn['soc']} ({qnn['device']}), but phone {serial} "
                          f"reports ro.soc.model={info['soc']}; recompile with --soc {info['soc']}")
    required = qnn_required_files(info["abi"], qnn["htp_arch"])
    if not lib_dirs:
        raise Edge4KError(f"android-qnn on a phone needs ONNX Runtime for Android and QAIRT {qnn['qairt']}'s libraries: "
                          f"pass --qnn-libs DIR (or set {QNN_LIBS_ENV}) holding {', '.join(required)} "
                          "(README, 'Profiling on a phone')")
    files: dict[str, Path] = {}
    for d in lib_dirs:
        for f in sorted(d.glob("lib*.so*")):
            files.setdefault(f.name, f)
    missing = [name for name in required if name not in files]
    if missing:
        where = os.pathsep.join(map(str, lib_dirs))
        raise Edge4KError(f"{where} lacks {', '.join(missing)}, needed on {serial} ({info['abi']}, "
                          f"{qnn['soc']} HTP v{qnn['htp_arch']}); nothing was pushed")
    found = qairt_version(files["libQnnHtp.so"])
    if found is not None and found != qnn["qairt"]:
        raise Edge4KError(f"the build's context binaries were made with QAIRT {qnn['qairt']}, but "
                          f"{files['libQnnHtp.so']} is QAIRT {found}; use the libraries of QAIRT {qnn['qairt']} "
                          "or recompile with that version")
    return list(files.values())


def runner_libraries(runner: Path) -> list[Path]:
    """Shared libraries to push beside the runner: <runner dir>/lib/*.so and, for
    delegates such as QNN, every .so in EDGE4K_ANDROID_LIBS."""
    dirs = [runner.parent / "lib"] + [Path(p) for p in os.environ.get("EDGE4K_ANDROID_LIBS", "").split(os.pathsep) if p]
    return sorted(p for d in dirs if d.is_dir() for p in d.glob("*.so"))


def profile_on_phone(adb: Adb, *, runner: Path, artifacts: Path, sidecar: Path, out_dir: Path,
                     opts: RunOptions, echo=print, qnn_libs: list[Path] | None = None) -> dict | None:
    """Run the build on the phone; returns the pulled profile (None in a dry run).
    qnn_libs: for an android-qnn build, the folders holding ONNX Runtime and QAIRT's
    libraries (None for other builds)."""
    dry = adb.shell.dry_run
    serial = adb.select()
    info = phone_info(adb)
    extra_libs: list[Path] = []
    if qnn_libs is not None and dry:
        extra_libs = [p for d in qnn_libs for p in sorted(d.glob("lib*.so*"))] or [Path("<--qnn-libs DIR>/lib*.so")]
    if not dry:
        echo(f"phone {serial}: {info['manufacturer']} {info['model']}, SoC {info['soc']}, Android {info['android']} "
             f"({info['abi']})")
        if qnn_libs is not None:
            manifest = _read_manifest(artifacts)
            extra_libs = check_qnn_phone(manifest, info, qnn_libs, serial)
        abi = elf_abi(runner)
        if abi != info["abi"] and not (abi == "armeabi-v7a" and info["abi"].startswith("arm")):
            raise Edge4KError(f"{runner} is a {abi or 'non-ELF'} binary but the phone runs {info['abi']}; build the "
                              "runner for the phone (ANDROID_NDK + EXECUTORCH_ANDROID_PREFIX, see README)")
    if dry and not (artifacts / MANIFEST).is_file():
        files = [artifacts / MANIFEST, artifacts / "<stage files>"]
    else:
        files = build_files(artifacts)
    libs = runner_libraries(runner) + extra_libs
    data = sidecar.with_suffix(".u16")
    q = shlex.quote
    adb.sh(f"rm -rf {REMOTE} && mkdir -p {REMOTE}/build {REMOTE}/input {REMOTE}/out {REMOTE}/lib",
           what="prepare the phone's work folder")
    try:
        adb.push(runner, f"{REMOTE}/{RUNNER}")
        for lib in libs:
            adb.push(lib, f"{REMOTE}/lib/{lib.name}")
        for f in files:
            adb.push(f, f"{REMOTE}/build/{f.name}")
        adb.push(sidecar, f"{REMOTE}/input/frame.json")
        adb.push(data, f"{REMOTE}/input/frame.u16")
        adb.sh(f"chmod 755 {REMOTE}/{RUNNER}", what="make the runner executable")
        args = ["--artifacts", "build", "--input", "input/frame.json", "-o", "out/output.png",
                "--profile", "out/profile.json", "--runs", str(opts.runs), "--warmup", str(opts.warmup),
                "--idle-seconds", str(opts.idle_seconds), "--look", opts.look, *opts.finishing_args()] + \
            (["--threads", str(opts.threads)] if opts.threads else [])
        adsp = ";".join((f"{REMOTE}/lib",) + ADSP_SYSTEM_DIRS)
        command = (f"cd {REMOTE} && LD_LIBRARY_PATH={REMOTE}/lib ADSP_LIBRARY_PATH={q(adsp)} "
                   f"./{RUNNER} {' '.join(q(a) for a in args)}; echo edge4k-exit=$?")
        done = adb.sh(command, what="run the pipeline on the phone", timeout=opts.timeout)
        if dry:
            adb.pull(f"{REMOTE}/out/profile.json", out_dir / "profile.json")
            adb.pull(f"{REMOTE}/out/output.png", out_dir / "output.png")
            return None
        status = [l for l in done.stdout.splitlines() if l.startswith("edge4k-exit=")]
        if not status:
            raise Edge4KError(f"phone {serial} disconnected during the run (no exit status came back)")
        if status[-1] != "edge4k-exit=0":
            said = [l for l in (done.stderr + "\n" + done.stdout).splitlines() if "error" in l]
            raise Edge4KError(f"the runner failed on {serial}: " + (said[-1].strip() if said else status[-1]))
        return _pull_results(adb, out_dir, validate_profile)
    finally:
        try:
            adb.sh(f"rm -rf {REMOTE}", what="clean up the phone", check=False)
        except Edge4KError:
            pass   # the phone is gone; the error that got us here is the one to report


def _pull_results(adb: Adb, out_dir: Path, validate) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=out_dir))
    try:
        adb.pull(f"{REMOTE}/out/profile.json", staging / "profile.json")
        adb.pull(f"{REMOTE}/out/output.png", staging / "output.png")
        try:
            profile = json.loads((staging / "profile.json").read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as e:   # not JSON, not UTF-8, or nested past Python's stack
            raise Edge4KError(f"the profile pulled from the phone is not valid JSON: "
                              f"{str(e).splitlines()[0][:200]}") from None
        validate(profile)
        if sha256_file(staging / "output.png") != profile["output"]["sha256"]:
            raise Edge4KError("the image pulled from the phone does not match the sha256 in its profile")
        for name in ("output.png", "profile.json"):
            os.chmod(staging / name, 0o644)
            os.replace(staging / name, out_dir / name)
        return profile
    finally:
        shutil.rmtree(staging, ignore_errors=True)
