"""Edge4K: an on-device SDK and model compiler for a one-step 4K RAW-to-RGB network.

The Python API (README "Use from Python"):

    import edge4k
    rgb = edge4k.render("photo.dng")                 # (H, W, 3) uint8 numpy array, upright sRGB
    with edge4k.Renderer(preset="e4k-s-f16") as r:   # weights loaded once, many frames
        rgb16 = r.render(raw_bytes, bits=16, output="photo.tif")
    frame = edge4k.RawFrame(bayer=mosaic, cfa="RGGB", black_level=64, white_level=1023,
                            wb_gains=(2.0, 1.0, 1.5), srgb_from_cam=matrix)

`import edge4k` stays light: torch and the pipeline load on first use of these names.
"""
import importlib
from typing import TYPE_CHECKING

from edge4k.errors import BuildMismatch, DeviceNotFound, Edge4KError, RawInputError

__version__ = "0.1.0"
__all__ = ["render", "render_many", "extract_thumb", "Renderer", "RawFrame", "read_raw", "Edge4KError", "RawInputError",
           "BuildMismatch", "DeviceNotFound", "__version__"]

_LAZY = {"render": "edge4k.api", "render_many": "edge4k.api", "extract_thumb": "edge4k.api", "Renderer": "edge4k.api",
         "RawFrame": "edge4k.kernels.raw", "read_raw": "edge4k.kernels.raw"}

if TYPE_CHECKING:
    from edge4k.api import Renderer, extract_thumb, render, render_many
    from edge4k.kernels.raw import RawFrame, read_raw


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edge4k' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
