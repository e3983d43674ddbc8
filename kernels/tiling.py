"""Tiling: fixed-shape tiles with overlap, smooth blending, reflection padding.

All sizes are in output pixels; the packed RAW is at half of that. Tiles start at
multiples of the latent compression f, so every tile sees the same latent grid
phase as the whole frame would. Blending weights are zero for a margin of
overlap/4 at each edge that has a neighbour (where the tile lacks context), then a
raised-cosine ramp; the accumulated weights are divided out, so they sum to one.
Native mode is the same machinery with one tile covering the whole padded frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from edge4k.errors import Edge4KError
from edge4k.kernels.raw import PHASE_PAD

# The default tiling, in output pixels. Overlap 32, not 64: at 4K, 40 tiles of 512 instead of 45,
# and the tiling study (docs/RESEARCH.md, "Native 4K against tiled 4K") finds it as close to
# native as 64 (61.7 against 61.4 dB, the same 2.3-level largest error, seams no stronger than the
# native image's at the same lines).
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32


@dataclass(frozen=True)
class TilePlan:
    height: int            # frame size in output pixels, before padding
    width: int
    padded_height: int     # after reflection padding to a multiple of the compression
    padded_width: int
    tile_height: int
    tile_width: int
    overlap: int
    native: bool
    origins: tuple[tuple[int, int], ...]   # (y, x) of each tile, output pixels

    @property
    def num_tiles(self) -> int:
        return len(self.origins)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _axis_origins(length: int, tile: int, stride: int) -> list[int]:
    origins = list(range(0, max(length - tile, 0) + 1, stride))
    if origins[-1] + tile < length:
        origins.append(length - tile)
    return origins


def plan_tiles(height: int, width: int, *, compression: int, tile: int | None = None,
               overlap: int = 0, native: bool = False) -> TilePlan:
    """Where the tiles go. Raises Edge4KError for combinations that cannot work."""
    f = compression
    ph, pw = _round_up(height, f), _round_up(width, f)
    if native:
        return TilePlan(height, width, ph, pw, ph, pw, 0, True, ((0, 0),))
    if tile is None or tile <= 0:
        raise Edge4KError("tiled mode needs a tile size > 0 (or use --native)")
    if tile % f:
        raise Edge4KError(f"tile {tile} is not a multiple of the latent compression {f}")
    if not 0 <= overlap < tile:
        raise Edge4KError(f"overlap {overlap} must be >= 0 and smaller than the tile {tile}")
    if overlap % f:
        raise Edge4KError(f"overlap {overlap} is not a multiple of the latent compression {f}")
    if height < tile or width < tile:
        raise Edge4KError(f"frame {width}x{height} is smaller than one {tile}x{tile} tile; "
                          "use a smaller --tile or --native")
    stride = tile - overlap
    ys, xs = _axis_origins(ph, tile, stride), _axis_origins(pw, tile, stride)
    return TilePlan(height, width, ph, pw, tile, tile, overlap, False,
                    tuple((y, x) for y in ys for x in xs))


def phase_padded(height: int, width: int) -> tuple[int, int]:
    """(height, width) of a RAW frame as the frontend pads it into RGGB phase (kernels.raw.PHASE_PAD)."""
    return height + PHASE_PAD, width + PHASE_PAD


def plan_frame(height: int, width: int, *, compression: int, tile: int | None = None, overlap: int = 0,
               native: bool = False) -> TilePlan:
    """Tiles over a height x width RAW frame as the frontend pads it (phase_padded); the C++
    runner's plan_frame (kernels/native/tiling.cc) is tested against this one."""
    return plan_tiles(*phase_padded(height, width), compression=compression, tile=tile, overlap=overlap,
                      native=native)


def pad_packed(packed: np.ndarray, padded_height: int, padded_width: int) -> torch.Tensor:
    """Reflect-pad the packed frame (4, h, w) at the bottom and right to a plan's padded size
    (padded_height, padded_width), given in pixels: (4, padded_height / 2, padded_width / 2)."""
    h, w = packed.shape[1:]
    return torch.from_numpy(np.pad(packed, ((0, 0), (0, padded_height // 2 - h), (0, padded_width // 2 - w)),
                                   mode="reflect"))


def _ramp(length: int, overlap: int, lead: bool, trail: bool) -> torch.Tensor:
    w = torch.ones(length)
    if overlap == 0:
        return w
    margin = overlap // 4
    span = overlap - 2 * margin
    i = torch.arange(length, dtype=torch.float32) + 0.5
    up = torch.clamp((i - margin) / span, 0, 1)
    rise = torch.sin(up * math.pi / 2) ** 2
    if lead:
        w = w * rise
    if trail:
        w = w * rise.flip(0)
    return w


def blend_weight(plan: TilePlan, y: int, x: int) -> torch.Tensor:
    """(tile_h, tile_w) weight of the tile at (y, x); ramps only toward neighbours."""
    wy = _ramp(plan.tile_height, plan.overlap, y > 0, y + plan.tile_height < plan.padded_height)
    wx = _ramp(plan.tile_width, plan.overlap, x > 0, x + plan.tile_width < plan.padded_width)
    return wy[:, None] * wx[None, :]


class Blender:
    """Accumulates weighted tiles into the padded frame; result() normalises and crops."""

    def __init__(self, plan: TilePlan, channels: int = 3):
        self.plan = plan
        self.acc = torch.zeros(channels, plan.padded_height, plan.padded_width)
        self.weight = torch.zeros(1, plan.padded_height, plan.padded_width)

    def add(self, tile: torch.Tensor, y: int, x: int) -> None:
        w = blend_weight(self.plan, y, x)
        th, tw = tile.shape[-2:]
        self.acc[:, y:y + th, x:x + tw] += tile * w
        self.weight[:, y:y + th, x:x + tw] += w

    def result(self) -> torch.Tensor:
        out = self.acc / self.weight
        return out[:, :self.plan.height, :self.plan.width]


def packed_tile(padded: torch.Tensor, plan: TilePlan, y: int, x: int) -> torch.Tensor:
    """The packed-RAW crop (4, tile_h/2, tile_w/2) under the output tile at (y, x)."""
    return padded[:, y // 2:(y + plan.tile_height) // 2, x // 2:(x + plan.tile_width) // 2]


def seam_ratio(image: torch.Tensor, plan: TilePlan, run: int = 16) -> float:
    """Jump between neighbouring pixels across the lines where tiles start or end,
    divided by the same jump measured at every line. About 1 means no visible seam.

    The signed jump is averaged along each line over runs of `run` pixels before
    taking its size: a seam is an offset that persists along the border, while image
    detail and noise crossing the line change sign and average out."""
    def line_jumps(img):   # (C, H, W) -> mean size of the smoothed jump at each column line
        d = (img[:, :, 1:] - img[:, :, :-1])[None]
        d = torch.nn.functional.avg_pool2d(d, kernel_size=(min(run, d.shape[2]), 1))[0]
        return d.abs().mean(dim=(0, 1))
    jx, jy = line_jumps(image), line_jumps(image.transpose(1, 2))
    cols = sorted({e - 1 for _, x in plan.origins for e in (x, x + plan.tile_width)} - {-1})
    rows = sorted({e - 1 for y, _ in plan.origins for e in (y, y + plan.tile_height)} - {-1})
    cols = [c for c in cols if c < jx.numel()]
    rows = [r for r in rows if r < jy.numel()]
    if not cols and not rows:
        return 1.0
    border = torch.cat([jx[cols], jy[rows]]).mean()
    return float(border / torch.cat([jx, jy]).mean())
