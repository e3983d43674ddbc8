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
# LibRaw carries them in its built-in table; kernels/cameras.json holds the values read from
# the LibRaw inside the pinned rawpy wheel (`python -m edge4k.datasets.cameras` regenerates it
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
    text = resources.files("edge4k.kernels").joinpath("cameras.json").read_text()
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


# ---- white points and camera colour for the RAW frontend ----------------------------------------
D50_XY = (0.3457, 0.3585)
# Tint scale of Adobe's camera raw and the DNG SDK: tint = -3000 * Duv (CIE 1960 uv), so a
# positive tint moves the white towards magenta (below the Planckian locus).
TINT_SCALE = -3000.0


def _uv(xy) -> np.ndarray:
    x, y = xy
    d = -2.0 * x + 12.0 * y + 3.0
    return np.array([4.0 * x / d, 6.0 * y / d])


def _xy_from_uv(uv) -> tuple[float, float]:
    u, v = uv
    d = 2.0 * u - 8.0 * v + 4.0
    return float(3.0 * u / d), float(2.0 * v / d)


def kelvin_xy(cct: float, tint: float = 0.0) -> tuple[float, float]:
    """The white of a colour temperature, as the synthetic captures light their scenes: the CIE
    daylight locus from 4000 K, the Planckian locus below; `tint` moves it along the normal to the
    locus in CIE 1960 uv by Duv = tint / TINT_SCALE (Adobe's scale: +10 is slightly magenta)."""
    if not 1667 <= cct <= 25000:
        raise ValueError(f"a colour temperature must be within 1667-25000 K, got {cct:g}")
    locus = daylight_xy if cct >= 4000 else planckian_xy
    xy = locus(cct)
    if tint == 0:
        return xy
    step = min(cct * 1e-3, 25000 - cct) or -cct * 1e-3
    tangent = _uv(locus(cct + step)) - _uv(xy)
    normal = np.array([tangent[1], -tangent[0]]) * np.sign(step)   # points above the locus (green)
    normal /= np.linalg.norm(normal)
    return _xy_from_uv(_uv(xy) + normal * (tint / TINT_SCALE))


def cct_from_xy(xy) -> float:
    """Correlated colour temperature of a white (McCamy 1992; within a few kelvin of Robertson's
    method over 2000-12500 K), for weighting a camera's two calibration matrices."""
    x, y = xy
    n = (x - 0.3320) / (0.1858 - y)
    return float(449.0 * n**3 + 3525.0 * n**2 + 6823.3 * n + 5520.33)


# DNG LightSource / CalibrationIlluminant codes -> colour temperature, as the DNG SDK assigns them.
DNG_ILLUMINANT_K = {1: 5500, 2: 4150, 3: 2850, 4: 5500, 9: 5500, 10: 6500, 11: 7500, 12: 6400, 13: 5050,
                    14: 4150, 15: 3525, 16: 2925, 17: 2850, 18: 5500, 19: 6500, 20: 5500, 21: 6500, 22: 7500,
                    23: 5000, 24: 3200}


class CameraColour:
    """A camera's colour calibration: one or two XYZ -> camera ColorMatrix, each with the colour
    temperature it was made under, and optionally the matching ForwardMatrix (white-balanced
    camera -> XYZ D50). Two matrices are interpolated in inverse colour temperature, as the DNG
    specification says (chapter 6, "Mapping Camera Color Space to CIE XYZ Space")."""

    def __init__(self, matrices, forward=None):
        self.matrices = sorted((float(k), np.asarray(m, dtype=np.float64)) for k, m in matrices)
        self.forward = sorted((float(k), np.asarray(m, dtype=np.float64)) for k, m in (forward or [])) or None
        if not self.matrices or any(m.shape != (3, 3) or not np.all(np.isfinite(m)) for _, m in self.matrices):
            raise ValueError("a camera's colour needs one or two finite 3x3 XYZ->camera matrices")

    def _interpolate(self, table, cct: float) -> np.ndarray:
        if len(table) == 1 or table[0][0] == table[-1][0]:
            return table[0][1]
        (k1, m1), (k2, m2) = table[0], table[-1]
        w = float(np.clip((1.0 / cct - 1.0 / k2) / (1.0 / k1 - 1.0 / k2), 0.0, 1.0))
        return w * m1 + (1.0 - w) * m2

    def xyz_to_cam(self, xy) -> np.ndarray:
        """The XYZ -> camera matrix for a white of chromaticity xy."""
        return self._interpolate(self.matrices, cct_from_xy(xy))

    def neutral(self, xy) -> np.ndarray:
        """Camera RGB of a white surface lit by the white xy, green = 1 (an AsShotNeutral)."""
        return camera_neutral(self.xyz_to_cam(xy), xy)

    def white_xy(self, neutral) -> tuple[float, float]:
        """The white whose camera neutral this is: the DNG specification's fixed-point iteration
        (guess a white, interpolate the matrix for it, map the neutral back to XYZ, repeat)."""
        n = np.asarray(neutral, dtype=np.float64)
        xy = D50_XY
        for _ in range(30):
            xyz = np.linalg.solve(self.xyz_to_cam(xy), n)
            new = (float(xyz[0] / xyz.sum()), float(xyz[1] / xyz.sum()))
            if abs(new[0] - xy[0]) + abs(new[1] - xy[1]) < 1e-7:
                return new
            xy = new
        return xy

    def srgb_from_cam(self, xy) -> np.ndarray:
        """White-balanced camera RGB -> linear sRGB for the white xy: through the ForwardMatrix
        (to XYZ D50, then Bradford to D65) where the file has one, else LibRaw's rgb_cam from the
        interpolated ColorMatrix (rows normalised, white balance in camera space)."""
        if self.forward:
            m = SRGB_FROM_XYZ @ adaptation(D50_XY, D65_XY) @ self._interpolate(self.forward, cct_from_xy(xy))
            return m / m.sum(axis=1, keepdims=True)
        return srgb_from_cam(self.xyz_to_cam(xy))
