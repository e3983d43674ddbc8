"""postprocess stage: clamp, quantise and write the display image."""
from __future__ import annotations

import os

import numpy as np
import torch

from edge4k.errors import Edge4KError
from edge4k.files import atomic_output

OUTPUT_FORMATS = {".png": 8, ".tif": 16, ".tiff": 16}


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
