"""Minimal DNG 1.4 writer for synthetic RAW captures (uncompressed, one IFD).

Besides ordinary Bayer files it can write DNGs with an arbitrary CFA tile
(e.g. X-Trans-like 6x6 or Quad-Bayer 4x4) and monochrome LinearRaw DNGs, so
that a RAW reader's handling of layouts it does not support can be tested.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import tifffile

from edge4k.datasets.unprocess import CFA_PATTERNS, RawCapture

# Example non-Bayer tiles (0=R, 1=G, 2=B), row-major.
XTRANS_PATTERN = np.array(
    [
        [1, 1, 0, 1, 1, 2],
        [1, 1, 2, 1, 1, 0],
        [2, 0, 1, 0, 2, 1],
        [1, 1, 2, 1, 1, 0],
        [1, 1, 0, 1, 1, 2],
        [0, 2, 1, 2, 0, 1],
    ],
    dtype=np.uint8,
)
QUAD_BAYER_PATTERN = np.array(
    [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 2, 2], [1, 1, 2, 2]], dtype=np.uint8
)

# TIFF field types and the DNG / TIFF-EP tag numbers used below.
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10
PHOTOMETRIC_CFA, PHOTOMETRIC_LINEAR_RAW = 32803, 34892
D65_ILLUMINANT = 21


def _rationals(values, denominator: int, signed: bool) -> list[int]:
    """Flatten values into (numerator, denominator) integer pairs for tifffile."""
    out: list[int] = []
    for v in np.ravel(values):
        num = int(round(float(v) * denominator))
        if not signed and num < 0:
            raise ValueError(f"unsigned RATIONAL cannot hold negative value {v}")
        out += [num, denominator]
    return out


def _pattern(cfa_pattern, capture: RawCapture) -> np.ndarray:
    if cfa_pattern is None:
        cfa_pattern = capture.cfa
    if isinstance(cfa_pattern, str):
        if cfa_pattern not in CFA_PATTERNS:
            raise ValueError(
                f"unknown cfa {cfa_pattern!r}; expected one of {', '.join(CFA_PATTERNS)}"
            )
        return CFA_PATTERNS[cfa_pattern]
    pat = np.asarray(cfa_pattern)
    if pat.ndim != 2 or pat.size == 0 or pat.min() < 0 or pat.max() > 2:
        raise ValueError("cfa_pattern must be a 2-D array of colour indices 0=R, 1=G, 2=B")
    return pat.astype(np.uint8)


def write_dng(
    path: str | os.PathLike,
    capture: RawCapture | np.ndarray,
    *,
    cfa_pattern: str | np.ndarray | None = None,
    monochrome: bool = False,
    orientation: int = 1,
    exposure_time: float | None = None,
    iso: int | None = None,
    datetime: str | None = None,
    make: str = "Edge4K",
    model: str | None = None,
    extra_tags: tuple = (),
    drop_tags: tuple[int, ...] = (),
) -> Path:
    """Write ``capture`` as an uncompressed single-IFD DNG 1.4 file; return its path.

    ``capture`` may be a bare (H, W) uint16 array, wrapped as ``RawCapture(mosaic=...)``
    with its defaults.  ``cfa_pattern`` (a Bayer name or a 2-D array of 0/1/2)
    overrides ``capture.cfa``; ``monochrome=True`` writes a one-sample LinearRaw
    file instead of a CFA one.  ``orientation`` is the EXIF Orientation (1..8) of
    the mosaic; ``exposure_time`` (s), ``iso`` and ``datetime`` ("YYYY:MM:DD
    HH:MM:SS") go in IFD0 as TIFF/EP tags.  ``make`` and ``model`` (default "Synthetic <camera>")
    name the camera; ``extra_tags`` (tifffile extratags tuples) replace or add tags and
    ``drop_tags`` (tag numbers) leave tags out, e.g. 50728 (AsShotNeutral) to write a file
    like one without an as-shot white.  The file is written to a temporary name in the
    target folder and renamed into place, so no partial file is ever left.
    """
    if not isinstance(capture, RawCapture):
        capture = RawCapture(mosaic=np.asarray(capture))
    data = np.asarray(capture.mosaic)
    if data.ndim != 2 or data.dtype != np.uint16 or data.size == 0:
        raise ValueError(
            f"mosaic must be a non-empty 2-D uint16 array, got {data.dtype} {data.shape}"
        )
    if not 0 <= capture.black_level < capture.white_level <= 65535:
        raise ValueError("need 0 <= black_level < white_level <= 65535")
    matrix = np.asarray(capture.xyz_to_cam, dtype=np.float64)
    neutral = np.asarray(capture.as_shot_neutral, dtype=np.float64)
    if matrix.shape != (3, 3) or neutral.shape != (3,) or np.any(neutral <= 0):
        raise ValueError("xyz_to_cam must be 3x3 and as_shot_neutral 3 positive values")

    tags = [
        (50706, _BYTE, 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, _BYTE, 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        # Make/Model deliberately name no real camera: LibRaw would otherwise
        # substitute its own built-in colour data for that model.
        (271, _ASCII, 0, make, True),  # Make
        (272, _ASCII, 0, model or f"Synthetic {capture.camera}", True),  # Model
        (50708, _ASCII, 0, f"Edge4K synthetic {capture.camera}", True),  # UniqueCameraModel
        (50714, _LONG, 1, int(capture.black_level), True),  # BlackLevel
        (50717, _LONG, 1, int(capture.white_level), True),  # WhiteLevel
        (50778, _SHORT, 1, D65_ILLUMINANT, True),  # CalibrationIlluminant1
    ]
    if orientation not in range(1, 9):
        raise ValueError(f"orientation must be an EXIF Orientation 1..8, got {orientation}")
    if orientation != 1:
        tags.append((274, _SHORT, 1, orientation, True))  # Orientation (absent means 1)
    if exposure_time is not None:
        tags.append((33434, _RATIONAL, 1, _rationals([exposure_time], 1000000, False), True))  # ExposureTime
    if iso is not None:
        tags.append((34855, _SHORT, 1, int(iso), True))  # ISOSpeedRatings
    if datetime is not None:
        tags += [(306, _ASCII, 0, datetime, True), (36867, _ASCII, 0, datetime, True)]  # DateTime(Original)
    if monochrome:
        # tifffile refuses LinearRaw with one sample, so the file is written
        # as MinIsBlack and the PhotometricInterpretation value patched below.
        photometric = 1
        # One colour plane: ColorMatrix1 is 1x3 (XYZ -> luminance Y).
        tags += [
            (50721, _SRATIONAL, 3, _rationals([0.0, 1.0, 0.0], 10000, True), True),
            (50728, _RATIONAL, 1, _rationals([1.0], 1000000, False), True),
        ]
    else:
        photometric = PHOTOMETRIC_CFA
        pat = _pattern(cfa_pattern, capture)
        tags += [
            (33421, _SHORT, 2, pat.shape, True),  # CFARepeatPatternDim (rows, cols)
            (33422, _BYTE, pat.size, tuple(int(v) for v in pat.ravel()), True),  # CFAPattern
            (50710, _BYTE, 3, (0, 1, 2), True),  # CFAPlaneColor: R, G, B
            (50711, _SHORT, 1, 1, True),  # CFALayout: rectangular
            # ColorMatrix1 (XYZ -> camera, stored to 1e-4 like Adobe's tables)
            # and AsShotNeutral (camera-space grey, to 1e-6).
            (50721, _SRATIONAL, 9, _rationals(matrix, 10000, True), True),
            (50728, _RATIONAL, 3, _rationals(neutral, 1000000, False), True),
        ]

    replaced = {t[0] for t in extra_tags} | set(drop_tags)
    tags = [t for t in tags if t[0] not in replaced] + list(extra_tags)

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; use ordinary file permissions
        os.close(fd)
        tifffile.imwrite(
            tmp,
            data,
            photometric=photometric,
            subfiletype=0,  # NewSubFileType 0: the full-resolution main image
            compression=None,
            metadata=None,  # no tifffile JSON ImageDescription
            software="Edge4K",
            extratags=tags,
        )
        if monochrome:
            with tifffile.TiffFile(tmp, mode="r+b") as tif:
                tif.pages[0].tags[262].overwrite(PHOTOMETRIC_LINEAR_RAW)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
