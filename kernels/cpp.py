"""The host pipeline's CPU stages in C++: the phone runner's kernels (kernels/native), called
through their C ABI (libedge4k_kernels.so, built by `make setup` or `edge4k build-runner
--kernels-only`), row-parallel on the run's threads (kernels/threads.py: run_threads).

Each function here has a Python twin that stays the reference (tests/test_native_kernels.py
compares them): prepare_padded() is kernels.raw.prepare() + kernels.tiling.pad_packed(),
blender() is kernels.tiling.Blender (to float rounding: it normalises the ramps up front),
finish_upright() is kernels.postprocess.finish() + stretch() (in torch) + orient(), quantise() is
kernels.postprocess.quantise(). When the library is not built, or EDGE4K_CPP_KERNELS=0, the
Python code runs instead, after one warning line (none when switched off on purpose).
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys
from pathlib import Path

import numpy as np
import torch

from edge4k.errors import Edge4KError
from edge4k.kernels import postprocess, raw, tiling
from edge4k.kernels.threads import run_threads

LIBRARY = "libedge4k_kernels.so"


def default_library_path() -> Path:
    """Where `make setup` builds the library: build/native-kernels/ in the checkout."""
    return Path(__file__).resolve().parent.parent / "build" / "native-kernels" / LIBRARY


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The kernels library ($EDGE4K_KERNELS_LIB, else default_library_path()), or None."""
    if os.environ.get("EDGE4K_CPP_KERNELS", "1") == "0":
        return None
    path = Path(os.environ.get("EDGE4K_KERNELS_LIB") or default_library_path())
    try:
        lib = ctypes.CDLL(str(path))
    except OSError:
        print(f"edge4k: warning: C++ kernels not built ({path}); the CPU stages run in Python, slower "
              "(`make setup` or `edge4k build-runner --kernels-only` builds them)", file=sys.stderr)
        return None
    lib.e4k_last_error.restype = ctypes.c_char_p
    lib.e4k_set_threads.argtypes = [ctypes.c_int]
    lib.e4k_blender_new.restype = ctypes.c_void_p
    lib.e4k_blender_free.argtypes = [ctypes.c_void_p]
    return lib


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    return a.ctypes.data_as(ctypes.c_void_p)


def _call(lib, name: str, *args) -> None:
    lib.e4k_set_threads(run_threads())
    if getattr(lib, name)(*args) != 0:
        raise Edge4KError(lib.e4k_last_error().decode())


def _array(given: np.ndarray | None, shape: tuple[int, ...], dtype) -> np.ndarray:
    """given if it is a C-contiguous array of this shape and type (a caller's buffer), else a new one."""
    if given is None:
        return np.empty(shape, dtype)
    if given.shape != tuple(shape) or given.dtype != dtype or not given.flags.c_contiguous or not given.flags.writeable:
        raise Edge4KError(f"a buffer of {given.shape} {given.dtype} cannot hold {tuple(shape)} {np.dtype(dtype)}")
    return given


