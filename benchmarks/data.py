"""Measurements behind the data choices of datasets/DATA.md. Run as

    python -m edge4k.benchmarks.data rates DATA [--crop 192] [--seconds 20] [--train-steps 12]
    python -m edge4k.benchmarks.data traces PHOTOS [--images 24]
    python -m edge4k.benchmarks.data phash PHOTOS [--images 60]
    python -m edge4k.benchmarks.data compare LOSSY_DATA LOSSLESS_DATA
    python -m edge4k.benchmarks.data raws ROOT

``rates``: random crops decoded per second from a shard folder (one thread), next to the crops
per second `edge4k train` consumes on the same machine; both by the wall clock and per
CPU-second, since on a shared machine the wall clock mostly measures the neighbours.
``traces``: how much of a camera's rendering a downscale removes: clean scenes are put through a
simulated camera (RGGB mosaic, bilinear demosaic, JPEG q90 4:2:0), and the camera image and the
clean scene are then reduced alike. trace_psnr_db compares the two reduced with the same filter
(how much camera trace is left); psnr_vs_area_reference_db compares the reduced camera image with
the clean scene reduced by a box filter in linear light, i.e. what a sensor with pixels f times
larger would collect (trace left plus detail lost or aliasing added by each filter).
``raws``: every RAW sample of the manifest opens with rawpy and is a 2x2 Bayer mosaic.
``compare``: PSNR of a lossy shard folder against a lossless one built with the same options.
``phash``: Hamming distances of the perceptual hash between distinct photographs of the manifest
and between photographs and their edited copies (the duplicate / test-set thresholds).
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rawpy
from PIL import Image

from edge4k.datasets.databuild import downscale
from edge4k.datasets.shards import open_shards
from edge4k.datasets.sources import decode_rgb, hamming, load_manifest, perceptual_hash
from edge4k.files import sha256_file


def decode_rates(data: str, *, crop: int, seconds: float, seed: int = 0) -> dict:
    """Random crops decoded per second by one thread, by the wall clock and per CPU-second (the
    machine is shared: CPU time is what the loader takes away from training)."""
    s = open_shards(data)
    fits = np.flatnonzero((s.sizes >= crop).all(axis=1))
    fits_window = np.flatnonzero((s.sizes >= 2 * crop).all(axis=1))
    rng = np.random.default_rng(seed)

    def timed(work):
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            n += work()
        return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)

    def one_crop():
        s.random_crop(int(rng.choice(fits)), crop, rng)
        return 1

    def window_of_four():     # training/data.py's sampler: one scene window, four crops inside it
        window = s.random_crop(int(rng.choice(fits_window)), 2 * crop, rng)
        for _ in range(4):
            y, x = rng.integers(0, crop // 2 + 1, 2) * 2
            window[y:y + crop, x:x + crop].copy()
        return 4
    single = timed(one_crop)
    shared = timed(window_of_four) if len(fits_window) else (float("nan"), float("nan"))
    return {"data": data, "codec": s.codec, "tile": s.tile, "crop": crop, "images": len(s),
            "decode_crops_per_s": round(single[0], 1), "decode_crops_per_cpu_s": round(single[1], 1),
            "decode_crops_per_s_4_per_window": round(shared[0], 1),
            "decode_crops_per_cpu_s_4_per_window": round(shared[1], 1)}


def train_rate(*, crop: int, steps: int, batch: int, preset: str | None) -> dict:
    """Crops per second of `edge4k train` at this crop: wall clock from its own log (first logging
    window dropped), and per CPU-second of the training process, from two runs of different
    length (so start-up costs cancel)."""
    runs = []
    for n in (max(2, steps // 4), steps):
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-P", "-m", "edge4k", "train", "--budget-minutes", "60", "--steps", str(n),
                   "--crop", str(crop), "--batch", str(batch), "--log-every", "2", "--out", out]
            if preset:
                cmd += ["--preset", preset]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            run = subprocess.run(cmd, capture_output=True, text=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if run.returncode:
                return {"train_error": (run.stderr.strip().splitlines() or ["failed"])[-1],
                        "train_command": " ".join(cmd[2:])}
            log = [json.loads(line) for line in (Path(out) / "train_log.jsonl").read_text().splitlines() if line]
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        runs.append((n, cpu, [r["crops_per_s"] for r in log if "crops_per_s" in r]))
    (n1, cpu1, _), (n2, cpu2, wall) = runs
    return {"train_crops_per_s": round(float(np.median(wall[1:] or wall)), 2),
            "train_crops_per_cpu_s": round((n2 - n1) * batch / max(cpu2 - cpu1, 1e-9), 2),
            "train_command": "edge4k " + " ".join(cmd[3:-2])}


def compare(lossy: str, reference: str) -> dict:
    """PSNR of every image of ``lossy`` against the same image in ``reference`` (same build options
    but a lossless codec)."""
    a, b = open_shards(lossy), open_shards(reference)
    where = {n: i for i, n in enumerate(b.names)}
    psnrs = []
    for i, name in enumerate(a.names):
        if name in where:
            x, y = a[i].astype(np.float64), b[where[name]].astype(np.float64)
            if x.shape == y.shape:
                psnrs.append(10 * np.log10(255.0 ** 2 / max(np.mean((x - y) ** 2), 1e-12)))
    return {"images": len(psnrs), "psnr_db_mean": round(float(np.mean(psnrs)), 2),
            "psnr_db_min": round(float(np.min(psnrs)), 2), "psnr_db_p5": round(float(np.percentile(psnrs, 5)), 2),
            "bytes": [a.info.get("bytes"), b.info.get("bytes")]}


# --- traces -------------------------------------------------------------------------------------

def _bilinear_demosaic_rggb(raw: np.ndarray) -> np.ndarray:
    h, w = raw.shape
    masks = np.zeros((3, h, w), dtype=np.float32)
    masks[0, 0::2, 0::2] = 1
    masks[1, 0::2, 1::2] = masks[1, 1::2, 0::2] = 1
    masks[2, 1::2, 1::2] = 1
    k = np.array([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], dtype=np.float32)

    def conv(a):
        p = np.pad(a, 1, mode="reflect")
        return sum(k[i, j] * p[i:i + h, j:j + w] for i in range(3) for j in range(3))
    out = [conv(raw * m) / np.maximum(conv(m), 1e-6) for m in masks]
    return np.stack(out, axis=-1)


def simulate_camera(scene: np.ndarray, *, jpeg_quality: int = 90) -> np.ndarray:
    """sRGB uint8 scene -> what a simple camera would save: RGGB mosaic, bilinear demosaic, JPEG 4:2:0."""
    f = scene.astype(np.float32)
    mosaic = np.zeros(f.shape[:2], dtype=np.float32)
    mosaic[0::2, 0::2] = f[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = f[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = f[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = f[1::2, 1::2, 2]
    rgb = np.clip(np.round(_bilinear_demosaic_rggb(mosaic)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=jpeg_quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _reduce(rgb: np.ndarray, factor: float, method: str) -> np.ndarray:
    if factor == 1:
        return rgb
    if method.endswith("-linear"):
        return downscale(rgb, factor, resample=method.split("-")[0])
    size = (round(rgb.shape[1] / factor), round(rgb.shape[0] / factor))
    resample = {"box": Image.Resampling.BOX, "bicubic": Image.Resampling.BICUBIC,
                "lanczos-srgb": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}[method]
    return np.asarray(Image.fromarray(rgb).resize(size, resample))


def _psnr(a: np.ndarray, b: np.ndarray, border: int = 4) -> float:
    a, b = a[border:-border, border:-border].astype(np.float64), b[border:-border, border:-border].astype(np.float64)
    return float(10 * np.log10(255.0 ** 2 / max(np.mean((a - b) ** 2), 1e-12)))


def traces(photos: str, *, images: int, seed: int = 0) -> dict:
    """PSNR(reduce(camera(scene)), reduce(scene)) per filter and factor, mean over ``images`` scenes.
    The scenes are manifest photographs already reduced 4x (so their own camera traces are gone)."""
    files = sorted(p for p in Path(photos).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif"))
    rng = np.random.default_rng(seed)
    picked = [files[i] for i in sorted(rng.choice(len(files), min(images, len(files)), replace=False))]
    methods = ("nearest", "box", "bicubic", "lanczos-srgb", "box-linear", "bicubic-linear", "lanczos-linear")
    factors = (1.0, 1.25, 1.5, 2.0, 3.0)
    table = {m: {f: [] for f in factors} for m in methods}
    common = {m: {f: [] for f in factors} for m in methods}
    used = 0
    for path in picked:
        rgb = decode_rgb(path)
        if min(rgb.shape[:2]) < 4 * 128:
            continue
        scene = downscale(rgb, 4.0)
        scene = scene[:scene.shape[0] // 12 * 12, :scene.shape[1] // 12 * 12]
        camera = simulate_camera(scene)
        used += 1
        for f in factors:
            reference = _reduce(scene, f, "box-linear")
            for m in methods:
                reduced = _reduce(camera, f, m)
                table[m][f].append(_psnr(reduced, _reduce(scene, f, m)))
                common[m][f].append(_psnr(reduced, reference))
    return {"scenes": used, "camera": "RGGB mosaic + bilinear demosaic + JPEG q90 4:2:0",
            "trace_psnr_db": {m: {str(f): round(float(np.mean(v)), 2) for f, v in row.items() if v}
                              for m, row in table.items()},
            "psnr_vs_area_reference_db": {m: {str(f): round(float(np.mean(v)), 2) for f, v in row.items() if v}
                                           for m, row in common.items()}}


def check_raws(root: str) -> dict:
    """Open every RAW row of the manifest (ROOT/row.file) with rawpy: sha256, size, CFA."""
    out = []
    for r in (r for r in load_manifest() if r.kind == "raw"):
        path = Path(root) / r.file
        rec = {"file": r.file, "notes": r.notes}
        if not path.is_file():
            out.append(rec | {"ok": False, "problem": "missing"})
            continue
        with rawpy.imread(str(path)) as raw:
            pattern = None if raw.raw_pattern is None else raw.raw_pattern.tolist()
            desc = raw.color_desc.decode()
            cfa = "".join(desc[c] for row in pattern for c in row) if pattern else None
            rec |= {"sha256_ok": sha256_file(path) == r.sha256, "size": list(raw.raw_image_visible.shape),
                    "cfa_2x2": cfa, "black": [int(b) for b in raw.black_level_per_channel],
                    "white": int(raw.white_level), "camera_wb": [round(float(w), 3) for w in raw.camera_whitebalance]}
            rec["ok"] = bool(rec["sha256_ok"] and pattern is not None and len(pattern) == 2 and len(pattern[0]) == 2
                             and raw.num_colors == 3)
        out.append(rec)
    return {"raws": out, "all_ok": all(r["ok"] for r in out)}


# --- perceptual hash thresholds -----------------------------------------------------------------

def phash_distances(photos: str, *, images: int, seed: int = 0) -> dict:
    rows = [r for r in load_manifest() if r.phash]
    hashes = np.array([int(r.phash, 16) for r in rows], dtype=np.uint64)
    dist = np.stack([hamming(int(h), hashes) for h in hashes])
    iu = np.triu_indices(len(rows), 1)
    d = dist[iu]
    close = [{"bits": int(d[k]), "a": rows[iu[0][k]].file, "b": rows[iu[1][k]].file} for k in np.argsort(d)[:12]]
    test = [i for i, r in enumerate(rows) if r.split == "test"]
    photo = [i for i, r in enumerate(rows) if r.kind == "photo"]
    rng = np.random.default_rng(seed)
    root = Path(photos)
    edits: dict[str, list[int]] = {}
    for i in rng.choice(photo, min(images, len(photo)), replace=False):
        path = root / Path(rows[i].file).relative_to("photos")
        if not path.is_file():
            continue
        rgb, h0 = decode_rgb(path), int(rows[i].phash, 16)
        im, (H, W) = Image.fromarray(rgb), rgb.shape[:2]
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=50)
        copies = {"jpeg q50": np.asarray(Image.open(buf).convert("RGB")),
                  "half size": np.asarray(im.resize((W // 2, H // 2), Image.Resampling.LANCZOS)),
                  "crop 5%": rgb[H // 40:H - H // 40, W // 40:W - W // 40],
                  "brighter": np.clip(rgb * 1.15 + 8, 0, 255).astype(np.uint8),
                  "gamma 0.8": (255 * (rgb / 255.0) ** 0.8).astype(np.uint8)}
        for k, v in copies.items():
            edits.setdefault(k, []).append(int(hamming(h0, perceptual_hash(v))))
    return {"distinct_pairs": int(len(d)), "distinct_min_bits": int(d.min()),
            "distinct_percentiles_bits": {p: float(np.percentile(d, p)) for p in (0.01, 0.1, 1, 50)},
            "pairs_at_or_under": {t: int((d <= t).sum()) for t in (4, 6, 8, 10, 12, 14)},
            "closest_pairs": close,
            "test_vs_photo_min_bits": int(dist[np.ix_(test, photo)].min()) if test and photo else None,
            "edited_copies_bits": {k: {"max": max(v), "mean": round(float(np.mean(v)), 2), "n": len(v)}
                                   for k, v in edits.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge4k.benchmarks.data", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("rates")
    r.add_argument("data")
    r.add_argument("--crop", type=int, default=192)
    r.add_argument("--seconds", type=float, default=20)
    r.add_argument("--train-steps", type=int, default=12, help="0: do not time training")
    r.add_argument("--train-batch", type=int, default=4)
    r.add_argument("--preset")
    t = sub.add_parser("traces")
    t.add_argument("photos")
    t.add_argument("--images", type=int, default=24)
    w = sub.add_parser("raws")
    w.add_argument("root", help="data root holding raw/ (from `edge4k data extract`)")
    c = sub.add_parser("compare")
    c.add_argument("lossy")
    c.add_argument("reference")
    h = sub.add_parser("phash")
    h.add_argument("photos")
    h.add_argument("--images", type=int, default=60)
    a = p.parse_args(argv)
    if a.what == "rates":
        out = decode_rates(a.data, crop=a.crop, seconds=a.seconds)
        if a.train_steps:
            out |= train_rate(crop=a.crop, steps=a.train_steps, batch=a.train_batch, preset=a.preset)
            if "train_crops_per_cpu_s" in out:
                ratio = out["decode_crops_per_cpu_s"] / out["train_crops_per_cpu_s"]
                out["decode_over_train_per_cpu_s"] = round(ratio, 1)
    elif a.what == "raws":
        out = check_raws(a.root)
    elif a.what == "compare":
        out = compare(a.lossy, a.reference)
    elif a.what == "traces":
        out = traces(a.photos, images=a.images)
    else:
        out = phash_distances(a.photos, images=a.images)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
