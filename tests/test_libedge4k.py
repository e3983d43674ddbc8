"""libedge4k, the C library an app links (include/edge4k.h): the C test program
(tests/native/capi_test.c) and the same API from Python through ctypes, on the
ExecuTorch build of the fake-phone run. The ONNX Runtime engine's turn is in
test_native_qnn.py."""
import ctypes
import subprocess

import numpy as np
import pytest

from edge4k.devices.native import CAPI_TEST, LIBRARY
from edge4k.kernels.raw import read_raw, write_bayer

OK, INVALID_ARGUMENT, BUILD_ERROR = 0, 1, 2


def run_capi_test(native_build, build, width, height, preset, out, env=None):
    done = subprocess.run([str(native_build / CAPI_TEST), str(build), str(width), str(height), preset,
                           str(out)], capture_output=True, text=True, timeout=600, env=env)
    return done, done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def test_the_c_test_program_passes(native_build, phone_run, tmp_path):
    done, last = run_capi_test(native_build, phone_run.out / "build", 256, 192, "e4k-t-f16", tmp_path / "c.rgb")
    assert done.returncode == 0, done.stdout + done.stderr
    passed = int(last.split()[1])
    assert last == f"capi_test: {passed} passed, 0 failed" and passed >= 25
    rgb = np.fromfile(tmp_path / "c.rgb", np.uint8).reshape(192, 256, 3)
    assert rgb.std() > 1   # an image, not a constant


class Frame(ctypes.Structure):
    _fields_ = [("bayer", ctypes.POINTER(ctypes.c_uint16)), ("bayer_count", ctypes.c_size_t),
                ("width", ctypes.c_int), ("height", ctypes.c_int), ("cfa", ctypes.c_char_p),
                ("black_level", ctypes.c_double * 4), ("white_level", ctypes.c_double),
                ("wb_gains", ctypes.c_double * 3), ("srgb_from_cam", ctypes.c_double * 9),
                ("orientation", ctypes.c_int)]   # include/edge4k.h's edge4k_frame, field for field


class OpenOptions(ctypes.Structure):
    _fields_ = [("threads", ctypes.c_int), ("expect_preset", ctypes.c_char_p), ("look", ctypes.c_char_p)]


class Finishing(ctypes.Structure):
    _fields_ = [("exposure_ev", ctypes.c_double), ("highlights", ctypes.c_char_p), ("output_space", ctypes.c_char_p)]


@pytest.fixture(scope="module")
def lib(native_build):
    lib = ctypes.CDLL(str(native_build / LIBRARY))
    lib.edge4k_last_error.restype = ctypes.c_char_p
    lib.edge4k_version.restype = ctypes.c_char_p
    lib.edge4k_profile_json.restype = ctypes.c_char_p
    lib.edge4k_output_bytes.restype = ctypes.c_size_t
    lib.edge4k_output_bytes.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.edge4k_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(OpenOptions), ctypes.POINTER(ctypes.c_void_p)]
    lib.edge4k_render.argtypes = [ctypes.c_void_p, ctypes.POINTER(Frame), ctypes.c_int, ctypes.c_void_p,
                                  ctypes.c_size_t]
    lib.edge4k_profile_json.argtypes = [ctypes.c_void_p]
    lib.edge4k_close.argtypes = [ctypes.c_void_p]
    lib.edge4k_set_finishing.argtypes = [ctypes.c_void_p, ctypes.POINTER(Finishing)]
    lib.edge4k_icc_profile.restype = ctypes.c_void_p
    lib.edge4k_icc_profile.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
    return lib


def c_frame(raw, bayer):
    f = Frame(bayer.ctypes.data_as(ctypes.POINTER(ctypes.c_uint16)), bayer.size, raw.width, raw.height,
              raw.cfa.encode(), (ctypes.c_double * 4)(*raw.black_level), float(raw.white_level),
              (ctypes.c_double * 3)(*raw.wb_gains), (ctypes.c_double * 9)(*np.ravel(raw.srgb_from_cam)),
              raw.orientation)
    f._keep = bayer   # the buffer must outlive the struct
    return f


@pytest.fixture
def runner(lib, phone_run):
    handle = ctypes.c_void_p()
    assert lib.edge4k_open(str(phone_run.out / "build").encode(), OpenOptions(1, b"e4k-t-f16"),
                           ctypes.byref(handle)) == OK, lib.edge4k_last_error()
    yield handle
    lib.edge4k_close(handle)


