import re

import numpy as np
import pytest
import torch

from edge4k.datasets.dng import QUAD_BAYER_PATTERN, XTRANS_PATTERN, write_dng
from edge4k.datasets.unprocess import RawCapture
from edge4k.errors import Edge4KError, Edge4KWarning
from edge4k.kernels.colour import srgb_from_cam
from edge4k.kernels.postprocess import ORIENTATIONS, stretch, stretched_size
from edge4k.kernels.raw import (
    EXIF_FROM_LIBRAW_FLIP,
    META,
    META_CENTRE,
    META_SCALE,
    PHASE_PAD,
    RawFrame,
    _frame_from_libraw,
    compand,
    exposure_gain,
    noise_estimate,
    normalised_gains,
    pack,
    pack_linear,
    phase_padding,
    prepare,
    read_raw,
    thumbnail,
)

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
    from edge4k.kernels.colour import camera_matrix
    frame = read_raw(sample_dng)
    np.testing.assert_allclose(frame.srgb_from_cam, srgb_from_cam(camera_matrix("Canon EOS 5D Mark II")),
                               atol=1e-3)


def test_thumbnail_is_an_area_average():
    packed = np.random.default_rng(0).random((4, 64, 96)).astype(np.float32)
    t = thumbnail(packed, 16)
    assert t.shape == (4, 16, 16)
    # each thumbnail pixel is the mean of its own 4x6 block (a constant or shifted thumbnail fails)
    np.testing.assert_allclose(t, packed.reshape(4, 16, 4, 16, 6).mean((2, 4)), rtol=1e-5)


def test_libraw_flips_map_to_the_exif_orientation_that_turns_the_image_the_same_way():
    # LibRaw's flip bits: 1 mirrors columns, 2 mirrors rows, 4 transposes (ORIENTATIONS lists
    # (rows, columns, transpose) per EXIF Orientation); and LibRaw reads EXIF o as "50132467"[o & 7].
    for flip, orientation in EXIF_FROM_LIBRAW_FLIP.items():
        assert ORIENTATIONS[orientation] == (bool(flip & 2), bool(flip & 1), bool(flip & 4)), flip
    for orientation in range(1, 9):
        assert EXIF_FROM_LIBRAW_FLIP[int("50132467"[orientation & 7])] == orientation


def test_noise_estimate_recovers_a_known_noise_line():
    """Gr and Gb drawn with variance shot * level + read over a brightness ramp, beside noise-free
    regions clipped at black and at the white level (which the estimate must leave out)."""
    rng = np.random.default_rng(0)
    shot, read = 4e-4, 2e-5
    level = np.tile(np.linspace(0.02, 0.8, 256), (256, 1))
    level[:, :32], level[:, -32:] = 0.0, 1.0

    def site():
        noisy = np.clip(level + rng.normal(size=level.shape) * np.sqrt(shot * level + read), 0, 1)
        return np.where((level == 0) | (level == 1), level, noisy)

    estimate = noise_estimate(compand(np.stack([site() for _ in range(4)]).astype(np.float32)))
    assert estimate[0] == pytest.approx(shot, rel=0.1)
    assert read / 2 < estimate[1] < 2 * read
    clean = compand(np.stack([level] * 4).astype(np.float32))   # no noise at all
    assert noise_estimate(clean) == pytest.approx((0.0, 0.0), abs=1e-12)
    assert noise_estimate(compand(np.full((4, 16, 16), 0.3, np.float32))) == (0.0, 0.0)   # too few blocks


@pytest.mark.parametrize("green, highlight, matrix_scale, expected", [
    ((0.04, 0.06), None, 1.0, 0.18 / 0.05),     # mean luminance 0.05 -> mid-grey
    ((0.04, 0.06), None, 2.0, 0.18 / 0.10),     # the camera -> sRGB matrix counts
    ((0.02, 0.02), 0.9, 1.0, 1 / 0.9),          # 5% of the frame at 0.9: held back so it does not clip
    ((0.0005, 0.0015), None, 1.0, 16.0),        # at most 16x
    ((0.5, 0.5), None, 1.0, 1.0),               # never darker than the capture
])
def test_exposure_gain_brings_the_mean_to_mid_grey_unless_highlights_clip(green, highlight, matrix_scale, expected):
    lin = np.empty((4, 20, 20))
    lin[0] = lin[3] = np.mean(green)
    lin[1], lin[2] = green
    if highlight is not None:
        lin[:, :1] = highlight                  # one row of 20: 5% of the thumbnail
    gain = exposure_gain(compand(lin).astype(np.float32), matrix_scale * np.eye(3))
    assert gain == pytest.approx(expected, rel=1e-4)


