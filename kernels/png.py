"""A small PNG encoder: 8- or 16-bit RGB with an ICC profile (iCCP) and EXIF (eXIf).

Pillow writes 8-bit RGB PNG but not 16-bit RGB, so both depths go through this one
encoder (PNG 1.2 plus the eXIf chunk of the PNG 3rd edition). Every row uses the Sub
filter (each byte minus the one a pixel to its left: small numbers on a photograph's
smooth rows), computed for the whole image at once with numpy, then zlib at level 6.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_RGB = 2
FILTER_SUB = 1


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image: np.ndarray, *, icc: bytes | None = None, icc_name: str = "sRGB",
               exif: bytes | None = None, level: int = 6) -> bytes:
    """(H, W, 3) uint8 or uint16 -> PNG bytes. `exif` is a TIFF-structured EXIF block (as
    after the "Exif\\0\\0" header of a JPEG APP1 segment)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"encode_png takes (H, W, 3) uint8 or uint16, got {image.dtype} {image.shape}")
    height, width, _ = image.shape
    depth = 8 * image.dtype.itemsize
    bpp = 3 * image.dtype.itemsize                      # bytes per pixel
    rows = np.ascontiguousarray(image, dtype=">u2" if depth == 16 else np.uint8).view(np.uint8)
    rows = rows.reshape(height, width * bpp)
    filtered = np.empty((height, 1 + width * bpp), np.uint8)
    filtered[:, 0] = FILTER_SUB
    filtered[:, 1:1 + bpp] = rows[:, :bpp]
    np.subtract(rows[:, bpp:], rows[:, :-bpp], out=filtered[:, 1 + bpp:])   # uint8 arithmetic wraps mod 256
    out = [SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, COLOUR_RGB, 0, 0, 0))]
    if icc is not None:
        out.append(_chunk(b"iCCP", icc_name.encode("latin-1") + b"\0\0" + zlib.compress(icc)))
    if exif is not None:
        out.append(_chunk(b"eXIf", exif))
    out += [_chunk(b"IDAT", zlib.compress(filtered.tobytes(), level)), _chunk(b"IEND", b"")]
    return b"".join(out)
