"""read_raw on what camera files carry and the synthetic writer does not make: an active
area inside masked borders, per-site black levels, white <= black, a missing white
balance or colour matrix; and, where EDGE4K_REAL_RAW_DIR names a folder of real camera
RAW files, each decoded file against rawpy's own view of it.

The test DNGs are written here with tifffile and the DNG tags spelled out, so what the
file says is known independently of the reader. Nothing here depends on pack()."""
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile

from edge4k.errors import Edge4KError, RawInputError
from edge4k.kernels.colour import srgb_from_cam
from edge4k.kernels.raw import _wb_gains, frame_colour, read_raw

CFA_CODES = {"RGGB": (0, 1, 1, 2), "BGGR": (2, 1, 1, 0), "GRBG": (1, 0, 2, 1), "GBRG": (1, 2, 0, 1)}
MATRIX = np.array([[0.9, -0.3, -0.1], [-0.4, 1.2, 0.2], [-0.1, 0.2, 0.6]])   # XYZ -> camera
CAMERA_RAW_SUFFIXES = {".dng", ".nef", ".cr2", ".cr3", ".arw", ".raf", ".rw2", ".orf", ".pef", ".srw", ".nrw"}


def _rationals(values, denominator):
    return [x for v in np.ravel(values) for x in (int(round(float(v) * denominator)), denominator)]


def camera_dng(path, data, *, cfa="RGGB", black=512, white=16000, neutral=(0.5, 1.0, 0.8), matrix=MATRIX,
               active_area=None):
    """A CFA DNG with the given tags; black is one level or four (one per 2x2 site, row-major);
    neutral=None / matrix=None leave AsShotNeutral / ColorMatrix1 out."""
    tags = [(50706, 1, 4, (1, 4, 0, 0), True), (50707, 1, 4, (1, 1, 0, 0), True),
            (271, 2, 0, "Edge4K", True), (272, 2, 0, "Test camera", True), (50708, 2, 0, "Edge4K test", True),
            (33421, 3, 2, (2, 2), True), (33422, 1, 4, CFA_CODES[cfa], True), (50710, 1, 3, (0, 1, 2), True),
            (50711, 3, 1, 1, True), (50717, 4, 1, white, True)]
    if np.ndim(black):
        tags += [(50713, 3, 2, (2, 2), True), (50714, 4, 4, tuple(int(b) for b in black), True)]
    else:
        tags.append((50714, 4, 1, int(black), True))
    if matrix is not None:
        tags += [(50721, 10, 9, _rationals(matrix, 10000), True), (50778, 3, 1, 21, True)]
    if neutral is not None:
        tags.append((50728, 5, 3, _rationals(neutral, 1000000), True))
    if active_area is not None:
        tags.append((50829, 4, 4, tuple(active_area), True))   # top, left, bottom, right
    tifffile.imwrite(path, np.asarray(data, np.uint16), photometric=32803, subfiletype=0, compression=None,
                     metadata=None, extratags=tags)
    return path


def gradient(h, w):
    return (1000 + np.arange(h)[:, None] * 37 + np.arange(w)[None, :] * 11).astype(np.uint16)


def test_active_area_drops_the_masked_borders(tmp_path):
    data = gradient(52, 76)
    masked = np.ones_like(data, bool)
    masked[2:50, 4:72] = False
    data[masked] = 60000                                       # optical black / masked sensor rows and columns
    frame = read_raw(camera_dng(tmp_path / "a.dng", data, active_area=(2, 4, 50, 72)))
    assert (frame.height, frame.width) == (48, 68) and frame.cfa == "RGGB"
    np.testing.assert_array_equal(frame.bayer, data[2:50, 4:72])


