import threading

import numpy as np
import pytest
import torch
from conftest import tiny_model

from edge4k.errors import Edge4KError
from edge4k.kernels.tiling import Blender, blend_weight, pad_packed, plan_tiles, seam_ratio
from edge4k.runtime.backends import EagerBackend
from edge4k.runtime.pipeline import TileOptions, process


def psnr(a, b):
    return float(10 * torch.log10(1.0 / torch.mean((a - b) ** 2)))


def test_plan_covers_the_padded_frame_on_the_latent_grid():
    plan = plan_tiles(300, 500, compression=16, tile=128, overlap=32)
    assert (plan.padded_height, plan.padded_width) == (304, 512)
    cover = np.zeros((304, 512), int)
    for y, x in plan.origins:
        assert y % 16 == 0 and x % 16 == 0
        cover[y:y + 128, x:x + 128] += 1
    assert cover.min() >= 1


@pytest.mark.parametrize("kwargs, needle", [
    (dict(tile=128, overlap=128), "smaller than the tile"),
    (dict(tile=128, overlap=200), "smaller than the tile"),
    (dict(tile=100, overlap=16), "multiple of the latent compression"),
    (dict(tile=128, overlap=24), "multiple of the latent compression"),
    (dict(tile=1024, overlap=64), "smaller than one"),
])
def test_impossible_tilings_are_refused(kwargs, needle):
    with pytest.raises(Edge4KError, match=needle):
        plan_tiles(300, 500, compression=16, **kwargs)


def raised_cosine(length, overlap, lead, trail):
    """The documented blend ramp, at pixel centres: zero for overlap/4 at an edge with a
    neighbour, then sin^2 up to 1 over the rest of the overlap (kernels/tiling.py)."""
    margin, span = overlap // 4, overlap - 2 * (overlap // 4)
    i = np.arange(length) + 0.5
    rise = np.sin(np.clip((i - margin) / span, 0, 1) * np.pi / 2) ** 2
    return (rise if lead else 1) * (rise[::-1] if trail else 1) * np.ones(length)


def test_blend_weights_ramp_zero_margin_and_crop():
    plan = plan_tiles(300, 500, compression=16, tile=128, overlap=64)
    ph, pw, margin = plan.padded_height, plan.padded_width, 64 // 4
    for y, x in plan.origins:
        w = blend_weight(plan, y, x).numpy()
        lead_y, trail_y, lead_x, trail_x = y > 0, y + 128 < ph, x > 0, x + 128 < pw
        expected = np.outer(raised_cosine(128, 64, lead_y, trail_y), raised_cosine(128, 64, lead_x, trail_x))
        np.testing.assert_allclose(w, expected, atol=1e-6, err_msg=f"tile at {(y, x)}")
        # zero margin toward each neighbour, full weight at an edge on the frame border
        assert (not lead_y or not w[:margin].any()) and (not trail_y or not w[-margin:].any())
        assert (not lead_x or not w[:, :margin].any()) and (not trail_x or not w[:, -margin:].any())
        assert lead_y or lead_x or w[0, 0] == 1.0
    # blending crops of one image gives that image back, cropped to the frame at the origin
    image = torch.rand(2, ph, pw, generator=torch.Generator().manual_seed(0))
    blender = Blender(plan, channels=2)
    for y, x in plan.origins:
        blender.add(image[:, y:y + 128, x:x + 128], y, x)
    out = blender.result()
    assert out.shape == (2, 300, 500)
    torch.testing.assert_close(out, image[:, :300, :500])


def test_blending_two_tiles_follows_the_ramp_across_their_overlap():
    plan = plan_tiles(128, 192, compression=16, tile=128, overlap=64)
    assert plan.origins == ((0, 0), (0, 64))
    blender = Blender(plan, channels=1)
    blender.add(torch.zeros(1, 128, 128), 0, 0)
    blender.add(torch.ones(1, 128, 128), 0, 64)
    row = blender.result()[0, 5].numpy()
    ramp = raised_cosine(64, 64, True, False)       # the right tile's lead ramp; the two weights sum to 1
    np.testing.assert_allclose(row, np.concatenate([np.zeros(64), ramp, np.ones(64)]), atol=1e-6)
    assert row[64:80].max() == 0.0 and row[112:128].min() == 1.0


