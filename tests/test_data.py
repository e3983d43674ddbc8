"""Training data: the photo split, unprocess -> frontend -> reprocess, crops, calibration tiles."""
import numpy as np
import pytest
import torch

from edge4k.calibration.dng import write_dng
from edge4k.calibration.photos import PHOTOS, load_folder, load_photo, photo_names
from edge4k.calibration.tiles import PhotoSource, calibration_inputs
from edge4k.calibration.unprocess import CFA_PATTERNS, reprocess, unprocess
from edge4k.errors import Edge4KError
from edge4k.kernels.raw import RawFrame, pack, read_raw
from edge4k.models.data import PairSampler, crop_pair, make_scene

from conftest import smooth_image, tiny_model


def psnr(a, b):
    return -10 * np.log10(np.mean((np.asarray(a, np.float64) - b) ** 2))


def nearest_cam(packed):
    """Packed [R, Gr, Gb, B] -> HxWx3 camera RGB, one colour per 2x2 cell."""
    rgb = np.stack([packed[0], (packed[1] + packed[2]) / 2, packed[3]], -1)
    return rgb.repeat(2, 0).repeat(2, 1)


def block_image(h=32, w=48, seed=3):
    """Block-constant colours (one per 2x2 cell, away from highlights): the mosaic loses nothing."""
    rng = np.random.default_rng(seed)
    grey = rng.uniform(0.3, 0.6, (h // 2, w // 2, 1))
    blocks = 0.5 * rng.uniform(0.15, 0.75, (h // 2, w // 2, 3)) + 0.5 * grey
    return np.repeat(np.repeat(blocks, 2, 0), 2, 1).astype(np.float32)


def test_split_is_fixed_disjoint_and_keeps_the_sample_photo_held_out():
    train, held = photo_names("train"), photo_names("held-out")
    assert train and held and not set(train) & set(held)
    assert set(train) | set(held) == {p.name for p in PHOTOS}
    assert "astronaut" in held                       # the embedded sample.dng is made from it
    assert {"motorcycle_left", "motorcycle_right"} <= set(train)   # one stereo scene, one side
    for name in train + held:
        img = load_photo(name)
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert img.shape[0] % 2 == 0 and img.shape[1] % 2 == 0 and min(img.shape[:2]) >= 256
        assert 0 <= img.min() and img.max() <= 1 and img.std() > 0.05


@pytest.mark.parametrize("cfa", sorted(CFA_PATTERNS))
def test_unprocess_then_frontend_then_reprocess_is_near_lossless(cfa):
    img = block_image()
    cap = unprocess(img, cfa=cfa, iso=None, rng=np.random.default_rng(5))
    frame = RawFrame.from_capture(cap)
    out = reprocess(nearest_cam(pack(frame)), srgb_from_cam=frame.srgb_from_cam, exposure_gain=cap.exposure_gain)
    assert psnr(out, img) > 45   # only 14-bit quantisation is lost


def test_from_capture_packs_exactly_like_the_dng_reader(tmp_path):
    cap = unprocess(smooth_image(64, 96), cfa="GBRG", iso=800, rng=np.random.default_rng(2))
    mem, disk = RawFrame.from_capture(cap), read_raw(write_dng(tmp_path / "c.dng", cap))
    assert mem.cfa == disk.cfa and mem.white_level == disk.white_level
    np.testing.assert_array_equal(mem.bayer, disk.bayer)
    np.testing.assert_allclose(mem.black_level, disk.black_level)
    np.testing.assert_allclose(mem.wb_gains, disk.wb_gains, rtol=1e-5)
    np.testing.assert_allclose(mem.srgb_from_cam, disk.srgb_from_cam, atol=1e-3)   # DNG stores 1e-4 steps
    np.testing.assert_allclose(pack(mem), pack(disk), atol=1e-4)


def test_crops_line_up_with_their_targets():
    scene = make_scene(block_image(96, 128), np.random.default_rng(0), thumb_size=16, cfa="BGGR", iso=None)
    for y, x in [(0, 0), (10, 34), (64, 96)]:
        packed, target = crop_pair(scene, y, x, 32)
        out = reprocess(nearest_cam(packed), srgb_from_cam=scene.frame.srgb_from_cam,
                        exposure_gain=scene.capture.exposure_gain)
        assert psnr(out, target.transpose(1, 2, 0)) > 45
    with pytest.raises(ValueError):
        crop_pair(scene, 1, 0, 32)


def test_sampler_batches_are_shaped_seeded_and_varied():
    images = {"a": smooth_image(256, 320, seed=1), "b": smooth_image(300, 256, seed=2)}
    sampler = PairSampler(images, crop=64, thumb_size=16, multiple=16, seed=4)
    b = sampler.batch(step=3, size=6)
    assert b["packed"].shape == (6, 4, 32, 32) and b["target"].shape == (6, 3, 64, 64)
    assert b["thumb"].shape == (6, 4, 16, 16) and b["meta"].shape == (6, 12)
    assert all(v.dtype == torch.float32 for v in b.values())
    again = sampler.batch(step=3, size=6)
    assert all(torch.equal(b[k], again[k]) for k in b)                 # a batch depends only on its step
    assert not torch.equal(b["packed"], sampler.batch(step=4, size=6)["packed"])
    other_rank = PairSampler(images, crop=64, thumb_size=16, multiple=16, seed=4, rank=1)
    assert not torch.equal(b["packed"], other_rank.batch(step=3, size=6)["packed"])
    assert len({tuple(m.tolist()) for m in b["meta"]}) > 1             # several scenes (WB, camera) per batch


def test_bad_data_is_a_clear_error(tmp_path):
    with pytest.raises(Edge4KError, match="too small for a 64x64 crop: tiny \\(48x40\\)"):
        PairSampler({"tiny": smooth_image(40, 48)}, crop=64, thumb_size=16, multiple=16)
    with pytest.raises(Edge4KError, match="multiple of the latent compression 16"):
        PairSampler({"a": smooth_image(64, 64)}, crop=40, thumb_size=16, multiple=16)
    with pytest.raises(Edge4KError, match="holds no images"):
        load_folder(tmp_path)
    with pytest.raises(Edge4KError, match="not found"):
        load_folder(tmp_path / "nope")


@pytest.mark.parametrize("sources", [None, PhotoSource("train")])
def test_calibration_inputs_feed_every_stage(sources):
    model = tiny_model()
    items = list(calibration_inputs(model, tile_height=64, tile_width=96, batch=2, count=2, sources=sources))
    assert len(items) == 2
    for item in items:
        assert item["encoder"][0].shape == (2, 4, 32, 48)
        assert item["global"][0].shape == (1, 4, model.cfg.thumb_size, model.cfg.thumb_size)
        z, g = item["backbone"]
        assert z.shape == (2, model.cfg.latent_channels, 4, 6) and g.shape == (1, model.cfg.global_dim)
        assert item["decoder"][0].shape == z.shape and item["decoder"][1] is item["encoder"][0]
    if sources is not None:   # synthetic captures differ from frame to frame
        assert not torch.equal(items[0]["global"][1], items[1]["global"][1])
