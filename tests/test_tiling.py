import numpy as np
import pytest
import torch

from edge4k.errors import Edge4KError
from edge4k.runtime.backends import EagerBackend
from edge4k.runtime.pipeline import TileOptions, process
from edge4k.runtime.tiling import Blender, blend_weight, plan_tiles, seam_ratio

from conftest import tiny_model


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


def test_blend_weights_sum_to_one():
    plan = plan_tiles(300, 500, compression=16, tile=128, overlap=64)
    blender = Blender(plan, channels=1)
    for y, x in plan.origins:
        blender.add(torch.ones(1, 128, 128), y, x)
    out = blender.result()
    torch.testing.assert_close(out, torch.ones_like(out))
    assert float(blend_weight(plan, 0, 0)[0, 0]) == 1.0            # frame corner: no ramp toward the outside
    assert float(blend_weight(plan, 128 - 64, 0)[0, 0]) == 0.0     # interior edge: zero in the margin


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


def test_seam_ratio_sees_a_tile_offset(make_dng):
    plan = plan_tiles(256, 384, compression=16, tile=128, overlap=0)
    image = torch.rand(3, 256, 384) * 0.2 + torch.linspace(0, 0.5, 384)   # noisy, with a gradient
    clean = seam_ratio(image, plan)
    assert 0.8 < clean < 1.2
    seamed = image.clone()
    seamed[:, 128:256, 128:256] += 0.03            # one tile 8 levels brighter (8-bit): a visible seam
    assert seam_ratio(seamed, plan) > 1.5 * clean


def test_batch_size_does_not_change_the_image(make_dng):
    model = tiny_model()
    path = make_dng(128, 256)
    backend = EagerBackend(model)
    a, _ = process(path, backend, model.cfg, TileOptions(tile=128, overlap=32, batch=1))
    b, _ = process(path, backend, model.cfg, TileOptions(tile=128, overlap=32, batch=4))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
