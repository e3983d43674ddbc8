"""postprocess stage: finishing (the exact colour pipeline and the look), quantise, write.

The network returns companded (square-root), white-balanced camera RGB. Finishing is
deterministic maths on the frame's own metadata, never learned:
expand (square) -> clip to [0, 1] (highlights) -> the file's camera->sRGB matrix -> clip ->
look -> crop the phase padding; the pipeline then turns the image upright (orient(), the
RAW's EXIF Orientation, as LibRaw does). Looks:
- neutral: colorimetric sRGB, no brightening, no tone curve (LibRaw's postprocess with the
  camera's white balance, no_auto_bright, sRGB output and gamma (2.4, 12.92));
- natural: the frontend's automatic exposure gain, the sRGB curve, then Brooks et al.'s
  smoothstep tone curve: the look a phone gallery shows.
finish() is torch code, differentiable: training computes its loss through it.
Images are written tagged (write_image): the sRGB ICC profile, and EXIF with the capture's
facts and Orientation 1 (the pixels are already upright).
"""
from __future__ import annotations

import functools
import os

import numpy as np
import torch

from edge4k.errors import Edge4KError
from edge4k.files import atomic_output

OUTPUT_FORMATS = {".png": 8, ".tif": 16, ".tiff": 16}   # extension -> default bit depth
BIT_DEPTHS = (8, 16)
LOOKS = ("neutral", "natural")
DEFAULT_LOOK = "natural"


def check_look(look: str) -> str:
    if look not in LOOKS:
        raise Edge4KError(f"unknown look '{look}'; valid looks: {', '.join(LOOKS)}")
    return look


def srgb_encode(x: torch.Tensor) -> torch.Tensor:
    """Linear -> sRGB curve (IEC 61966-2-1), for tensors in [0, 1]; differentiable."""
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


