"""postprocess stage: finishing (the exact colour pipeline and the look), quantise, write.

The network returns companded (square-root), white-balanced camera RGB. Finishing is
deterministic maths on the frame's own metadata, never learned:
expand (square) -> clip to [0, 1] (highlights) -> the file's camera->sRGB matrix -> clip ->
look -> crop the phase padding; the pipeline then stretches non-square pixels square
(stretch()) and turns the image upright (orient(), the RAW's EXIF Orientation), as LibRaw does. Looks:
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
import io
import math
import os
import struct
from fractions import Fraction

import numpy as np
import tifffile
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms
from PIL.ExifTags import IFD, Base
from PIL.TiffImagePlugin import IFDRational
from PIL.TiffTags import ASCII, RATIONAL, SHORT

from edge4k.errors import Edge4KError
from edge4k.files import atomic_output
from edge4k.kernels.png import encode_png

# extension -> the bit depths it holds, its default first; 32: float32 (linear output)
OUTPUT_FORMATS = {".png": (8, 16), ".tif": (16, 8, 32), ".tiff": (16, 8, 32), ".jpg": (8,), ".jpeg": (8,)}
BIT_DEPTHS = (8, 16, 32)
PIXEL_TYPES = {8: np.uint8, 16: np.uint16, 32: np.float32}
DEFAULT_QUALITY = 95
LOOKS = ("neutral", "natural")
DEFAULT_LOOK = "natural"


def check_look(look: str) -> str:
    if look not in LOOKS:
        raise Edge4KError(f"unknown look '{look}'; valid looks: {', '.join(LOOKS)}")
    return look


def srgb_encode(x: torch.Tensor) -> torch.Tensor:
    """Linear -> sRGB curve (IEC 61966-2-1), for tensors in [0, 1]; differentiable."""
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


def finish(rgb: torch.Tensor, srgb_from_cam, exposure, look: str, *, ev: float = 0.0,
           highlights: str = "clip") -> torch.Tensor:
    """Companded camera RGB (B, 3, H, W) or (3, H, W) -> display sRGB in [0, 1].

    srgb_from_cam: (3, 3) or (B, 3, 3); exposure: a number or (B,) (used by the natural look);
    ev: exposure compensation in stops on top of either look; highlights: "clip" (each channel
    clipped at white, LibRaw's highlight_mode 0) or "reconstruct" (reconstruct_highlights(), then
    compress_highlights() instead of the per-channel clip)."""
    check_look(look)
    if highlights not in HIGHLIGHT_MODES:
        raise Edge4KError(f"unknown highlight mode '{highlights}'; valid: {', '.join(HIGHLIGHT_MODES)}")
    single = rgb.dim() == 3
    x = rgb[None] if single else rgb
    m = torch.as_tensor(srgb_from_cam, dtype=x.dtype, device=x.device)
    m = m.expand(x.shape[0], 3, 3) if m.dim() == 2 else m
    lin = x.clamp(0, 1) ** 2
    if highlights == "reconstruct":
        lin = reconstruct_highlights(lin)
    lin = torch.einsum("bij,bjhw->bihw", m, lin)
    gain = torch.as_tensor(exposure if look == "natural" else 1.0, dtype=x.dtype, device=x.device)
    gain = gain.reshape(-1, 1, 1, 1) * 2.0 ** ev
    if highlights == "clip":
        lin = (lin.clamp(0, 1) * gain).clamp(0, 1)
    else:
        lin = compress_highlights((lin * gain).clamp_min(0))
    y = srgb_encode(lin)
    if look == "natural":
        y = y * y * (3 - 2 * y)                 # smoothstep
    return y[0] if single else y


HIGHLIGHT_MODES = ("clip", "reconstruct")
# A channel at or above this (linear, white-balanced, white = 1) is taken as clipped.
CLIP_LEVEL = 0.97


def _spread(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean of `values` (B, C, H, W) around each pixel, from the finest of a few scales
    (1/8, 1/32, 1/128 of the frame's pixels per side) where the pixel has weighted neighbours:
    normalised convolution, so that known values fill the holes between them."""
    out = torch.zeros_like(values)
    filled = torch.zeros_like(weight, dtype=torch.bool)
    h, w = values.shape[-2:]
    for s in (8, 32, 128):
        k = (min(s, h), min(s, w))
        num = F.avg_pool2d(values * weight, k, ceil_mode=True)
        den = F.avg_pool2d(weight, k, ceil_mode=True)
        num = F.interpolate(num, size=(h, w), mode="bilinear", align_corners=False)
        den = F.interpolate(den, size=(h, w), mode="bilinear", align_corners=False)
        fresh = (den > 1e-4) & ~filled
        out = torch.where(fresh, num / den.clamp_min(1e-4), out)
        filled |= fresh
    # beyond every scale: the frame's weighted mean
    whole = (values * weight).sum(dim=(2, 3), keepdim=True) / weight.sum(dim=(2, 3), keepdim=True).clamp_min(1e-9)
    return torch.where(filled, out, whole)


