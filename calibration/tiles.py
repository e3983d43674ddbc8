"""Representative stage inputs for quantisation calibration and accuracy checks.

Packed-RAW tiles are cut at random from real RAW files read by the same frontend
the runtime uses; each stage's inputs are what the eager fp32 network feeds it, so
every stage is calibrated on the activations it will really see."""
from __future__ import annotations

import os

import numpy as np
import torch

from edge4k.errors import Edge4KError
from edge4k.kernels.raw import meta_vector, pack, read_raw, thumbnail
from edge4k.models import E4KNet

StageInputs = dict[str, tuple[torch.Tensor, ...]]


def default_sources() -> list[str]:
    from edge4k.cli import sample_path
    return [sample_path()]


@torch.inference_mode()
def calibration_inputs(model: E4KNet, *, tile_height: int, tile_width: int, batch: int, count: int,
                       sources: list[str | os.PathLike] | None = None, seed: int = 0) -> list[StageInputs]:
    """`count` sets of stage inputs at the compiled shapes, from random crops of `sources`."""
    if count < 1:
        raise Edge4KError(f"the calibration set is empty (asked for {count} samples)")
    cfg, rng = model.cfg, np.random.default_rng(seed)
    frames = []
    for path in sources or default_sources():
        frame = read_raw(path)
        packed = pack(frame)
        frames.append((packed, thumbnail(packed, cfg.thumb_size), meta_vector(frame)))
    th, tw = tile_height // 2, tile_width // 2
    usable = [f for f in frames if f[0].shape[1] >= th and f[0].shape[2] >= tw]
    if not usable:
        raise Edge4KError(f"no calibration frame is at least {tile_width}x{tile_height} pixels; "
                          "pass RAW files that large with --calib-source")
    sets = []
    for _ in range(count):
        packed, thumb, meta = usable[rng.integers(len(usable))]
        crops = []
        for _ in range(batch):
            y, x = rng.integers(0, packed.shape[1] - th + 1), rng.integers(0, packed.shape[2] - tw + 1)
            crops.append(torch.from_numpy(packed[:, y:y + th, x:x + tw].copy()))
        x = torch.stack(crops)
        thumb_t, meta_t = torch.from_numpy(thumb)[None], torch.from_numpy(meta)[None]
        g = model.global_branch(thumb_t, meta_t)
        z = model.encoder(x)
        sets.append({"global": (thumb_t, meta_t), "encoder": (x,), "backbone": (z, g),
                     "decoder": (model.backbone(z, g), x)})
    return sets
