"""Building the native runner and libedge4k (runtime/native, C++17 + CMake) for this
host, for arm64 Linux (cross-compiled, run under qemu here) or for an Android phone,
and checking that a runner binary suits a device's CPU.

The sources ship inside the package (edge4k/runtime/native, edge4k/kernels/native),
so an installed edge4k can build its runner too."""

import importlib.util
import os
import shutil
import sys
import tempfile
import zipfile
from importlib import metadata, resources
from pathlib import Path

from edge4k.devices.commands import Shell
from edge4k.errors import Edge4KError
from edge4k.optional import missing

RUNNER = "edge4k_runner"
LIBRARY = "libedge4k.so"              # the C API (include/edge4k.h) an app links
KERNELS_LIB = "libedge4k_kernels.so"
CAPI_TEST = "edge4k_capi_test"
ANDROID_ABI = "arm64-v8a"
ANDROID_PLATFORM = "android-28"
# ELF e_machine values, and the Android ABI names (ro.product.cpu.abi) they run on.
ELF_MACHINES = {62: "x86_64", 183: "arm64-v8a", 40: "armeabi-v7a", 3: "x86"}
# arm64 Linux (glibc), cross-compiled with Debian's crossbuild-essential-arm64 against the
# executorch wheel for manylinux_2_28_aarch64, and run here under qemu-aarch64.
AARCH64_WHEEL_PLATFORM = "manylinux_2_28_aarch64"
AARCH64_WHEELS = Path("build") / "wheels-aarch64"


def source_dir() -> Path:
    return Path(str(resources.files("edge4k.runtime").joinpath("native")))


def _cmake() -> str:
    cmake = shutil.which("cmake")
    if not cmake:
        raise Edge4KError("cmake not found on PATH; the native runner needs CMake >= 3.19 "
                          "(apt-get install cmake, or pip install cmake)")
    return cmake


def executorch_cmake_dir() -> Path:
    """The executorch pip wheel's CMake package (lib/cmake/executorch)."""
    try:
        import executorch
    except ImportError as e:
        raise missing("building the host runner", "executorch", e) from None
    path = Path(executorch.__path__[0]) / "lib" / "cmake" / "executorch"
    if not (path / "executorch-config.cmake").is_file():
        raise Edge4KError(f"this executorch install has no CMake package at {path}")
    return path


def nlohmann_include() -> Path:
    """The folder holding nlohmann/json.hpp: the nlohmann-json wheel's include/."""
    spec = importlib.util.find_spec("nlohmann_json")
    if spec is None or not spec.submodule_search_locations:
        raise Edge4KError("building the native runner needs nlohmann/json's header: pip install nlohmann-json==3.12.0 "
                          "(make setup installs it)")
    include = Path(list(spec.submodule_search_locations)[0]) / "include"
    if not (include / "nlohmann" / "json.hpp").is_file():
        raise Edge4KError(f"the nlohmann-json install has no {include / 'nlohmann' / 'json.hpp'}")
    return include


def host_onnxruntime() -> dict[str, Path]:
    """This host's ONNX Runtime and QNN execution provider, from the onnxruntime and
    onnxruntime-qnn wheels: what the runner opens for android-qnn builds here."""
    found = {}
    for key, module, pattern in (("onnxruntime", "onnxruntime", "capi/libonnxruntime.so*"),
                                 ("qnn_ep", "onnxruntime_qnn", "libonnxruntime_providers_qnn.so")):
        spec = importlib.util.find_spec(module)
        hits = sorted(Path(list(spec.submodule_search_locations)[0]).glob(pattern)) if spec else []
        if not hits:
            raise Edge4KError(f"running android-qnn builds here needs the {module} wheel's {pattern}: "
                              "pip install 'edge4k[qnn]'")
        found[key] = hits[0]
    return found


def build_host(build_dir: str | os.PathLike, *, shell: Shell | None = None, jobs: int = 2,
               kernels_only: bool = False, sanitize: bool = False) -> Path:
    """Configure and build libedge4k, the runner, the C API test and the kernels library
    against the executorch wheel. Incremental: a second call only rebuilds what changed.
    sanitize: with AddressSanitizer and UndefinedBehaviorSanitizer (CMake's EDGE4K_SANITIZE)."""
    shell = shell or Shell()
    build_dir = Path(build_dir)
    flags = [f"-DEDGE4K_BUILD_RUNNER={'OFF' if kernels_only else 'ON'}",
             f"-DEDGE4K_SANITIZE={'ON' if sanitize else 'OFF'}"]
    if not kernels_only:
        flags += [f"-Dexecutorch_DIR={executorch_cmake_dir()}", f"-DEDGE4K_NLOHMANN_INCLUDE={nlohmann_include()}"]
    _configure_and_build(shell, build_dir, flags, jobs)
    if not kernels_only and not shell.dry_run:
        link_host_onnxruntime(build_dir)
    return build_dir


