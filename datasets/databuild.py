"""`edge4k data build`: a folder of photographs -> training shards (datasets/shards.py).

For every image file under the input folder, in a fixed order (by file hash, so a size
budget leaves out a random sample rather than whole collections):

1. its sha256 must be a manifest row (datasets/sources.csv); unknown files are reported and
   skipped unless ``allow_unlisted``; evaluation images (split "test") are refused;
2. it is decoded (a corrupt file is reported by name and skipped) and refused if its pixels or
   perceptual hash match an evaluation image (a re-encoded or resized copy of Kodak24 is caught);
3. images whose shorter side is under ``min_size`` are dropped, and near-duplicates of an image
   already kept (perceptual hash within ``near`` bits) too;
4. it is downscaled (see ``downscale``) and written as tiles.

The output folder appears only when complete: everything is written to a temporary folder
beside it, index.json last, then renamed into place.
"""
from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from edge4k.datasets.shards import CODECS, DEFAULT_TILE, LOSSLESS, ShardWriter
from edge4k.datasets.sources import (
    IMAGE_SUFFIXES,
    PHASH_NEAR,
    DecodeError,
    EvalSetGuard,
    decode_rgb,
    default_manifest,
    hamming,
    load_manifest,
    perceptual_hash,
)
from edge4k.errors import Edge4KError
from edge4k.files import sha256_file

# Test images are refused a little more eagerly than duplicates are merged: a false alarm only
# costs one training photograph (datasets/DATA.md has the measured distances).
TEST_NEAR = PHASH_NEAR + 2
VALIDATION_FRACTION = 0.05       # of unlisted images (--allow-unlisted), by file hash


@dataclass(frozen=True)
class BuildOptions:
    downscale: float = 2.0               # largest reduction factor (1: none)
    min_size: int = 256                  # shorter side after downscaling, in pixels
    max_megapixels: float | None = None  # per image after downscaling (reduce more if larger)
    max_mb: float | None = None          # stop adding images once the shards reach this size
    codec: str = "png"                   # png | webp (lossless) | jpeg (lossy, 4:4:4)
    quality: int | None = None           # jpeg quality (default 95)
    tile: int = DEFAULT_TILE
    allow_unlisted: bool = False
    near: int = PHASH_NEAR               # duplicate threshold, bits of 64

    def check(self) -> None:
        if self.downscale < 1:
            raise Edge4KError(f"--downscale must be >= 1, got {self.downscale}")
        if self.min_size < 16:
            raise Edge4KError(f"--min-size must be >= 16, got {self.min_size}")
        if self.codec not in CODECS:
            raise Edge4KError(f"unknown codec '{self.codec}'; valid: {', '.join(CODECS)}")
        if self.quality is not None and (self.codec in LOSSLESS or not 1 <= self.quality <= 100):
            raise Edge4KError("--quality is for --codec jpeg, between 1 and 100")
        if self.max_mb is not None and self.max_mb <= 0:
            raise Edge4KError(f"--max-mb must be > 0, got {self.max_mb}")
        if self.max_megapixels is not None and self.max_megapixels <= 0:
            raise Edge4KError(f"--max-megapixels must be > 0, got {self.max_megapixels}")
        if not 0 <= self.near <= 32:
            raise Edge4KError(f"the duplicate threshold must be 0-32 bits, got {self.near}")


def reduction(height: int, width: int, opts: BuildOptions) -> float:
    """The factor an image is reduced by: ``downscale``, less if that would take its shorter side
    under ``min_size``, more if it would stay above ``max_megapixels``; never below 1."""
    f = min(opts.downscale, min(height, width) / opts.min_size)
    if opts.max_megapixels:
        f = max(f, math.sqrt(height * width / (opts.max_megapixels * 1e6)))
    return max(1.0, f)


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)


# Lookup tables: uint8 sRGB -> linear float32, and linear quantised to 16 bits -> uint8 sRGB
# (a 16-bit step is far below one 8-bit sRGB step, even next to black); 20x faster than the powers.
_TO_LINEAR = _srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)
_TO_SRGB8 = np.round(_linear_to_srgb(np.arange(65536) / 65535.0) * 255.0).astype(np.uint8)


def downscale(rgb: np.ndarray, factor: float, *, resample: str = "bicubic") -> np.ndarray:
    """Reduce an sRGB uint8 image by ``factor`` in linear light (light adds up linearly on a
    sensor; filtering gamma-encoded values darkens fine bright detail) with an antialiasing
    filter (PIL's bicubic, widened by the factor). The filter removes what lives near the
    original Nyquist frequency: the source camera's demosaicing pattern, JPEG's 8x8 block edges,
    sharpening halos. Bicubic rather than Lanczos or box: it leaves the least of a simulated
    camera's traces of the three (datasets/DATA.md, `data_bench traces`)."""
    if factor <= 1.0:
        return rgb
    h, w = rgb.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    lin = _TO_LINEAR[rgb]
    filt = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
            "box": Image.Resampling.BOX}[resample]
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(lin[..., c]), mode="F").resize(size, filt))
              for c in range(3)]
    index = np.clip(np.stack(planes, axis=-1) * 65535.0 + 0.5, 0, 65535).astype(np.uint16)
    return _TO_SRGB8[index]


