"""Representative inputs for quantisation calibration, per network stage.

Two kinds of source:
- RAW files (default: the embedded sample DNG), read by the runtime's frontend;
- PhotoSource: synthetic RAW frames made from the bundled photos exactly as the
  training pairs are (models.data.make_scene: the training conditions of
  calibration.unprocess). By default it uses the *training*
  split: calibrating on the held-out photos would flatter a quantised model's
  evaluation on those same photos.

Every tile batch comes from one frame, so the global vector is that frame's
(shape (1, D)), as the runtime feeds it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from edge4k.datasets.photos import load_split
from edge4k.errors import Edge4KError
from edge4k.files import sample_path
from edge4k.kernels.raw import prepare, read_raw
from edge4k.training.data import make_scene


@dataclass(frozen=True)
class PhotoSource:
    """Synthetic captures of the bundled photos (see calibration.photos for the split)."""
    split: str = "train"


def packed_tiles(*, tile_height: int, tile_width: int, count: int, thumb_size: int, seed: int = 0,
                 sources: Sequence[str | os.PathLike] | PhotoSource | None = None,
                 per_frame: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``count`` frames' worth of (packed tiles (per_frame, 4, th/2, tw/2), thumb (4, t, t), meta (kernels.raw.META,))."""
    if count < 1:
        raise Edge4KError(f"the calibration set is empty (asked for {count} samples)")
    if tile_height % 2 or tile_width % 2 or tile_height <= 0 or tile_width <= 0:
        raise Edge4KError(f"calibration tile {tile_width}x{tile_height} must be even and positive")
    rng = np.random.default_rng((seed, 7))
    if isinstance(sources, PhotoSource):
        images = load_split(sources.split)
        # photos smaller than the tile cannot give one; the others are cycled through
        names = sorted(n for n, img in images.items() if img.shape[0] >= tile_height and img.shape[1] >= tile_width)
        if not names:
            raise Edge4KError(f"no {sources.split} photo is at least {tile_width}x{tile_height} pixels; "
                              "use a smaller tile or pass RAW files with --calib-source")
    else:
        if sources is None:
            sources = [sample_path()]
        paths = [os.fspath(s) for s in sources]
        if not paths:
            raise Edge4KError("no calibration sources given")
    for i in range(count):
        if isinstance(sources, PhotoSource):
            name = names[i % len(names)]
            scene = make_scene(images[name], rng, thumb_size=thumb_size)
            prep, what = scene.prepared, f"photo {name}"
        else:
            path = paths[i % len(paths)]
            prep, what = prepare(read_raw(path), thumb_size), path
        packed, thumb, meta = prep.packed, prep.thumb, prep.meta
        h, w = packed.shape[1] * 2, packed.shape[2] * 2
        if tile_height - h <= h and tile_width - w <= w and (h < tile_height or w < tile_width):
            # A native build's tile is the frame padded to the latent grid: pad the same way the runtime does.
            dy, dx = max(tile_height - h, 0) // 2, max(tile_width - w, 0) // 2
            packed = np.pad(packed, ((0, 0), (0, dy), (0, dx)), mode="reflect")
            h, w = packed.shape[1] * 2, packed.shape[2] * 2
        if h < tile_height or w < tile_width:
            raise Edge4KError(f"calibration source {what} ({w}x{h}) is smaller than the "
                              f"{tile_width}x{tile_height} tile; pass larger RAW files with --calib-source")
        tiles = []
        for _ in range(per_frame):
            y = int(rng.integers(0, (h - tile_height) // 2 + 1))
            x = int(rng.integers(0, (w - tile_width) // 2 + 1))
            tiles.append(packed[:, y:y + tile_height // 2, x:x + tile_width // 2])
        yield np.stack(tiles), thumb, meta


@torch.inference_mode()
def calibration_inputs(model, *, tile_height: int = 512, tile_width: int = 512, batch: int = 1, count: int = 8,
                       sources: Sequence[str | os.PathLike] | PhotoSource | None = None,
                       seed: int = 0) -> list[dict[str, tuple[torch.Tensor, ...]]]:
    """``count`` dicts {stage: input tensors} for global, encoder, backbone and decoder, computed
    by running the (eval-mode) model's earlier stages on real or synthetic RAW tiles: each
    stage is calibrated on the activations it will really see."""
    model = model.eval()
    cfg = model.cfg
    sets = []
    for packed, thumb, meta in packed_tiles(tile_height=tile_height, tile_width=tile_width, count=count,
                                            thumb_size=cfg.thumb_size, seed=seed, sources=sources,
                                            per_frame=batch):
        x = torch.from_numpy(np.ascontiguousarray(packed))
        t, m = torch.from_numpy(thumb)[None], torch.from_numpy(meta)[None]
        g = model.global_branch(t, m)
        z = model.encoder(x)
        z2 = model.backbone(z, g)
        sets.append({"global": (t, m), "encoder": (x,), "backbone": (z, g), "decoder": (z2, x)})
    return sets
