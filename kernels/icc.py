"""A small ICC v2 writer for RGB matrix/TRC display profiles (ICC.1:2001-04): what an image
in Display P3, Adobe RGB, ProPhoto or linear Rec. 2020 embeds so that viewers know its colours.

A matrix/TRC profile is three colorants (the primaries' XYZ, adapted to the D50 connection
space with Bradford), a white point and a tone curve per channel. Version 2, as the Adobe RGB
and ProPhoto profiles photographers already have are: every colour-managed reader takes it.
"""
from __future__ import annotations

import struct

import numpy as np

from edge4k.kernels.colour import adaptation, xyz_white

# The ICC's D50 connection-space white, exactly as the header encodes it (s15Fixed16).
D50_XYZ = (0.9642, 1.0, 0.8249)
D50_XY = (D50_XYZ[0] / sum(D50_XYZ), 1.0 / sum(D50_XYZ))
HEADER_SIZE = 128
DATE = (2000, 1, 1, 0, 0, 0)   # a fixed creation date: output files reproducible byte for byte


def s15fixed16(values) -> bytes:
    return b"".join(struct.pack(">i", int(round(v * 65536))) for v in values)


def u8fixed8(value: float) -> int:
    """A curve's gamma as the profile stores it (1/256 steps): write pixels with this value."""
    return int(round(value * 256))


def normalised_primary_matrix(primaries, white_xy) -> np.ndarray:
    """Linear RGB -> XYZ (Y of white = 1) for chromaticities ((xr, yr), (xg, yg), (xb, yb))."""
    xy = np.asarray(primaries, dtype=np.float64)
    p = np.stack([xy[:, 0] / xy[:, 1], np.ones(3), (1 - xy[:, 0] - xy[:, 1]) / xy[:, 1]])   # columns: primaries
    return p * np.linalg.solve(p, xyz_white(white_xy))


def colorants(primaries, white_xy) -> np.ndarray:
    """The rXYZ, gXYZ, bXYZ tags (columns): the primaries adapted to D50 with Bradford."""
    return adaptation(white_xy, D50_XY) @ normalised_primary_matrix(primaries, white_xy)


def _xyz_tag(xyz) -> bytes:
    return b"XYZ \0\0\0\0" + s15fixed16(xyz)


def _curve_tag(curve) -> bytes:
    """curve: None (linear), a gamma (float), or a table of samples in [0, 1]."""
    if curve is None:
        return b"curv\0\0\0\0" + struct.pack(">I", 0)
    if np.isscalar(curve):
        return b"curv\0\0\0\0" + struct.pack(">IH", 1, u8fixed8(curve)) + b"\0\0"
    table = np.round(np.clip(np.asarray(curve, dtype=np.float64), 0, 1) * 65535).astype(">u2")
    data = b"curv\0\0\0\0" + struct.pack(">I", table.size) + table.tobytes()
    return data + b"\0" * (-len(data) % 4)


def _text_tag(text: str) -> bytes:
    return b"text\0\0\0\0" + text.encode("ascii") + b"\0"


def _desc_tag(text: str) -> bytes:
    """textDescriptionType: ASCII, then empty Unicode and ScriptCode parts."""
    ascii_ = text.encode("ascii") + b"\0"
    return (b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + struct.pack(">II", 0, 0)
            + struct.pack(">HB", 0, 0) + b"\0" * 67)


def matrix_trc_profile(description: str, primaries, white_xy, curve, *,
                       copyright_: str = "No copyright, use freely") -> bytes:
    """An ICC v2.4 RGB display profile. primaries: ((x, y) red, green, blue); white_xy: the
    space's white (the media white point tag holds it, as v2 display profiles do; LittleCMS
    reads v2 display profiles relative to D50 all the same); curve: as _curve_tag."""
    cols = colorants(primaries, white_xy)
    tags = [(b"desc", _desc_tag(description)), (b"cprt", _text_tag(copyright_)),
            (b"wtpt", _xyz_tag(xyz_white(white_xy))),
            (b"rXYZ", _xyz_tag(cols[:, 0])), (b"gXYZ", _xyz_tag(cols[:, 1])), (b"bXYZ", _xyz_tag(cols[:, 2]))]
    trc = _curve_tag(curve)
    tags += [(b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc)]
    offset = HEADER_SIZE + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for signature, body in tags:
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0\0\0\0" + struct.pack(">I", 0x02400000) + b"mntrRGB XYZ "
              + struct.pack(">6H", *DATE) + b"acsp" + b"\0" * 4 + struct.pack(">I", 0) + b"\0" * 8
              + b"\0" * 8 + struct.pack(">I", 0) + s15fixed16(D50_XYZ) + b"e4k " + b"\0" * 44)
    assert len(header) == HEADER_SIZE
    return header + table + data
