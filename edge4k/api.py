"""The Python API, the way rawpy users work (`rawpy.imread(path).postprocess()`):

    import edge4k
    rgb = edge4k.render("photo.dng")                    # (H, W, 3) uint8, upright sRGB
    with edge4k.Renderer(preset="e4k-s-f16") as renderer:   # weights loaded once
        for path in paths:
            renderer.render(path, output=path + ".png")     # tagged PNG, and the array

A source is a RAW file's path, its bytes, or a RawFrame built from an in-memory mosaic.
Every failure is an Edge4KError (one line, the same as the CLI prints). `edge4k run` is a
thin layer over Renderer.profile().
"""
from __future__ import annotations

import functools
import os
import threading
from typing import TYPE_CHECKING, Union

from edge4k.errors import Edge4KError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import numpy as np

    from edge4k.batch import BatchResult
    from edge4k.kernels.raw import RawFrame
    from edge4k.models import E4KConfig
    from edge4k.runtime.backends import Backend
    from edge4k.runtime.pipeline import TileOptions

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, "RawFrame"]


def check_at_least(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise Edge4KError(f"{name} must be an integer, got {type(value).__name__} {value!r}"[:200])
    if value is not None and value < minimum:
        raise Edge4KError(f"{name} must be >= {minimum}, got {value}")
    from edge4k.runtime.limits import limits  # the ranges the native runner checks too
    rule = limits()["runner"].get(name)
    if value is not None and rule and value > rule["max"]:
        raise Edge4KError(f"{name} must be at most {rule['max']}, got {value}")


def check_source(source) -> None:
    """A RAW file's path, its bytes or a RawFrame; anything else is refused in one line, before
    the model loads, by read_raw's own rule (a numpy array is pointed at RawFrame)."""
    from edge4k.kernels.raw import RawFrame, read_raw
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview, RawFrame)):
        read_raw(source)