def link_host_onnxruntime(build_dir: str | os.PathLike) -> dict[str, Path]:
    """The runner opens ONNX Runtime from its own lib/ folder among others (engine_ort.cc): link
    there the onnxruntime wheel's capi/libonnxruntime.so.<version> (as libonnxruntime.so) and the
    onnxruntime-qnn wheel's QNN execution provider, so that a host runner runs android-qnn builds
    with no environment variable. A wheel that is not installed is left out."""
    lib, linked = Path(build_dir) / "lib", {}
    for name, module, pattern in (("libonnxruntime.so", "onnxruntime", "capi/libonnxruntime.so*"),
                                  ("libonnxruntime_providers_qnn.so", "onnxruntime_qnn", "libonnxruntime_providers_qnn.so")):
        spec = importlib.util.find_spec(module)
        hits = sorted(Path(list(spec.submodule_search_locations)[0]).glob(pattern)) if spec else []
        if not hits:
            continue
        lib.mkdir(parents=True, exist_ok=True)
        link = lib / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(hits[0].resolve())
        linked[name] = link
    return linked


def build_android(build_dir: str | os.PathLike, *, ndk: str | None, executorch_prefix: str | None,
                  shell: Shell | None = None, jobs: int = 2, extra_libraries: str | None = None,
                  executorch: bool = True) -> Path:
    """Cross-compile the runner and libedge4k.so (the library an app packages) for arm64
    Android with the NDK. With executorch, against ExecuTorch built from source and
    installed at executorch_prefix; without, a runner for android-qnn builds only
    (ONNX Runtime is opened at run time), which needs the NDK alone. README:
    "Profiling on a phone"."""
    shell = shell or Shell()
    needed = [("ANDROID_NDK", ndk)] + ([("EXECUTORCH_ANDROID_PREFIX", executorch_prefix)] if executorch else [])
    missing = [name for name, value in needed if not value]
    if missing and not shell.dry_run:
        raise Edge4KError(f"no runner for the phone: set {' and '.join(missing)} to build one (README, "
                          "'Profiling on a phone'), or pass --runner / EDGE4K_ANDROID_RUNNER with a built one")
    ndk, prefix = ndk or "<ANDROID_NDK>", executorch_prefix or "<EXECUTORCH_ANDROID_PREFIX>"
    toolchain = Path(ndk) / "build" / "cmake" / "android.toolchain.cmake"
    if not shell.dry_run and not toolchain.is_file():
        raise Edge4KError(f"ANDROID_NDK={ndk} has no build/cmake/android.toolchain.cmake; point it at an Android NDK")
    flags = [f"-DCMAKE_TOOLCHAIN_FILE={toolchain}", f"-DANDROID_ABI={ANDROID_ABI}",
             f"-DANDROID_PLATFORM={ANDROID_PLATFORM}", "-DANDROID_STL=c++_static",
             f"-DEDGE4K_NLOHMANN_INCLUDE={nlohmann_include()}"]
    flags += [f"-DEDGE4K_EXECUTORCH_PREFIX={prefix}"] if executorch else ["-DEDGE4K_WITH_EXECUTORCH=OFF"]
    if extra_libraries:
        flags.append(f"-DEDGE4K_EXTRA_LIBRARIES={extra_libraries}")
    _configure_and_build(shell, Path(build_dir), flags, jobs, targets=[RUNNER, "edge4k"])
    return Path(build_dir) / RUNNER


def aarch64_wheel(package: str, cache: str | os.PathLike = AARCH64_WHEELS, *, shell: Shell | None = None) -> Path:
    """The aarch64 Linux wheel of `package`, at the version installed here, unpacked in
    cache/<package>-<version> (fetched once with pip download)."""
    shell = shell or Shell()
    try:
        version = metadata.version(package).split("+")[0]   # PyPI has no local labels (+cpu)
    except metadata.PackageNotFoundError:
        raise Edge4KError(f"the arm64 build takes {package}'s version from this install: pip install {package}") from None
    cache = Path(cache).absolute()   # CMake reads relative paths from its build folder
    target = cache / f"{package}-{version}"
    if shell.dry_run:
        shell.run(_pip_download(package, version, cache), timeout=600, what="fetch the wheel")
        return target
    if (target / ".unpacked").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        shell.run(_pip_download(package, version, Path(tmp)), timeout=600,
                  what=f"fetch the {package} {version} wheel for {AARCH64_WHEEL_PLATFORM}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise Edge4KError(f"pip download of {package}=={version} for {AARCH64_WHEEL_PLATFORM} gave {len(wheels)} wheels")
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheels[0]) as whl:
            whl.extractall(unpacked)
        (unpacked / ".unpacked").write_text(wheels[0].name + "\n")
        try:
            unpacked.rename(target)
        except OSError:
            if not (target / ".unpacked").is_file():   # else another build unpacked it meanwhile
                raise
    return target


