"""Training data: the photo split, capture -> frontend -> target, crops, batches, calibration tiles."""
import numpy as np
import pytest
import torch
from conftest import smooth_image, tiny_model

from edge4k.calibration.tiles import PhotoSource, calibration_inputs
from edge4k.datasets.dng import write_dng
from edge4k.datasets.photos import PHOTOS, load_folder, load_photo, photo_names
from edge4k.datasets.unprocess import CFA_PATTERNS, scene_linear, unprocess
from edge4k.errors import Edge4KError
from edge4k.kernels.colour import cam_from_srgb
from edge4k.kernels.postprocess import finish
from edge4k.kernels.raw import META, RawFrame, normalised_gains, pack, pack_linear, prepare, read_raw
from edge4k.training.data import PairSampler, clean_target, crop_pair, make_scene


def psnr(a, b):
    return -10 * np.log10(np.mean((np.asarray(a, np.float64) - b) ** 2))


def nearest_cam(packed):
    """Packed [R, Gr, Gb, B] -> HxWx3 camera RGB, one colour per 2x2 cell."""
    rgb = np.stack([packed[0], (packed[1] + packed[2]) / 2, packed[3]], -1)
    return rgb.repeat(2, 0).repeat(2, 1)


def block_image(h=32, w=48, seed=3, block=2):
    """Block-constant colours (one per block x block square, away from highlights)."""
    rng = np.random.default_rng(seed)
    grey = rng.uniform(0.3, 0.6, (h // block, w // block, 1))
    blocks = 0.5 * rng.uniform(0.15, 0.75, (h // block, w // block, 3)) + 0.5 * grey
    return np.repeat(np.repeat(blocks, block, 0), block, 1).astype(np.float32)


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


def finished_nearest(packed_linear, frame, prep, look="neutral"):
    """Nearest-neighbour demosaic of linear packed planes, cropped to the frame and finished."""
    top, left = prep.crop
    cam = nearest_cam(packed_linear)[top:top + frame.height, left:left + frame.width]
    x = torch.from_numpy(np.sqrt(cam).transpose(2, 0, 1).astype(np.float32))
    return finish(x, frame.srgb_from_cam, prep.exposure, look).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("cfa", sorted(CFA_PATTERNS))
def test_capture_through_the_frontend_keeps_the_clean_sensor_image(cfa):
    # Inside 8x8 blocks of constant colour the mosaic loses nothing: there the frontend must return
    # the record's noise-free sensor image, white-balanced, up to the ADC's quantisation.
    img = block_image(64, 96, block=8)
    cap = unprocess(img, cfa=cfa, iso=None, ev=0.0, bits=14, black_level=512, rng=np.random.default_rng(5))
    frame = RawFrame.from_capture(cap)
    prep = prepare(frame, 16)
    top, left = prep.crop
    truth = clean_target(cap, frame)[:, top:top + 64, left:left + 96]
    target = finish(torch.from_numpy(truth), frame.srgb_from_cam, prep.exposure, "neutral").permute(1, 2, 0).numpy()
    inside = (np.arange(64) % 8 >= 2)[:, None] & (np.arange(64) % 8 < 6)[:, None] \
        & (np.arange(96) % 8 >= 2)[None, :] & (np.arange(96) % 8 < 6)[None, :]
    out = finished_nearest(pack_linear(frame), frame, prep)
    assert psnr(out[inside], target[inside]) > 45


def test_neutral_target_under_d65_is_the_photo_scene_at_mid_grey_exposure():
    # D65 needs no adaptation: the camera's white-balanced RGB through its own matrix is the scene
    # again, scaled so that the mean luminance sits at 0.18 * 2^EV. Colour is exact by construction.
    img = smooth_image(64, 96) * 0.8
    for ev in (0.0, -2.0):
        cap = unprocess(img, illuminant="D65", iso=None, ev=ev, rng=np.random.default_rng(3))
        frame = RawFrame.from_capture(cap)
        cam = np.minimum(cap.clean * normalised_gains(frame.wb_gains)[[0, 1, 3]], 1)
        scene = scene_linear(img)
        expected = scene * 0.18 * 2 ** ev / (scene @ [0.2126729, 0.7151522, 0.0721750]).mean()
        np.testing.assert_allclose(cam @ np.linalg.inv(cam_from_srgb(cap.xyz_to_cam)).T, np.minimum(expected, 1),
                                   atol=2e-3)


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
    scene = make_scene(block_image(96, 128, block=8), np.random.default_rng(0), thumb_size=16, cfa="BGGR", iso=None)
    top, left = scene.prepared.crop
    for y, x in [(4, 4), (10, 34), (64, 96)]:
        packed, target = crop_pair(scene, y, x, 32)
        rebuilt = np.sqrt(nearest_cam(packed ** 2)).transpose(2, 0, 1)
        rows, cols = (np.arange(32) + y - top) % 8, (np.arange(32) + x - left) % 8   # inside the 8x8 blocks
        inside = ((rows >= 2) & (rows < 6))[:, None] & ((cols >= 2) & (cols < 6))[None, :]
        assert psnr(rebuilt[:, inside], target[:, inside]) > 45
    with pytest.raises(ValueError):
        crop_pair(scene, 1, 0, 32)


def test_sampler_batches_are_shaped_seeded_and_varied():
    images = {"a": smooth_image(256, 320, seed=1), "b": smooth_image(300, 256, seed=2)}
    sampler = PairSampler(images, crop=64, thumb_size=16, multiple=16, seed=4)
    b = sampler.batch(step=3, size=6)
    assert b["packed"].shape == (6, 4, 32, 32) and b["target"].shape == (6, 3, 64, 64)
    assert b["thumb"].shape == (6, 4, 16, 16) and b["meta"].shape == (6, len(META))
    assert b["matrix"].shape == (6, 3, 3) and b["exposure"].shape == (6,)
    assert all(v.dtype == torch.float32 for v in b.values())
    assert torch.all(b["exposure"] >= 1) and torch.all(b["target"] <= 1) and torch.all(b["packed"] >= 0)
    again = sampler.batch(step=3, size=6)
    assert all(torch.equal(b[k], again[k]) for k in b)                 # a batch depends only on its step
    assert not torch.equal(b["packed"], sampler.batch(step=4, size=6)["packed"])
    other_rank = PairSampler(images, crop=64, thumb_size=16, multiple=16, seed=4, rank=1)
    assert not torch.equal(b["packed"], other_rank.batch(step=3, size=6)["packed"])
    assert len({tuple(m.tolist()) for m in b["meta"]}) > 1             # several scenes (WB, noise) per batch
    assert len({tuple(m.flatten().tolist()) for m in b["matrix"]}) > 1  # several cameras


def test_uint8_photos_give_the_same_batches_as_float_ones():
    img = smooth_image(256, 256, seed=1)
    as_uint8 = (img * 255 + 0.5).astype(np.uint8)
    a = PairSampler({"a": as_uint8.astype(np.float32) / 255}, crop=64, thumb_size=16, multiple=16).batch(0, 4)
    b = PairSampler({"a": as_uint8}, crop=64, thumb_size=16, multiple=16).batch(0, 4)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)


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