def _walk(src: Path) -> list[Path]:
    files = [p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    return sorted(files)


def _remove_stale_temps(out: Path) -> None:
    """Temporary folders of builds that were killed (their process is gone)."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move a finished build into place; an older build there is replaced, anything else refused."""
    old = None
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / "index.json").is_file()):
            raise Edge4KError(f"{out} exists and is not a shard folder; refusing to replace it")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build(src: str | os.PathLike, out: str | os.PathLike, *, manifest: str | os.PathLike | None = None,
          options: BuildOptions = BuildOptions(), progress: bool | None = None, log=print) -> dict:
    """Build shards from the images under ``src`` into ``out``; returns the build record (also
    stored in out/index.json as ``info``). ``log`` receives one line per skipped file."""
    options.check()
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise Edge4KError(f"input folder not found: {src}")
    manifest_path = Path(manifest) if manifest else default_manifest()
    rows = load_manifest(manifest_path)
    by_sha = {r.sha256: r for r in rows}
    guard = EvalSetGuard(rows, near=TEST_NEAR)
    files = _walk(src)
    if not files:
        raise Edge4KError(f"{src} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    bar = dict(disable=None if progress is None else not progress, dynamic_ncols=True, unit="file")

    skipped: list[dict] = []

    def skip(path: Path, why: str, detail: str) -> None:
        rel = str(path.relative_to(src))
        skipped.append({"file": rel, "why": why, "detail": detail})
        log(f"skipped {rel}: {detail}")

    # 1. identify every file by its hash
    candidates: list[tuple[str, Path, object]] = []
    for path in tqdm(files, desc="hashing", **bar):
        try:
            sha = sha256_file(path)
        except OSError as e:
            skip(path, "unreadable", f"cannot read ({e.strerror or e})")
            continue
        row = by_sha.get(sha)
        test = guard.match_file(sha)
        if test is not None:
            skip(path, "test-set", f"evaluation image {test.set}/{Path(test.file).name}: never in training")
        elif row is not None and row.kind != "photo":
            skip(path, "not-a-photo", f"a {row.kind} file in the manifest ({row.file}), not a photograph")
        elif row is None and not options.allow_unlisted:
            skip(path, "unlisted", "not in the manifest (sha256 unknown; --allow-unlisted to include it)")
        else:
            candidates.append((sha, path, row))
    found = {sha for sha, _, _ in candidates}
    missing = [r.file for r in rows if r.kind == "photo" and r.sha256 not in found]
    candidates.sort(key=lambda c: c[0])   # a fixed order that mixes the collections

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    t0 = time.perf_counter()
    kept_hashes: list[int] = []
    kept_names: list[str] = []
    per_source: dict[str, dict] = {}
    written = 0
    budget_left_out = 0
    try:
        writer = ShardWriter(tmp, codec=options.codec, quality=options.quality, tile=options.tile)
        for sha, path, row in tqdm(candidates, desc="building", **bar):
            if options.max_mb is not None and writer.bytes >= options.max_mb * (1 << 20):
                budget_left_out += 1
                continue
            try:
                rgb = decode_rgb(path)
            except DecodeError as e:
                skip(path, "corrupt", f"cannot decode: {e.reason}")
                continue
            hit = guard.match_pixels(rgb)
            if hit is not None:
                test, how = hit
                skip(path, "test-set", f"looks like evaluation image {test.set}/{Path(test.file).name} ({how}): "
                                       "never in training")
                continue
            h, w = rgb.shape[:2]
            if min(h, w) < options.min_size:
                skip(path, "too-small", f"too small ({w}x{h}; shorter side under {options.min_size})")
                continue
            ph = perceptual_hash(rgb)
            if kept_hashes:
                d = hamming(ph, np.array(kept_hashes, dtype=np.uint64))
                j = int(np.argmin(d))
                if d[j] <= options.near:
                    skip(path, "duplicate", f"near-duplicate of {kept_names[j]} ({int(d[j])} bits)")
                    continue
            small = downscale(rgb, reduction(h, w, options))
            source = row.source if row is not None else "unlisted"
            split = row.split if row is not None else (
                "validation" if int(sha[:8], 16) % round(1 / VALIDATION_FRACTION) == 0 else "train")
            name = row.file if row is not None else str(path.relative_to(src))
            writer.add(small, name=name, source=source, split=split)
            kept_hashes.append(ph)
            kept_names.append(name)
            written += 1
            s = per_source.setdefault(source, {"images": 0, "megapixels_in": 0.0, "megapixels_out": 0.0,
                                               "licence": row.licence if row else "unlisted: unknown"})
            s["images"] += 1
            s["megapixels_in"] += h * w / 1e6
            s["megapixels_out"] += small.shape[0] * small.shape[1] / 1e6
        if not written:
            raise Edge4KError(f"no image of {src} made it into the shards (see the skipped files above)")
        by_split: dict[str, int] = {}
        for rec in writer.images:
            by_split[rec["split"]] = by_split.get(rec["split"], 0) + 1
        reasons: dict[str, int] = {}
        for s in skipped:
            reasons[s["why"]] = reasons.get(s["why"], 0) + 1
        info = {
            "source_dir": str(src.resolve()),
            "manifest": {"path": str(manifest_path), "sha256": sha256_file(manifest_path)},
            "options": asdict(options) | {"test_near": TEST_NEAR},
            "counts": {"files": len(files), "images": written, "skipped": len(skipped),
                       "left_out_by_max_mb": budget_left_out, "manifest_photos_missing": len(missing),
                       "skipped_by_reason": dict(sorted(reasons.items()))},
            "by_split": dict(sorted(by_split.items())),
            "by_source": {k: v | {"megapixels_in": round(v["megapixels_in"], 2),
                                  "megapixels_out": round(v["megapixels_out"], 2)}
                          for k, v in sorted(per_source.items())},
            "megapixels_in": round(sum(v["megapixels_in"] for v in per_source.values()), 2),
            "megapixels_out": round(sum(v["megapixels_out"] for v in per_source.values()), 2),
            "bytes": writer.bytes,
            "tiles": len(writer.tiles),
            "seconds": round(time.perf_counter() - t0, 1),
            "skipped": skipped,
            "missing": missing,
        }
        writer.close(info)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info