def _pip_download(package: str, version: str, dest: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet", f"{package}=={version}",
            "--platform", AARCH64_WHEEL_PLATFORM, "--python-version", f"{sys.version_info[0]}{sys.version_info[1]}",
            "--only-binary=:all:", "--no-deps", "-d", str(dest)]


def check_cross_toolchain() -> None:
    """One line naming the Debian package for the first thing the arm64 build or its
    emulation lacks. The programs run on Debian's arm64 multiarch libraries (which
    zlib1g-dev:arm64 brings), not on the cross compiler's copy in /usr/aarch64-linux-gnu:
    that loader with the multiarch libc (another build of glibc) hangs in pthread_create."""
    multiarch = Path("/usr/lib/aarch64-linux-gnu")
    needs = [(shutil.which("aarch64-linux-gnu-g++"), "the aarch64-linux-gnu-g++ cross compiler",
              "crossbuild-essential-arm64"),
             (shutil.which("qemu-aarch64"), "qemu-aarch64", "qemu-user"),
             ((multiarch / "libz.a").is_file(), "arm64 zlib",
              "zlib1g-dev:arm64 (after dpkg --add-architecture arm64 && apt-get update)"),
             ((multiarch / "libstdc++.so.6").exists(), "the arm64 C++ runtime", "libstdc++6:arm64")]
    for found, what, package in needs:
        if not found:
            raise Edge4KError(f"the arm64 runner needs {what}: apt-get install {package}")


def build_aarch64_linux(build_dir: str | os.PathLike, *, shell: Shell | None = None, jobs: int = 2,
                        wheel_cache: str | os.PathLike = AARCH64_WHEELS) -> Path:
    """Cross-compile the runner, libedge4k.so, the C API test and the kernels library for
    arm64 Linux (glibc) against the aarch64 executorch wheel's CMake package: the phone's
    sources and flags (NEON paths; the x86-only target_clones are guarded out), run here
    under qemu_command()."""
    shell = shell or Shell()
    if not shell.dry_run:
        check_cross_toolchain()
    executorch = aarch64_wheel("executorch", wheel_cache, shell=shell)
    flags = [f"-DCMAKE_TOOLCHAIN_FILE={source_dir() / 'cmake' / 'aarch64-linux-gnu.cmake'}",
             f"-Dexecutorch_DIR={executorch / 'executorch' / 'lib' / 'cmake' / 'executorch'}",
             f"-DEDGE4K_NLOHMANN_INCLUDE={nlohmann_include()}"]
    _configure_and_build(shell, Path(build_dir), flags, jobs)
    return Path(build_dir)


def qemu_command() -> list[str]:
    """The command prefix that runs an arm64 Linux program on this host, on the arm64
    multiarch libraries, with the Armv8/v9 extensions qemu has (dot product, I8MM, SVE2)
    but SME: under qemu 7.2's SME the int8 network's image moves far from x86's (PSNR
    16 dB), while without it, and on cortex-a72/a76/neoverse-n1, it is bit for bit x86's
    (README, "Profiling on a phone")."""
    return ["qemu-aarch64", "-cpu", "max,sme=off"]


def _configure_and_build(shell: Shell, build_dir: Path, flags: list[str], jobs: int,
                         targets: list[str] | None = None) -> None:
    cmake = "cmake" if shell.dry_run else _cmake()
    shell.run([cmake, "-S", str(source_dir()), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release", *flags],
              timeout=300, what="configure the native runner (cmake)")
    build = [cmake, "--build", str(build_dir), "-j", str(jobs)]
    for t in targets or []:
        build += ["--target", t]
    shell.run(build, timeout=1200, what="build the native runner")


def elf_abi(path: str | os.PathLike) -> str | None:
    """The Android ABI name an ELF binary runs on, or None if it is not ELF."""
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_MACHINES.get(machine, f"ELF machine {machine}")
