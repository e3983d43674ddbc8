"""A compile as the user asks for it (`edge4k compile`, `edge4k analyze`, `edge4k profile`): the
weights (a checkpoint, else the shipped one, else a seed) and the BuildSpec for a frame size and a
tiling; and, the other way round, the eager model a finished build was compiled from."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from edge4k.backends.base import BuildSpec
from edge4k.backends.registry import get_target
from edge4k.compiler.build import compile_build
from edge4k.errors import BuildMismatch
from edge4k.models import E4KConfig, E4KNet, build_model, get_preset
from edge4k.models.checkpoint import default_checkpoint, describe, load_for_preset, load_model
from edge4k.runtime.pipeline import TileOptions


@dataclass(frozen=True)
class CompileRequest:
    target: str
    preset: str
    width: int
    height: int
    tiling: TileOptions = field(default_factory=lambda: TileOptions(fit=True))   # the default tiling
    precision: str | None = None          # default: the target's first
    checkpoint: str | os.PathLike | None = None   # default: the shipped one, else seed-initialised
    seed: int = 0
    calib: int = 8
    calib_sources: tuple[str, ...] = ()
    observer: str | None = None           # default: the target's
    keep_fp32: tuple[str, ...] = ()
    soc: str | None = None                # android-qnn
    a16: tuple[str, ...] = ()             # android-qnn: stages or layers with uint16 activations

    def spec(self) -> tuple[E4KNet, str, BuildSpec]:
        """(eager model, weights description, BuildSpec)."""
        target = get_target(self.target)   # an unknown target fails here, with the list of valid ones
        # the default tiling fits a frame smaller than its tile, as rendering does
        opts = self.tiling.fitted(get_preset(self.preset).compression, self.height, self.width)
        model, weights = load_for_preset(self.preset, self.checkpoint, seed=self.seed)
        options = {**({"observer": self.observer} if self.observer else {}), "keep_fp32": list(self.keep_fp32),
                   "soc": self.soc and self.soc.upper(), "a16": list(self.a16)}
        spec = BuildSpec(target=self.target, preset=self.preset, width=self.width, height=self.height,
                         tile=opts.tile, overlap=opts.overlap, native=opts.native, batch=opts.batch,
                         precision=self.precision or target.default_precision, calib=self.calib,
                         calib_sources=tuple(self.calib_sources), options=options)
        return model, weights, spec


def compile_request(request: CompileRequest, out_dir: str | os.PathLike, *,
                    progress: Callable[[str], None] = lambda msg: None, force: bool = False) -> dict:
    """Load the weights and compile the build into out_dir; returns its manifest."""
    model, weights, spec = request.spec()
    return compile_build(model, spec, out_dir, weights=weights, progress=progress, force=force)


def model_of_build(manifest: dict, artifacts: str | os.PathLike, checkpoint: str | os.PathLike | None) -> E4KNet:
    """The eager fp32 model a build was compiled from: its seed, or the checkpoint (given, else
    the shipped one) whose sha256 the manifest names."""
    weights = manifest["weights"]
    if weights.startswith("seed:"):
        return build_model(E4KConfig.from_dict(manifest["config"]), seed=int(weights.split(":", 1)[1]))
    path = checkpoint or default_checkpoint(manifest["preset"])
    if path is None or describe(path) != weights:
        raise BuildMismatch(f"{artifacts} was built from {weights}; pass that checkpoint")
    return load_model(path, manifest["preset"])[0]


def format_manifest(manifest: dict) -> str:
    """A build's manifest as a table: target and tiling, then per stage accuracy, size, arena and notes."""
    verification = manifest["verification"]
    rows = [f"{manifest['target']} {manifest['precision']} {manifest['preset']}: "
            f"tile {manifest['tiling']['tile_width']}x{manifest['tiling']['tile_height']} batch {manifest['tiling']['batch']}"]
    if "qnn" in manifest:
        q = manifest["qnn"]
        rows[0] += f", {q['soc']} ({q['device']}, HTP v{q['htp_arch']}, QAIRT {q['qairt']})"
    rows.append(f"{'stage':<10}{'PSNR dB':>9}{'size KiB':>10}{'arena MiB':>11}  notes")
    for stage, entry in manifest["stages"].items():
        place = entry.get("placement")
        notes = [f"outside delegate: {', '.join(f'{k} x{v}' for k, v in entry['ops_outside_delegate'].items()) or 'none'}"
                 if "ops_outside_delegate" in entry else "",
                 f"{place['htp']}/{place['nodes']} nodes on the HTP" if place else "",
                 f"TRANSPOSE x{entry['transpose_ops']}" if "transpose_ops" in entry else "",
                 f"compressed weights: {sum(entry['compressed_weight_ops'].values())} tensors"
                 if "compressed_weight_ops" in entry else ""]
        score = verification.get("psnr_db", {}).get(stage)
        size, arena = entry.get("bytes"), entry.get("planned_arena_bytes")
        rows.append(f"{stage:<10}{'-' if score is None else f'{score:.1f}':>9}"
                    f"{'-' if size is None else f'{size / 1024:.1f}':>10}"
                    f"{'-' if arena is None else f'{arena / 2**20:.2f}':>11}  {'; '.join(n for n in notes if n)}")
    if "skipped" in verification:
        rows.append(f"accuracy check skipped: {verification['skipped']}")
    else:
        rows.append(f"whole tile (all stages compiled): {verification['tile_psnr_db']:.1f} dB")
    return "\n".join(rows)
