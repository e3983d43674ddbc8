"""The C++ kernels (kernels/native, what the phone runner executes) against the
Python ones, called through the kernels library's C ABI: pack and quantise
bit-exact, thumbnail and blending to float32 rounding, tile plans identical."""
import ctypes

import numpy as np
import pytest
import torch

from edge4k.errors import Edge4KError
from edge4k.kernels.postprocess import quantise
from edge4k.kernels.raw import RawFrame, pack, thumbnail
from edge4k.runtime.tiling import Blender, blend_weight, pad_packed, plan_tiles

F32 = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")


@pytest.fixture(scope="module")
def lib(native_build):
    lib = ctypes.CDLL(str(native_build / "libedge4k_kernels.so"))
    lib.e4k_last_error.restype = ctypes.c_char_p
    return lib


def call(lib, name, *args):
    if getattr(lib, name)(*args) != 0:
        raise Edge4KError(lib.e4k_last_error().decode())


def c_pack(lib, frame):
    out = np.empty((4, frame.height // 2, frame.width // 2), np.float32)
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
    np.testing.assert_array_equal(out, pad_packed(packed, plan).numpy())


def c_plan(lib, h, w, f, tile, overlap, native=False):
    origins, info = np.zeros(2 * 4096, np.int32), np.zeros(5, np.int32)
    call(lib, "e4k_plan_tiles", h, w, f, tile, overlap, int(native), 4096, origins.ctypes.data_as(ctypes.c_void_p),
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
