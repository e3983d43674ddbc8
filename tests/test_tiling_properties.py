"""Property tests (hypothesis) of tile blending over arbitrary frame sizes, tiles and
overlaps: weights in [0, 1] with a zero margin toward every neighbour and full weight
toward the frame border, every pixel covered by some weight, neighbours at the regular
stride summing to one, and blending crops of one image giving that image back."""
import torch
from hypothesis import given
from hypothesis import strategies as st

from edge4k.kernels.tiling import Blender, _ramp, blend_weight, plan_tiles


@st.composite
def plans(draw):
    f = draw(st.sampled_from([8, 16, 32]))
    tile = f * draw(st.integers(2, max(2, 128 // f)))
    overlap = f * draw(st.integers(0, tile // f - 1))
    height = draw(st.integers(tile, 3 * tile))
    width = draw(st.integers(tile, 3 * tile))
    return plan_tiles(height, width, compression=f, tile=tile, overlap=overlap)


@given(plans())
def test_weights_are_in_0_1_with_zero_margins_toward_neighbours(plan):
    margin = plan.overlap // 4
    for y, x in plan.origins:
        w = blend_weight(plan, y, x)
        assert w.shape == (plan.tile_height, plan.tile_width)
        assert float(w.min()) >= 0.0 and float(w.max()) <= 1.0
        neighbour = {"top": y > 0, "bottom": y + plan.tile_height < plan.padded_height,
                     "left": x > 0, "right": x + plan.tile_width < plan.padded_width}
        edges = {"top": w[:margin], "bottom": w[w.shape[0] - margin:], "left": w[:, :margin],
                 "right": w[:, w.shape[1] - margin:]}
        for side, has_neighbour in neighbour.items():
            if has_neighbour:
                assert not edges[side].any(), (side, y, x)
        if plan.overlap == 0:
            assert bool((w == 1).all())
        # toward the frame border there is no ramp: the outermost row/column has the full weight
        if not neighbour["top"]:
            assert torch.equal(w[0], w.max(dim=0).values)
        if not neighbour["left"]:
            assert torch.equal(w[:, 0], w.max(dim=1).values)
        if not any(neighbour.values()):
            assert bool((w == 1).all())


@given(plans(), st.integers(0, 2**31 - 1))
def test_blending_crops_of_an_image_gives_it_back_everywhere(plan, seed):
    image = torch.rand(1, plan.padded_height, plan.padded_width, generator=torch.Generator().manual_seed(seed))
    blender = Blender(plan, channels=1)
    for y, x in plan.origins:
        blender.add(image[:, y:y + plan.tile_height, x:x + plan.tile_width], y, x)
    assert float(blender.weight.min()) > 0            # no pixel left without weight
    out = blender.result()
    assert out.shape == (1, plan.height, plan.width)
    torch.testing.assert_close(out, image[:, :plan.height, :plan.width])


@given(st.integers(2, 64), st.data())
def test_neighbours_at_the_regular_stride_sum_to_one(cells, data):
    """Two tiles exactly `overlap` apart: the trailing ramp of one and the leading ramp of
    the next add up to 1 at every pixel they share (a partition of unity)."""
    f = 8
    tile = f * cells
    overlap = f * data.draw(st.integers(1, cells - 1))
    stride = tile - overlap
    trailing, leading = _ramp(tile, overlap, False, True), _ramp(tile, overlap, True, False)
    torch.testing.assert_close(trailing[stride:] + leading[:overlap], torch.ones(overlap))
    assert bool((trailing[:stride] == 1).all()) and bool((leading[overlap:] == 1).all())