def one_line(fn):
    """The API's promise, kept at its edge: every failure is an Edge4KError. What the file system
    (OSError), the machine (MemoryError) or an argument of the wrong type (TypeError) raises
    becomes one line."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Edge4KError:
            raise
        except MemoryError:
            raise Edge4KError("out of memory; use tiled mode, a smaller tile or batch, or a smaller frame") from None
        except OSError as e:
            where = f": {e.filename}" if e.filename else ""
            raise Edge4KError(f"{e.strerror or e}{where}") from None
        except TypeError as e:
            raise Edge4KError(f"{fn.__qualname__}: an argument of the wrong type: {str(e).splitlines()[0][:200]}") \
                from None
    return wrapper


def tile_options(*, tile: int | None = None, overlap: int | None = None, native: bool = False,
                 batch: int | None = None) -> "TileOptions":
    """Eager tiling from the user's choices. Without a tile size it is the default (kernels.tiling's
    DEFAULT_TILE and DEFAULT_OVERLAP), which fits itself to a smaller frame (one tile, or a smaller
    one) instead of refusing."""
    from edge4k.kernels.tiling import DEFAULT_OVERLAP, DEFAULT_TILE
    from edge4k.runtime.pipeline import TileOptions
    for name, value, minimum in (("batch", batch, 1), ("tile", tile, 1), ("overlap", overlap, 0)):
        check_at_least(name, value, minimum)
    if native:
        if tile is not None:
            raise Edge4KError("tile and native exclude each other: native is one tile for the whole frame")
        return TileOptions(tile=None, overlap=0, native=True, batch=batch or 1)
    return TileOptions(tile=tile or DEFAULT_TILE, overlap=DEFAULT_OVERLAP if overlap is None else overlap,
                       batch=batch or 1, fit=tile is None)


def load_for_preset(preset: str, checkpoint: str | os.PathLike | None, seed: int = 0):
    """(model, weights description): models.checkpoint.load_for_preset, looked up here so that
    `import edge4k` stays light."""
    from edge4k.models.checkpoint import load_for_preset as load
    return load(preset, checkpoint, seed)


def open_compiled(backend: str, artifacts, *, soc: str | None = None, preset: str | None = None,
                  tile: int | None = None, overlap: int | None = None, native: bool = False,
                  batch: int | None = None) -> tuple["Callable[[], Backend]", "TileOptions", "E4KConfig"]:
    """(a function that opens the build's backend, the tiling the build fixed, its model config):
    the caller's choices must agree with the build's manifest, checked now; the build opens when
    the function is called."""
    from edge4k.backends.qnn.runtime import check_soc
    from edge4k.backends.registry import open_build
    from edge4k.errors import BuildMismatch
    from edge4k.models import E4KConfig
    from edge4k.runtime.manifest import load_manifest
    from edge4k.runtime.pipeline import TileOptions

    if not artifacts:
        raise Edge4KError(f"backend {backend} runs a compiled build: pass artifacts, its build folder")
    manifest = load_manifest(artifacts)
    check_soc(manifest, soc, artifacts)
    if preset and preset != manifest["preset"]:     # before loading anything
        raise BuildMismatch(f"{artifacts} holds preset {manifest['preset']}, not {preset}")
    opts = TileOptions.from_manifest(manifest)
    asked = {"tile": tile, "overlap": overlap, "batch": batch, "native": native or None}
    for key, value in asked.items():
        if value is not None and value != getattr(opts, key):
            raise BuildMismatch(f"{artifacts} was compiled with {key}={getattr(opts, key)}, not {value}; "
                                f"recompile, or leave {key} out")
    return (lambda: open_build(artifacts, backend=backend)), opts, E4KConfig.from_dict(manifest["config"])


class Renderer:
    """Loads the weights (eager) or a compiled build once (when made, or with lazy=True on the
    first render that runs the network); then render() and profile() as often as wanted. Use it
    as a context manager, or call close().

    Thread-safe: calls from several threads are serialised (one frame at a time per Renderer,
    since the compiled runtimes are not re-entrant); for frames in parallel, use one Renderer
    per thread. It keeps its largest per-frame arrays from one render to the next of the same
    size (runtime/pipeline.py: FrameBuffers). `threads` sets the process's CPU threads
    (runtime/backends.py: set_threads): torch's for the eager backend, a compiled build's runtime's
    otherwise, and the C++ CPU stages'."""

    @one_line
    def __init__(self, *, preset: str | None = None, checkpoint: str | os.PathLike | None = None, seed: int = 0,
                 backend: str = "eager", artifacts: str | os.PathLike | None = None, soc: str | None = None,
                 tile: int | None = None, overlap: int | None = None, native: bool = False,
                 batch: int | None = None, threads: int | None = None, lazy: bool = False):
        """preset: model preset (default e4k-s-f16); checkpoint: .safetensors weights (default:
        the preset's shipped checkpoint, else seed-initialised with `seed`); backend: "eager"
        (PyTorch) or a compiled build's backend, with artifacts: the build folder (its preset,
        tiling and batch are fixed; soc: the SoC an android-qnn build must be for); tile,
        overlap, native, batch: eager tiling (default 512/32, fitted to smaller frames); threads:
        the process's CPU threads (default: torch's); lazy: everything is checked now, but the
        weights load (or the build opens) only when first needed: on the first render that runs the
        network (a half-size preview does not), or load() (render_many and `edge4k run` do this, so
        a batch whose files are all skipped or unreadable loads nothing)."""
        from edge4k.backends.registry import BACKENDS, backend_class
        from edge4k.kernels.threads import set_threads
        from edge4k.models import DEFAULT_PRESET, get_preset
        from edge4k.runtime.backends import EagerBackend

        check_at_least("threads", threads)
        if backend not in BACKENDS:
            backend_class(backend)                  # raises the one-line error that lists the valid ones
        set_threads(threads)
        if backend == "eager":
            if artifacts or soc:
                raise Edge4KError(f"{'artifacts' if artifacts else 'soc'} needs a compiled backend, "
                                  "e.g. backend='executorch' or 'qnn-htp-sim'")
            opts = tile_options(tile=tile, overlap=overlap, native=native, batch=batch)
            name = preset or DEFAULT_PRESET
            cfg = get_preset(name)      # an unknown preset is refused now, loaded or not

            def load() -> "Backend":
                model, weights = load_for_preset(name, checkpoint, seed=seed)
                return EagerBackend(model, weights=weights)
        elif checkpoint:
            raise Edge4KError("checkpoint is for the eager backend; a compiled build carries its own weights")
        else:
            load, opts, cfg = open_compiled(backend, artifacts, soc=soc, preset=preset, tile=tile,
                                            overlap=overlap, native=native, batch=batch)
        self._load, self._cfg, self._opts = load, cfg, opts
        self._backend: Backend | None = None
        self._closed = False
        self._lock = threading.Lock()         # one frame at a time
        self._load_lock = threading.Lock()    # one load, also when a render holds _lock
        self._buffers = None   # runtime.pipeline.FrameBuffers, from the first render on
        if not lazy:
            self.load()

    @one_line
    def load(self) -> "Backend":
        """Load the weights (or open the compiled build) now, if not yet, and return the backend; a
        lazy Renderer does it on the first render that runs the network."""
        with self._load_lock:
            if self._closed:
                raise Edge4KError("this Renderer is closed")
            if self._backend is None:
                self._backend = self._load()
            return self._backend

    @property
    def backend(self) -> "Backend":
        """The backend (its cfg, weights, precision), loaded first if it was not yet."""
        return self.load()

    @property
    def tiling(self) -> "TileOptions":
        return self._opts

    @one_line
    def render(self, source: Source, *, look: str = "natural", bits: int | None = None,
               output: str | os.PathLike | None = None, output_space: str = "srgb", quality: int | None = None,
               half_size: bool = False, mkdir: bool = False, wb="camera", wb_kelvin: float | None = None,
               wb_tint: float = 0.0, cfa: str | None = None, exposure: float = 0.0,
               highlights: str = "clip") -> "np.ndarray":
        """Render one frame: (H, W, 3), upright.

        source: a RAW file's path, its bytes, or a RawFrame. look: "natural" (automatic exposure
        and tone curve) or "neutral" (colorimetric, LibRaw's convention). bits: 8 (uint8, the
        default), 16 (uint16) or 32 (float32, unquantised). output: also write the image there
        (.png 8/16-bit, .tif 16/8/32-bit, .jpg 8-bit), tagged with the space's ICC profile and the
        RAW's EXIF; bits then defaults to the format's. output_space: "srgb", "display-p3",
        "adobe-rgb", "prophoto" or "rec2020-linear" (rawpy's output_color; the last two need 16
        bits or float). quality: JPEG quality 1-100 (default 95). half_size: each 2x2 Bayer
        cell one pixel, no network (rawpy's half_size: a fast preview). mkdir: create the
        output's missing folders (else refused before rendering).

        Colour (kernels/rawcolour.py): wb: "camera" (as shot; rawpy's use_camera_wb; a file
        without a valid one falls back to "auto" with a warning), "auto" (grey-edge on the
        camera's whites), "daylight" (the camera's D65 white) or R, G, B multipliers (user_wb);
        wb_kelvin, wb_tint: a colour temperature (and Adobe-scale tint) instead. cfa: read the
        mosaic with this 2x2 pattern (a file whose declared CFA looks wrong gets a warning naming
        one). exposure: EV on top of either look (exp_shift, in stops). highlights: "clip" or
        "reconstruct" (rebuild clipped channels from unclipped ones; highlight_mode)."""
        from edge4k.files import check_output
        from edge4k.kernels.colourspace import check_bits, icc_profile
        from edge4k.kernels.cpp import to_pixels
        from edge4k.kernels.postprocess import BIT_DEPTHS, bit_depth_for, check_look, check_quality, write_image
        from edge4k.kernels.raw import RawFrame, read_raw
        from edge4k.kernels.rawcolour import ColourOptions
        from edge4k.runtime.pipeline import FrameBuffers, check_fits, process, process_half_size

        check_source(source)
        check_look(look)
        if output is not None:
            bits = bit_depth_for(output, bits)
            check_quality(output, quality)
            check_output(output, mkdir=mkdir)
        elif bits not in (None, *BIT_DEPTHS):
            raise Edge4KError(f"bits must be 8, 16 or 32 (float), got {bits}")
        check_bits(output_space, bits or 8)
        colour = ColourOptions(wb=wb, wb_kelvin=wb_kelvin, wb_tint=wb_tint, cfa=cfa, exposure=exposure,
                               highlights=highlights)
        with self._lock:
            if self._closed:
                raise Edge4KError("this Renderer is closed")
            frame = source if isinstance(source, RawFrame) else read_raw(source)
            if half_size:   # no network: the model's config is all it needs, loaded or not
                image, _ = process_half_size(frame, self._cfg, look=look, output_space=output_space, colour=colour)
            else:
                backend = self.backend
                check_fits(frame, backend, self._opts)
                # the float image stays inside: the caller gets the quantised pixels, so the packed
                # frame and the blend can be the same arrays from one frame to the next
                self._buffers = self._buffers or FrameBuffers()
                image, _ = process(frame, backend, backend.cfg, self._opts, look=look, buffers=self._buffers,
                                   output_space=output_space, colour=colour)
            pixels = to_pixels(image, bits or 8)
        if output is not None:
            write_image(output, pixels, exif=frame.exif, icc=icc_profile(output_space), quality=quality)
        return pixels

    def render_many(self, inputs, output_dir: str | os.PathLike, *, format: str = "png", look: str = "natural",
                    bits: int | None = None, output_space: str = "srgb", quality: int | None = None,
                    half_size: bool = False, skip_existing: bool = False, mkdir: bool = False,
                    workers: int | None = None, **render_options) -> "Iterator[BatchResult]":
        """Render many files with this Renderer (weights loaded once): an iterator over one
        edge4k.batch.BatchResult per file, in order; a file that fails is a result with its
        error (one line) and the others go on.

        inputs: RAW files, folders (the RAW files directly in them) and globs. output_dir: where
        each file's image goes, as <name>.<format>. format: "png", "tif" or "jpg". look, bits,
        output_space, quality, half_size: as for render(). skip_existing: leave files whose
        output exists. mkdir: create output_dir if missing (else refused). workers: threads
        decoding ahead and writing behind the network (default: 1 when a core is free).
        render_options: render()'s other keyword arguments (the colour controls), for every file."""
        from edge4k.batch import render_many
        return render_many(self, inputs, output_dir, format=format, look=look, bits=bits,
                           output_space=output_space, quality=quality, half_size=half_size,
                           skip_existing=skip_existing, mkdir=mkdir, workers=workers, **render_options)

    @one_line
    def profile(self, source: Source, output: str | os.PathLike, *, look: str = "natural", bits: int | None = None,
                runs: int = 1, warmup: int = 0, profile_path: str | os.PathLike | None = None,
                progress: bool = False, output_space: str = "srgb", quality: int | None = None,
                mkdir: bool = False, wb="camera", wb_kelvin: float | None = None, wb_tint: float = 0.0,
                cfa: str | None = None, exposure: float = 0.0, highlights: str = "clip") -> dict:
        """Render `source` warmup + runs times, timing every stage; write the last image to
        `output` and, with profile_path, the profile JSON. Returns the edge4k.profile/1 dict
        (validated; the same as the JSON file).

        source, look, bits, output_space, quality, mkdir, wb, wb_kelvin, wb_tint, cfa, exposure,
        highlights: as for render(); runs: timed runs;
        warmup: untimed runs before them; progress: show tqdm bars on stderr."""
        from edge4k.files import check_output
        from edge4k.kernels.postprocess import bit_depth_for
        from edge4k.kernels.rawcolour import ColourOptions
        from edge4k.runtime.pipeline import run_and_profile
        colour = ColourOptions(wb=wb, wb_kelvin=wb_kelvin, wb_tint=wb_tint, cfa=cfa, exposure=exposure,
                               highlights=highlights)
        check_source(source)
        check_at_least("runs", runs)
        check_at_least("warmup", warmup, 0)
        bit_depth_for(output, bits)
        check_output(output, mkdir=mkdir)
        with self._lock:
            return run_and_profile(source, output, backend=self.backend, opts=self._opts, look=look, runs=runs,
                                   warmup=warmup, profile_path=profile_path, progress=progress, bits=bits,
                                   output_space=output_space, quality=quality, colour=colour)

    def close(self) -> None:
        """Release the weights or the build; later calls raise Edge4KError."""
        with self._lock, self._load_lock:
            self._backend = self._buffers = None
            self._closed = True

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@one_line
def render(source: Source, *, look: str = "natural", bits: int | None = None,
           output: str | os.PathLike | None = None, preset: str | None = None,
           checkpoint: str | os.PathLike | None = None, seed: int = 0, backend: str = "eager",
           artifacts: str | os.PathLike | None = None, soc: str | None = None, tile: int | None = None,
           overlap: int | None = None, native: bool = False, batch: int | None = None,
           threads: int | None = None, output_space: str = "srgb", quality: int | None = None,
           half_size: bool = False, mkdir: bool = False, wb="camera", wb_kelvin: float | None = None,
           wb_tint: float = 0.0, cfa: str | None = None, exposure: float = 0.0,
           highlights: str = "clip") -> "np.ndarray":
    """One frame in one call: Renderer(...).render(source, ...). For many frames, keep a
    Renderer so that the weights load once, or use render_many().

    source, look, bits, output, output_space, quality, half_size, mkdir, wb, wb_kelvin, wb_tint,
    cfa, exposure, highlights: as for Renderer.render(); preset, checkpoint, seed, backend, artifacts, soc, tile, overlap, native,
    batch, threads: as for Renderer()."""
    with Renderer(preset=preset, checkpoint=checkpoint, seed=seed, backend=backend, artifacts=artifacts, soc=soc,
                  tile=tile, overlap=overlap, native=native, batch=batch, threads=threads,
                  lazy=half_size) as renderer:   # a half-size preview runs no network
        return renderer.render(source, look=look, bits=bits, output=output, output_space=output_space,
                               quality=quality, half_size=half_size, mkdir=mkdir, wb=wb, wb_kelvin=wb_kelvin,
                               wb_tint=wb_tint, cfa=cfa, exposure=exposure, highlights=highlights)


def render_many(inputs, output_dir: str | os.PathLike, *, format: str = "png", look: str = "natural",
                bits: int | None = None, output_space: str = "srgb", quality: int | None = None,
                half_size: bool = False, skip_existing: bool = False, mkdir: bool = False,
                workers: int | None = None, preset: str | None = None, checkpoint: str | os.PathLike | None = None,
                backend: str = "eager", artifacts: str | os.PathLike | None = None,
                threads: int | None = None) -> "Iterator[BatchResult]":
    """Many files with one Renderer (one model load, for the first file that needs the network:
    none when every file is skipped, unreadable or a half-size preview): an iterator over
    edge4k.batch.BatchResult, one per file, in order (a file that fails is a result with its
    error; the rest go on; a model that cannot load ends it with that error).

    inputs, output_dir, format, look, bits, output_space, quality, half_size, skip_existing,
    mkdir, workers: as for Renderer.render_many(); preset, checkpoint, backend, artifacts,
    threads: as for Renderer()."""
    from edge4k.batch import plan_batch
    plan_batch(inputs, output_dir, format=format, look=look, bits=bits, output_space=output_space,
               quality=quality, mkdir=mkdir)   # before the model loads
    with Renderer(preset=preset, checkpoint=checkpoint, backend=backend, artifacts=artifacts,
                  threads=threads, lazy=True) as renderer:   # loaded for the first file that needs it
        yield from renderer.render_many(inputs, output_dir, format=format, look=look, bits=bits,
                                        output_space=output_space, quality=quality, half_size=half_size,
                                        skip_existing=skip_existing, mkdir=mkdir, workers=workers)


@one_line
def extract_thumb(source: str | os.PathLike | bytes, output: str | os.PathLike | None = None, *,
                  mkdir: bool = False) -> bytes:
    """The camera's embedded preview (rawpy's extract_thumb): its bytes as stored (JPEG, or
    an encoded bitmap), written to `output` when given.

    source: a RAW file's path or its bytes. output: .jpg keeps a JPEG preview's bytes as they
    are; .png or .tif decode and re-encode it. mkdir: create the output's missing folders."""
    from edge4k.kernels.thumb import extract_thumb as extract
    return extract(source, output, mkdir=mkdir)
