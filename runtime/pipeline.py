"""The host pipeline: RAW file -> six stages -> image, timed per stage.

raw_preprocess and postprocess run here (CPU kernels); the four network stages go
through a Backend, so eager and compiled builds share this code and the profile.
Tiles cover the frame as the frontend pads it (PHASE_PAD more pixels each way, RGGB
phase); postprocess blends them, crops the frame back out and finishes it in the look.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from tqdm import tqdm

from edge4k.errors import Edge4KError
from edge4k.files import sha256_file
from edge4k.kernels.postprocess import DEFAULT_LOOK, bit_depth_for, check_look, finish, quantise, write_image
from edge4k.kernels.raw import PHASE_PAD, prepare, read_raw
from edge4k.models import E4KConfig

from . import memory
from .backends import Backend
from .profile import SCHEMA_ID, PowerMeter, StageTimer, host_device, now_iso, versions, write_profile
from .tiling import Blender, TilePlan, packed_tile, pad_packed, plan_tiles


@dataclass(frozen=True)
class TileOptions:
    tile: int | None = 512
    overlap: int = 64
    native: bool = False
    batch: int = 1
    native_size: tuple[int, int] | None = None   # a native build's fixed padded (height, width)

    @classmethod
    def from_manifest(cls, manifest: dict) -> "TileOptions":
        t = manifest["tiling"]
        return cls(tile=t["tile"], overlap=t["overlap"], native=t["native"], batch=t["batch"],
                   native_size=tuple(t["padded"]) if t["native"] else None)

    def plan(self, cfg: E4KConfig, height: int, width: int) -> TilePlan:
        """Tiles over a height x width RAW frame as the frontend pads it."""
        plan = plan_tiles(height + PHASE_PAD, width + PHASE_PAD, compression=cfg.compression, tile=self.tile,
                          overlap=self.overlap, native=self.native)
        padded = (plan.padded_height, plan.padded_width)
        if self.native_size and padded != self.native_size:
            raise Edge4KError(f"this native build takes frames of {self.native_size[1]}x{self.native_size[0]} "
                              f"(after padding); the input is {width}x{height} ({padded[1]}x{padded[0]} padded). "
                              "Compile for this resolution or use a tiled build")
        return plan


def process(path, backend: Backend, cfg: E4KConfig, opts: TileOptions, timer: StageTimer | None = None,
            progress: bool = False, look: str | None = DEFAULT_LOOK) -> tuple[torch.Tensor, dict]:
    """One RAW file through all six stages. Returns display RGB (3, H, W) in [0, 1] in the
    look, before quantisation, plus what was learned about the input and the tiling.
    look=None returns the network's unfinished output instead: companded camera RGB."""
    if look is not None:
        check_look(look)
    timer = timer or StageTimer()
    with timer("raw_preprocess"):
        frame = read_raw(path)
        plan = opts.plan(cfg, frame.height, frame.width)
        prep = prepare(frame, cfg.thumb_size)
        thumb = torch.from_numpy(prep.thumb)[None]
        meta = torch.from_numpy(prep.meta)[None]
        padded = pad_packed(prep.packed, plan)
    with timer("global"):
        g = backend.run("global", thumb, meta)
    blender = Blender(plan)
    batches = [plan.origins[i:i + opts.batch] for i in range(0, plan.num_tiles, opts.batch)]
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
            rgb = backend.run("decoder", z, x)
        with timer("postprocess"):
            for k, (y0, x0) in enumerate(origins):
                blender.add(rgb[k], y0, x0)
    with timer("postprocess"):
        (top, left), h, w = prep.crop, frame.height, frame.width
        image = blender.result()[:, top:top + h, left:left + w]
        if look is not None:
            image = finish(image, frame.srgb_from_cam, prep.exposure, look)
    info = {"frame": frame, "plan": plan, "exposure": prep.exposure, "look": look}
    return image, info


def run_and_profile(input_path, output_path, *, backend: Backend, opts: TileOptions, look: str = DEFAULT_LOOK,
                    runs: int = 1, warmup: int = 0, profile_path=None, progress: bool = True) -> dict:
    """Run the pipeline warmup + runs times, write the image from the last run and,
    if asked, a validated profile JSON. Returns the profile dict."""
    cfg = backend.cfg
    bits = bit_depth_for(output_path)
    estimate = None
    if opts.native:   # one tile for the whole frame: refuse before running out of memory
        frame = read_raw(input_path)
        plan = opts.plan(cfg, frame.height, frame.width)
        estimate = memory.check_fits(backend.estimate_tile_bytes(plan.tile_height, plan.tile_width, opts.batch),
                                     f"a {plan.tile_width}x{plan.tile_height} tile")
    for _ in tqdm(range(warmup), desc="warm-up", unit="run", disable=not progress or warmup == 0):
        process(input_path, backend, cfg, opts, look=look)
    timer, power = StageTimer(), PowerMeter()
    power.start()
    for _ in tqdm(range(runs), desc="timed runs", unit="run", disable=not progress or runs < 2):
        timer.start_run()
        image, info = process(input_path, backend, cfg, opts, timer, progress=progress and runs == 1, look=look)
        with timer("postprocess"):
            pixels = quantise(image, bits)
        timer.end_run()
    power_report = power.stop(runs)
    write_image(output_path, pixels)
    frame, plan = info["frame"], info["plan"]
    profile = {
        "schema": SCHEMA_ID,
        "created": now_iso(),
        "input": {"path": os.fspath(input_path), "sha256": sha256_file(input_path), "cfa": frame.cfa,
                  "width": frame.width, "height": frame.height},
        "resolution": {"width": frame.width, "height": frame.height},
        "tiling": {"enabled": not plan.native, "tile": None if plan.native else plan.tile_height,
                   "overlap": None if plan.native else plan.overlap, "tiles": plan.num_tiles,
                   "batch": opts.batch, "padded": [plan.padded_height, plan.padded_width]},
        "latent_compression": cfg.compression,
        "timing": {"warmup": warmup, "runs": runs, "clock": "time.perf_counter",
                   **({"emulated": True, "note": backend.emulation_note} if backend.emulation_note else {})},
        "latency_ms": timer.summary_ms(),
        "memory": {"peak_rss_bytes": memory.peak_rss_bytes(), "planned_arena_bytes": backend.planned_arena_bytes(),
                   "weight_bytes": backend.weight_bytes(), "estimated_tile_bytes": estimate},
        "power": power_report,
        "device": host_device(backend.name, backend.delegate, backend.threads()),
        "model": {"preset": cfg.name, "config_hash": cfg.config_hash(), "precision": backend.precision,
                  "weights": backend.weights,
                  **({"params": backend.param_count()} if backend.param_count() is not None else {})},
        "output": {"path": os.fspath(output_path), "sha256": sha256_file(output_path),
                   "width": int(pixels.shape[1]), "height": int(pixels.shape[0]), "bit_depth": bits,
                   "look": info["look"], "exposure_gain": round(info["exposure"], 6)},
        "versions": versions(),
    }
    if profile_path:
        write_profile(profile_path, profile)
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
    rows.append(f"peak RSS {mem:.0f} MiB; power: "
                + (f"{profile['power']['mean_watts']} W" if profile["power"]["available"]
                   else profile["power"]["reason"]))
    return "\n".join(rows)