def test_frame_checks_at_their_boundaries():
    base = dict(cfa="RGGB", black_level=0, white_level=65535, srgb_from_cam=np.eye(3))
    full = RawFrame(bayer=np.full((2, 2), 65535, np.int32), wb_gains=(2, 1, 1.5), **base)
    assert full.bayer.dtype == np.uint16 and full.bayer.max() == 65535
    with pytest.raises(Edge4KError, match="0..65535"):
        RawFrame(bayer=np.full((2, 2), 65536, np.int32), wb_gains=(2, 1, 1.5), **base)
    with pytest.raises(Edge4KError, match="three positive"):
        RawFrame(bayer=np.zeros((2, 2), np.uint16), wb_gains=(-2, 1, 1.5), **base)
    flat = RawFrame.from_buffer(np.arange(8, dtype=np.uint16), width=4, height=2, wb_gains=(2, 1, 1.5), **base)
    np.testing.assert_array_equal(flat.bayer, np.arange(8).reshape(2, 4))
    with pytest.raises(Edge4KError, match="holds 12 samples, but a 4x2 frame needs 8"):
        RawFrame.from_buffer(np.arange(12, dtype=np.uint16), width=4, height=2, wb_gains=(2, 1, 1.5), **base)
    with pytest.raises(Edge4KError, match="odd frame size 4x3"):
        RawFrame(bayer=np.zeros((3, 4), np.uint16), wb_gains=(2, 1, 1.5), **base)
    with pytest.raises(Edge4KError, match="unknown CFA None"):
        RawFrame(bayer=np.zeros((2, 2), np.uint16), wb_gains=(2, 1, 1.5), **{**base, "cfa": None})
    with pytest.raises(Edge4KError, match="white level 100 is not above black level 200"):
        RawFrame(bayer=np.zeros((2, 2), np.uint16), wb_gains=(2, 1, 1.5), **{**base, "black_level": 200,
                                                                             "white_level": 100})


def test_stretch_makes_pixels_square_by_librawss_rule():
    """LibRaw's stretch(): wide pixels (aspect > 1) widen the image, tall ones heighten it, the new
    side rounded half up (the DC120's 848 columns at 1.5346 become 1301, LibRaw's width)."""
    assert stretched_size(976, 848, 1.5345911949685533) == (976, 1301)
    assert stretched_size(488, 424, 1.5345911949685533) == (488, 651)       # its half-size preview
    assert stretched_size(4, 4, 1.5) == (4, 6) and stretched_size(4, 5, 1.5) == (4, 8)   # 7.5 rounds up
    assert stretched_size(10, 7, 0.5) == (20, 7) and stretched_size(10, 7, 1.0) == (10, 7)
    ramp = torch.arange(6, dtype=torch.float64).expand(3, 4, 6) / 7          # along the columns, float
    wide = stretch(ramp, 1.5)
    assert wide.shape == (3, 4, 9) and wide.dtype == torch.float64
    centres = (torch.arange(9, dtype=torch.float64) + 0.5) / 1.5 - 0.5      # where each new column falls
    torch.testing.assert_close(wide[1, 2], centres.clamp(0, 5) / 7)         # linear between pixel centres
    tall = stretch(ramp.transpose(1, 2), 0.5)
    assert tall.shape == (3, 12, 4)
    torch.testing.assert_close(tall[0, :, 3], (((torch.arange(12.0) + 0.5) / 2 - 0.5).clamp(0, 5) / 7).double())
    assert stretch(ramp, 1.0) is ramp


def _dng_with_pixel_aspect(make_dng, width: int, height: int) -> str:
    """A synthetic DNG whose DefaultScale says its pixels are width:height (LibRaw's pixel_aspect)."""
    from edge4k.datasets.dng import _RATIONAL, _rationals
    scale = (50718, _RATIONAL, 2, _rationals([width, height], 1000, False), True)   # DefaultScale
    return make_dng(48, 64, name=f"aspect_{width}_{height}.dng", extra_tags=(scale,))


