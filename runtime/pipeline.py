"""The host pipeline: RAW file (or bytes, or an in-memory RawFrame) -> six stages -> image, timed per stage.

raw_preprocess and postprocess run here (CPU kernels: the C++ ones of the phone runner
when built, kernels/cpp.py, else their Python twins); the four network stages go
through a Backend, so eager and compiled builds share this code and the profile.
Tiles cover the frame as the frontend pads it (PHASE_PAD more pixels each way, RGGB
phase); postprocess blends them, crops the frame back out, finishes it in the look,
stretches non-square pixels square and turns it upright (the RAW's pixel aspect and EXIF
Orientation, as LibRaw does).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from edge4k.errors import BuildMismatch, Edge4KError
from edge4k.files import atomic_outputs, sha256_file
from edge4k.kernels import colourspace, cpp
from edge4k.kernels.cpp import to_pixels
from edge4k.kernels.postprocess import (
    DEFAULT_LOOK,
    PIXEL_TYPES,
    bit_depth_for,
    check_look,
    check_quality,
    stretched_size,
    write_image,
)
from edge4k.kernels.raw import PHASE_PAD, RawFrame, read_raw
from edge4k.kernels.rawcolour import ColourOptions, metered_gain
from edge4k.kernels.threads import run_threads
from edge4k.kernels.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, TilePlan, packed_tile, phase_padded, plan_frame
from edge4k.models import NETWORK_STAGES, E4KConfig, add_classical_base
from edge4k.runtime import memory
from edge4k.runtime.backends import Backend
from edge4k.runtime.profile import SCHEMA_ID, PowerMeter, StageTimer, host_device, now_iso, versions, write_profile


@dataclass(frozen=True)
class TileOptions:
    tile: int | None = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP
    native: bool = False
    batch: int = 1
    native_size: tuple[int, int] | None = None   # a native build's fixed padded (height, width)
    fit: bool = False        # the default tiling: a frame smaller than the tile gets a fitting tiling
    compiled: bool = False   # a compiled build's fixed tiling

    @classmethod
    def from_manifest(cls, manifest: dict) -> "TileOptions":
        t = manifest["tiling"]
        return cls(tile=t["tile"], overlap=t["overlap"], native=t["native"], batch=t["batch"],
                   native_size=tuple(t["padded"]) if t["native"] else None, compiled=True)

    def fitted(self, compression: int, height: int, width: int) -> "TileOptions":
        """These options for a height x width RAW frame: the default tiling (fit) made to fit a
        frame smaller than its tile (fitted_tiling); any other tiling as it is."""
        ph, pw = phase_padded(height, width)
        if not self.fit or self.native or (ph >= self.tile and pw >= self.tile):
            return self
        tile, overlap, native = fitted_tiling(ph, pw, self.tile, self.overlap, compression)
        return dataclasses.replace(self, tile=tile, overlap=overlap, native=native, fit=False)

    def plan(self, cfg: E4KConfig, height: int, width: int) -> TilePlan:
        """Tiles over a height x width RAW frame as the frontend pads it."""
        ph, pw = phase_padded(height, width)
        opts = self.fitted(cfg.compression, height, width)
        if opts.compiled and not opts.native and (ph < opts.tile or pw < opts.tile):
            raise BuildMismatch(f"a {width}x{height} frame is smaller than this build's {opts.tile}x{opts.tile} tile; "
                                f"compile one with a smaller --tile, or --native --resolution {width}x{height}")
        plan = plan_frame(height, width, compression=cfg.compression, tile=opts.tile, overlap=opts.overlap,
                          native=opts.native)
        padded = (plan.padded_height, plan.padded_width)
        if self.native_size and padded != self.native_size:
            ph, pw = self.native_size
            raise Edge4KError(f"this native build takes frames that pad to {pw}x{ph} (up to "
                              f"{pw - PHASE_PAD}x{ph - PHASE_PAD}); the input is {width}x{height} ({padded[1]}x"
                              f"{padded[0]} padded). Compile for this resolution or use a tiled build")
        return plan


def fitted_tiling(height: int, width: int, tile: int, overlap: int, f: int) -> tuple[int | None, int, bool]:
    """(tile, overlap, native) for a padded frame smaller than the default tile on a side: one
    tile for the whole frame if it fits in one, else the largest multiple of the compression f
    the short side takes, with the overlap cut to at most half of it."""
    side = min(height, width) // f * f
    if (height <= tile and width <= tile) or side < f:
        return None, 0, True
    return side, min(overlap, side // 2 // f * f), False


class FrameBuffers:
    """The large per-frame arrays (packed frame, blend, output pixels), kept from one frame to the
    next of the same size, as a camera app keeps its frame buffers. Fresh memory is not free: the
    first write to each page faults, which made blending a 4K frame into a new 100 MB array several
    times slower than into one already written (README, "Frame buffers"). Only for a caller that
    is done with a frame's image before it processes the next (run_and_profile, api.Renderer): the
    next frame overwrites it."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        array = self.arrays.get(name)
        if array is None or array.shape != tuple(shape) or array.dtype != dtype:
            array = self.arrays[name] = np.empty(shape, dtype)
        return array


