import numpy as np
import pytest

from edge4k.calibration.colour import srgb_from_cam
from edge4k.calibration.dng import QUAD_BAYER_PATTERN, XTRANS_PATTERN, write_dng
from edge4k.calibration.unprocess import RawCapture
from edge4k.errors import Edge4KError
from edge4k.kernels.raw import (META, META_CENTRE, META_SCALE, PHASE_PAD, RawFrame, normalised_gains, pack, pack_linear, phase_padding,
                               prepare, read_raw, thumbnail)

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
    packed = pack_linear(frame)
    # Reflect-padded into RGGB phase: (H + 6) / 2 x (W + 6) / 2 whatever the pattern.
    assert packed.shape == (4, (h + PHASE_PAD) // 2, (w + PHASE_PAD) // 2) and packed.dtype == np.float32
    gains = [2.0, 1.0, 1.0, 1.25]   # 1 / neutral, scaled so the smallest is 1
    for c, site in enumerate(("R", "Gr", "Gb", "B")):
        expected = (SITE_VALUES[site] - 1000) / 10000 * gains[c]
        np.testing.assert_allclose(packed[c], expected, rtol=1e-5)
    np.testing.assert_allclose(pack(frame), np.sqrt(packed), rtol=1e-6)   # the network's companded input


@pytest.mark.parametrize("cfa", sorted(CELLS))
def test_phase_padding_puts_the_red_site_first_and_the_frame_at_the_crop(cfa):
    h, w = 8, 12
    mosaic = np.arange(h * w, dtype=np.uint16).reshape(h, w) * 10 + 100
    frame = RawFrame(bayer=mosaic, cfa=cfa, black_level=np.zeros(4), white_level=65535.0,
                     wb_gains=np.ones(3), srgb_from_cam=np.eye(3))
    (top, bottom), (left, right) = phase_padding(cfa)
    assert top + bottom == left + right == PHASE_PAD and top >= 2 and left >= 2
    padded = np.pad(mosaic, ((top, bottom), (left, right)), mode="reflect")
    assert cfa[(top % 2) * 2 + left % 2] == "R"          # the padded frame starts on a red site
    packed = pack_linear(frame) * 65535
    np.testing.assert_allclose(packed[0], padded[0::2, 0::2], rtol=1e-6)
    np.testing.assert_allclose(packed[3], padded[1::2, 1::2], rtol=1e-6)
    np.testing.assert_array_equal(padded[top:top + h, left:left + w], mosaic)


def test_highlights_are_clipped_after_white_balance():
    mosaic = np.full((8, 8), 16000, np.uint16)              # every site at the white level
    frame = RawFrame(bayer=mosaic, cfa="RGGB", black_level=np.zeros(4), white_level=16000.0,
                     wb_gains=np.array([2.2, 1.0, 1.6]), srgb_from_cam=np.eye(3))
    np.testing.assert_array_equal(pack_linear(frame), 1.0)    # clipped white, not tinted


def test_levels_matrix_and_conditioning_come_from_the_file(make_dng):
    import tifffile
    path = make_dng(64, 96, "GRBG")
    frame = read_raw(path)
    assert frame.white_level == 16383 and np.all(frame.black_level == 512)
    with tifffile.TiffFile(path) as tif:     # AsShotNeutral, read from the file without LibRaw
        neutral = np.array(tif.pages[0].tags[50728].value, float).reshape(3, 2)
    neutral = neutral[:, 0] / neutral[:, 1]
    np.testing.assert_allclose(frame.wb_gains, neutral[1] / neutral, rtol=1e-5)
    np.testing.assert_allclose(frame.srgb_from_cam.sum(1), 1.0, atol=1e-3)   # rows of rgb_cam sum to 1
    prep = prepare(frame, 16)
    assert prep.meta.shape == (len(META),) and np.all(np.isfinite(prep.meta))
    gains = normalised_gains(frame.wb_gains)
    logs = prep.meta * META_SCALE + META_CENTRE
    np.testing.assert_allclose(np.exp(logs[META.index("log_gain_r")]), gains[0], rtol=1e-5)
    np.testing.assert_allclose(np.exp(logs[META.index("log_exposure")]), prep.exposure, rtol=1e-5)
    assert np.all(np.abs(prep.meta) < 3)                  # normalised for int8 builds


def test_sample_matrix_matches_the_camera_it_was_made_with(sample_dng):
    from edge4k.calibration.colour import camera_matrix
    frame = read_raw(sample_dng)
    np.testing.assert_allclose(frame.srgb_from_cam, srgb_from_cam(camera_matrix("Canon EOS 5D Mark II")),
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
