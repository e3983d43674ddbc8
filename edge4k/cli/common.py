"""Arguments several commands share (weights, tiling, look, colour) and their reading into the
library's terms; the command line's own checks, which name the flag."""
from __future__ import annotations

import argparse
import os
import sys

from edge4k.api import check_at_least, tile_options
from edge4k.errors import Edge4KError
from edge4k.kernels.postprocess import DEFAULT_LOOK, LOOKS
from edge4k.kernels.rawcolour import WB_MODES
from edge4k.runtime.pipeline import TileOptions


def check_flag(name: str, value: int | None, minimum: int = 1) -> None:
    """check_at_least in the command line's words: the message names the flag, --name."""
    try:
        check_at_least(name, value, minimum)
    except Edge4KError as e:   # its message starts with the parameter's name
        raise Edge4KError(f"--{e}") from None


def progress(prefix: str):
    """A progress callback: lines on stderr when it is a terminal (or EDGE4K_PROGRESS=1)."""
    show = sys.stderr.isatty() or os.environ.get("EDGE4K_PROGRESS") == "1"
    return lambda msg: print(f"[{prefix}] {msg}", file=sys.stderr, flush=True) if show else None


def weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="PATH",
                   help="model weights (.safetensors from `edge4k train`); default: the trained checkpoint "
                        "shipped for the preset, else seed-initialised weights")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed (only when no checkpoint exists)")


def tiling_args(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--tile", type=int, help="tile size in output pixels (default 512; a smaller frame gets one "
                                               "tile, or the largest tile that fits)")
    mode.add_argument("--native", action="store_true", help="one tile covering the whole frame")
    p.add_argument("--overlap", type=int, help="tile overlap in output pixels (default 32)")
    p.add_argument("--batch", type=int, help="tiles per network call (fixed shape, default 1)")


def check_tiling(args) -> None:
    for name, minimum in (("batch", 1), ("tile", 1), ("overlap", 0)):
        check_flag(name, getattr(args, name), minimum)


def tiling_of(args) -> TileOptions:
    check_tiling(args)
    return tile_options(tile=args.tile, overlap=args.overlap, native=args.native, batch=args.batch)


def parse_resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise Edge4KError(f"--resolution must look like 3840x2160, got {text!r}") from None
    if w < 1 or h < 1 or w % 2 or h % 2:
        raise Edge4KError(f"--resolution needs even, positive width and height, got {text}")
    return w, h


def look_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--look", default=DEFAULT_LOOK, choices=LOOKS,
                   help=f"natural: automatic exposure + tone curve, as a phone gallery shows it; neutral: "
                        f"colorimetric sRGB, no brightening (LibRaw's convention) (default {DEFAULT_LOOK})")


def _wb_choice(text: str):
    if text in WB_MODES:
        return text
    try:
        gains = tuple(float(v) for v in text.split(","))
    except ValueError:
        gains = ()
    if len(gains) != 3:
        raise argparse.ArgumentTypeError(f"expected {', '.join(WB_MODES)} or three multipliers R,G,B, got {text!r}")
    return gains


def colour_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wb", type=_wb_choice, default="camera", metavar="camera|auto|daylight|R,G,B",
                   help="white balance: camera (as shot, default; auto when the file has none), auto (estimated from the "
                        "frame's distinct colours), daylight (the camera's D65 white) or R,G,B multipliers")
    p.add_argument("--wb-kelvin", type=float, metavar="K", help="white balance for a colour temperature (CIE daylight "
                                                               "locus from 4000 K, Planckian below)")
    p.add_argument("--wb-tint", type=float, default=0.0, metavar="T", help="with --wb-kelvin: tint, Adobe's scale "
                                                                          "(+ magenta, - green; default 0)")
    p.add_argument("--cfa", choices=["RGGB", "BGGR", "GRBG", "GBRG"], help="read the mosaic with this CFA pattern "
                                                                          "instead of the file's")
    p.add_argument("--exposure", type=float, default=0.0, metavar="EV", help="exposure compensation in stops, on "
                                                                           "top of either look (default 0)")
    p.add_argument("--highlights", choices=["clip", "reconstruct"], default="clip",
                   help="clip (default) or reconstruct clipped channels from the unclipped ones")


def colour_kwargs(args) -> dict:
    return {"wb": args.wb, "wb_kelvin": args.wb_kelvin, "wb_tint": args.wb_tint, "cfa": args.cfa,
            "exposure": args.exposure, "highlights": args.highlights}
