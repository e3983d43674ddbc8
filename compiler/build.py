"""A build: fixed shapes for every network stage, a target that lowers them, a
manifest beside the artifacts, and a self-check against eager fp32.

compile_build() is a chain of small named steps: plan shapes -> calibration
inputs -> target.lower (export, quantise, lower, serialise) -> verify -> manifest.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from edge4k.errors import Edge4KError
from edge4k.files import _umask, sha256_file
from edge4k.kernels.raw import PHASE_PAD
from edge4k.models import NETWORK_STAGES, E4KConfig, E4KNet
from edge4k.runtime.limits import check_manifest
from edge4k.runtime.profile import now_iso, versions
from edge4k.runtime.tiling import TilePlan, plan_tiles

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "edge4k.manifest/1"
INPUT_NAMES = {"global": ("thumb", "meta"), "encoder": ("packed",),
               "backbone": ("latent", "g"), "decoder": ("latent", "packed")}
OUTPUT_NAMES = {"global": "g", "encoder": "latent", "backbone": "latent_out", "decoder": "rgb"}

# Lowest per-stage PSNR (dB, against eager fp32 on held-out calibration tiles) a
# build may have; below it the build fails. Defined once; the tests import it.
PSNR_FLOOR = {"fp32": 60.0, "fp16": 40.0, "int8": 30.0, "int8-a16": 40.0, "int8-mixed": 40.0, "w4a8": 25.0,
              "int8-weights": 38.0, "palette4": 25.0, "w8a8": 30.0}


@dataclass(frozen=True)
class BuildSpec:
    target: str
    preset: str
    width: int
    height: int
    tile: int | None = 512
    overlap: int = 32   # runtime.pipeline.TileOptions: why 32
    native: bool = False
    batch: int = 1
    precision: str = "fp32"
    calib: int = 8
    calib_sources: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)   # target-specific (observer, keep-fp32 layers, SoC, ...)

    def plan(self, cfg: E4KConfig) -> TilePlan:
        """Tiles over the frame as the RAW frontend pads it (kernels.raw.PHASE_PAD)."""
        return plan_tiles(self.height + PHASE_PAD, self.width + PHASE_PAD, compression=cfg.compression,
                          tile=self.tile, overlap=self.overlap, native=self.native)


def example_inputs(cfg: E4KConfig, plan: TilePlan, batch: int) -> dict[str, tuple[torch.Tensor, ...]]:
    """Zero tensors at each stage's compiled input shapes."""
    th, tw, f = plan.tile_height, plan.tile_width, cfg.compression
    packed = torch.zeros(batch, 4, th // 2, tw // 2)
    latent = torch.zeros(batch, cfg.latent_channels, th // f, tw // f)
    return {"global": (torch.zeros(1, 4, cfg.thumb_size, cfg.thumb_size), torch.zeros(1, cfg.meta_dim)),
            "encoder": (packed,), "backbone": (latent, torch.zeros(1, cfg.global_dim)),
            "decoder": (latent, packed)}


def tensor_specs(names, tensors) -> list[dict]:
    return [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
            for n, t in zip(names, tensors)]


class Target(ABC):
    """One compiler target. lower() writes the stage artifacts into out_dir and
    returns, per stage, what the manifest records (file, sizes, planned memory,
    ops outside the delegate...). backend is the runtime backend that runs them."""

    name = ""
    backend = ""
    precisions: tuple[str, ...] = ()
    delegate: str | None = None
    options: tuple[str, ...] = ("observer", "keep_fp32")   # BuildSpec.options keys it understands
    default_precision = "fp32"
    accuracy_hint = "keep the weakest layers in fp32 or use more calibration"

    @abstractmethod
    def lower(self, model: E4KNet, spec: BuildSpec, inputs: dict, calib: list[dict],
              out_dir: Path, progress: Callable[[str], None]) -> dict[str, dict]:
        """Export, quantise, lower and serialise every stage into out_dir."""

    def validate(self, spec: BuildSpec) -> None:
        """Refuse a spec this target cannot build, before any calibration work."""

    def manifest_extra(self, spec: BuildSpec) -> dict:
        """Target-specific top-level manifest fields (the SoC of a QNN build, ...)."""
        return {}

    def tool_versions(self) -> dict:
        return {}

    def verification_unavailable(self) -> str | None:
        """Why this machine cannot run the compiled stages (so the build is checked
        structurally only), or None when it can."""
        return None


TARGETS: dict[str, Target] = {}


def register_target(cls):
    TARGETS[cls.name] = cls()
    return cls


def get_target(name: str) -> Target:
    _load_targets()
    if name not in TARGETS:
        raise Edge4KError(f"unknown target '{name}'; valid targets: {', '.join(sorted(TARGETS))}")
    return TARGETS[name]


def _load_targets() -> None:
    # Each target folder registers itself on import; a missing optional toolchain
    # only hides that target's lowering, not its name (it fails when used).
    from edge4k.compiler import coreml, litert, qnn, xnnpack  # noqa: F401


def psnr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """PSNR in dB with the reference's own peak-to-peak range as the signal."""
    ref, test = reference.double(), test.double()
    mse = torch.mean((ref - test) ** 2).item()
    peak = (ref.max() - ref.min()).item() or 1.0
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def load_manifest(artifacts: str | os.PathLike) -> dict:
    path = Path(artifacts) / MANIFEST
    if not path.is_file():
        raise Edge4KError(f"no {MANIFEST} in {artifacts}: not an Edge4K build folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:   # not JSON, not UTF-8, or nested past Python's stack
        raise Edge4KError(f"{path} is not valid JSON: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        schema = manifest.get("schema") if isinstance(manifest, dict) else None
        raise Edge4KError(f"{path}: schema {schema!r}, expected {MANIFEST_SCHEMA}")
    return check_manifest(manifest, str(path))


PHOTOS_SOURCE = "photos"   # --calib-source photos: synthetic captures of the bundled training photos


def calibration_sources(names: tuple[str, ...]):
    """What calibration_inputs() cuts tiles from: RAW paths, the training photos
    (PHOTOS_SOURCE, which cannot be mixed with files), or None for the embedded sample."""
    from edge4k.calibration.tiles import PhotoSource

    if PHOTOS_SOURCE in names:
        if len(names) > 1:
            raise Edge4KError(f"--calib-source {PHOTOS_SOURCE} cannot be combined with RAW files")
        return PhotoSource("train")
    return list(names) or None


def prepare_inputs(model: E4KNet, spec: BuildSpec, progress=lambda msg: None):
    """The plan, the example inputs at the compiled shapes, calibration inputs (seed 0)
    and held-out verification inputs (seed 1, other crops)."""
    from edge4k.calibration.tiles import calibration_inputs

    plan = spec.plan(model.cfg)
    inputs = example_inputs(model.cfg, plan, spec.batch)
    shape = dict(tile_height=plan.tile_height, tile_width=plan.tile_width, batch=spec.batch)
    progress(f"calibration: {spec.calib} samples")
    sources = calibration_sources(spec.calib_sources)
    calib = calibration_inputs(model, count=spec.calib, sources=sources, seed=0, **shape)
    held_out = calibration_inputs(model, count=2, sources=sources, seed=1, **shape)
    return plan, inputs, calib, held_out


def is_build_folder(path: Path) -> bool:
    """Whether path holds an Edge4K build: a manifest.json of MANIFEST_SCHEMA (valid or not otherwise)."""
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("schema") == MANIFEST_SCHEMA
    except (OSError, ValueError, RecursionError, AttributeError):
        return False


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
        os.chmod(staging, 0o777 & ~_umask())   # mkdtemp makes 0700; a build folder gets the usual mode
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
        failing = {s: v for s, v in manifest["verification"].get("psnr_db", {}).items()
                   if v < manifest["verification"]["floor_db"]}
        if failing:
            worst = ", ".join(f"{s} {v:.1f} dB" for s, v in failing.items())
            raise Edge4KError(f"build fails its accuracy check ({worst} < {PSNR_FLOOR[spec.precision]} dB "
                              f"for {spec.precision}); {target.accuracy_hint}")
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
    (global -> encoder -> backbone -> decoder, all compiled) against eager fp32."""
    from edge4k.runtime.backends import open_build

    backend = backend or open_build(artifacts)
    ref = {s: [] for s in NETWORK_STAGES}
    got = {s: [] for s in NETWORK_STAGES}
    chain_ref, chain_got = [], []
    with torch.inference_mode():
        for ins in held_out:
            for s in NETWORK_STAGES:
                ref[s].append(model.stage(s)(*ins[s]))
                got[s].append(backend.run(s, *ins[s]))
            g = backend.run("global", *ins["global"])
            x = ins["encoder"][0]
            chain_got.append(backend.run("decoder", backend.run("backbone", backend.run("encoder", x), g), x))
            chain_ref.append(ref["decoder"][-1])
    scores = {s: round(psnr(torch.cat(ref[s]), torch.cat(got[s])), 2) for s in NETWORK_STAGES}
    return {"psnr_db": scores, "tile_psnr_db": round(psnr(torch.cat(chain_ref), torch.cat(chain_got)), 2),
            "floor_db": PSNR_FLOOR[precision], "samples": len(held_out)}


def check_build(model: E4KNet, artifacts: str | os.PathLike, *, images: list[str], samples: int = 2,
                floor: float | None = None, progress: Callable[[str], None] = lambda msg: None) -> dict:
    """Accuracy pre-flight of a compiled build against eager fp32: verify()'s per-stage
    and whole-tile PSNR on `samples` tiles cut from `images`, plus the PSNR of each
    whole image run through the tiled pipeline. `failing` lists what is under the floor."""
    from edge4k.calibration.tiles import calibration_inputs
    from edge4k.runtime.backends import EagerBackend, open_build
    from edge4k.runtime.pipeline import TileOptions, process

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
