"""The DNG writer: synthetic captures -> DNG -> LibRaw (rawpy) round trips, bad input, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile

from edge4k.datasets import dng as dng_module
from edge4k.datasets.dng import QUAD_BAYER_PATTERN, XTRANS_PATTERN, write_dng
from edge4k.datasets.unprocess import CFA_PATTERNS, mosaic, unprocess
from edge4k.kernels.colour import srgb_decode, srgb_encode, srgb_from_cam

SAMPLE = Path(__file__).resolve().parents[1] / "edge4k" / "data" / "sample.dng"
BAYER = ["RGGB", "BGGR", "GRBG", "GBRG"]


def _test_image(h: int = 32, w: int = 48) -> np.ndarray:
    """Smooth colour gradients plus texture; LibRaw needs at least 22 px a side."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    rng = np.random.default_rng(7)
    img = np.stack([x, y, 1 - x * y], axis=-1) * 0.8 + rng.uniform(0, 0.2, (h, w, 3))
    return img.astype(np.float32)


def _tags(path) -> dict:
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1
        return {t.code: t.value for t in tif.pages[0].tags}


def _ratios(flat) -> np.ndarray:
    flat = np.asarray(flat, dtype=np.float64)
    return flat[0::2] / flat[1::2]


@pytest.mark.parametrize("cfa", BAYER)
def test_bayer_round_trip_through_libraw(tmp_path, cfa):
    cap = unprocess(_test_image(), cfa=cfa, iso=800, rng=np.random.default_rng(1))
    path = write_dng(tmp_path / f"{cfa}.dng", cap)

    tags = _tags(path)
    assert tags[254] == 0 and tags[262] == 32803 and tags[258] == 16 and tags[259] == 1
    assert tuple(tags[50706]) == (1, 4, 0, 0)
    assert tuple(tags[33421]) == (2, 2)
    assert tuple(tags[33422]) == tuple(CFA_PATTERNS[cfa].ravel())
    assert tags[50778] == 21
    np.testing.assert_allclose(_ratios(tags[50721]), cap.xyz_to_cam.ravel(), atol=1e-4)
    np.testing.assert_allclose(_ratios(tags[50728]), cap.as_shot_neutral, atol=1e-5)

    with rawpy.imread(str(path)) as raw:
        assert raw.num_colors == 3
        np.testing.assert_array_equal(raw.raw_image_visible, cap.mosaic)
        assert list(raw.black_level_per_channel) == [cap.black_level] * 4
        assert raw.white_level == cap.white_level
        # LibRaw numbers the second green 3; color_desc maps indices to letters.
        desc = raw.color_desc.decode()
        letters = np.array(list(desc))[raw.raw_colors_visible]
        assert "".join(letters[:2, :2].ravel()) == cfa
        expected = np.array(list("RGB"))[np.tile(CFA_PATTERNS[cfa], (16, 24))]
        np.testing.assert_array_equal(letters, expected)
        # camera_whitebalance is 1/AsShotNeutral (up to scale) in R, G, B order.
        wb = np.asarray(raw.camera_whitebalance[:3]) / raw.camera_whitebalance[1]
        np.testing.assert_allclose(wb, cap.wb_gains, rtol=1e-4)
        # LibRaw 0.22 leaves rgb_xyz_matrix at zero for a DNG from an unknown
        # maker; it turns ColorMatrix1 into color_matrix (camera -> sRGB, rows
        # normalised, 4-decimal rounded), which is srgb_from_cam(ColorMatrix1).
        np.testing.assert_allclose(
            raw.color_matrix[:, :3], srgb_from_cam(cap.xyz_to_cam), atol=1e-4
        )