def test_a_files_pixel_aspect_is_read_checked_and_reported(make_dng, tmp_path):
    from edge4k.kernels.raw import write_bayer
    frame = read_raw(_dng_with_pixel_aspect(make_dng, 3, 2))
    assert frame.pixel_aspect == 1.5 and frame.info()["pixel_aspect"] == 1.5
    assert read_raw(make_dng(48, 64, name="square.dng")).pixel_aspect == 1.0
    with pytest.warns(Edge4KWarning, match="pixel aspect 10 outside 0.25..4 ignored; rendering square pixels"):
        assert read_raw(_dng_with_pixel_aspect(make_dng, 10, 1)).pixel_aspect == 1.0
    base = dict(bayer=np.zeros((2, 2), np.uint16), cfa="RGGB", black_level=0, white_level=1023, wb_gains=(2, 1, 1.5),
                srgb_from_cam=np.eye(3))
    for bad in (0.2, 5, float("nan"), float("inf"), "1.5", None, True):
        with pytest.raises(Edge4KError, match="pixel_aspect must be a pixel's width over its height, 0.25..4"):
            RawFrame(**base, pixel_aspect=bad)
    with pytest.raises(Edge4KError, match="pixels are not square .* native runner does not stretch them"):
        write_bayer(frame, tmp_path / "f.json")


@pytest.mark.parametrize("gains, expected", [((4, 2, 3), (2, 1, 1, 1.5)), ((2, 1.5, 1), (2, 1.5, 1.5, 1))])
def test_white_balance_gains_are_scaled_so_the_smallest_is_one(gains, expected):
    np.testing.assert_allclose(normalised_gains(gains), expected)


def test_write_bayer_hands_the_runner_the_mosaic_and_what_packing_needs(tmp_path):
    import json

    from edge4k.kernels.raw import BAYER_SCHEMA, write_bayer
    frame = RawFrame(bayer=np.arange(48, dtype=np.uint16).reshape(6, 8), cfa="GBRG", black_level=(1, 2, 3, 4),
                     white_level=1000, wb_gains=(2, 1, 1.5), srgb_from_cam=np.eye(3), orientation=8,
                     exif={"iso": 100.0})
    sidecar = json.loads(write_bayer(frame, tmp_path / "f.json").read_text())
    assert sidecar["schema"] == BAYER_SCHEMA and sidecar["data"] == "f.u16"
    assert (sidecar["width"], sidecar["height"], sidecar["cfa"], sidecar["orientation"]) == (8, 6, "GBRG", 8)
    assert sidecar["black_level"] == [1, 2, 3, 4] and sidecar["white_level"] == 1000 and sidecar["exif"] == {"iso": 100.0}
    np.testing.assert_array_equal(np.fromfile(tmp_path / "f.u16", "<u2").reshape(6, 8), frame.bayer)


@pytest.mark.parametrize("colours, raw_type, shape, needle", [
    (1, "Flat", (2, 2), "monochrome sensor"),
    (3, "Stack", (2, 2), "non-mosaic (Stack"),
    (3, "Flat", (6, 6), "X-Trans CFA"),
    (3, "Flat", (4, 4), "Quad-Bayer CFA"),
    (3, "Flat", (3, 3), "non-Bayer CFA"),
])
def test_what_libraw_reports_names_the_sensor_that_is_refused(colours, raw_type, shape, needle):
    from types import SimpleNamespace
    kinds = SimpleNamespace(Flat=SimpleNamespace(name="Flat"), Stack=SimpleNamespace(name="Stack"))
    raw = SimpleNamespace(color_desc=b"RGBG", raw_pattern=np.zeros(shape, int), num_colors=colours,
                          raw_type=getattr(kinds, raw_type))
    raw.raw_type.Flat = kinds.Flat
    with pytest.raises(Edge4KError, match=re.escape(needle)):
        _frame_from_libraw(raw, "x.raw", {})


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
    # LibRaw reads missing image data as zeros (exiftool's metadata-only DNG test file): said, not
    # refused (a black frame with a black level of 0 reads the same)
    empty = write_dng(tmp_path / "empty.dng", np.zeros((48, 72), np.uint16))
    with pytest.warns(Edge4KWarning, match="every pixel is 0: a metadata-only or truncated file"):
        read_raw(empty)
