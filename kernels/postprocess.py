"""postprocess stage: finishing (the exact colour pipeline and the look), quantise, write.

The network returns companded (square-root), white-balanced camera RGB. Finishing is
deterministic maths on the frame's own metadata, never learned:
expand (square) -> clip to [0, 1] (highlights) -> the file's camera->sRGB matrix -> clip ->
look -> crop the phase padding. Looks:
- neutral: colorimetric sRGB, no brightening, no tone curve (LibRaw's postprocess with the
  camera's white balance, no_auto_bright, sRGB output and gamma (2.4, 12.92));
- natural: the frontend's automatic exposure gain, the sRGB curve, then Brooks et al.'s
  smoothstep tone curve: the look a phone gallery shows.
finish() is torch code, differentiable: training computes its loss through it.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from edge4k.errors import Edge4KError
from edge4k.files import atomic_output

OUTPUT_FORMATS = {".png": 8, ".tif": 16, ".tiff": 16}
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


def bit_depth_for(path: str | os.PathLike) -> int:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise Edge4KError(f"unsupported output format '{ext}' for {path}; use .png (8-bit) or .tif (16-bit)")
    return OUTPUT_FORMATS[ext]


def quantise(rgb: torch.Tensor, bits: int) -> np.ndarray:
    """(3, H, W) display RGB in [0, 1] -> (H, W, 3) uint8 or uint16, rounded."""
    peak = (1 << bits) - 1
    q = (rgb.clamp(0, 1) * peak).round().permute(1, 2, 0).contiguous().numpy()
    return q.astype(np.uint8 if bits == 8 else np.uint16)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write (H, W, 3) uint8 as PNG or uint16 as TIFF, atomically."""
    with atomic_output(path) as tmp:
        if image.dtype == np.uint8:
            from PIL import Image
            Image.fromarray(image).save(tmp, format="PNG")
        else:
            import tifffile
            tifffile.imwrite(tmp, image, photometric="rgb")