def reconstruct_highlights(lin: torch.Tensor) -> torch.Tensor:
    """Rebuild clipped channels from the unclipped ones (linear, white-balanced camera RGB,
    (B, 3, H, W)), as LibRaw's highlight rebuild modes do: the colour of the pixels around a
    highlight (their channel ratios, spread into it by normalised convolution, brighter
    neighbours weighted more) and the pixel's own unclipped channels give the clipped channels'
    values, which may exceed white. Pixels with every channel clipped keep them."""
    clipped = lin >= CLIP_LEVEL
    partly = clipped.any(dim=1, keepdim=True) & ~clipped.all(dim=1, keepdim=True)
    if not bool(partly.any()):
        return lin
    mean = lin.mean(dim=1, keepdim=True)
    known = (~clipped.any(dim=1, keepdim=True) & (mean > 1e-3)).to(lin.dtype)
    log_ratio = torch.log(lin.clamp_min(1e-6) / mean.clamp_min(1e-6))
    ratio = torch.exp(_spread(log_ratio, known * mean))          # brighter neighbours count more
    free = (~clipped).to(lin.dtype)
    scale = (lin / ratio * free).sum(dim=1, keepdim=True) / free.sum(dim=1, keepdim=True).clamp_min(1)
    rebuilt = torch.where(clipped, torch.maximum(lin, scale * ratio), lin)
    return torch.where(partly, rebuilt, lin)


def compress_highlights(lin: torch.Tensor) -> torch.Tensor:
    """Bring linear RGB above white (reconstructed highlights) into [0, 1] without the per-channel
    clip's hue shift: a pixel whose largest channel m exceeds 1 is scaled by 1/m (hue kept) and
    then moved towards white by 1 - 1/m (the brighter, the whiter, as film and LibRaw's blend do)."""
    peak = lin.amax(dim=1, keepdim=True)
    over = peak > 1
    scaled = lin / peak.clamp_min(1)
    whitened = scaled + (1 - scaled) * (1 - 1 / peak.clamp_min(1))
    return torch.where(over, whitened, lin).clamp(0, 1)


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


def stretched_size(height: int, width: int, pixel_aspect: float) -> tuple[int, int]:
    """(height, width) of a sensor-oriented image once its pixels are square, by LibRaw's rule:
    only one side grows, the width times the aspect when pixels are wide (aspect > 1), the height
    over it when they are tall, rounded half up; aspect 1 changes nothing."""
    if pixel_aspect > 1:
        return height, int(width * pixel_aspect + 0.5)
    if pixel_aspect < 1:
        return int(height / pixel_aspect + 0.5), width
    return height, width


def stretch(image: torch.Tensor, pixel_aspect: float) -> torch.Tensor:
    """A (C, H, W) float image, sensor-oriented, stretched to square pixels (stretched_size), as
    LibRaw does before it turns the image upright. Linear interpolation, as LibRaw's, but between
    pixel centres (LibRaw's grid starts at the first pixel's edge, a fraction of a pixel off); the
    stretch only ever enlarges, so no anti-aliasing is needed, and values stay within their range.
    Aspect 1 returns the image itself."""
    size = stretched_size(image.shape[-2], image.shape[-1], pixel_aspect)
    if size == tuple(image.shape[-2:]):
        return image
    return F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0].to(image.dtype)


