"""Colour maths shared by the synthetic RAW writer and the RAW frontend.

Conventions: linear sRGB and CIE XYZ use the D65 white point; 3x3 matrices map
column vectors, i.e. ``dst = M @ src`` (for an HxWx3 image: ``img @ M.T``).
"""

from __future__ import annotations

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

# XYZ (D65) -> camera-native RGB "ColorMatrix" of real cameras, the D65
# illuminant matrix (ColorMatrix2 in Adobe DNG Converter's tables).
# Source: Adobe DNG Converter, as published in dcraw's adobe_coeff() table;
# the integers there are the matrix entries scaled by 10000.
_ADOBE_COEFF = {
    "Canon EOS 5D Mark II": (4716, 603, -830, -7798, 15474, 2480, -1496, 1937, 6651),
    "Canon EOS 5D Mark III": (6722, -635, -963, -4287, 12460, 2028, -908, 2162, 5668),
    "Canon EOS 7D": (6844, -996, -856, -3876, 11761, 2396, -593, 1772, 6198),
    "Nikon D700": (8139, -2171, -663, -8747, 16541, 2295, -1925, 2008, 8093),
    "Sony ILCE-7M2": (5271, -712, -347, -6153, 13653, 2763, -1601, 2366, 7242),
}
CAMERA_MATRICES: dict[str, np.ndarray] = {
    name: np.array(coeff, dtype=np.float64).reshape(3, 3) / 10000.0
    for name, coeff in _ADOBE_COEFF.items()
}


def cam_from_srgb(xyz_to_cam: np.ndarray) -> np.ndarray:
    """Linear sRGB -> camera RGB, rows normalised to sum to 1.

    The row normalisation (dcraw, Brooks et al. 2019) makes sRGB white map to
    camera RGB (1, 1, 1), i.e. white-balanced camera space.
    """
    m = np.asarray(xyz_to_cam, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"xyz_to_cam must be 3x3, got shape {m.shape}")
    m = m @ XYZ_FROM_SRGB
    return m / m.sum(axis=1, keepdims=True)


def srgb_from_cam(xyz_to_cam: np.ndarray) -> np.ndarray:
    """White-balanced camera RGB -> linear sRGB (inverse of :func:`cam_from_srgb`)."""
    return np.linalg.inv(cam_from_srgb(xyz_to_cam))


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