def prepare_padded(frame: raw.RawFrame, thumb_size: int, padded_height: int,
                   padded_width: int, *, packed_into: np.ndarray | None = None) -> tuple[raw.Prepared, torch.Tensor]:
    """raw.prepare(frame) and its packed frame reflect-padded to (padded_height, padded_width)
    (the tile plan's size, in pixels). Prepared.packed is left None on the C++ path: the
    padded tensor holds it. packed_into: a float32 (4, padded_height / 2, padded_width / 2)
    array to write it to (every element is written), instead of a new one; the C++ path only."""
    lib = library()
    if lib is None:
        prep = raw.prepare(frame, thumb_size)
        return prep, tiling.pad_packed(prep.packed, padded_height, padded_width)
    thumb = np.empty((4, thumb_size, thumb_size), np.float32)
    meta = np.empty(len(raw.META), np.float32)
    packed = _array(packed_into, (4, padded_height // 2, padded_width // 2), np.float32)
    scalars = np.empty(3, np.float64)
    bayer = np.ascontiguousarray(frame.bayer, dtype=np.uint16)
    _call(lib, "e4k_frontend", _ptr(bayer), frame.height, frame.width, frame.cfa.encode(),
          _ptr(np.ascontiguousarray(frame.black_level, np.float64)), ctypes.c_double(frame.white_level),
          _ptr(np.ascontiguousarray(frame.wb_gains, np.float64)),
          _ptr(np.ascontiguousarray(frame.srgb_from_cam, np.float64)), padded_height, padded_width, thumb_size,
          _ptr(thumb), _ptr(meta), _ptr(packed), _ptr(scalars))
    prep = raw.Prepared(None, thumb, meta, float(scalars[0]), (int(scalars[1]), int(scalars[2])))
    return prep, torch.from_numpy(packed)


class _CppBlender:
    """kernels.tiling.Blender's interface over the C++ Blender: blends straight into the window
    it is made for, rows in parallel."""

    def __init__(self, lib, plan, channels: int, window: tuple[int, int, int, int], out: np.ndarray | None):
        self.lib = lib
        shape = (channels, window[2], window[3])
        if out is None:
            self.out = np.zeros(shape, np.float32)
        else:
            self.out = _array(out, shape, np.float32)
            self.out.fill(0.0)
        origins = np.ascontiguousarray(plan.origins, dtype=np.int32)
        handle = lib.e4k_blender_new(plan.height, plan.width, plan.padded_height, plan.padded_width,
                                     plan.tile_height, plan.tile_width, plan.overlap, channels, len(origins),
                                     _ptr(origins), *window, _ptr(self.out))
        if not handle:
            raise Edge4KError(lib.e4k_last_error().decode())
        self.handle = ctypes.c_void_p(handle)   # a pointer, not a C int, when passed back

    def __del__(self):
        if getattr(self, "handle", None):
            self.lib.e4k_blender_free(self.handle)
            self.handle = None

    def add(self, tile: torch.Tensor, y: int, x: int) -> None:
        _call(self.lib, "e4k_blender_add", self.handle,
              _ptr(np.ascontiguousarray(tile.detach().cpu().numpy(), dtype=np.float32)), y, x)

    def result(self) -> torch.Tensor:
        return torch.from_numpy(self.out)


class _PythonBlender(tiling.Blender):
    def __init__(self, plan, channels: int, window: tuple[int, int, int, int]):
        super().__init__(plan, channels)
        self.window = window

    def result(self) -> torch.Tensor:
        top, left, height, width = self.window
        return super().result()[:, top:top + height, left:left + width]


def blender(plan: tiling.TilePlan, window: tuple[int, int, int, int], channels: int = 3, *,
            out: np.ndarray | None = None):
    """kernels.tiling.Blender for the plan whose result() is the blend cropped to window
    (top, left, height, width) of the padded frame. out: a float32 (channels, height, width)
    array to blend into (zeroed first) instead of a new one; the C++ path only."""
    lib = library()
    return _PythonBlender(plan, channels, window) if lib is None else _CppBlender(lib, plan, channels, window, out)


def finish_upright(image: torch.Tensor, frame: raw.RawFrame, exposure: float, look: str, *,
                   in_place: bool = False, ev: float = 0.0, highlights: str = "clip") -> torch.Tensor:
    """postprocess.finish() in the look (ev, highlights: as there), postprocess.stretch() for the
    frame's pixel aspect, then orient() for its EXIF Orientation. in_place: the caller gives the
    image up, so the C++ kernel may finish it where it is (a 4K frame's copy is about 30 ms). A
    library built before the finishing options (no e4k_finish_options) clips highlights and scales
    only the natural look: highlight reconstruction, and EV on the neutral look, then finish in torch."""
    lib = library()
    options = lib is not None and hasattr(lib, "e4k_finish_options")
    if lib is None or (not options and (highlights != "clip" or (look == "neutral" and ev != 0))):
        finished = postprocess.finish(image, frame.srgb_from_cam, exposure, look, ev=ev, highlights=highlights)
        return postprocess.orient(postprocess.stretch(finished, frame.pixel_aspect), frame.orientation)
    postprocess.check_look(look)
    rgb = image.detach().cpu().numpy()
    if not (in_place and rgb.dtype == np.float32 and rgb.flags.c_contiguous and rgb.flags.writeable):
        rgb = np.array(rgb, dtype=np.float32, order="C")
    h, w = rgb.shape[1:]
    matrix = _ptr(np.ascontiguousarray(frame.srgb_from_cam, np.float64))
    if options:
        _call(lib, "e4k_finish_options", _ptr(rgb), h, w, matrix, ctypes.c_double(exposure), look.encode(),
              ctypes.c_double(ev), highlights.encode())
    else:
        _call(lib, "e4k_finish", _ptr(rgb), h, w, matrix, ctypes.c_double(exposure * 2.0 ** ev), look.encode())
    if frame.pixel_aspect != 1:
        rgb = np.ascontiguousarray(postprocess.stretch(torch.from_numpy(rgb), frame.pixel_aspect).numpy())
        h, w = rgb.shape[1:]
    if frame.orientation == 1:
        return torch.from_numpy(rgb)
    out = np.empty((3, w, h) if frame.orientation >= 5 else (3, h, w), np.float32)
    _call(lib, "e4k_orient", _ptr(rgb), h, w, frame.orientation, _ptr(out))
    return torch.from_numpy(out)


def quantise(image: torch.Tensor, bits: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """postprocess.quantise(): (3, H, W) in [0, 1] -> (H, W, 3) uint8 or uint16, bit-exact.
    out: an array of that shape and type to write to instead of a new one; the C++ path only."""
    lib = library()
    if lib is None:
        return postprocess.quantise(image, bits)
    rgb = np.ascontiguousarray(image.detach().cpu().numpy(), dtype=np.float32)
    out = _array(out, (rgb.shape[1], rgb.shape[2], 3), np.uint8 if bits == 8 else np.uint16)
    _call(lib, "e4k_quantise", _ptr(rgb), rgb.shape[1], rgb.shape[2], bits, _ptr(out))
    return out


def to_pixels(rgb: torch.Tensor, bits: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """(3, H, W) finished image -> (H, W, 3) pixels: uint8/uint16 (quantise above), or
    float32 for bits=32 (unquantised)."""
    if bits != 32:
        return quantise(rgb, bits, out=out)
    out = np.empty((*rgb.shape[1:], 3), np.float32) if out is None else out
    out[...] = rgb.detach().cpu().permute(1, 2, 0).numpy()
    return out
