"""What every backend implements to be a compiler target: the build's fixed shapes (BuildSpec),
the Target interface that lowers the four network stages, and the accuracy floor a build must hold.
The runtime side of a backend subclasses runtime.backends.BuildBackend."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from edge4k.kernels.tiling import DEFAULT_OVERLAP, DEFAULT_TILE, TilePlan, plan_frame
from edge4k.models import E4KConfig, E4KNet

# Lowest per-stage PSNR (dB, against eager fp32 on held-out calibration tiles) a
# build may have; below it the build fails. Defined once; the tests import it.
PSNR_FLOOR = {"fp32": 60.0, "fp16": 40.0, "int8": 30.0, "int8-a16": 40.0, "int8-mixed": 30.0, "w4a8": 25.0,
              "int8-weights": 38.0, "palette4": 25.0, "w8a8": 30.0}
# Lowest PSNR of the chained tile (every stage compiled) where a precision promises more than its
# stages do: int8-mixed leaves the encoder and backbone plain int8 (v3's backbone is 35.6 dB against
# eager alone) and keeps in fp32 what finishing magnifies, so its promise is the whole tile's.
TILE_PSNR_FLOOR = {"int8-mixed": 40.0}


@dataclass(frozen=True)
class BuildSpec:
    target: str
    preset: str
    width: int
    height: int
    tile: int | None = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP
    native: bool = False
    batch: int = 1
    precision: str = "fp32"
    calib: int = 8
    calib_sources: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)   # target-specific (observer, keep-fp32 layers, SoC, ...)

    def plan(self, cfg: E4KConfig) -> TilePlan:
        """Tiles over the frame as the RAW frontend pads it."""
        return plan_frame(self.height, self.width, compression=cfg.compression, tile=self.tile,
                          overlap=self.overlap, native=self.native)


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

    def validate(self, spec: BuildSpec) -> None:  # noqa: B027 (optional hook: most targets build every spec)
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


def psnr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """PSNR in dB with the reference's own peak-to-peak range as the signal."""
    ref, test = reference.double(), test.double()
    mse = torch.mean((ref - test) ** 2).item()
    peak = (ref.max() - ref.min()).item() or 1.0
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)