def test_tiled_matches_native_and_has_no_seams(make_dng):
    # Conv-only network (no attention), so a tile differs from the whole frame only
    # near its borders, which the overlap and blend margin hide.
    model = tiny_model(attention="none")
    path = make_dng(256, 384)
    backend = EagerBackend(model)
    native, _ = process(path, backend, model.cfg, TileOptions(tile=None, overlap=0, native=True))
    blended, info = process(path, backend, model.cfg, TileOptions(tile=128, overlap=64, batch=3))
    butted, _ = process(path, backend, model.cfg, TileOptions(tile=128, overlap=0))
    assert info["plan"].num_tiles == 24     # over the frame as the frontend pads it: 262 x 390 -> 272 x 400
    p_blend, p_butt = psnr(blended, native), psnr(butted, native)
    assert p_blend > 55.0, p_blend
    assert p_blend > p_butt + 10.0, (p_blend, p_butt)   # the overlap is what makes it match
    assert seam_ratio(blended, info["plan"]) == pytest.approx(seam_ratio(native, info["plan"]), rel=0.02)


def test_tiled_matches_native_on_a_frame_that_needs_padding_and_an_uneven_last_tile(make_dng):
    # 232x360 pads to 240x368 (latent grid of 16); 128-pixel tiles every 64 px leave a
    # last row and column of tiles that overlap their neighbours by more than 64.
    model = tiny_model(attention="none")
    path = make_dng(232, 360)
    backend = EagerBackend(model)
    native, _ = process(path, backend, model.cfg, TileOptions(tile=None, overlap=0, native=True))
    tiled, info = process(path, backend, model.cfg, TileOptions(tile=128, overlap=64, batch=4))
    plan = info["plan"]
    assert (plan.padded_height, plan.padded_width) == (240, 368)
    ys, xs = sorted({y for y, _ in plan.origins}), sorted({x for _, x in plan.origins})
    assert ys[-1] + 128 == 240 and xs[-1] + 128 == 368              # the last tiles end at the padded edge
    assert (ys[-1] - ys[-2]) % 64 and (xs[-1] - xs[-2]) % 64         # ... off the regular stride
    assert native.shape == tiled.shape == (3, 232, 360)
    assert psnr(tiled, native) > 55.0


def test_seam_ratio_sees_a_tile_offset(make_dng):
    plan = plan_tiles(256, 384, compression=16, tile=128, overlap=0)
    noise = torch.rand(3, 256, 384, generator=torch.Generator().manual_seed(0))
    image = noise * 0.2 + torch.linspace(0, 0.5, 384)   # noisy, with a gradient
    clean = seam_ratio(image, plan)
    assert 0.8 < clean < 1.2
    seamed = image.clone()
    seamed[:, 128:256, 128:256] += 0.03            # one tile 8 levels brighter (8-bit): a visible seam
    # noise alone gives 0.85-1.12 and this seam 1.23-1.6 times that over 40 noise seeds; seed 0 is fixed
    assert seam_ratio(seamed, plan) > 1.2 * clean


@pytest.mark.parametrize("region, at_tile_border", [
    ((slice(None), slice(128, 256)), True),     # a column of tiles: only vertical tile borders step
    ((slice(128, None), slice(None)), True),    # the lower row of tiles: only the horizontal border
    ((slice(None), slice(200, None)), False),   # a step inside tiles is image content, not a seam
    ((slice(None), slice(383, None)), False),   # nor is one at the frame's last column ...
    ((slice(255, None), slice(None)), False),   # ... or its last row
])
def test_seam_ratio_counts_only_the_lines_where_tiles_meet(region, at_tile_border):
    plan = plan_tiles(256, 384, compression=16, tile=128, overlap=0)
    image = torch.rand(3, 256, 384, generator=torch.Generator().manual_seed(1)) * 0.05 + 0.3
    clean = seam_ratio(image, plan)
    stepped = image.clone()
    stepped[(slice(None), *region)] += 0.1
    if at_tile_border:
        assert seam_ratio(stepped, plan) > 2 * clean
    else:
        assert seam_ratio(stepped, plan) < clean


def test_pad_packed_reflects_at_the_bottom_and_right():
    packed = np.arange(4 * 3 * 5, dtype=np.float32).reshape(4, 3, 5)
    padded = pad_packed(packed, 10, 16).numpy()   # (10, 16) pixels: (5, 8) packed
    assert padded.shape == (4, 5, 8)
    np.testing.assert_array_equal(padded[:, :3, :5], packed)
    np.testing.assert_array_equal(padded[:, 3:, :5], packed[:, [1, 0]])          # rows 3, 4 mirror rows 1, 0
    np.testing.assert_array_equal(padded[:, :3, 5:], packed[:, :, [3, 2, 1]])    # columns mirror about the last