def test_ctypes_render_equals_the_runner_cli(lib, runner, phone_run, sample_dng, tmp_path):
    raw = read_raw(sample_dng)
    bayer = np.ascontiguousarray(raw.bayer, np.uint16)
    out = np.zeros((raw.height, raw.width, 3), np.uint16)
    assert lib.edge4k_output_bytes(raw.width, raw.height, 16) == out.nbytes
    status = lib.edge4k_render(runner, ctypes.byref(c_frame(raw, bayer)), 16, out.ctypes.data, out.nbytes)
    assert status == OK, lib.edge4k_last_error()
    # The CLI over the same library, from the Bayer buffer the host hands a phone.
    sidecar = write_bayer(raw, tmp_path / "frame.json", source=sample_dng)
    done = subprocess.run([str(phone_run.runner), "--artifacts", str(phone_run.out / "build"), "--input", str(sidecar),
                           "-o", str(tmp_path / "cli.tif")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    import tifffile
    np.testing.assert_array_equal(out, tifffile.imread(tmp_path / "cli.tif"))
    import json
    profile = json.loads(lib.edge4k_profile_json(runner))
    assert profile["timing"]["runs"] == 1 and profile["model"]["preset"] == "e4k-t-f16"
    assert profile["stages"]["decoder"] == {"engine": "executorch", "accelerator": "xnnpack",
                                            "ops_outside_delegate": {}}


def test_ctypes_float_render_is_the_16_bit_render_unquantised(lib, runner, sample_dng):
    """bits 32 (API level 3): the finished float32 values the 16-bit image is rounded from."""
    raw = read_raw(sample_dng)
    frame = c_frame(raw, np.ascontiguousarray(raw.bayer, np.uint16))
    floats = np.zeros((raw.height, raw.width, 3), np.float32)
    ints = np.zeros((raw.height, raw.width, 3), np.uint16)
    assert lib.edge4k_output_bytes(raw.width, raw.height, 32) == floats.nbytes == 2 * ints.nbytes
    for out, bits in ((floats, 32), (ints, 16)):
        assert lib.edge4k_render(runner, ctypes.byref(frame), bits, out.ctypes.data, out.nbytes) == OK, \
            lib.edge4k_last_error()
    assert floats.std() > 0.01 and 0 <= floats.min() and floats.max() <= 1
    np.testing.assert_array_equal(np.round(floats * np.float32(65535)), ints)   # float32, half to even, as quantise()


@pytest.mark.parametrize("change, status, needle", [
    ("cfa", INVALID_ARGUMENT, "CFA 'XTRANS' is not a 2x2 Bayer pattern"),
    ("count", INVALID_ARGUMENT, "frame.bayer_count is 1000 samples, but a 512x512 frame has 262144"),
    ("zero", INVALID_ARGUMENT, "frame size is zero"),
    ("bits", INVALID_ARGUMENT, "bits must be 8, 16 or 32 (float), got 10"),
    ("small", BUILD_ERROR, "is smaller than one 128x128 tile of this build"),
])
def test_ctypes_bad_input_is_a_status_and_one_line(lib, runner, sample_dng, change, status, needle):
    raw = read_raw(sample_dng)
    bayer = np.ascontiguousarray(raw.bayer, np.uint16)
    frame, bits = c_frame(raw, bayer), 8
    if change == "cfa":
        frame.cfa = b"XTRANS"
    elif change == "count":
        frame.bayer_count = 1000
    elif change == "zero":
        frame.width = frame.height = 0
    elif change == "bits":
        bits = 10
    else:
        small = np.ascontiguousarray(bayer[:64, :64])
        frame = c_frame(raw, small)
        frame.width = frame.height = 64
    out = np.full(raw.height * raw.width * 3, 7, np.uint8)
    size = lib.edge4k_output_bytes(frame.width, frame.height, 8) or out.nbytes
    assert lib.edge4k_render(runner, ctypes.byref(frame), bits, out.ctypes.data, size) == status
    message = lib.edge4k_last_error().decode()
    assert needle in message and "\n" not in message
    assert (out == 7).all()   # nothing written


def test_ctypes_open_refuses_another_preset_and_null(lib, phone_run):
    handle = ctypes.c_void_p()
    assert lib.edge4k_open(str(phone_run.out / "build").encode(), OpenOptions(0, b"e4k-s-f16"),
                           ctypes.byref(handle)) == BUILD_ERROR
    assert "is a build of preset e4k-t-f16, not e4k-s-f16" in lib.edge4k_last_error().decode()
    assert not handle.value
    assert lib.edge4k_open(None, None, ctypes.byref(handle)) == INVALID_ARGUMENT
    assert lib.edge4k_version().decode() == "0.1.0"


def test_ctypes_finishing_equals_the_runner_cli_and_embeds_its_profile(lib, runner, phone_run, sample_dng, tmp_path):
    """edge4k_set_finishing: the runner CLI's --exposure, --highlights and --output-space (tested against
    Python in test_native_runner.py), and edge4k_icc_profile the space's profile as Python writes it."""
    import tifffile

    from edge4k.kernels.colourspace import icc_profile
    raw = read_raw(sample_dng)
    bayer = np.ascontiguousarray(raw.bayer, np.uint16)
    options = Finishing(0.7, b"reconstruct", b"adobe-rgb")
    assert lib.edge4k_set_finishing(runner, ctypes.byref(options)) == OK, lib.edge4k_last_error()
    out = np.zeros((raw.height, raw.width, 3), np.uint16)
    assert lib.edge4k_render(runner, ctypes.byref(c_frame(raw, bayer)), 16, out.ctypes.data, out.nbytes) == OK
    size = ctypes.c_size_t()
    icc = ctypes.string_at(lib.edge4k_icc_profile(runner, ctypes.byref(size)), size.value)
    assert icc == icc_profile("adobe-rgb")
    sidecar = write_bayer(raw, tmp_path / "frame.json", source=sample_dng)
    done = subprocess.run([str(phone_run.runner), "--artifacts", str(phone_run.out / "build"), "--input", str(sidecar),
                           "-o", str(tmp_path / "cli.tif"), "--exposure", "0.7", "--highlights", "reconstruct",
                           "--output-space", "adobe-rgb"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(out, tifffile.imread(tmp_path / "cli.tif"))
    import json
    output = json.loads(lib.edge4k_profile_json(runner))["output"]
    assert output["output_space"] == "adobe-rgb" and output["colour"] == {"exposure_ev": 0.7, "highlights": "reconstruct"}
    # back to the defaults: a zeroed struct; sRGB has no profile to embed
    assert lib.edge4k_set_finishing(runner, ctypes.byref(Finishing())) == OK
    assert lib.edge4k_icc_profile(runner, ctypes.byref(size)) is None and size.value == 0


@pytest.mark.parametrize("options, needle", [
    (Finishing(10.5, None, None), "exposure must be within -10..+10 EV, got 10.5"),
    (Finishing(0, b"blend", None), "unknown highlight mode 'blend'; valid: clip, reconstruct"),
    (Finishing(0, None, b"p3"), "unknown output space 'p3'; valid: srgb, display-p3"),
])
def test_ctypes_bad_finishing_is_a_status_and_one_line_and_changes_nothing(lib, runner, options, needle):
    kept = Finishing(1.0, None, b"prophoto")
    assert lib.edge4k_set_finishing(runner, ctypes.byref(kept)) == OK
    assert lib.edge4k_set_finishing(runner, ctypes.byref(options)) == INVALID_ARGUMENT
    message = lib.edge4k_last_error().decode()
    assert needle in message and "\n" not in message
    size = ctypes.c_size_t()
    from edge4k.kernels.colourspace import icc_profile
    assert ctypes.string_at(lib.edge4k_icc_profile(runner, ctypes.byref(size)), size.value) == icc_profile("prophoto")
    assert lib.edge4k_set_finishing(runner, None) == INVALID_ARGUMENT


def test_ctypes_refuses_a_wide_space_at_8_bits(lib, runner, sample_dng):
    raw = read_raw(sample_dng)
    bayer = np.ascontiguousarray(raw.bayer, np.uint16)
    assert lib.edge4k_set_finishing(runner, ctypes.byref(Finishing(0, None, b"rec2020-linear"))) == OK
    out = np.full(raw.height * raw.width * 3, 7, np.uint8)
    assert lib.edge4k_render(runner, ctypes.byref(c_frame(raw, bayer)), 8, out.ctypes.data, out.nbytes) == INVALID_ARGUMENT
    assert "output space rec2020-linear needs a 16-bit image" in lib.edge4k_last_error().decode()
    assert (out == 7).all()
