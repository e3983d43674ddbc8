import numpy as np
import pytest

from edge4k.calibration.colour import srgb_from_cam
from edge4k.calibration.dng import QUAD_BAYER_PATTERN, XTRANS_PATTERN, write_dng
from edge4k.calibration.unprocess import RawCapture
from edge4k.errors import Edge4KError
from edge4k.kernels.raw import meta_vector, pack, read_raw, thumbnail

# Digital numbers written at each colour's sites: packing must route them to [R, Gr, Gb, B].
SITE_VALUES = {"R": 4000, "Gr": 6000, "Gb": 7000, "B": 9000}
CELLS = {"RGGB": ("R", "Gr", "Gb", "B"), "BGGR": ("B", "Gb", "Gr", "R"),
         "GRBG": ("Gr", "R", "B", "Gb"), "GBRG": ("Gb", "B", "R", "Gr")}


@pytest.mark.parametrize("cfa", sorted(CELLS))
def test_all_bayer_patterns_pack_to_canonical_rggb(tmp_path, cfa):
    h, w = 32, 48
    mosaic = np.zeros((h, w), np.uint16)
    for k, site in enumerate(CELLS[cfa]):
        mosaic[k // 2::2, k % 2::2] = SITE_VALUES[site]
    cap = RawCapture(mosaic=mosaic, cfa=cfa, black_level=1000, white_level=11000,
                     as_shot_neutral=(0.5, 1.0, 0.8))
    frame = read_raw(write_dng(tmp_path / f"{cfa}.dng", cap))
    assert frame.cfa == cfa
    packed = pack(frame)
    assert packed.shape == (4, h // 2, w // 2) and packed.dtype == np.float32
    gains = [2.0, 1.0, 1.0, 1.25]   # 1 / neutral, green = 1
    for c, site in enumerate(("R", "Gr", "Gb", "B")):
        expected = (SITE_VALUES[site] - 1000) / 10000 * gains[c]
        np.testing.assert_allclose(packed[c], expected, rtol=1e-5)


def test_levels_matrix_and_conditioning_come_from_the_file(make_dng):
    import tifffile
    path = make_dng(64, 96, "GRBG")
    frame = read_raw(path)
    assert frame.white_level == 16383 and np.all(frame.black_level == 512)
    with tifffile.TiffFile(path) as tif:     # AsShotNeutral, read from the file without LibRaw
        neutral = np.array(tif.pages[0].tags[50728].value, float).reshape(3, 2)
    neutral = neutral[:, 0] / neutral[:, 1]
    np.testing.assert_allclose(frame.wb_gains, neutral[1] / neutral, rtol=1e-5)
    meta = meta_vector(frame)
    assert meta.shape == (12,)
    np.testing.assert_allclose(meta[3:].reshape(3, 3).sum(1), 1.0, atol=1e-3)   # rows of rgb_cam sum to 1


def test_sample_matrix_matches_the_camera_it_was_made_with(sample_dng):
    from edge4k.calibration.colour import CAMERA_MATRICES
    frame = read_raw(sample_dng)
    np.testing.assert_allclose(frame.srgb_from_cam, srgb_from_cam(CAMERA_MATRICES["Canon EOS 5D Mark II"]),
                               atol=1e-3)


def test_thumbnail_is_an_area_average():
    packed = np.random.default_rng(0).random((4, 64, 96)).astype(np.float32)
    t = thumbnail(packed, 16)
    assert t.shape == (4, 16, 16)
    # each thumbnail pixel is the mean of its own 4x6 block (a constant or shifted thumbnail fails)
    np.testing.assert_allclose(t, packed.reshape(4, 16, 4, 16, 6).mean((2, 4)), rtol=1e-5)


@pytest.mark.parametrize("kind, pattern, needle", [
    ("xtrans", XTRANS_PATTERN, "X-Trans"),
    ("quad", QUAD_BAYER_PATTERN, "Quad-Bayer"),
    ("mono", None, "monochrome"),
])
def test_non_bayer_sensors_are_refused_by_name(tmp_path, kind, pattern, needle):
    mosaic = np.full((48, 72), 3000, np.uint16)
    path = write_dng(tmp_path / f"{kind}.dng", mosaic, cfa_pattern=pattern, monochrome=pattern is None)
    with pytest.raises(Edge4KError, match=needle):
        read_raw(path)


def test_missing_truncated_and_odd_files(tmp_path, sample_dng):
    with pytest.raises(Edge4KError, match="not found"):
        read_raw(tmp_path / "nope.dng")
    cut = tmp_path / "cut.dng"
    cut.write_bytes(open(sample_dng, "rb").read()[:4096])
    with pytest.raises(Edge4KError, match="cannot read RAW"):
        read_raw(cut)
    junk = tmp_path / "junk.dng"
    junk.write_bytes(b"not a raw file" * 100)
    with pytest.raises(Edge4KError, match="cannot read RAW"):
        read_raw(junk)
    odd = write_dng(tmp_path / "odd.dng", np.full((47, 72), 3000, np.uint16))
    with pytest.raises(Edge4KError, match="odd frame size"):
        read_raw(odd)
