"""Colour maths shared by the synthetic RAW writer, the RAW frontend and the finishing.

Conventions: linear sRGB and CIE XYZ use the D65 white point; 3x3 matrices map
column vectors, i.e. ``dst = M @ src`` (for an HxWx3 image: ``img @ M.T``).

Illuminants are given as CIE 1931 xy chromaticities: the CIE daylight locus
(CIE 15:2004, eq. 3.3-3.4) from 4000 K, the Planckian locus below that (Kim et
al. 2002's cubic-spline fit, which US patent 7024034 and most colour libraries
use), and the CIE fluorescent series FL1-FL12 (CIE 15:2004, table T.8).
``tests/test_colour.py`` checks all three against colour-science.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np

# Linear sRGB (D65) -> CIE XYZ (D65), IEC 61966-2-1 primaries.
XYZ_FROM_SRGB = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
SRGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_SRGB)
# Rec. 709 / sRGB luminance weights (the middle row of XYZ_FROM_SRGB).
LUMA = XYZ_FROM_SRGB[1]

# Bradford cone response matrix (Lam 1985), for von Kries adaptation between white points.
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])

# CIE 1931 2-degree chromaticities of the fluorescent illuminants FL1-FL12 (CIE 15:2004).
FLUORESCENT_XY = {
    "FL1": (0.3131, 0.3371), "FL2": (0.3721, 0.3751), "FL3": (0.4091, 0.3941), "FL4": (0.4402, 0.4031),
    "FL5": (0.3138, 0.3452), "FL6": (0.3779, 0.3882), "FL7": (0.3129, 0.3292), "FL8": (0.3458, 0.3586),
    "FL9": (0.3741, 0.3727), "FL10": (0.3458, 0.3588), "FL11": (0.3805, 0.3769), "FL12": (0.4370, 0.4042),
}
D65_XY = (0.3127, 0.3290)


def daylight_xy(cct: float) -> tuple[float, float]:
    """CIE daylight locus, 4000-25000 K."""
    if not 4000 <= cct <= 25000:
        raise ValueError(f"the CIE daylight locus is defined for 4000-25000 K, got {cct:g}")
    t = float(cct)
    if t <= 7000:
        x = -4.6070e9 / t**3 + 2.9678e6 / t**2 + 0.09911e3 / t + 0.244063
    else:
        x = -2.0064e9 / t**3 + 1.9018e6 / t**2 + 0.24748e3 / t + 0.237040
    return x, -3.0 * x * x + 2.870 * x - 0.275


def planckian_xy(cct: float) -> tuple[float, float]:
    """Planckian (black-body) locus, 1667-25000 K (Kim et al. 2002)."""
    if not 1667 <= cct <= 25000:
        raise ValueError(f"the Planckian fit is defined for 1667-25000 K, got {cct:g}")
    t = float(cct)
    if t <= 4000:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    return x, y


def xyz_white(xy) -> np.ndarray:
    """XYZ of the white with chromaticity ``xy``, normalised to Y = 1."""
    x, y = xy
    return np.array([x / y, 1.0, (1.0 - x - y) / y])


def adaptation(src_xy, dst_xy) -> np.ndarray:
    """XYZ -> XYZ Bradford (von Kries in cone space) chromatic adaptation from one white to another."""
    src, dst = BRADFORD @ xyz_white(src_xy), BRADFORD @ xyz_white(dst_xy)
    return np.linalg.inv(BRADFORD) @ np.diag(dst / src) @ BRADFORD


# ---- cameras -----------------------------------------------------------------------------------
# Real cameras' XYZ (D65) -> camera-native RGB "ColorMatrix" (Adobe DNG Converter's values), as
# LibRaw carries them in its built-in table; calibration/cameras.json holds the values read from
# the LibRaw inside the pinned rawpy wheel (`python -m edge4k.calibration.cameras` regenerates it
# and tests/test_colour.py checks it against LibRaw). HELD_OUT_CAMERAS are never used in training:
# evaluation and the robustness sweep render with them.

HELD_OUT_CAMERAS = (
    "Canon EOS R6", "Nikon Z 7", "Sony ILCE-7M3", "Olympus E-M1MarkII", "Panasonic DC-S1", "Pentax K-1",
    "Fujifilm X-T3", "Leica M10", "Samsung Galaxy S9", "Ricoh GR III", "GoPro HERO5 Black", "Phase One IQ180",
    "Sony DSC-RX100M5", "Kodak DCS Pro 14N",
)


@lru_cache(maxsize=1)
def camera_table() -> dict[str, dict]:
    """name -> {"make", "model", "xyz_to_cam" (3x3 list), "phone"} for every camera Edge4K knows."""
    text = resources.files("edge4k.calibration").joinpath("cameras.json").read_text()
    return {c["name"]: c for c in json.loads(text)["cameras"]}


def camera_names(split: str = "all") -> list[str]:
    """Camera names for split "train", "held-out" or "all" (sorted)."""
    names = sorted(camera_table())
    if split == "all":
        return names
    if split == "held-out":
        return sorted(HELD_OUT_CAMERAS)
    if split == "train":
        return [n for n in names if n not in HELD_OUT_CAMERAS]
    raise ValueError(f"unknown camera split {split!r}; expected train, held-out or all")


def camera_matrix(name: str) -> np.ndarray:
    """XYZ (D65) -> camera RGB matrix of a named camera."""
    table = camera_table()
    if name not in table:
        raise ValueError(f"unknown camera {name!r}; {len(table)} are known, e.g. {', '.join(sorted(table)[:4])}")
    return np.array(table[name]["xyz_to_cam"], dtype=np.float64)


def cam_from_srgb(xyz_to_cam: np.ndarray) -> np.ndarray:
    """Linear sRGB -> white-balanced camera RGB, rows normalised to sum to 1.

    The row normalisation (dcraw, LibRaw, Brooks et al. 2019) makes sRGB white map to
    camera RGB (1, 1, 1), i.e. white-balanced camera space.
    """
    m = np.asarray(xyz_to_cam, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"xyz_to_cam must be 3x3, got shape {m.shape}")
    m = m @ XYZ_FROM_SRGB
    return m / m.sum(axis=1, keepdims=True)


def srgb_from_cam(xyz_to_cam: np.ndarray) -> np.ndarray:
    """White-balanced camera RGB -> linear sRGB (LibRaw's rgb_cam; inverse of :func:`cam_from_srgb`)."""
    return np.linalg.inv(cam_from_srgb(xyz_to_cam))


def camera_neutral(xyz_to_cam: np.ndarray, illuminant_xy) -> np.ndarray:
    """Camera RGB of a white surface under the illuminant (the DNG AsShotNeutral), green = 1."""
    n = np.asarray(xyz_to_cam, dtype=np.float64) @ xyz_white(illuminant_xy)
    return n / n[1]


def _float(x) -> np.ndarray:
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def srgb_encode(linear):
    """Linear -> sRGB-encoded values (exact piecewise IEC 61966-2-1 curve).

    Negative inputs follow the linear segment; the result keeps a float dtype.
    """
    x = _float(linear)
    power = 1.055 * np.power(np.maximum(x, 0.0031308), 1.0 / 2.4) - 0.055
    return np.where(x <= 0.0031308, 12.92 * x, power).astype(x.dtype, copy=False)


def srgb_decode(encoded):
    """sRGB-encoded -> linear values (inverse of :func:`srgb_encode`)."""
    x = _float(encoded)
    power = np.power((np.maximum(x, 0.04045) + 0.055) / 1.055, 2.4)
    return np.where(x <= 0.04045, x / 12.92, power).astype(x.dtype, copy=False)


def smoothstep(x):
    """Brooks et al.'s global tone curve, 3x^2 - 2x^3 on [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return 3.0 * x**2 - 2.0 * x**3


def inverse_smoothstep(x):
    """Inverse of :func:`smoothstep` on [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)