def test_srgb_transfer_is_exact_and_invertible():
    x = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(srgb_decode(srgb_encode(x)), x, atol=1e-12)
    assert srgb_encode(0.0031308) == pytest.approx(12.92 * 0.0031308)
    assert srgb_decode(0.5) == pytest.approx(((0.5 + 0.055) / 1.055) ** 2.4)
    assert srgb_encode(np.float32(0.2)).dtype == np.float32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(srgb=np.zeros((5, 4, 3))), "even"),
        (dict(srgb=np.zeros((4, 4))), "HxWx3"),
        (dict(srgb=np.zeros((4, 4, 4))), "HxWx3"),
        (dict(srgb=np.zeros((4, 4, 3), np.int32)), "float"),
        (dict(srgb=np.full((4, 4, 3), 1.5)), "[0, 1]"),
        (dict(srgb=np.full((4, 4, 3), np.nan)), "[0, 1]"),
        (dict(cfa="RGBG"), "RGGB, BGGR, GRBG, GBRG"),
        (dict(camera="Leica M3"), "unknown camera"),
        (dict(black_level=20000, bits=14), "black level"),
        (dict(illuminant="candle"), "unknown illuminant"),
    ],
)
def test_unprocess_rejects_bad_input(kwargs, message):
    args = dict(srgb=np.zeros((4, 4, 3), np.float32), rng=np.random.default_rng(0))
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        unprocess(args.pop("srgb"), **args)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_mosaic_and_writer_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown cfa"):
        mosaic(np.zeros((4, 4, 3)), "XYZW")
    with pytest.raises(ValueError, match="HxWx3"):
        mosaic(np.zeros((4, 4)), "RGGB")
    frame = np.zeros((24, 24), np.uint16)
    with pytest.raises(ValueError, match="cfa_pattern"):
        write_dng(tmp_path / "x.dng", frame, cfa_pattern=np.array([[0, 3], [1, 2]]))
    with pytest.raises(ValueError, match="uint16"):
        write_dng(tmp_path / "x.dng", frame.astype(np.float32))
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "keep.dng"
    target.write_bytes(b"old")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(dng_module.tifffile, "imwrite", broken)
    with pytest.raises(OSError, match="disk full"):
        write_dng(target, np.zeros((24, 24), np.uint16))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.dng"]


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("xtrans", dict(cfa_pattern=XTRANS_PATTERN)),
        ("quad", dict(cfa_pattern=QUAD_BAYER_PATTERN)),
        ("mono", dict(monochrome=True)),
    ],
)
def test_unsupported_layouts_are_written_faithfully(tmp_path, name, kwargs):
    cap = unprocess(_test_image(24, 48), iso=None, rng=np.random.default_rng(2))
    path = write_dng(tmp_path / f"{name}.dng", cap, **kwargs)
    tags = _tags(path)
    if name == "mono":
        assert tags[262] == 34892 and tags[277] == 1 and 33422 not in tags
    else:
        pattern = kwargs["cfa_pattern"]
        assert tags[262] == 32803
        assert tuple(tags[33421]) == pattern.shape
        assert tuple(tags[33422]) == tuple(pattern.ravel())
    with rawpy.imread(str(path)) as raw:  # LibRaw opens all three
        np.testing.assert_array_equal(raw.raw_image_visible, cap.mosaic)
        if name == "xtrans":
            np.testing.assert_array_equal(raw.raw_pattern, XTRANS_PATTERN)
        if name == "mono":
            assert raw.num_colors == 1


def test_shipped_sample():
    assert SAMPLE.stat().st_size < 2 * 1024 * 1024
    with rawpy.imread(str(SAMPLE)) as raw:
        assert raw.raw_image_visible.shape == (512, 512)
        letters = np.array(list(raw.color_desc.decode()))[raw.raw_colors_visible[:2, :2]]
        assert "".join(letters.ravel()) == "RGGB"
        assert list(raw.black_level_per_channel) == [512] * 4 and raw.white_level == 16383


def test_make_sample_regenerates_the_shipped_file(tmp_path):
    pytest.importorskip("skimage")
    from edge4k.datasets.make_sample import make_sample

    out = make_sample(tmp_path / "sample.dng")
    with rawpy.imread(str(out)) as new, rawpy.imread(str(SAMPLE)) as old:
        diff = np.abs(new.raw_image_visible.astype(int) - old.raw_image_visible.astype(int))
        # Identical on the reference platform; allow 1 DN for libm rounding.
        assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3
