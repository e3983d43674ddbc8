"""Training pairs: sRGB photo -> synthetic RAW capture -> the runtime's own frontend.

A "scene" is a random window of a photo, flipped/rotated at random, rendered as a RAW
capture under drawn conditions (calibration.unprocess: camera, illuminant, exposure,
ISO, bit depth, black level, CFA phase) and read through kernels.raw (RawFrame.from_capture
+ prepare), the same code `edge4k run` uses on a DNG. The window plays the whole frame:
its thumbnail and noise estimate feed the global branch.

The target is exact, from the capture's record: the noise-free, sensor-clipped full-colour
camera image, white-balanced and highlight-clipped as the frontend does, reflect-padded like
the mosaic and companded: what a perfect demosaic and denoise of this frame would return.
Finishing (matrix, look) is applied to output and target alike in the loss.

Every random draw comes from numpy.random.default_rng((seed, rank, step)), so a batch
depends only on its step: runs are reproducible and a resumed run sees exactly the
batches an uninterrupted one would.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from edge4k.datasets.unprocess import RawCapture, unprocess
from edge4k.errors import Edge4KError
from edge4k.files import atomic_output
from edge4k.kernels.raw import Prepared, RawFrame, compand, normalised_gains, phase_padding, prepare
from edge4k.models import DEFAULT_PRESET, get_preset

WINDOW_RANGE = (256, 384)        # scene (frame) side in pixels, before clamping to the photo
# Besides photos metered like a camera does (mean luminance at mid-grey, calibration.unprocess):
ABSOLUTE_FRACTION, ABSOLUTE_EV = 0.25, (-1.5, 2.0)   # photos exposed as reflectances: large clipped areas
FLAT_FRACTION = 0.05             # flat fields of one colour (white ones clip): they must stay flat


@dataclass
class Scene:
    """One synthetic capture: what the network sees and what it should produce."""
    prepared: Prepared     # packed (4, Hc/2, Wc/2), thumb, meta, exposure, crop
    target: np.ndarray     # (3, Hc, Wc) float32, companded camera RGB (the network's output space)
    frame: RawFrame
    capture: RawCapture    # holds the drawn conditions (capture.params)


def clean_target(capture: RawCapture, frame: RawFrame) -> np.ndarray:
    """(3, H+6, W+6) companded target of a synthetic capture, in the padded frame's geometry."""
    if capture.clean is None:
        raise ValueError("the capture has no noise-free record (not made by calibration.unprocess)")
    gains = normalised_gains(frame.wb_gains)[[0, 1, 3]]
    lin = np.minimum(capture.clean * gains.astype(np.float32), 1.0)
    (top, bottom), (left, right) = phase_padding(frame.cfa)
    lin = np.pad(lin, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    return np.ascontiguousarray(compand(lin).transpose(2, 0, 1), dtype=np.float32)


def make_scene(srgb: np.ndarray, rng: np.random.Generator, *, thumb_size: int, **conditions) -> Scene:
    """Render ``srgb`` (HxWx3 float in [0, 1] or uint8, even size) as a capture; calibration.unprocess.draw_params
    keywords fix any condition (e.g. iso=None for a noise-free capture), the rest are drawn."""
    capture = unprocess(srgb, rng=rng, **conditions)
    frame = RawFrame.from_capture(capture)
    return Scene(prepare(frame, thumb_size), clean_target(capture, frame), frame, capture)


def crop_pair(scene: Scene, y: int, x: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(packed (4, size/2, size/2), target (3, size, size)) at padded-frame pixel (y, x); y and x
    even, so the crop keeps the RGGB phase and the packed crop covers the same area."""
    if y % 2 or x % 2 or size % 2:
        raise ValueError(f"crop origin ({y}, {x}) and size {size} must be even")
    packed = scene.prepared.packed[:, y // 2:(y + size) // 2, x // 2:(x + size) // 2]
    return packed, scene.target[:, y:y + size, x:x + size]


class PairSampler:
    """Batches of random crops from a set of photos: packed, thumb, meta, target and what
    finishing needs (matrix: camera->sRGB, exposure: the natural look's gain).

    images: a mapping name -> HxWx3 array (float in [0, 1] or uint8), or an image set with
    len(), size(i) and crop(i, top, left, height, width) (calibration.shards.ShardSet, which
    decodes only the tiles under the window)."""

    def __init__(self, images, *, crop: int, thumb_size: int, multiple: int, seed: int = 0, rank: int = 0,
                 crops_per_scene: int = 4, cameras: str = "train"):
        if len(images) == 0:
            raise Edge4KError("no training images")
        if crop <= 0 or crop % multiple or crop % 2:
            raise Edge4KError(f"crop {crop} must be a positive multiple of the latent compression {multiple}")
        if isinstance(images, dict):
            small = [f"{n} ({im.shape[1]}x{im.shape[0]})" for n, im in images.items() if min(im.shape[:2]) < crop]
            if small:
                raise Edge4KError(f"image too small for a {crop}x{crop} crop: {', '.join(small)}")
            images = [images[n] for n in sorted(images)]
        self.images: Sequence = images
        self.crop, self.thumb_size, self.seed, self.rank = crop, thumb_size, seed, rank
        self.crops_per_scene, self.cameras = crops_per_scene, cameras

    def scene(self, rng: np.random.Generator) -> Scene:
        i = int(rng.integers(len(self.images)))
        h, w = self.images.size(i) if hasattr(self.images, "crop") else self.images[i].shape[:2]
        side = int(rng.integers(WINDOW_RANGE[0], WINDOW_RANGE[1] + 1)) // 2 * 2
        wh, ww = (max(min(self.crop, d // 2 * 2), min(side, d // 2 * 2)) for d in (h, w))
        y, x = (2 * int(rng.integers(0, (d - s) // 2 + 1)) for d, s in ((h, wh), (w, ww)))
        if hasattr(self.images, "crop"):
            win = self.images.crop(i, y, x, wh, ww)
        else:
            win = self.images[i][y:y + wh, x:x + ww]
        if rng.random() < 0.5:
            win = win[:, ::-1]
        win = np.rot90(win, int(rng.integers(4)))
        conditions, kind = {}, rng.random()
        if kind < FLAT_FRACTION:
            colour = rng.uniform(0.0, 1.0, 3) if rng.random() < 0.5 else np.full(3, rng.uniform(0.8, 1.0))
            win = np.broadcast_to(colour, win.shape).astype(np.float32)
            conditions = {"key": "absolute", "ev": float(rng.uniform(-2.0, 2.0))}
        elif kind < FLAT_FRACTION + ABSOLUTE_FRACTION:
            conditions = {"key": "absolute", "ev": float(rng.uniform(*ABSOLUTE_EV))}
        return make_scene(np.ascontiguousarray(win), rng, thumb_size=self.thumb_size, cameras=self.cameras,
                          **conditions)

    def batch(self, step: int, size: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.rank, step))
        out = {"packed": [], "thumb": [], "meta": [], "target": [], "matrix": [], "exposure": []}
        c = self.crop
        while len(out["packed"]) < size:
            s = self.scene(rng)
            h, w = s.target.shape[1:]
            if min(h, w) < c:      # a photo smaller than the crop: skip it
                continue
            for _ in range(min(self.crops_per_scene, size - len(out["packed"]))):
                y, x = 2 * int(rng.integers(0, (h - c) // 2 + 1)), 2 * int(rng.integers(0, (w - c) // 2 + 1))
                packed, target = crop_pair(s, y, x, c)
                out["packed"].append(packed)
                out["target"].append(target)
                out["thumb"].append(s.prepared.thumb)
                out["meta"].append(s.prepared.meta)
                out["matrix"].append(s.frame.srgb_from_cam.astype(np.float32))
                out["exposure"].append(np.float32(s.prepared.exposure))
        return {k: torch.from_numpy(np.ascontiguousarray(np.stack(v))) for k, v in out.items()}


# ---- the coverage report: what the training distribution draws ---------------------------------

def coverage(sampler: PairSampler, samples: int, *, seed: int = 0, progress: bool = True) -> dict:
    """Draw ``samples`` training scenes as PairSampler does and record their conditions: white-balance
    gains, exposure, ISO, camera, illuminant, bit depth, black level, key, and the share of the frame's
    pixels clipped at the white level in any channel (from the noise-free sensor image)."""
    rng = np.random.default_rng((seed, 99))
    rows = []
    for _ in tqdm(range(samples), desc="coverage", unit="scene", disable=not progress):
        s = sampler.scene(rng)
        p = s.capture.params
        gains = 1.0 / np.asarray(p.as_shot_neutral)
        rows.append({"camera": p.camera, "illuminant": p.illuminant, "cct": p.cct and round(p.cct),
                     "ev": round(p.ev, 3), "key": p.key, "iso": p.iso and round(p.iso), "bits": p.bits,
                     "black_level": p.black_level, "cfa": p.cfa, "gain_r": round(float(gains[0]), 4),
                     "gain_b": round(float(gains[2]), 4),
                     "clipped": round(float((s.capture.clean >= 1.0).any(axis=-1).mean()), 5),
                     "exposure_gain": round(float(s.prepared.exposure), 4)})
    col = lambda k: np.array([r[k] for r in rows], dtype=np.float64)  # noqa: E731
    clipped = col("clipped")
    pct = lambda x: {q: round(float(np.percentile(x, q)), 4) for q in (0, 1, 5, 50, 95, 99, 100)}  # noqa: E731
    counts = lambda k: dict(sorted(Counter(r[k] for r in rows).items(), key=lambda kv: -kv[1]))  # noqa: E731
    return {"schema": "edge4k.coverage/1", "samples": samples, "seed": seed,
            "summary": {"gain_r": pct(col("gain_r")), "gain_b": pct(col("gain_b")), "ev": pct(col("ev")),
                        "iso": pct(col("iso")), "exposure_gain": pct(col("exposure_gain")),
                        "clipped_fraction": pct(clipped),
                        "share_with_clipped_highlights": round(float((clipped > 0.001).mean()), 4),
                        "share_mostly_clipped": round(float((clipped > 0.25).mean()), 4),
                        "cameras": len({r["camera"] for r in rows}), "camera_counts": counts("camera"),
                        "illuminants": counts("illuminant"), "bits": counts("bits"),
                        "black_levels": counts("black_level"), "keys": counts("key"), "cfa": counts("cfa")},
            "rows": rows}


def coverage_plot(report: dict, path) -> None:
    """Histograms of the drawn conditions (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = report["rows"]
    col = lambda k: np.array([r[k] for r in rows], dtype=np.float64)  # noqa: E731
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), dpi=90)
    panels = [("gain_r", "white-balance gain R (G = 1)", 40, False), ("gain_b", "white-balance gain B (G = 1)", 40, False),
              ("ev", "exposure (EV)", 36, False), ("iso", "ISO", 40, True), ("clipped", "share of pixels clipped", 40, False)]
    for ax, (key, label, bins, logx) in zip(axes.flat, panels):
        x = col(key)
        edges = np.geomspace(x.min(), x.max(), bins) if logx else bins
        ax.hist(x, bins=edges, color="#4477aa")
        ax.set_xscale("log" if logx else "linear")
        ax.set_xlabel(label)
        ax.set_ylabel("scenes")
        if key == "clipped":
            ax.set_yscale("log")
    cams = report["summary"]["camera_counts"]
    ax = axes.flat[5]
    ax.bar(range(len(cams)), list(cams.values()), color="#4477aa")
    ax.set_xlabel(f"camera ({len(cams)}, most drawn first)")
    ax.set_ylabel("scenes")
    fig.suptitle(f"Training captures drawn: {report['samples']} scenes (edge4k data report)")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_coverage(images: Sequence, samples: int, out_dir, *, seed: int = 0, progress: bool = True,
                   data: str = "bundled training photos") -> dict:
    """The coverage report of `samples` scenes drawn from `images` as the default preset trains on
    them: out_dir/coverage.json and coverage.png; returns the report."""
    cfg = get_preset(DEFAULT_PRESET)
    sampler = PairSampler(images, crop=cfg.compression * 8, thumb_size=cfg.thumb_size, multiple=cfg.compression)
    report = coverage(sampler, samples, seed=seed, progress=progress)
    report["data"] = data
    out = Path(out_dir)
    with atomic_output(out / "coverage.json") as tmp:
        tmp.write_text(json.dumps(report, separators=(",", ":")) + "\n")
    coverage_plot(report, out / "coverage.png")
    return report