def test_batch_size_does_not_change_the_image(make_dng):
    model = tiny_model()
    path = make_dng(128, 256)
    backend = EagerBackend(model)
    a, _ = process(path, backend, model.cfg, TileOptions(tile=128, overlap=32, batch=1))
    b, _ = process(path, backend, model.cfg, TileOptions(tile=128, overlap=32, batch=4))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_blending_beside_the_network_gives_the_image_blended_in_turn(make_dng, monkeypatch, batch):
    from edge4k.kernels import cpp
    model, path = tiny_model(), make_dng(200, 300)
    backend, opts = EagerBackend(model), TileOptions(tile=128, overlap=32, batch=batch)
    blended_on, made = [], cpp.blender

    def recording_blender(*args, **kwargs):   # notes the thread each tile is blended on
        blender = made(*args, **kwargs)
        add = blender.add
        blender.add = lambda tile, y, x: (blended_on.append(threading.current_thread()), add(tile, y, x))
        return blender

    monkeypatch.setattr(cpp, "blender", recording_blender)
    in_turn, info = process(path, backend, model.cfg, opts, overlap_blending=False)
    assert set(blended_on) == {threading.main_thread()}
    blended_on.clear()
    beside, _ = process(path, backend, model.cfg, opts, overlap_blending=True)
    assert len(blended_on) == info["plan"].num_tiles > batch and threading.main_thread() not in blended_on
    assert torch.equal(in_turn, beside)


def test_blending_goes_beside_the_network_only_where_a_core_is_free(monkeypatch):
    from edge4k.kernels import cpp
    from edge4k.runtime import pipeline
    if cpp.library() is None:
        pytest.skip("the C++ kernels are not built")
    monkeypatch.delenv("EDGE4K_OVERLAP_BLENDING", raising=False)
    monkeypatch.setattr(pipeline, "run_threads", lambda: 2)
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 2)
    assert not pipeline.overlaps_blending(45)
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 8)
    assert pipeline.overlaps_blending(45) and not pipeline.overlaps_blending(1)
    monkeypatch.setenv("EDGE4K_OVERLAP_BLENDING", "0")
    assert not pipeline.overlaps_blending(45)
    monkeypatch.setenv("EDGE4K_OVERLAP_BLENDING", "1")
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 2)
    assert pipeline.overlaps_blending(45)


def test_frame_buffers_are_reused_between_frames_and_give_the_same_image(make_dng):
    from edge4k.kernels import cpp
    from edge4k.runtime.pipeline import FrameBuffers
    if cpp.library() is None:
        pytest.skip("the C++ kernels are not built")
    model, small, large = tiny_model(), make_dng(200, 300), make_dng(256, 320)
    backend, opts = EagerBackend(model), TileOptions(tile=128, overlap=32)
    fresh, _ = process(small, backend, model.cfg, opts)
    buffers = FrameBuffers()
    first, _ = process(small, backend, model.cfg, opts, buffers=buffers)
    held = {name: array.ctypes.data for name, array in buffers.arrays.items()}
    assert set(held) == {"packed", "blend"} and first.data_ptr() == held["blend"]
    dirty = torch.rand_like(first)
    first.copy_(dirty)                  # what the last frame left: blending must start from zero
    second, _ = process(small, backend, model.cfg, opts, buffers=buffers)
    assert {name: array.ctypes.data for name, array in buffers.arrays.items()} == held
    assert torch.equal(second, fresh)
    other, _ = process(large, backend, model.cfg, opts, buffers=buffers)   # another size: new arrays
    assert other.shape == (3, 256, 320) and buffers.arrays["blend"].ctypes.data != held["blend"]
    assert torch.equal(other, process(large, backend, model.cfg, opts)[0])
    with pytest.raises(Edge4KError, match=r"a buffer of \(2, 2, 3\) uint8 cannot hold \(256, 320, 3\) uint8"):
        cpp.quantise(other, 8, out=np.empty((2, 2, 3), np.uint8))
    assert np.array_equal(cpp.quantise(other, 8, out=np.empty((256, 320, 3), np.uint8)), cpp.quantise(other, 8))
