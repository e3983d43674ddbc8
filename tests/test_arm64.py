"""The phone's binary on arm64: edge4k_runner, libedge4k.so, the kernels and the C API
test cross-compiled for arm64 Linux against the aarch64 executorch wheel
(`edge4k build-runner --target aarch64-linux`) and run here under qemu-aarch64, against
the x86 runner and the Python backend on the same builds; and the fake phone, reporting
arm64-v8a, running that runner through `make android-xnnpack`. Without the cross
toolchain or qemu these skip with one line naming the Debian package."""
import json
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from conftest import fake_phone, make_test_dng
from PIL import Image
from test_devices import ROOT, make
from test_libedge4k import run_capi_test
from test_native_runner import MIN_PSNR_DB, psnr, read_ppm16

from edge4k.cli import main
from edge4k.devices.native import (
    CAPI_TEST,
    KERNELS_LIB,
    LIBRARY,
    RUNNER,
    build_aarch64_linux,
    check_cross_toolchain,
    elf_abi,
    qemu_command,
)
from edge4k.errors import Edge4KError
from edge4k.kernels.raw import read_raw, write_bayer
from edge4k.runtime.profile import validate_profile

# Largest difference allowed between the arm64 and the x86 runner's 16-bit images. XNNPACK's
# arm64 and x86 kernels need not round alike: fp32 must stay far below one 8-bit output level,
# int8 within one (257 in 16 bits), a quantisation step of the image. Measured: 0 for both.
MAX_DIFF = {"fp32": 64, "int8": 257}


@pytest.fixture(scope="module")
def arm64(tmp_path_factory):
    """The arm64 build, once per session (this module), the wheel cached in build/."""
    pytest.importorskip("executorch")
    try:
        check_cross_toolchain()
    except Edge4KError as e:
        pytest.skip(str(e))
    return build_aarch64_linux(tmp_path_factory.mktemp("native-aarch64"), wheel_cache=ROOT / "build" / "wheels-aarch64")