def process(source, backend: Backend, cfg: E4KConfig, opts: TileOptions, timer: StageTimer | None = None,
            progress: bool = False, look: str | None = DEFAULT_LOOK,
            overlap_blending: bool | None = None, buffers: FrameBuffers | None = None,
            output_space: str = "srgb", colour: ColourOptions | None = None) -> tuple[torch.Tensor, dict]:
    """One RAW (a file path, its bytes, or a RawFrame) through all six stages. Returns display
    RGB (3, H, W) in [0, 1] in the look, square pixels, upright, before quantisation, plus what was learned
    about the input and the tiling. look=None returns the network's unfinished output instead:
    companded camera RGB, in the sensor's orientation.

    overlap_blending: blend each tile batch on a worker thread while the network runs the next
    one (one batch in flight, so memory stays bounded; the image is the same to the bit, since
    batches are still blended in order). None: overlap when the pipeline would gain from it
    (overlaps_blending). The profile's postprocess time is then only what the network waits for.

    buffers: reuse these arrays for the packed frame and the blend (the returned image is then the
    buffers' blend, which the next call with them overwrites).

    output_space: kernels/colourspace.py's OUTPUT_SPACES (the image is then in its primaries and curve).

    colour: white balance, CFA override, exposure (EV) and highlight mode (kernels/rawcolour.py;
    default: as shot, with its fallbacks and warnings). The natural look's exposure is
    rawcolour.metered_gain(); the network is still told the frontend's gain (what it learned on)."""
    colour = colour or ColourOptions()
    if look is not None:
        check_look(look)
    timer = timer or StageTimer()
    buffers = buffers if cpp.library() is not None else None   # the Python kernels make their own arrays
    with timer("raw_preprocess"):
        frame = colour.apply(source if isinstance(source, RawFrame) else read_raw(source))
        plan = opts.plan(cfg, frame.height, frame.width)
        packed_shape = (4, plan.padded_height // 2, plan.padded_width // 2)
        prep, padded = cpp.prepare_padded(frame, cfg.thumb_size, plan.padded_height, plan.padded_width,
                                          packed_into=buffers.get("packed", packed_shape, np.float32) if buffers else None)
        thumb = torch.from_numpy(prep.thumb)[None]
        meta = torch.from_numpy(prep.meta)[None]
    with timer("global"):
        g = backend.run("global", thumb, meta)
    window = (*prep.crop, frame.height, frame.width)
    blender = cpp.blender(plan, window, out=buffers.get("blend", (3, *window[2:]), np.float32) if buffers else None)
    batches = [plan.origins[i:i + opts.batch] for i in range(0, plan.num_tiles, opts.batch)]

    def blend(rgb, origins):
        for k, (y0, x0) in enumerate(origins):
            blender.add(rgb[k], y0, x0)

    overlap = overlaps_blending(len(batches)) if overlap_blending is None else overlap_blending
    with ThreadPoolExecutor(max_workers=1) if overlap else contextlib.nullcontext() as worker:
        blending = None   # the previous batch's blend, when it runs beside the network
        for origins in tqdm(batches, desc="tiles", unit="batch", leave=False, disable=not progress):
            with timer("raw_preprocess"):
                tiles = [packed_tile(padded, plan, y, x) for y, x in origins]
                tiles += tiles[-1:] * (opts.batch - len(tiles))   # fixed batch shape: repeat the last tile
                x = torch.stack(tiles)
            with timer("encoder"):
                z = backend.run("encoder", x)
            with timer("backbone"):
                z = backend.run("backbone", z, g)
            with timer("decoder"):
                rgb = add_classical_base(cfg, backend.run("decoder", z, x), x)
            with timer("postprocess"):
                if blending is not None:
                    blending.result()
                blending = worker.submit(blend, rgb, origins) if overlap else blend(rgb, origins)
        with timer("postprocess"):
            if blending is not None:
                blending.result()
    with timer("postprocess"):
        image = blender.result()
        exposure = metered_gain(prep.thumb, frame.srgb_from_cam) if look == "natural" else 1.0
        if look is not None:
            image = cpp.finish_upright(image, colourspace.in_space(frame, output_space), exposure, look,   # the blend
                                       in_place=True, ev=colour.exposure, highlights=colour.highlights)  # is ours
            image = colourspace.encode(output_space, image)
    info = {"frame": frame, "plan": plan, "exposure": exposure * 2.0 ** colour.exposure, "look": look,
            "colour": colour}
    return image, info


def overlaps_blending(batches: int) -> bool:
    """Whether process() blends beside the network by default: with more than one batch, the C++
    blender (it releases the GIL; the Python one would only take turns with the network) and a
    core the run's threads leave free. Where the network's threads take every core, blending
    beside it only slows it down (measured on 2 cores: 1.81-1.89 s a 4K frame in turn, 1.96-2.12 s
    overlapped; README, "Blending beside the network"). EDGE4K_OVERLAP_BLENDING=0 or 1 overrides it."""
    env = os.environ.get("EDGE4K_OVERLAP_BLENDING")
    if env in ("0", "1"):
        return env == "1"
    return batches > 1 and cpp.library() is not None and (os.cpu_count() or 1) > run_threads()


def describe_input(source) -> tuple[str, str]:
    """(path, sha256) of a pipeline input for the profile: a file; RAW bytes ("<bytes>", their
    hash); an in-memory RawFrame ("<RawFrame>", the hash of its Bayer buffer)."""
    if isinstance(source, RawFrame):
        return "<RawFrame>", hashlib.sha256(source.bayer.astype("<u2").tobytes()).hexdigest()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>", hashlib.sha256(source).hexdigest()
    return os.fspath(source), sha256_file(source)


def check_fits(source, backend: Backend, opts: TileOptions) -> int | None:
    """Refuse a frame whose working set would not fit in memory, before running out of it: the
    frame-sized arrays (packed frame, blend, finished image, pixels) plus one tile batch's network
    working set (native mode: the whole frame's). Returns the tile estimate in native mode (the
    profile's estimated_tile_bytes), None when tiled."""
    frame = source if isinstance(source, RawFrame) else read_raw(source)
    plan = opts.plan(backend.cfg, frame.height, frame.width)
    # float32 packed planes and blend, finished image (3 channels each; square pixels) and uint16 pixels at worst
    out_height, out_width = stretched_size(frame.height, frame.width, frame.pixel_aspect)
    frame_bytes = (plan.padded_height * plan.padded_width * 4 + frame.height * frame.width * 3 * 4
                   + out_height * out_width * 3 * (4 + 2))
    tile = backend.estimate_tile_bytes(plan.tile_height, plan.tile_width, opts.batch)
    what = (f"a {plan.tile_width}x{plan.tile_height} tile" if opts.native else
            f"a {frame.width}x{frame.height} frame in {plan.tile_width}x{plan.tile_height} tiles")
    hint = (f"use tiled mode (--tile {DEFAULT_TILE} --overlap {DEFAULT_OVERLAP})" if opts.native
            else "use a smaller frame or --batch")
    memory.check_fits(frame_bytes + (tile or 0), what, hint=hint)
    return tile if opts.native else None


def run_and_profile(input_path, output_path, *, backend: Backend, opts: TileOptions, look: str = DEFAULT_LOOK,
                    runs: int = 1, warmup: int = 0, profile_path=None, progress: bool = True,
                    bits: int | None = None, output_space: str = "srgb", quality: int | None = None,
                    colour: ColourOptions | None = None) -> dict:
    """Run the pipeline warmup + runs times, write the image from the last run (bits: as
    bit_depth_for; output_space: kernels/colourspace.py, its ICC profile embedded; quality: JPEG's)
    and, if asked, a validated profile JSON. Returns the profile dict.
    input_path may also be RAW bytes or a RawFrame; colour: as process()'s."""
    cfg = backend.cfg
    bits = bit_depth_for(output_path, bits)
    colourspace.check_bits(output_space, bits)
    check_quality(output_path, quality)
    estimate = check_fits(input_path, backend, opts)
    # One set of frame buffers for every run: each run's image is written out before the next
    # starts, so the warm-up also pays for the buffers' fresh memory (FrameBuffers).
    buffers, pixel_dtype = FrameBuffers(), PIXEL_TYPES[bits]

    def quantised(image):
        return to_pixels(image, bits, out=buffers.get("pixels", (*image.shape[1:], 3), pixel_dtype))

    for _ in tqdm(range(warmup), desc="warm-up", unit="run", disable=not progress or warmup == 0):
        quantised(process(input_path, backend, cfg, opts, look=look, buffers=buffers, output_space=output_space,
                          colour=colour)[0])
    timer, power = StageTimer(), PowerMeter()
    power.start()
    for _ in tqdm(range(runs), desc="timed runs", unit="run", disable=not progress or runs < 2):
        timer.start_run()
        image, info = process(input_path, backend, cfg, opts, timer, progress=progress and runs == 1, look=look,
                              buffers=buffers, output_space=output_space, colour=colour)
        with timer("postprocess"):
            pixels = quantised(image)
        timer.end_run()
    power_report = power.stop(runs)
    frame, plan = info["frame"], info["plan"]
    # Image and profile are published together: both written beside their targets, then both
    # renamed into place (a failed write leaves the old pair as it was).
    with atomic_outputs(output_path, *([profile_path] if profile_path else [])) as (image_tmp, *profile_tmp):
        write_image(image_tmp, pixels, exif=frame.exif, icc=colourspace.icc_profile(output_space), quality=quality)
        path, sha256 = describe_input(input_path)
        peak_rss, peak_rss_source = memory.peak_rss()
        profile = {
            "schema": SCHEMA_ID,
            "created": now_iso(),
            "input": {"path": path, "sha256": sha256, "cfa": frame.cfa, "matrix_source": frame.matrix_source,
                      "wb_source": frame.wb_source, "wb_gains": [round(float(g), 6) for g in frame.wb_gains],
                      "width": frame.width, "height": frame.height, "pixel_aspect": round(frame.pixel_aspect, 6)},
            "resolution": {"width": frame.width, "height": frame.height},
            "tiling": {"enabled": not plan.native, "tile": None if plan.native else plan.tile_height,
                       "overlap": None if plan.native else plan.overlap, "tiles": plan.num_tiles,
                       "batch": opts.batch, "padded": [plan.padded_height, plan.padded_width]},
            "latent_compression": cfg.compression,
            "timing": {"warmup": warmup, "runs": runs, "clock": "time.perf_counter",
                       **({"emulated": True, "note": backend.emulation_note} if backend.emulation_note else {})},
            "latency_ms": timer.summary_ms(),
            "memory": {"peak_rss_bytes": peak_rss, "peak_rss_source": peak_rss_source,
                       "planned_arena_bytes": backend.planned_arena_bytes(), "weight_bytes": backend.weight_bytes(),
                       "estimated_tile_bytes": estimate},
            "power": power_report,
            "device": host_device(backend.name, backend.delegate, backend.threads()),
            "model": {"preset": cfg.name, "config_hash": cfg.config_hash(), "precision": backend.precision,
                      "weights": backend.weights,
                      **({"params": backend.param_count()} if backend.param_count() is not None else {})},
            "output": {"path": os.fspath(output_path), "sha256": sha256_file(image_tmp),
                       "width": int(pixels.shape[1]), "height": int(pixels.shape[0]), "bit_depth": bits,
                       "look": info["look"], "exposure_gain": round(info["exposure"], 6), "output_space": output_space,
                       **({"quality": quality} if quality is not None else {}),
                       "colour": info["colour"].record()},
            "versions": versions(),
        }
        placements = {stage: backend.placement(stage) for stage in NETWORK_STAGES}
        if all(placements.values()):
            profile["stages"] = placements
        if profile_path:
            write_profile(profile_tmp[0], profile)
    return profile


def format_table(profile: dict) -> str:
    """Per-stage latency table for the terminal."""
    lat = profile["latency_ms"]
    total = lat["total"]["median"] or 1.0
    rows = [f"{'stage':<16}{'median ms':>11}{'min':>10}{'max':>10}{'share':>8}"]
    for stage, s in lat.items():
        share = "" if stage == "total" else f"{100 * s['median'] / total:7.1f}%"
        rows.append(f"{stage:<16}{s['median']:>11.1f}{s['min']:>10.1f}{s['max']:>10.1f}{share:>8}")
    if profile["timing"].get("emulated"):
        rows.append(f"emulated: {profile['timing']['note']}")
    mem = profile["memory"]["peak_rss_bytes"] / 2**20
    power = profile["power"]
    if power["available"]:
        said = f"{power['mean_watts']} W"
    else:   # why power is unavailable does not change within a process: said once
        said = power["reason"] if power["reason"] not in _POWER_REASONS_SAID else "not available (said above)"
        _POWER_REASONS_SAID.add(power["reason"])
    rows.append(f"peak RSS {mem:.0f} MiB; power: {said}")
    return "\n".join(rows)


_POWER_REASONS_SAID: set[str] = set()


def process_half_size(source, cfg: E4KConfig, *, look: str = DEFAULT_LOOK,
                      output_space: str = "srgb", colour: ColourOptions | None = None) -> tuple[torch.Tensor, dict]:
    """rawpy's half_size: a fast preview with no network. Each 2x2 Bayer cell is one pixel (its
    red, the mean of its greens in linear light, its blue), then the same frontend (levels, white
    balance, the natural look's exposure) and the same finishing as process(). Returns what
    process() returns, at half the width and height. colour: as process()'s."""
    check_look(look)
    colour = colour or ColourOptions()
    frame = colour.apply(source if isinstance(source, RawFrame) else read_raw(source))
    prep, padded = cpp.prepare_padded(frame, cfg.thumb_size, *phase_padded(frame.height, frame.width))
    # the padded frame starts one packed cell before the frame (phase_padding: 2 + dy rows, 2 + dx columns)
    cells = torch.as_tensor(padded)[:, 1:1 + frame.height // 2, 1:1 + frame.width // 2].double() ** 2
    green = ((cells[1] + cells[2]) / 2).sqrt()
    image = torch.stack([cells[0].sqrt(), green, cells[3].sqrt()]).float().contiguous()
    exposure = metered_gain(prep.thumb, frame.srgb_from_cam) if look == "natural" else 1.0
    image = cpp.finish_upright(image, colourspace.in_space(frame, output_space), exposure, look, in_place=True,
                               ev=colour.exposure, highlights=colour.highlights)
    return colourspace.encode(output_space, image), {"frame": frame, "plan": None,
                                                     "exposure": exposure * 2.0 ** colour.exposure, "look": look,
                                                     "colour": colour}
