"""Output colour spaces (rawpy's `output_color`): the finished linear colour in another space's
primaries and encoding curve, with that space's ICC profile embedded in the file.

Finishing computes linear colour in the output space's primaries (target_from_cam: the space's
matrix after the file's camera -> sRGB matrix, so nothing is clipped to sRGB's gamut first),
then the look as it is for sRGB: the natural look's tone curve works on sRGB-curve values, per
channel in the output space's primaries. encode() then re-encodes from the sRGB curve to the
space's own curve (nothing to do for sRGB and Display P3, which share it).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import torch

from edge4k.errors import Edge4KError
from edge4k.kernels.colour import XYZ_FROM_SRGB, adaptation, srgb_decode
from edge4k.kernels.icc import matrix_trc_profile, normalised_primary_matrix, u8fixed8
from edge4k.kernels.postprocess import srgb_icc_profile

D65 = (0.3127, 0.3290)
D50 = (0.3457, 0.3585)


@dataclass(frozen=True)
class OutputSpace:
    name: str
    description: str            # the ICC profile's description
    primaries: tuple            # (x, y) of red, green, blue
    white: tuple                # (x, y)
    curve: str | float | None   # "srgb", a gamma (as the profile stores it), or None (linear)
    min_bits: int = 8           # fewer bits than this band visibly (refused)

    @property
    def gamma(self) -> float | None:
        return None if not isinstance(self.curve, float) else u8fixed8(self.curve) / 256


OUTPUT_SPACES = {s.name: s for s in (
    OutputSpace("srgb", "sRGB", ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), D65, "srgb"),
    OutputSpace("display-p3", "Display P3", ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), D65, "srgb"),
    OutputSpace("adobe-rgb", "Adobe RGB (1998) compatible", ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06)), D65,
                563 / 256),
    OutputSpace("prophoto", "ProPhoto RGB (ROMM) compatible", ((0.7347, 0.2653), (0.1596, 0.8404), (0.0366, 0.0001)),
                D50, 1.8, min_bits=16),
    OutputSpace("rec2020-linear", "Rec. ITU-R BT.2020 linear", ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)),
                D65, None, min_bits=16),
)}
DEFAULT_SPACE = "srgb"


def get_space(name: str) -> OutputSpace:
    if name not in OUTPUT_SPACES:
        raise Edge4KError(f"unknown output space '{name}'; valid: {', '.join(OUTPUT_SPACES)}")
    return OUTPUT_SPACES[name]


def check_bits(name: str, bits: int) -> None:
    """Refuse a bit depth that bands the space (8-bit ProPhoto or linear)."""
    space = get_space(name)
    if bits < space.min_bits:
        raise Edge4KError(f"--output-space {name} needs a 16-bit or float image (.tif, or .png with --bits 16); "
                          f"{bits}-bit would band")


@functools.lru_cache(maxsize=None)
def space_from_srgb(name: str) -> np.ndarray:
    """Linear sRGB -> the space's linear RGB, white adapted with Bradford (D65 -> D50 for ProPhoto)."""
    space = get_space(name)
    xyz = adaptation(D65, space.white) @ XYZ_FROM_SRGB
    return np.linalg.solve(normalised_primary_matrix(space.primaries, space.white), xyz)


def target_from_cam(name: str, srgb_from_cam) -> np.ndarray:
    """The finishing matrix for the space: white-balanced camera RGB -> its linear RGB."""
    m = np.asarray(srgb_from_cam, dtype=np.float64)
    return m if name == DEFAULT_SPACE else space_from_srgb(name) @ m


def encode(name: str, image: torch.Tensor) -> torch.Tensor:
    """Finished sRGB-curve values in the space's primaries -> the space's own curve, in place."""
    space = get_space(name)
    if space.curve == "srgb":
        return image
    x = image.numpy()
    x[...] = srgb_decode(x)
    if space.gamma is not None:
        np.power(x, 1.0 / space.gamma, out=x)
    return image


@functools.lru_cache(maxsize=None)
def icc_profile(name: str) -> bytes:
    """The space's ICC profile: LittleCMS's own sRGB, else a matrix/TRC profile of its primaries
    and curve (kernels/icc.py)."""
    space = get_space(name)
    if name == DEFAULT_SPACE:
        return srgb_icc_profile()
    curve = None if space.curve is None else srgb_curve_table() if space.curve == "srgb" else space.gamma
    return matrix_trc_profile(space.description, space.primaries, space.white, curve)


def srgb_curve_table(n: int = 1024) -> np.ndarray:
    return srgb_decode(np.linspace(0.0, 1.0, n))


def in_space(frame, name: str):
    """The frame as finishing sees it for the space: its matrix leads to the space's primaries."""
    if name == DEFAULT_SPACE:
        return frame
    return dataclasses.replace(frame, srgb_from_cam=target_from_cam(name, frame.srgb_from_cam))