def qemu(program, *args, timeout=600):
    return subprocess.run([*qemu_command(), str(program), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def builds(phone_run, sample_dng, tmp_path_factory):
    """Per precision: a build, the RAW file it renders and the decoded frame the runner reads.
    fp32 is the fake-phone run's build (the sample DNG); int8 a tiny android-xnnpack build of a
    256x256 synthetic DNG."""
    root = tmp_path_factory.mktemp("arm64-builds")
    dng = make_test_dng(root / "frame.dng", 256, 256)
    assert main(["compile", "--target", "android-xnnpack", "--preset", "e4k-t-f16", "--resolution", "256x256",
                 "--tile", "128", "--overlap", "32", "--calib", "2", "--quant", "int8", "-o", str(root / "int8")]) == 0
    out = {}
    for precision, build, raw in (("fp32", phone_run.out / "build", sample_dng), ("int8", root / "int8", dng)):
        frame = write_bayer(read_raw(raw), root / f"frame-{precision}" / "frame.json", source=raw)
        out[precision] = SimpleNamespace(build=build, raw=str(raw), frame=frame)
    return out


def test_every_binary_is_arm64_and_the_runner_links_xnnpack(arm64):
    assert {elf_abi(arm64 / name) for name in (RUNNER, LIBRARY, KERNELS_LIB, CAPI_TEST)} == {"arm64-v8a"}
    about = json.loads(qemu(arm64 / RUNNER, "--about").stdout)
    assert about["engines"] == ["executorch", "onnxruntime"] and "XnnpackBackend" in about["backends"]
    assert about["executorch"].startswith("1.5")


def write(command, case, out, *extra):
    done = subprocess.run([*command, "--artifacts", str(case.build), "--input", str(case.frame), "-o", str(out),
                           "--runs", "1", "--warmup", "0", "--idle-seconds", "0", *map(str, extra)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def render(command, case, out, *extra):
    write(command, case, out, *extra)
    return read_ppm16(out)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_arm64_runner_matches_the_x86_runner_and_python(arm64, native_build, builds, precision, tmp_path):
    case = builds[precision]
    ours = render([*qemu_command(), str(arm64 / RUNNER)], case, tmp_path / "arm64.ppm", "--profile",
                  tmp_path / "arm64.json")
    x86 = render([str(native_build / RUNNER)], case, tmp_path / "x86.ppm")
    assert ours.shape == x86.shape
    assert np.abs(ours.astype(np.int64) - x86).max() <= MAX_DIFF[precision] and psnr(ours, x86, 65535) >= MIN_PSNR_DB
    # Against Python in the neutral look: the natural look's automatic exposure is the runner's
    # own C++ against Python's (test_native_runner.py), and here only the arm64 side is in question.
    neutral = render([*qemu_command(), str(arm64 / RUNNER)], case, tmp_path / "neutral.ppm", "--look", "neutral")
    assert main(["run", case.raw, "-o", str(tmp_path / "py.tif"), "--look", "neutral", "--backend", "executorch",
                 "--artifacts", str(case.build)]) == 0
    assert psnr(neutral, tifffile.imread(tmp_path / "py.tif"), 65535) >= MIN_PSNR_DB
    profile = json.loads((tmp_path / "arm64.json").read_text())
    validate_profile(profile)
    assert profile["model"]["precision"] == precision and profile["device"]["delegate"] == "xnnpack"


def test_arm64_finishing_options_match_the_x86_runner(arm64, native_build, builds, tmp_path):
    """--exposure, --highlights reconstruct and a wide output space: the same maths on arm64 (where the
    pixel loops have no x86 clones)."""
    case = builds["fp32"]
    flags = ["--exposure", "0.5", "--highlights", "reconstruct", "--output-space", "prophoto"]
    ours = render([*qemu_command(), str(arm64 / RUNNER)], case, tmp_path / "arm64.ppm", *flags)
    x86 = render([str(native_build / RUNNER)], case, tmp_path / "x86.ppm", *flags)
    assert np.abs(ours.astype(np.int64) - x86).max() <= MAX_DIFF["fp32"]


def test_arm64_float_tiff_and_jpeg_match_the_x86_runner(arm64, native_build, builds, tmp_path):
    """The output formats' own code on arm64: the float TIFF's values, and the JPEG with its ICC
    profile and EXIF."""
    case = builds["fp32"]
    arm, x86 = [*qemu_command(), str(arm64 / RUNNER)], [str(native_build / RUNNER)]
    for command, name in ((arm, "arm64"), (x86, "x86")):
        write(command, case, tmp_path / f"{name}.tif", "--bits", "32", "--output-space", "rec2020-linear")
    ours, theirs = tifffile.imread(tmp_path / "arm64.tif"), tifffile.imread(tmp_path / "x86.tif")
    assert ours.dtype == np.float32 and np.abs(ours - theirs).max() <= MAX_DIFF["fp32"] / 65535
    for command, name in ((arm, "arm64"), (x86, "x86")):
        write(command, case, tmp_path / f"{name}.jpg", "--quality", "80", "--output-space", "display-p3")
    ours, theirs = Image.open(tmp_path / "arm64.jpg"), Image.open(tmp_path / "x86.jpg")
    assert ours.info["exif"] == theirs.info["exif"] and ours.info["icc_profile"] == theirs.info["icc_profile"]
    assert psnr(np.asarray(ours), np.asarray(theirs), 255) >= 50


def test_the_c_api_test_passes_on_arm64_and_renders_what_x86_renders(arm64, native_build, phone_run, tmp_path):
    done = qemu(arm64 / CAPI_TEST, phone_run.out / "build", 256, 192, "e4k-t-f16", tmp_path / "arm64.rgb")
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout + done.stderr
    passed = int(last.split()[1])
    assert last == f"capi_test: {passed} passed, 0 failed" and passed >= 25
    x86_done, _ = run_capi_test(native_build, phone_run.out / "build", 256, 192, "e4k-t-f16", tmp_path / "x86.rgb")
    assert x86_done.returncode == 0, x86_done.stderr
    ours, theirs = (np.fromfile(tmp_path / f"{n}.rgb", np.uint8).astype(np.int64) for n in ("arm64", "x86"))
    assert ours.size == 256 * 192 * 3 and np.abs(ours - theirs).max() <= 1


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_android_xnnpack_on_an_arm64_fake_phone_runs_the_arm64_runner(arm64, phone_run, tmp_path):
    env = fake_phone(tmp_path, FAKE_ADB_PROPS=json.dumps({"ro.product.cpu.abi": "arm64-v8a"}))
    done = make(["android-xnnpack", f"OUT={tmp_path}", f"ARTIFACTS={phone_run.out / 'build'}",
                 f"RUNNER={arm64 / RUNNER}", "RUNS=1", "WARMUP=0"], env)
    assert done.returncode == 0, done.stderr
    assert "(arm64-v8a)" in done.stdout
    validate_profile(json.loads((tmp_path / "android-xnnpack" / "profile.json").read_text()))
    # The phone ran the arm64 runner (the x86 one would not start there): its image is the x86 phone's.
    ours = np.asarray(Image.open(tmp_path / "android-xnnpack" / "output.png")).astype(np.int64)
    assert np.abs(ours - np.asarray(Image.open(phone_run.out / "output.png"))).max() <= 1


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_x86_runner_is_refused_by_an_arm64_phone(native_build, phone_run, tmp_path):
    env = fake_phone(tmp_path, FAKE_ADB_PROPS=json.dumps({"ro.product.cpu.abi": "arm64-v8a"}))
    done = make(["android-xnnpack", f"OUT={tmp_path}", f"ARTIFACTS={phone_run.out / 'build'}",
                 f"RUNNER={native_build / RUNNER}", "RUNS=1", "WARMUP=0"], env)
    assert done.returncode == 2   # make's status for a failed recipe
    assert "edge4k_runner is a x86_64 binary but the phone runs arm64-v8a" in done.stderr


def test_a_missing_cross_compiler_is_one_line_naming_the_package(monkeypatch, capsys):
    from edge4k.devices import native
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    assert main(["build-runner", "--target", "aarch64-linux", "-o", "unused"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "edge4k: error: the arm64 runner needs the aarch64-linux-gnu-g++ cross compiler: apt-get install " \
                  "crossbuild-essential-arm64"


def test_dry_run_fetches_the_aarch64_wheel_and_uses_the_toolchain_file(capsys):
    pytest.importorskip("executorch")   # the wheel's version is the installed one
    assert main(["build-runner", "--target", "aarch64-linux", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "pip download" in plan and "--platform manylinux_2_28_aarch64 " in plan and "--only-binary=:all:" in plan
    assert "cmake/aarch64-linux-gnu.cmake" in plan and "wheels-aarch64/executorch-" in plan