def bit_depth_for(path: str | os.PathLike, bits: int | None = None) -> int:
    """The bit depth an output file gets: `bits` if given and the format holds it (.png 8 or 16,
    .tif 8, 16 or 32 (float), .jpg 8), else the format's default (.png 8, .tif 16, .jpg 8)."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise Edge4KError(f"unsupported output format '{ext}' for {path}; use .png (8/16-bit), .tif (16-bit, 8 or "
                          "32 = float) or .jpg (8-bit)")
    if bits is not None and bits not in BIT_DEPTHS:
        raise Edge4KError(f"bits must be 8, 16 or 32 (float), got {bits}")
    if bits is not None and bits not in OUTPUT_FORMATS[ext]:
        raise Edge4KError(f"{ext} holds {' or '.join(map(str, sorted(OUTPUT_FORMATS[ext])))}-bit images, not {bits}-bit"
                          f" ({path}); use .tif for 16 or 32 (float), .png for 16")
    return bits or OUTPUT_FORMATS[ext][0]


def check_quality(path: str | os.PathLike, quality: int | None) -> None:
    """JPEG quality 1-100; refused for a format without one."""
    if quality is None:
        return
    if os.path.splitext(os.fspath(path))[1].lower() not in (".jpg", ".jpeg"):
        raise Edge4KError(f"--quality is for JPEG output (.jpg), not {path}")
    if not 1 <= quality <= 100:
        raise Edge4KError(f"--quality must be 1-100, got {quality}")


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
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    icc[24:36] = struct.pack(">6H", 2000, 1, 1, 0, 0, 0)
    return bytes(icc)


def _exif_values(exif: dict) -> dict[int, tuple[int, object]]:
    """RawFrame.exif facts -> {EXIF tag: (TIFF type, value)}, Orientation 1 (the pixels are upright)."""
    tags = {Base.Orientation: (SHORT, 1)}                        # top-left
    # The facts come from the RAW file (untrusted): text made 7-bit ASCII as TIFF requires, numbers
    # that are not finite and positive left out rather than failing the write.
    for key, tag in (("make", Base.Make), ("model", Base.Model), ("datetime", Base.DateTime)):
        text = str(exif.get(key) or "").encode("ascii", "replace").decode().replace("\0", "")[:256]
        if text:
            tags[tag] = (ASCII, text)
    if Base.DateTime in tags:
        tags[Base.DateTimeOriginal] = tags[Base.DateTime]
    exposure, iso = _positive(exif.get("exposure_time")), _positive(exif.get("iso"))
    if exposure:
        f = Fraction(min(exposure, 1e6)).limit_denominator(1_000_000)
        if f:
            tags[Base.ExposureTime] = (RATIONAL, (f.numerator, f.denominator))
    if iso:
        tags[Base.ISOSpeedRatings] = (SHORT, max(1, min(int(round(iso)), 65535)))
    return {int(tag): value for tag, value in tags.items()}


def _positive(value) -> float | None:
    """value as a finite positive float, else None."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _exif_ifd_tags() -> tuple[int, ...]:
    """Tags of the EXIF IFD; the rest go in IFD0."""
    return tuple(int(t) for t in (Base.ExposureTime, Base.ISOSpeedRatings, Base.DateTimeOriginal))


def _png_exif(exif: dict) -> bytes:
    """The facts as a TIFF-structured EXIF block (IFD0 + EXIF IFD), serialised by Pillow."""
    block = Image.Exif()
    sub = {}
    for tag, (kind, value) in _exif_values(exif).items():
        value = IFDRational(*value) if kind == RATIONAL else value
        (sub if tag in _exif_ifd_tags() else block)[tag] = value
    if sub:
        block[IFD.Exif] = sub                                    # the EXIF IFD's pointer
    data = block.tobytes()
    return data[6:] if data.startswith(b"Exif\0\0") else data


def icc_description(icc: bytes) -> str:
    """The profile's own description, as a PNG iCCP profile name (Latin-1, 1-79 characters)."""
    name = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    name = name.encode("latin-1", "replace").decode("latin-1")[:79].strip()
    return name or "ICC profile"


def write_image(path: str | os.PathLike, image: np.ndarray, *, exif: dict | None = None, icc: bytes | None = None,
                quality: int | None = None) -> None:
    """Write (H, W, 3) uint8, uint16 or float32 as PNG, TIFF or JPEG (by extension; bit_depth_for
    says which format holds which), atomically, tagged with an ICC profile (`icc`, default sRGB)
    and EXIF: `exif` (RawFrame.exif facts) and Orientation 1. A PNG carries them in iCCP and
    eXIf; a JPEG in APP2 and APP1 (quality: 1-100, default 95); a TIFF in its IFD0 (the EXIF
    facts as TIFF/EP tags there, as DNG does), deflated (16- and 8-bit with horizontal
    differencing)."""
    bits = 32 if image.dtype == np.float32 else 8 * image.dtype.itemsize
    bit_depth_for(path, bits)
    check_quality(path, quality)
    icc, exif = icc or srgb_icc_profile(), exif or {}
    ext = os.path.splitext(os.fspath(path))[1].lower()
    with atomic_output(path) as tmp:
        if ext == ".png":
            tmp.write_bytes(encode_png(image, icc=icc, icc_name=icc_description(icc), exif=_png_exif(exif)))
        elif ext in (".jpg", ".jpeg"):
            quality = quality or DEFAULT_QUALITY   # full-resolution chroma (4:4:4) from 90 up, as photo tools do
            Image.fromarray(image, "RGB").save(tmp, "JPEG", quality=quality, icc_profile=icc, optimize=True,
                                               subsampling=0 if quality >= 90 else 2,
                                               exif=b"Exif\0\0" + _png_exif(exif))
        else:
            tags = [(tag, kind, 0 if kind == ASCII else 1, value, True)
                    for tag, (kind, value) in sorted(_exif_values(exif).items())]
            tifffile.imwrite(tmp, image, photometric="rgb", iccprofile=icc, extratags=tags, metadata=None,
                             compression="zlib", predictor=bits != 32)
