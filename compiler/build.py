"""A build: fixed shapes for every network stage, a target that lowers them, a
manifest beside the artifacts, and a self-check against eager fp32.

compile_build() is a chain of small named steps: plan shapes -> calibration
inputs -> target.lower (export, quantise, lower, serialise) -> verify -> manifest.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import torch

from edge4k.backends.base import PSNR_FLOOR, TILE_PSNR_FLOOR, BuildSpec, example_inputs, psnr, tensor_specs
from edge4k.backends.registry import get_target, open_build
from edge4k.calibration.tiles import PhotoSource, calibration_inputs
from edge4k.errors import Edge4KError
from edge4k.files import sha256_file, umask
from edge4k.models import NETWORK_STAGES, E4KNet, add_classical_base
from edge4k.runtime.backends import EagerBackend
from edge4k.runtime.manifest import INPUT_NAMES, MANIFEST, MANIFEST_SCHEMA, OUTPUT_NAMES, is_build_folder, load_manifest
from edge4k.runtime.pipeline import TileOptions, process
from edge4k.runtime.profile import now_iso, versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


PHOTOS_SOURCE = "photos"   # --calib-source photos: synthetic captures of the bundled training photos


def calibration_sources(names: tuple[str, ...]):
    """What calibration_inputs() cuts tiles from: RAW paths, the training photos
    (PHOTOS_SOURCE, which cannot be mixed with files), or None for the embedded sample."""
    if PHOTOS_SOURCE in names:
        if len(names) > 1:
            raise Edge4KError(f"--calib-source {PHOTOS_SOURCE} cannot be combined with RAW files")
        return PhotoSource("train")
    return list(names) or None


def prepare_inputs(model: E4KNet, spec: BuildSpec, progress=lambda msg: None):
    """The plan, the example inputs at the compiled shapes, calibration inputs (seed 0)
    and held-out verification inputs (seed 1, other crops)."""
    plan = spec.plan(model.cfg)
    inputs = example_inputs(model.cfg, plan, spec.batch)
    shape = dict(tile_height=plan.tile_height, tile_width=plan.tile_width, batch=spec.batch)
    progress(f"calibration: {spec.calib} samples")
    sources = calibration_sources(spec.calib_sources)
    calib = calibration_inputs(model, count=spec.calib, sources=sources, seed=0, **shape)
    held_out = calibration_inputs(model, count=2, sources=sources, seed=1, **shape)
    return plan, inputs, calib, held_out


def check_output_folder(out_dir: Path, force: bool) -> None:
    """Refuse to replace anything but an empty folder or an older build, unless force."""
    if force or not (out_dir.exists() or out_dir.is_symlink()):
        return
    if not out_dir.is_dir() or out_dir.is_symlink():
        raise Edge4KError(f"{out_dir} exists and is not a folder; refusing to replace it (--force replaces it)")
    if any(out_dir.iterdir()) and not is_build_folder(out_dir):
        raise Edge4KError(f"{out_dir} is a non-empty folder without an Edge4K {MANIFEST}; refusing to replace it "
                          "(choose another -o, or --force)")


def compile_build(model: E4KNet, spec: BuildSpec, out_dir: str | os.PathLike, *, weights: str,
                  progress: Callable[[str], None] = lambda msg: None, force: bool = False) -> dict:
    """Compile every network stage for spec.target into out_dir, which is replaced atomically if it
    is an older build or empty; anything else there is refused unless force."""
    check_output_folder(Path(out_dir), force)
    target = get_target(spec.target)
    if spec.precision not in target.precisions:
        raise Edge4KError(f"target {target.name} supports precisions {', '.join(target.precisions)}, "
                          f"not {spec.precision}")
    unknown = sorted(k for k, v in spec.options.items() if v not in (None, [], (), "") and k not in target.options)
    if unknown:
        raise Edge4KError(f"target {target.name} takes no --{unknown[0].replace('_', '-')} option")
    target.validate(spec)
    cfg = model.cfg
    plan, inputs, calib, held_out = prepare_inputs(model, spec, progress)
    out_dir = Path(out_dir)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        os.chmod(staging, 0o777 & ~umask())   # mkdtemp makes 0700; a build folder gets the usual mode
        stages = target.lower(model, spec, inputs, calib, staging, progress)
        for entry in stages.values():   # the runtimes refuse a program damaged after the build
            if (staging / entry["file"]).is_file():
                entry["file_sha256"] = sha256_file(staging / entry["file"])
        manifest = {
            "schema": MANIFEST_SCHEMA, "created": now_iso(), "target": target.name, "backend": target.backend,
            "delegate": target.delegate, "preset": cfg.name, "config": cfg.to_dict(),
            "config_hash": cfg.config_hash(), "weights": weights, "precision": spec.precision,
            "resolution": {"width": spec.width, "height": spec.height},
            "tiling": {"native": plan.native, "tile": None if plan.native else plan.tile_height,
                       "overlap": plan.overlap, "batch": spec.batch, "tile_height": plan.tile_height,
                       "tile_width": plan.tile_width, "padded": [plan.padded_height, plan.padded_width]},
            "options": spec.options,
            **target.manifest_extra(spec),
            "stages": {s: {"inputs": tensor_specs(INPUT_NAMES[s], inputs[s]),
                           "output": OUTPUT_NAMES[s], **stages[s]} for s in NETWORK_STAGES},
            "calibration": {"sources": [os.path.basename(p) for p in (spec.calib_sources or ["sample.dng"])],
                            "count": spec.calib, "seed": 0},
            "versions": {**versions(), **target.tool_versions()},
            "git_commit": git_commit(),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        skipped = target.verification_unavailable()
        if skipped:
            progress(f"verification skipped: {skipped}")
            manifest["verification"] = {"skipped": skipped, "floor_db": PSNR_FLOOR[spec.precision]}
        else:
            progress("verify against eager fp32")
            manifest["verification"] = verify(model, staging, held_out, spec.precision)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        checked = manifest["verification"]
        failing = {s: (v, checked["floor_db"]) for s, v in checked.get("psnr_db", {}).items()
                   if v < checked["floor_db"]}
        tile_floor = TILE_PSNR_FLOOR.get(spec.precision)
        if tile_floor is not None and "tile_psnr_db" in checked and checked["tile_psnr_db"] < tile_floor:
            failing["whole tile"] = (checked["tile_psnr_db"], tile_floor)
        if failing:
            worst = ", ".join(f"{s} {v:.1f} dB < {floor:g}" for s, (v, floor) in failing.items())
            raise Edge4KError(f"build fails its accuracy check ({worst} dB for {spec.precision}); "
                              f"{target.accuracy_hint}")
        check_output_folder(out_dir, force)   # again: the folder may have changed while we compiled
        old = None
        if out_dir.exists() or out_dir.is_symlink():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    return manifest


def verify(model: E4KNet, artifacts: Path, held_out: list[dict], precision: str, backend=None) -> dict:
    """PSNR of each compiled stage (fed eager inputs) and of the chained tile
    (global -> encoder -> backbone -> decoder, all compiled) against eager fp32. The decoder
    is scored on the tile image (its output plus the classical base on both sides), so its
    floor means what it meant when the base was inside the graph."""
    backend = backend or open_build(artifacts)
    ref = {s: [] for s in NETWORK_STAGES}
    got = {s: [] for s in NETWORK_STAGES}
    chain_ref, chain_got = [], []
    with torch.inference_mode():
        for ins in held_out:
            for s in NETWORK_STAGES:
                ref[s].append(model.stage(s)(*ins[s]))
                got[s].append(backend.run(s, *ins[s]))
            x = ins["encoder"][0]
            ref["decoder"][-1] = add_classical_base(model.cfg, ref["decoder"][-1], x)
            got["decoder"][-1] = add_classical_base(model.cfg, got["decoder"][-1], x)
            g = backend.run("global", *ins["global"])
            chain = backend.run("decoder", backend.run("backbone", backend.run("encoder", x), g), x)
            chain_got.append(add_classical_base(model.cfg, chain, x))
            chain_ref.append(ref["decoder"][-1])
    scores = {s: round(psnr(torch.cat(ref[s]), torch.cat(got[s])), 2) for s in NETWORK_STAGES}
    report = {"psnr_db": scores, "tile_psnr_db": round(psnr(torch.cat(chain_ref), torch.cat(chain_got)), 2),
              "floor_db": PSNR_FLOOR[precision], "samples": len(held_out)}
    if precision in TILE_PSNR_FLOOR:
        report["tile_floor_db"] = TILE_PSNR_FLOOR[precision]
    return report


def check_build(model: E4KNet, artifacts: str | os.PathLike, *, images: list[str], samples: int = 2,
                floor: float | None = None, progress: Callable[[str], None] = lambda msg: None) -> dict:
    """Accuracy pre-flight of a compiled build against eager fp32: verify()'s per-stage
    and whole-tile PSNR on `samples` tiles cut from `images`, plus the PSNR of each
    whole image run through the tiled pipeline. `failing` lists what is under the floor."""
    manifest = load_manifest(artifacts)
    if manifest["config_hash"] != model.cfg.config_hash():
        raise Edge4KError(f"{artifacts} holds preset {manifest['preset']} ({manifest['config_hash']}), "
                          f"not the model given ({model.cfg.name}, {model.cfg.config_hash()})")
    backend = open_build(artifacts)
    opts = TileOptions.from_manifest(manifest)
    t = manifest["tiling"]
    progress(f"per-stage check on {samples} tiles")
    held_out = calibration_inputs(model, tile_height=t["tile_height"], tile_width=t["tile_width"], batch=t["batch"],
                                  count=samples, sources=images, seed=1)
    report = verify(model, Path(artifacts), held_out, manifest["precision"], backend=backend)
    report["floor_db"] = PSNR_FLOOR[manifest["precision"]] if floor is None else floor
    report["image_psnr_db"] = {}
    eager = EagerBackend(model)
    for path in images:
        progress(f"whole image {os.path.basename(path)}")
        ref, _ = process(path, eager, model.cfg, opts)
        got, _ = process(path, backend, backend.cfg, opts)
        report["image_psnr_db"][os.path.basename(path)] = round(psnr(ref, got), 2)
    scores = {**report["psnr_db"], "whole tile": report["tile_psnr_db"],
              **{f"image {k}": v for k, v in report["image_psnr_db"].items()}}
    report["failing"] = {k: v for k, v in scores.items() if v < report["floor_db"]}
    return report