@pytest.mark.parametrize("cfa", sorted(CFA_CODES))
def test_per_site_black_levels_follow_the_cfa(tmp_path, cfa):
    # BlackLevel per 2x2 site (row-major: top-left, top-right, bottom-left, bottom-right)
    sites = (500, 510, 520, 530)
    frame = read_raw(camera_dng(tmp_path / f"{cfa}.dng", gradient(32, 48), cfa=cfa, black=sites))
    assert frame.cfa == cfa
    by_colour = {}
    for k, code in enumerate(CFA_CODES[cfa]):   # name each site: R, B, and the green on R's row (Gr) or B's (Gb)
        row = CFA_CODES[cfa][2 * (k // 2):2 * (k // 2) + 2]
        by_colour[{0: "R", 2: "B"}.get(code) or ("Gr" if 0 in row else "Gb")] = sites[k]
    assert list(frame.black_level) == [by_colour[c] for c in ("R", "Gr", "Gb", "B")]
    assert frame.white_level == 16000


@pytest.mark.parametrize("black, white", [(5000, 4000), (4000, 4000), ((500, 500, 500, 16001), 16000)])
def test_white_not_above_black_is_refused(tmp_path, black, white):
    path = camera_dng(tmp_path / "levels.dng", np.full((32, 48), 3000), black=black, white=white)
    with pytest.raises(Edge4KError, match=r"white level .* is not above black level"):
        read_raw(path)


def test_white_balance_is_the_as_shot_neutral(tmp_path):
    frame = read_raw(camera_dng(tmp_path / "wb.dng", gradient(32, 48), neutral=(0.4, 1.0, 0.625)))
    np.testing.assert_allclose(frame.wb_gains, [2.5, 1.0, 1.6], rtol=1e-5)


def test_without_as_shot_neutral_the_white_balance_is_daylight(tmp_path):
    import rawpy
    path = camera_dng(tmp_path / "nowb.dng", gradient(32, 48), neutral=None)
    frame = read_raw(path)
    with rawpy.imread(str(path)) as raw:
        assert min(raw.camera_whitebalance[:3]) == 0                  # the file has no as-shot white balance
        daylight = np.array(raw.daylight_whitebalance[:3])
    # until a white balance is chosen (rendering falls back to auto), the camera's D65 white: LibRaw's daylight
    np.testing.assert_allclose(frame.wb_gains, daylight / daylight[1], rtol=2e-3)
    assert not np.allclose(frame.wb_gains, 1.0)                       # derived from the colour matrix, not a default
    assert frame.wb_source == "as-shot-missing"


def test_without_any_colour_matrix_the_frame_is_refused_never_taken_as_srgb(tmp_path):
    # no matrix in the file, none in LibRaw's or Edge4K's table, and LibRaw renders it with the identity
    with pytest.raises(RawInputError, match="no colour matrix for this camera"):
        read_raw(camera_dng(tmp_path / "nomatrix.dng", gradient(32, 48), neutral=None, matrix=None))


def libraw(**fields):
    base = dict(camera_whitebalance=[0.0, 0.0, 0.0, 0.0], daylight_whitebalance=[0.0, 0.0, 0.0, 0.0],
                color_matrix=np.zeros((3, 4)), rgb_xyz_matrix=np.zeros((4, 3)))
    return SimpleNamespace(**{**base, **fields})


@pytest.mark.parametrize("camera, daylight, expected", [
    ([2048.0, 1024.0, 1536.0, 0.0], [1.0, 2.0, 4.0, 0.0], [2.0, 1.0, 1.5]),     # as shot
    ([0.0, 1.0, 0.0, 0.0], [3.0, 1.5, 2.4, 0.0], None),                        # PiDNG's missing as-shot
    ([1.0, -1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], None),
])
def test_as_shot_white_balance_is_taken_only_when_valid(camera, daylight, expected):
    gains = _wb_gains(libraw(camera_whitebalance=camera, daylight_whitebalance=daylight))
    if expected is None:
        assert gains is None      # the render falls back to auto, with a warning (test_rawcolour.py)
    else:
        np.testing.assert_allclose(gains, expected)


def test_colour_matrix_sources_in_order():
    rgb_cam = np.array([[1.6, -0.5, -0.1, 0.0], [-0.2, 1.5, -0.3, 0.0], [0.0, -0.4, 1.4, 0.0]])
    matrix, source, _ = frame_colour(libraw(color_matrix=rgb_cam, rgb_xyz_matrix=np.ones((4, 3))), {}, "x", None)
    np.testing.assert_array_equal(matrix, rgb_cam[:, :3])
    assert source == "libraw"
    xyz = np.vstack([MATRIX, np.zeros((1, 3))])
    matrix, source, colour = frame_colour(libraw(rgb_xyz_matrix=xyz), {}, "x", None)
    np.testing.assert_allclose(matrix, srgb_from_cam(MATRIX))
    assert source == "libraw" and colour is not None
    # the file's own matrix comes before LibRaw's
    _, source, _ = frame_colour(libraw(rgb_xyz_matrix=xyz), {"cm1": MATRIX.ravel() * 2, "ill1": 21}, "x", None)
    assert source == "dng"
    # neither: Edge4K's camera table by make and model
    from edge4k.kernels.colour import camera_matrix
    matrix, source, _ = frame_colour(libraw(), {"make": "Nikon", "model": "D850"}, "x", None)
    np.testing.assert_allclose(matrix, srgb_from_cam(camera_matrix("Nikon D850")))
    assert source == "camera-table"
    # none at all, and nothing LibRaw can render to fit: refused in one line, never the identity
    with pytest.raises(RawInputError, match="no colour matrix"):
        frame_colour(libraw(), {"make": "Acme", "model": "Unknown"}, "x.raw", None)


# ---- real camera files --------------------------------------------------------------

def real_raw_files():
    folder = os.environ.get("EDGE4K_REAL_RAW_DIR")
    if not folder:
        return []
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in CAMERA_RAW_SUFFIXES)
    assert files, f"EDGE4K_REAL_RAW_DIR={folder} holds no camera RAW file ({', '.join(sorted(CAMERA_RAW_SUFFIXES))})"
    return files


@pytest.mark.skipif(not os.environ.get("EDGE4K_REAL_RAW_DIR"),
                    reason="no real camera RAW here: no pip package we can pin ships one, and nothing is downloaded "
                           "at run time; set EDGE4K_REAL_RAW_DIR to a folder of Bayer RAW files to run this")
def test_real_camera_files_decode_as_rawpy_sees_them():
    import rawpy
    for path in real_raw_files():
        frame = read_raw(path)
        with rawpy.imread(str(path)) as raw:
            visible = raw.raw_image_visible
            colours = raw.raw_colors_visible[:2, :2]
            desc = raw.color_desc.decode()
            blacks = raw.black_level_per_channel
            np.testing.assert_array_equal(frame.bayer, visible, err_msg=str(path))
            assert frame.cfa == "".join(desc[c] for c in colours.ravel()), path
            assert frame.white_level == raw.white_level, path
            # each packed channel's black is the one LibRaw gives that site's colour
            sites = {"R": [], "G": [], "B": []}
            for i in range(2):
                for j in range(2):
                    sites[desc[colours[i, j]]].append(blacks[colours[i, j]])
            assert frame.black_level[0] == sites["R"][0] and frame.black_level[3] == sites["B"][0], path
            assert sorted(frame.black_level[1:3]) == sorted(sites["G"]), path
            assert np.all(frame.wb_gains > 0), path


def test_capture_facts_come_from_the_file_by_path_or_bytes(tmp_path):
    from edge4k.datasets.dng import write_dng
    path = write_dng(tmp_path / "facts.dng", gradient(32, 48), orientation=6, exposure_time=1 / 250, iso=800,
                     datetime="2026:11:30 12:34:56")
    want = {"make": "Edge4K", "exposure_time": pytest.approx(0.004), "iso": 800.0, "datetime": "2026:11:30 12:34:56"}
    for source in (path, path.read_bytes()):
        frame = read_raw(source)
        assert frame.orientation == 6
        assert {k: frame.exif[k] for k in want} == want
        assert frame.exif["model"].startswith("Synthetic")


def test_without_tiff_tags_the_capture_facts_are_libraw_s():
    import io
    from datetime import datetime

    from edge4k.kernels.raw import _exif_facts
    other = SimpleNamespace(shutter_speed=0.01, iso_speed=200.0, timestamp=datetime(2025, 6, 1, 8, 30, 0))
    facts = _exif_facts(SimpleNamespace(other=other), io.BytesIO(b"not a TIFF file"))
    assert facts == {"exposure_time": 0.01, "iso": 200.0, "datetime": "2025:06:01 08:30:00"}
    unknown = SimpleNamespace(shutter_speed=0.0, iso_speed=0.0, timestamp=datetime(1970, 1, 1))
    assert _exif_facts(SimpleNamespace(other=unknown), io.BytesIO(b"not a TIFF file")) == {}