def finish(rgb: torch.Tensor, srgb_from_cam, exposure, look: str) -> torch.Tensor:
    """Companded camera RGB (B, 3, H, W) or (3, H, W) -> display sRGB in [0, 1].

    srgb_from_cam: (3, 3) or (B, 3, 3); exposure: a number or (B,) (used by the natural look)."""
    check_look(look)
    single = rgb.dim() == 3
    x = rgb[None] if single else rgb
    m = torch.as_tensor(srgb_from_cam, dtype=x.dtype, device=x.device)
    m = m.expand(x.shape[0], 3, 3) if m.dim() == 2 else m
    lin = x.clamp(0, 1) ** 2
    lin = torch.einsum("bij,bjhw->bihw", m, lin).clamp(0, 1)
    if look == "natural":
        e = torch.as_tensor(exposure, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        y = srgb_encode((lin * e).clamp(0, 1))
        y = y * y * (3 - 2 * y)                 # smoothstep
    else:
        y = srgb_encode(lin)
    return y[0] if single else y


# EXIF Orientation -> (flip rows, flip columns, transpose), applied in that order. These are
# LibRaw's flip bits (2, 1, 4: its output pixel (r, c) is input (c, r) if transposed, then
# mirrored), for the flip value LibRaw reads from each EXIF Orientation.
ORIENTATIONS = {1: (False, False, False), 2: (False, True, False), 3: (True, True, False),
                4: (True, False, False), 5: (False, False, True), 6: (True, False, True),
                7: (True, True, True), 8: (False, True, True)}


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Turn a (..., H, W) image upright for its EXIF Orientation, the way LibRaw's
    postprocess does (rawpy's default user_flip)."""
    flip_rows, flip_cols, transpose = ORIENTATIONS[orientation]
    dims = [d for d, on in ((-2, flip_rows), (-1, flip_cols)) if on]
    image = image.flip(dims) if dims else image
    return image.transpose(-2, -1) if transpose else image


def bit_depth_for(path: str | os.PathLike, bits: int | None = None) -> int:
    """The bit depth an output file gets: `bits` if given (8 or 16, either format), else the
    format's default (.png 8, .tif 16)."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise Edge4KError(f"unsupported output format '{ext}' for {path}; use .png (8-bit) or .tif (16-bit)")
    if bits is not None and bits not in BIT_DEPTHS:
        raise Edge4KError(f"bits must be 8 or 16, got {bits}")
    return bits or OUTPUT_FORMATS[ext]


def quantise(rgb: torch.Tensor, bits: int) -> np.ndarray:
    """(3, H, W) display RGB in [0, 1] -> (H, W, 3) uint8 or uint16, rounded."""
    peak = (1 << bits) - 1
    q = (rgb.clamp(0, 1) * peak).round().permute(1, 2, 0).contiguous().numpy()
    return q.astype(np.uint8 if bits == 8 else np.uint16)


@functools.lru_cache(maxsize=1)
def srgb_icc_profile() -> bytes:
    """The sRGB ICC profile, made by LittleCMS (through Pillow). LittleCMS stamps a profile
    with the time it made it (header bytes 24-35; no profile ID hashes them): a fixed date
    keeps output files reproducible, byte for byte."""
    import struct
    from PIL import ImageCms
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    icc[24:36] = struct.pack(">6H", 2000, 1, 1, 0, 0, 0)
    return bytes(icc)


def _exif_values(exif: dict) -> dict[int, tuple[int, object]]:
    """RawFrame.exif facts -> {EXIF tag: (TIFF type, value)}, Orientation 1 (the pixels are upright)."""
    from fractions import Fraction
    tags = {274: (3, 1)}                                         # Orientation: top-left
    for key, tag in (("make", 271), ("model", 272)):
        if exif.get(key):
            tags[tag] = (2, str(exif[key]))
    if exif.get("datetime"):
        tags[306] = tags[36867] = (2, str(exif["datetime"]))     # DateTime, DateTimeOriginal
    if exif.get("exposure_time"):
        f = Fraction(float(exif["exposure_time"])).limit_denominator(1_000_000)
        tags[33434] = (5, (f.numerator, f.denominator))          # ExposureTime (RATIONAL)
    if exif.get("iso"):
        tags[34855] = (3, min(int(round(float(exif["iso"]))), 65535))   # ISOSpeedRatings
    return tags


# Tags of the EXIF IFD; the rest go in IFD0.
EXIF_IFD_TAGS = (33434, 34855, 36867)


def _png_exif(exif: dict) -> bytes:
    """The facts as a TIFF-structured EXIF block (IFD0 + EXIF IFD), serialised by Pillow."""
    from PIL import Image
    block = Image.Exif()
    sub = {}
    for tag, (_, value) in _exif_values(exif).items():
        if tag == 33434:
            from PIL.TiffImagePlugin import IFDRational
            value = IFDRational(*value)
        (sub if tag in EXIF_IFD_TAGS else block)[tag] = value
    if sub:
        block[0x8769] = sub                                      # ExifIFD pointer
    data = block.tobytes()
    return data[6:] if data.startswith(b"Exif\0\0") else data


def write_image(path: str | os.PathLike, image: np.ndarray, *, exif: dict | None = None) -> None:
    """Write (H, W, 3) uint8 or uint16 as PNG or TIFF (by extension), atomically, tagged with
    the sRGB ICC profile and EXIF: `exif` (RawFrame.exif facts) and Orientation 1. A PNG
    carries them in iCCP and eXIf; a TIFF in its IFD0 (the EXIF facts as TIFF/EP tags there,
    as DNG does)."""
    bit_depth_for(path, 8 * image.dtype.itemsize)
    icc, exif = srgb_icc_profile(), exif or {}
    with atomic_output(path) as tmp:
        if os.fspath(path).lower().endswith(".png"):
            from .png import encode_png
            tmp.write_bytes(encode_png(image, icc=icc, exif=_png_exif(exif)))
        else:
            import tifffile
            tags = [(tag, kind, 0 if kind == 2 else 1, value, True)
                    for tag, (kind, value) in sorted(_exif_values(exif).items())]
            tifffile.imwrite(tmp, image, photometric="rgb", iccprofile=icc, extratags=tags, metadata=None)
