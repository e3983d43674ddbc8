"""Training pairs: sRGB photo -> synthetic RAW (unprocessed) -> packed exactly as the runtime packs it.

A "scene" is a random window of a photo, flipped/rotated at random, unprocessed
with a random CFA pattern, camera matrix, white balance, brightness and ISO
(calibration.unprocess), and read through kernels.raw (RawFrame.from_capture +
pack + thumbnail + meta_vector), the same code `edge4k run` uses on a DNG. The
window plays the whole frame: its thumbnail feeds the global branch. Random
crops of the scene are the training tiles; the target is the photo itself.

Every random draw comes from numpy.random.default_rng((seed, rank, step)), so a
batch depends only on its step: runs are reproducible and a resumed run sees
exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edge4k.calibration.unprocess import CFA_PATTERNS, RawCapture, unprocess
from edge4k.errors import Edge4KError
from edge4k.kernels.raw import RawFrame, meta_vector, pack, thumbnail

ISO_RANGE = (100.0, 3200.0)      # drawn log-uniformly
WINDOW_RANGE = (256, 384)        # scene (frame) side in pixels, before clamping to the photo


@dataclass
class Scene:
    """One synthetic capture: what the network sees and what it should produce."""
    packed: np.ndarray     # (4, H/2, W/2) float32, as kernels.raw.pack
    thumb: np.ndarray      # (4, t, t)
    meta: np.ndarray       # (12,)
    target: np.ndarray     # (H, W, 3) float32 sRGB in [0, 1]
    frame: RawFrame
    capture: RawCapture    # holds the draws, incl. exposure_gain (an oracle value for reference pipelines)


def make_scene(srgb: np.ndarray, rng: np.random.Generator, *, thumb_size: int, cfa: str | None = None,
               camera: str | None = None, iso: float | None | str = "random") -> Scene:
    """Unprocess ``srgb`` (HxWx3, even size) into a Scene; unspecified conditions are drawn from rng.
    iso="random" draws it log-uniformly from ISO_RANGE; None means noise-free."""
    cfa = cfa or list(CFA_PATTERNS)[int(rng.integers(len(CFA_PATTERNS)))]
    if iso == "random":
        iso = float(np.exp(rng.uniform(*np.log(ISO_RANGE))))
    capture = unprocess(srgb, cfa=cfa, camera=camera, iso=iso, rng=rng)
    frame = RawFrame.from_capture(capture)
    packed = pack(frame)
    return Scene(packed=packed, thumb=thumbnail(packed, thumb_size), meta=meta_vector(frame),
                 target=np.asarray(srgb, dtype=np.float32), frame=frame, capture=capture)


def crop_pair(scene: Scene, y: int, x: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(packed (4, size/2, size/2), target (3, size, size)) at output pixel (y, x); y and x even,
    so the crop keeps the frame's CFA phase and the packed crop covers the same area."""
    if y % 2 or x % 2 or size % 2:
        raise ValueError(f"crop origin ({y}, {x}) and size {size} must be even")
    packed = scene.packed[:, y // 2:(y + size) // 2, x // 2:(x + size) // 2]
    return packed, scene.target[y:y + size, x:x + size].transpose(2, 0, 1)


class PairSampler:
    """Batches of (packed, thumb, meta, target) random crops from a set of photos."""

    def __init__(self, images: dict[str, np.ndarray], *, crop: int, thumb_size: int, multiple: int,
                 seed: int = 0, rank: int = 0, crops_per_scene: int = 4):
        if not images:
            raise Edge4KError("no training images")
        if crop <= 0 or crop % multiple or crop % 2:
            raise Edge4KError(f"crop {crop} must be a positive multiple of the latent compression {multiple}")
        small = [f"{n} ({im.shape[1]}x{im.shape[0]})" for n, im in images.items() if min(im.shape[:2]) < crop]
        if small:
            raise Edge4KError(f"image too small for a {crop}x{crop} crop: {', '.join(small)}")
        self.names = sorted(images)
        self.images = images
        self.crop, self.thumb_size, self.seed, self.rank = crop, thumb_size, seed, rank
        self.crops_per_scene = crops_per_scene

    def scene(self, rng: np.random.Generator) -> Scene:
        img = self.images[self.names[int(rng.integers(len(self.names)))]]
        h, w = img.shape[:2]
        side = int(rng.integers(WINDOW_RANGE[0], WINDOW_RANGE[1] + 1)) // 2 * 2
        wh, ww = (max(self.crop, min(side, d // 2 * 2)) for d in (h, w))
        y, x = (2 * int(rng.integers(0, (d - s) // 2 + 1)) for d, s in ((h, wh), (w, ww)))
        win = img[y:y + wh, x:x + ww]
        if rng.random() < 0.5:
            win = win[:, ::-1]
        win = np.rot90(win, int(rng.integers(4)))
        return make_scene(np.ascontiguousarray(win), rng, thumb_size=self.thumb_size)

    def batch(self, step: int, size: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.rank, step))
        out = {"packed": [], "thumb": [], "meta": [], "target": []}
        c = self.crop
        while len(out["packed"]) < size:
            s = self.scene(rng)
            h, w = s.target.shape[:2]
            for _ in range(min(self.crops_per_scene, size - len(out["packed"]))):
                y, x = 2 * int(rng.integers(0, (h - c) // 2 + 1)), 2 * int(rng.integers(0, (w - c) // 2 + 1))
                packed, target = crop_pair(s, y, x, c)
                out["packed"].append(packed)
                out["target"].append(target)
                out["thumb"].append(s.thumb)
                out["meta"].append(s.meta)
        return {k: torch.from_numpy(np.ascontiguousarray(np.stack(v))) for k, v in out.items()}
