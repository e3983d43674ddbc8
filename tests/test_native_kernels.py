"""The C++ kernels (kernels/native, what the phone runner executes) against the
Python ones, called through the kernels library's C ABI: pack, orientation and
quantise bit-exact; thumbnail, blending and finishing to float32 rounding; the
frontend's noise estimate, exposure and meta vector to double rounding; tile plans
identical."""
import ctypes

import numpy as np
import pytest
import torch

from edge4k.errors import Edge4KError
from edge4k.kernels import colourspace
from edge4k.kernels.colourspace import OUTPUT_SPACES
from edge4k.kernels.postprocess import LOOKS, finish, orient, quantise
from edge4k.kernels.raw import PHASE_PAD, RawFrame, noise_estimate, pack, prepare, thumbnail
from edge4k.kernels.tiling import Blender, blend_weight, pad_packed, plan_frame, plan_tiles

F32 = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")


@pytest.fixture(scope="module")
def lib(native_build):
    lib = ctypes.CDLL(str(native_build / "libedge4k_kernels.so"))
    lib.e4k_last_error.restype = ctypes.c_char_p
    return lib


def call(lib, name, *args):
    if getattr(lib, name)(*args) != 0:
        raise Edge4KError(lib.e4k_last_error().decode())


def ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def c_pack(lib, frame):
    out = np.empty((4, (frame.height + PHASE_PAD) // 2, (frame.width + PHASE_PAD) // 2), np.float32)
    black = np.ascontiguousarray(frame.black_level, np.float64)
    gains = np.ascontiguousarray(frame.wb_gains, np.float64)
    call(lib, "e4k_pack", np.ascontiguousarray(frame.bayer).ctypes.data_as(ctypes.c_void_p), frame.height,
         frame.width, frame.cfa.encode(), black.ctypes.data_as(ctypes.c_void_p), ctypes.c_double(frame.white_level),
         gains.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p))
    return out


@pytest.mark.parametrize("cfa", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_pack_is_bit_exact(lib, cfa):
    rng = np.random.default_rng(0)
    # Values below black and above white too, so clipping is exercised.
    frame = RawFrame(bayer=rng.integers(0, 17000, (96, 160), dtype=np.uint16), cfa=cfa,
                     black_level=np.array([512.0, 511.5, 513.25, 500.0]), white_level=16383.0,
                     wb_gains=np.array([2.353955, 1.0, 1.589368]), srgb_from_cam=np.eye(3))
    np.testing.assert_array_equal(c_pack(lib, frame), pack(frame))


def test_pack_of_the_sample_is_bit_exact(lib, sample_dng):
    from edge4k.kernels.raw import read_raw
    frame = read_raw(sample_dng)
    np.testing.assert_array_equal(c_pack(lib, frame), pack(frame))


def noisy_frame(cfa, seed=0, height=192, width=256):
    """A capture with a gradient scene, shot and read noise: what the noise estimate measures."""
    rng = np.random.default_rng(seed)
    scene = np.linspace(0.01, 0.3, width)[None, :] * np.linspace(0.5, 1.0, height)[:, None]
    electrons = rng.poisson(scene * 4000) / 4000 + rng.normal(0, 0.003, scene.shape)
    bayer = np.clip(512 + electrons * (16383 - 512), 0, 16383).astype(np.uint16)
    matrix = np.array([[1.7, -0.5, -0.2], [-0.3, 1.5, -0.2], [0.0, -0.6, 1.6]])
    return RawFrame(bayer=bayer, cfa=cfa, black_level=512, white_level=16383, wb_gains=(2.1, 1.0, 1.5),
                    srgb_from_cam=matrix)


@pytest.mark.parametrize("cfa", ["RGGB", "GBRG"])
def test_frontend_matches_prepare(lib, cfa):
    frame, size = noisy_frame(cfa), 32
    prep = prepare(frame, size)
    plan = plan_tiles(frame.height + PHASE_PAD, frame.width + PHASE_PAD, compression=16, tile=128, overlap=32)
    thumb, meta = np.empty((4, size, size), np.float32), np.empty(5, np.float32)
    packed = np.empty((4, plan.padded_height // 2, plan.padded_width // 2), np.float32)
    scalars = np.empty(3, np.float64)
    call(lib, "e4k_frontend", ptr(frame.bayer), frame.height, frame.width, cfa.encode(),
         ptr(np.ascontiguousarray(frame.black_level)), ctypes.c_double(frame.white_level), ptr(frame.wb_gains),
         ptr(np.ascontiguousarray(frame.srgb_from_cam)), plan.padded_height, plan.padded_width, size,
         ptr(thumb), ptr(meta), ptr(packed), ptr(scalars))
    np.testing.assert_array_equal(packed, pad_packed(prep.packed, plan.padded_height, plan.padded_width).numpy())
    np.testing.assert_allclose(thumb, prep.thumb, rtol=2e-6, atol=0)
    assert scalars[0] == pytest.approx(prep.exposure, rel=1e-5) and prep.exposure > 1
    assert tuple(scalars[1:]) == prep.crop
    np.testing.assert_allclose(meta, prep.meta, rtol=0, atol=1e-4)
    assert prep.meta[0] > -3 and prep.meta[1] > -3    # noise measured, not the floor


@pytest.mark.parametrize("scene", ["ordinary", "bright", "dark", "between", "lit"])
def test_metered_gain_matches(lib, scene):
    """The runner finishes the natural look with the host's highlight-aware metering. The C++ rule
    spells kernels/rawcolour.py's constants out: "between" (a key inside KEY_LOW..KEY_HIGH, where
    both rules blend, and a gain inside 1..16) checks them all, the others each end, and "lit" (a
    dark frame with a few blue lights) the hold-back that keeps 99.9% of it unclipped."""
    from edge4k.kernels.rawcolour import CLIP_PERCENTILE, HIGHLIGHT_PERCENTILE, KEY_HIGH, KEY_LOW, LUMA, metered_gain
    rng = np.random.default_rng(3)
    lit = rng.uniform(0.0, 0.15, (4, 32, 32))
    lit[3].flat[rng.choice(32 * 32, 5, replace=False)] = 0.5
    level = {"ordinary": rng.uniform(0.05, 0.7, (4, 32, 32)), "dark": rng.uniform(0.0, 0.2, (4, 32, 32)),
             "bright": np.clip(rng.normal(0.85, 0.05, (4, 32, 32)), 0, 1),
             "between": 0.5 * np.clip(rng.normal(0.6, 0.15, (4, 32, 32)), 0, 1), "lit": lit}[scene]
    thumb = np.ascontiguousarray(level, dtype=np.float32)
    matrix = np.ascontiguousarray([[1.6, -0.5, -0.1], [-0.2, 1.5, -0.3], [0.0, -0.4, 1.4]], dtype=np.float64)
    lin = thumb.astype(np.float64) ** 2
    y = np.clip(np.stack([lin[0], (lin[1] + lin[2]) / 2, lin[3]], axis=-1) @ matrix.T, 0, 1) @ LUMA
    key = y.mean() / np.percentile(y, HIGHLIGHT_PERCENTILE)
    assert (KEY_LOW < key < KEY_HIGH) == (scene == "between")
    gain = np.zeros(1)
    call(lib, "e4k_metered_gain", ptr(thumb), 32, ptr(matrix), ptr(gain))
    assert gain[0] == pytest.approx(metered_gain(thumb, matrix), rel=1e-9)
    assert scene != "between" or 1 < gain[0] < 16
    if scene == "lit":   # the lights, not the mean, set the gain
        peak = np.maximum(np.stack([lin[0], (lin[1] + lin[2]) / 2, lin[3]], axis=-1) @ matrix.T, 0).max(-1)
        assert gain[0] == pytest.approx(1 / np.percentile(peak, CLIP_PERCENTILE), rel=1e-9)
        assert 1 < gain[0] < 0.25 * 0.18 / y.mean(), (gain[0], 0.18 / y.mean())   # 2 stops under the mean rule
    with pytest.raises(Edge4KError, match="at least 1"):
        call(lib, "e4k_metered_gain", ptr(thumb), 0, ptr(matrix), ptr(gain))


def test_noise_estimate_matches(lib):
    packed = pack(noisy_frame("RGGB", seed=5))
    shot_read = np.empty(2, np.float64)
    call(lib, "e4k_noise_estimate", ptr(packed), packed.shape[1], packed.shape[2], ptr(shot_read))
    shot, read = noise_estimate(packed)
    assert shot > 0 and read > 0
    np.testing.assert_allclose(shot_read, [shot, read], rtol=1e-9)


@pytest.mark.parametrize("look", LOOKS)
def test_finishing_matches(lib, look):
    rgb = np.random.default_rng(6).uniform(-0.1, 1.1, (3, 40, 56)).astype(np.float32)
    matrix = np.array([[1.9, -0.7, -0.2], [-0.25, 1.45, -0.2], [0.05, -0.5, 1.45]])
    out = rgb.copy()
    call(lib, "e4k_finish", ptr(out), 40, 56, ptr(matrix), ctypes.c_double(2.5), look.encode())
    np.testing.assert_allclose(out, finish(torch.from_numpy(rgb), matrix, 2.5, look).numpy(), rtol=0, atol=2e-6)
    with pytest.raises(Edge4KError, match="unknown look 'vivid'"):
        call(lib, "e4k_finish", ptr(out), 40, 56, ptr(matrix), ctypes.c_double(1.0), b"vivid")


@pytest.mark.parametrize("look", LOOKS)
def test_finishing_holds_its_tolerance_over_every_level(lib, look):
    """The C++ sRGB curve is a polynomial pow (it vectorises); check it over a dense ramp of
    every level, grey and per channel, not just at random samples."""
    ramp = np.linspace(0, 1, 3 * 512 * 512, dtype=np.float32)
    rgb = np.stack([ramp, ramp, ramp[::-1]]).reshape(3, 512, 3 * 512)
    out = rgb.copy()
    call(lib, "e4k_finish", ptr(out), 512, 3 * 512, ptr(np.eye(3)), ctypes.c_double(1.3), look.encode())
    np.testing.assert_allclose(out, finish(torch.from_numpy(rgb), np.eye(3), 1.3, look).numpy(), rtol=0, atol=2e-6)


def clipped_scene(h=96, w=128):
    """Companded camera RGB with a bright blob clipped in red and green only (blue not), on a
    coloured ramp: the case highlight reconstruction rebuilds."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    lin = np.stack([0.3 + 0.4 * x, 0.25 + 0.3 * y, 0.2 + 0.2 * x * y])
    blob = np.exp(-((y - 0.5) ** 2 + (x - 0.4) ** 2) / 0.02)
    lin = np.clip(lin * (1 + 3 * blob), 0, 1)
    return np.sqrt(lin).astype(np.float32)


@pytest.mark.parametrize("look", LOOKS)
@pytest.mark.parametrize("ev, highlights", [(1.0, "clip"), (-0.7, "clip"), (0.0, "reconstruct"), (0.5, "reconstruct")])
def test_finishing_with_exposure_and_highlights_matches(lib, look, ev, highlights):
    rgb = clipped_scene()
    matrix = np.array([[1.9, -0.7, -0.2], [-0.25, 1.45, -0.2], [0.05, -0.5, 1.45]])
    out = rgb.copy()
    call(lib, "e4k_finish_options", ptr(out), *rgb.shape[1:], ptr(matrix), ctypes.c_double(1.6), look.encode(),
         ctypes.c_double(ev), highlights.encode())
    want = finish(torch.from_numpy(rgb), matrix, 1.6, look, ev=ev, highlights=highlights).numpy()
    np.testing.assert_allclose(out, want, rtol=0, atol=2e-6)
    if highlights == "reconstruct":   # the reconstruction did something: it differs from the clip
        clip = finish(torch.from_numpy(rgb), matrix, 1.6, look, ev=ev).numpy()
        assert np.abs(want - clip).max() > 0.05


@pytest.mark.parametrize("ev, highlights, words", [(0.0, b"blend", "unknown highlight mode 'blend'; valid: clip, "
                                                   "reconstruct"), (11.0, b"clip", "exposure must be within -10..+10 EV")])
def test_finishing_options_refuse_bad_values_in_one_line(lib, ev, highlights, words):
    out = clipped_scene(8, 8)
    with pytest.raises(Edge4KError, match=words.replace(".", r"\.").replace("+", r"\+")):
        call(lib, "e4k_finish_options", ptr(out), 8, 8, ptr(np.eye(3)), ctypes.c_double(1.0), b"neutral",
             ctypes.c_double(ev), highlights)


@pytest.mark.parametrize("space", list(OUTPUT_SPACES))
def test_output_spaces_match_python(lib, space):
    matrix = np.array([[1.9, -0.7, -0.2], [-0.25, 1.45, -0.2], [0.05, -0.5, 1.45]])
    out = np.empty(9)
    call(lib, "e4k_target_from_cam", space.encode(), ptr(matrix), ptr(out))
    np.testing.assert_allclose(out.reshape(3, 3), colourspace.target_from_cam(space, matrix), rtol=0, atol=1e-12)
    values = np.linspace(0, 1, 3 * 1000, dtype=np.float32).reshape(3, 10, 100)
    got = values.copy()
    call(lib, "e4k_encode_space", space.encode(), ptr(got), ctypes.c_size_t(got.size))
    np.testing.assert_allclose(got, colourspace.encode(space, torch.from_numpy(values.copy())).numpy(), rtol=0,
                               atol=1e-6)
    icc, size = ctypes.create_string_buffer(8192), ctypes.c_size_t()
    call(lib, "e4k_icc_profile", space.encode(), icc, ctypes.c_size_t(8192), ctypes.byref(size))
    # sRGB's profile is LittleCMS's (Python only); every other space's is the same bytes
    assert icc.raw[:size.value] == (b"" if space == "srgb" else colourspace.icc_profile(space))
    with pytest.raises(Edge4KError, match="unknown output space 'p3'; valid: srgb, display-p3"):
        call(lib, "e4k_target_from_cam", b"p3", ptr(matrix), ptr(out))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches(lib, orientation):
    rgb = np.random.default_rng(orientation).random((3, 6, 10), dtype=np.float32)
    want = orient(torch.from_numpy(rgb), orientation).numpy()
    out = np.empty(want.shape, np.float32)
    call(lib, "e4k_orient", ptr(rgb), 6, 10, orientation, ptr(out))
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("shape, size", [((4, 256, 256), 64), ((4, 150, 222), 32), ((4, 30, 40), 32)])
def test_thumbnail_matches_adaptive_average_pooling(lib, shape, size):
    packed = np.random.default_rng(1).random(shape, dtype=np.float32)
    out = np.empty((shape[0], size, size), np.float32)
    call(lib, "e4k_thumbnail", packed.ctypes.data_as(ctypes.c_void_p), *shape, size, out.ctypes.data_as(ctypes.c_void_p))
    np.testing.assert_allclose(out, thumbnail(packed, size), rtol=2e-6, atol=0)


@pytest.mark.parametrize("h, w, f", [(300, 500, 16), (512, 512, 16), (250, 130, 32)])
def test_reflection_padding_is_exact(lib, h, w, f):
    plan = plan_tiles(h, w, compression=f, native=True)
    packed = np.random.default_rng(2).random((4, h // 2, w // 2), dtype=np.float32)
    out = np.empty((4, plan.padded_height // 2, plan.padded_width // 2), np.float32)
    call(lib, "e4k_pad_reflect", packed.ctypes.data_as(ctypes.c_void_p), 4, h // 2, w // 2,
         plan.padded_height // 2, plan.padded_width // 2, out.ctypes.data_as(ctypes.c_void_p))
    np.testing.assert_array_equal(out, pad_packed(packed, plan.padded_height, plan.padded_width).numpy())


def c_plan(lib, h, w, f, tile, overlap, native=False, fn="e4k_plan_tiles"):
    origins, info = np.zeros(2 * 4096, np.int32), np.zeros(5, np.int32)
    call(lib, fn, h, w, f, tile, overlap, int(native), 4096, origins.ctypes.data_as(ctypes.c_void_p),
         info.ctypes.data_as(ctypes.c_void_p))
    return tuple(info[:4]), [tuple(o) for o in origins[:2 * info[4]].reshape(-1, 2).tolist()]


@pytest.mark.parametrize("h, w, f, tile, overlap", [
    (300, 500, 16, 128, 32), (2160, 3840, 16, 512, 64), (512, 512, 16, 512, 64), (1080, 1920, 32, 256, 64),
    (256, 384, 8, 128, 0)])
def test_tile_plans_are_identical(lib, h, w, f, tile, overlap):
    plan = plan_tiles(h, w, compression=f, tile=tile, overlap=overlap)
    sizes, origins = c_plan(lib, h, w, f, tile, overlap)
    assert sizes == (plan.padded_height, plan.padded_width, plan.tile_height, plan.tile_width)
    assert origins == list(plan.origins)


@pytest.mark.parametrize("h, w, tile, overlap, native", [(512, 512, 128, 32, False), (2160, 3840, 512, 32, False),
                                                         (250, 378, 0, 0, True)])
def test_frame_plans_are_identical(lib, h, w, tile, overlap, native):
    """The runner's plan for a RAW frame: the same phase padding (PHASE_PAD) as kernels/raw.py's."""
    plan = plan_frame(h, w, compression=16, tile=tile or None, overlap=overlap, native=native)
    sizes, origins = c_plan(lib, h, w, 16, tile, overlap, native, fn="e4k_plan_frame")
    assert sizes == (plan.padded_height, plan.padded_width, plan.tile_height, plan.tile_width)
    assert origins == list(plan.origins) and plan.padded_height >= h + PHASE_PAD


@pytest.mark.parametrize("tile, overlap, needle", [(100, 16, "multiple of the latent"), (128, 128, "smaller than"),
                                                   (1024, 64, "smaller than one")])
def test_impossible_plans_fail_the_same_way(lib, tile, overlap, needle):
    with pytest.raises(Edge4KError, match=needle):
        plan_tiles(300, 500, compression=16, tile=tile, overlap=overlap)
    with pytest.raises(Edge4KError, match=needle):
        c_plan(lib, 300, 500, 16, tile, overlap)


def test_blend_weights_match(lib):
    h, w, f, tile, overlap = 300, 500, 16, 128, 64
    plan = plan_tiles(h, w, compression=f, tile=tile, overlap=overlap)
    out = np.empty((tile, tile), np.float32)
    for y, x in plan.origins:
        call(lib, "e4k_blend_weight", h, w, f, tile, overlap, y, x, out.ctypes.data_as(ctypes.c_void_p))
        # float32 sin: torch's vectorised kernel and libm may differ by an ulp or two
        np.testing.assert_allclose(out, blend_weight(plan, y, x).numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("native", [False, True])
def test_blending_matches(lib, native):
    h, w, f, tile, overlap = 300, 500, 16, 128, 64
    plan = plan_tiles(h, w, compression=f, tile=tile, overlap=overlap, native=native)
    tiles = np.random.default_rng(3).random((plan.num_tiles, 3, plan.tile_height, plan.tile_width), dtype=np.float32)
    blender = Blender(plan)
    for k, (y, x) in enumerate(plan.origins):
        blender.add(torch.from_numpy(tiles[k]), y, x)
    out = np.empty((3, h, w), np.float32)
    call(lib, "e4k_blend", h, w, f, tile, overlap, int(native), 3, tiles.ctypes.data_as(ctypes.c_void_p),
         out.ctypes.data_as(ctypes.c_void_p))
    np.testing.assert_allclose(out, blender.result().numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("bits", [8, 16])
def test_quantise_is_bit_exact(lib, bits):
    rgb = np.random.default_rng(4).uniform(-0.2, 1.2, (3, 64, 96)).astype(np.float32)
    peak = (1 << bits) - 1
    rgb[0, 0, :8] = (np.arange(8) + 0.5) / peak   # exact halves: round half to even, like torch.round
    out = np.empty((64, 96, 3), np.uint8 if bits == 8 else np.uint16)
    call(lib, "e4k_quantise", rgb.ctypes.data_as(ctypes.c_void_p), 64, 96, bits, out.ctypes.data_as(ctypes.c_void_p))
    np.testing.assert_array_equal(out, quantise(torch.from_numpy(rgb), bits))


def test_mhc_weight_is_the_python_one(lib):
    from edge4k.models.blocks import mhc_demosaic_weight
    w = np.empty((12, 4, 3, 3), np.float32)
    lib.e4k_mhc_weight(ptr(w))
    np.testing.assert_array_equal(w, mhc_demosaic_weight().numpy())


def c_add_mhc_base(lib, packed, residual):
    out = np.array(residual, np.float32, order="C")
    call(lib, "e4k_add_mhc_base", ptr(packed), *packed.shape[:1], *packed.shape[2:], ptr(out))
    return out


@pytest.mark.parametrize("shape", [(3, 4, 5, 7), (1, 4, 1, 1), (2, 4, 1, 6), (2, 4, 9, 1), (2, 4, 32, 48)])
def test_mhc_base_matches_the_eager_demosaic(lib, shape):
    """A raw_skip build's runner adds pixel_shuffle(conv2d(packed, MHC, padding=1), 2) to the
    decoder's residual, each tile zero-padded at its own edge, as the eager network does."""
    import torch.nn.functional as F

    from edge4k.models.blocks import mhc_demosaic_weight
    rng = np.random.default_rng(sum(shape))
    b, _, h, w = shape
    packed = rng.uniform(-0.1, 1.5, shape).astype(np.float32)
    residual = rng.normal(0, 0.1, (b, 3, 2 * h, 2 * w)).astype(np.float32)
    base = F.pixel_shuffle(F.conv2d(torch.from_numpy(packed), mhc_demosaic_weight(), padding=1), 2)
    np.testing.assert_allclose(c_add_mhc_base(lib, packed, residual), residual + base.numpy(), rtol=0, atol=1e-5)


def test_mhc_base_is_the_same_on_any_thread_count_and_refuses_an_empty_tile(lib):
    rng = np.random.default_rng(2)
    packed = rng.uniform(0, 1, (2, 4, 64, 256)).astype(np.float32)   # rows enough to split across threads
    residual = rng.normal(0, 0.1, (2, 3, 128, 512)).astype(np.float32)
    results = []
    try:
        for n in (1, 3):
            lib.e4k_set_threads(n)
            results.append(c_add_mhc_base(lib, packed, residual))
    finally:
        lib.e4k_set_threads(0)
    np.testing.assert_array_equal(results[0], results[1])
    with pytest.raises(Edge4KError, match="have no pixels to demosaic"):
        call(lib, "e4k_add_mhc_base", ptr(packed), 2, 0, 256, ptr(residual))


# ---- the host pipeline's C++ path (kernels/cpp.py) against its Python twin ----------------

@pytest.fixture
def cpp_kernels(native_build, monkeypatch):
    """kernels.cpp with the library at hand, and a way to switch it off."""
    from edge4k.kernels import cpp

    def use(library):
        if library:
            monkeypatch.setenv("EDGE4K_KERNELS_LIB", str(native_build / "libedge4k_kernels.so"))
            monkeypatch.delenv("EDGE4K_CPP_KERNELS", raising=False)
        else:
            monkeypatch.setenv("EDGE4K_CPP_KERNELS", "0")
        cpp.library.cache_clear()
        return cpp
    yield use
    cpp.library.cache_clear()


def test_host_frontend_in_cpp_matches_python(cpp_kernels):
    frame = noisy_frame("BGGR", seed=7)
    py_prep, py_padded = cpp_kernels(False).prepare_padded(frame, 32, 208, 272)
    cpp = cpp_kernels(True)
    assert cpp.library() is not None
    prep, padded = cpp.prepare_padded(frame, 32, 208, 272)
    assert padded.shape == py_padded.shape == (4, 104, 136)
    np.testing.assert_array_equal(padded.numpy(), py_padded.numpy())
    np.testing.assert_allclose(prep.thumb, py_prep.thumb, rtol=2e-6, atol=0)
    np.testing.assert_allclose(prep.meta, py_prep.meta, rtol=0, atol=1e-4)
    assert prep.exposure == pytest.approx(py_prep.exposure, rel=1e-5) and prep.crop == py_prep.crop


@pytest.mark.parametrize("look, ev, highlights", [("neutral", 0.5, "clip"), ("natural", -1.0, "reconstruct"),
                                                  ("neutral", 0.0, "reconstruct")])
def test_host_finishing_options_in_cpp_match_python(cpp_kernels, look, ev, highlights):
    """The host pipeline's exposure compensation and highlight reconstruction run in C++ too."""
    frame = noisy_frame("RGGB")
    image = torch.from_numpy(clipped_scene(40, 64))
    assert hasattr(cpp_kernels(True).library(), "e4k_finish_options")
    want = cpp_kernels(False).finish_upright(image, frame, 1.7, look, ev=ev, highlights=highlights)
    got = cpp_kernels(True).finish_upright(image, frame, 1.7, look, ev=ev, highlights=highlights)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=2e-6)


@pytest.mark.parametrize("look, orientation", [("natural", 1), ("neutral", 6), ("natural", 8)])
def test_host_finishing_in_cpp_matches_python(cpp_kernels, look, orientation):
    frame = noisy_frame("RGGB")
    frame.orientation = orientation
    image = torch.rand(3, 40, 64, generator=torch.Generator().manual_seed(orientation))
    want = cpp_kernels(False).finish_upright(image, frame, 1.7, look)
    got = cpp_kernels(True).finish_upright(image, frame, 1.7, look)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=2e-6)
    for bits in (8, 16):
        np.testing.assert_array_equal(cpp_kernels(True).quantise(got, bits), cpp_kernels(False).quantise(got, bits))


def test_finishing_in_place_is_the_same_image_and_a_copy_leaves_the_input_alone(cpp_kernels):
    cpp, frame = cpp_kernels(True), noisy_frame("RGGB")
    image = torch.rand(3, 40, 64, generator=torch.Generator().manual_seed(3))
    kept = image.clone()
    copied = cpp.finish_upright(image, frame, 1.7, "natural")
    assert torch.equal(image, kept)
    given_up = image.clone()
    finished = cpp.finish_upright(given_up, frame, 1.7, "natural", in_place=True)
    assert finished.data_ptr() == given_up.data_ptr() and torch.equal(finished, copied)


def test_frontend_refuses_a_padding_smaller_than_the_frame(cpp_kernels):
    frame = noisy_frame("RGGB")   # 256 x 192, 262 x 198 with the phase padding
    with pytest.raises(Edge4KError, match="smaller than the phase-padded frame 262x198"):
        cpp_kernels(True).prepare_padded(frame, 32, 192, 272)


@pytest.mark.parametrize("native", [False, True])
def test_host_blending_in_cpp_matches_python(cpp_kernels, native):
    plan = plan_tiles(230, 358, compression=16, tile=128, overlap=32, native=native)
    rng = np.random.default_rng(8)
    tiles = [torch.from_numpy(rng.random((3, plan.tile_height, plan.tile_width), dtype=np.float32))
             for _ in plan.origins]
    windows = []
    for library in (False, True):
        blender = cpp_kernels(library).blender(plan, (3, 5, 220, 350))
        for tile, (y, x) in zip(tiles, plan.origins):
            blender.add(tile, y, x)
        windows.append(blender.result())
    assert windows[1].shape == (3, 220, 350)
    # C++ normalises the ramps up front, Python divides by the summed weights: float rounding apart
    np.testing.assert_allclose(windows[1].numpy(), windows[0].numpy(), rtol=1e-6, atol=1e-7)
    with pytest.raises(Edge4KError, match="no tile of the plan starts at"):
        blender.add(tiles[0], 8, 0)
    with pytest.raises(Edge4KError, match="outside the padded frame"):
        cpp_kernels(True).blender(plan, (0, 0, plan.padded_height + 2, 10))


def test_cpp_kernels_give_the_same_result_on_any_thread_count(cpp_kernels):
    """The C++ kernels split rows across threads (--threads); the split must not change a bit."""
    cpp = cpp_kernels(True)
    plan = plan_tiles(230, 358, compression=16, tile=128, overlap=32)
    rng = np.random.default_rng(9)
    tiles = [torch.from_numpy(rng.random((3, 128, 128), dtype=np.float32)) for _ in plan.origins]
    frame = noisy_frame("GBRG", seed=3)
    from edge4k.kernels.threads import run_threads, set_threads
    results, threads = [], run_threads()
    try:
        for n in (1, 2, 3):
            set_threads(n)
            blender = cpp.blender(plan, (0, 0, 230, 358))
            for tile, (y, x) in zip(tiles, plan.origins):
                blender.add(tile, y, x)
            image = cpp.finish_upright(blender.result(), frame, 1.5, "natural")
            prep, padded = cpp.prepare_padded(frame, 32, 208, 272)
            results.append((image.numpy(), cpp.quantise(image, 16), padded.numpy(), prep.thumb, prep.meta))
    finally:
        set_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_kernels_run_in_a_forked_child(lib):
    """The kernels' worker threads (common.h: WorkerPool) stay in the parent when a process forks
    (a DataLoader worker): the child runs the same kernels on threads of its own, where waiting
    for the parent's workers would hang."""
    import os
    import time
    rgb = np.random.default_rng(5).uniform(0, 1, (3, 256, 256)).astype(np.float32)

    def quantised():
        out = np.empty((256, 256, 3), np.uint16)
        call(lib, "e4k_quantise", ptr(rgb), 256, 256, 16, ptr(out))
        return out

    lib.e4k_set_threads(3)
    try:
        want = quantised()   # the pool's workers are started
        pid = os.fork()
        if pid == 0:
            os._exit(0 if np.array_equal(quantised(), want) else 1)
        deadline = time.monotonic() + 60
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if done[0] == 0:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0
    finally:
        lib.e4k_set_threads(0)


def test_host_pipeline_without_the_library_warns_once_and_runs_python(cpp_kernels, monkeypatch, tmp_path, capsys):
    cpp = cpp_kernels(True)
    monkeypatch.setenv("EDGE4K_KERNELS_LIB", str(tmp_path / "missing.so"))
    cpp.library.cache_clear()
    frame = noisy_frame("GRBG")
    prep, padded = cpp.prepare_padded(frame, 32, 208, 272)
    cpp.quantise(torch.zeros(3, 4, 4), 8)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "C++ kernels not built" in err[0] and "missing.so" in err[0]
    assert prep.packed is not None and padded.shape == (4, 104, 136)     # the Python path ran
