"""`edge4k eval`: image quality of Edge4K against LibRaw and other pipelines on held-out photos.

Each evaluation case is a held-out photo unprocessed into a RAW (fixed seed, CFA
pattern, camera and ISO per case) and written as a real DNG. Every method reads
that DNG and is scored against the photo itself (display sRGB):

- edge4k: the runtime (kernels.raw frontend + model, eager, native mode).
- libraw: rawpy's postprocess with LIBRAW_OPTIONS below.
- menon2007 / demosaicnet: the same frontend levels and white balance as LibRaw
  (black-subtracted, normalised, camera white balance, clipped at 1), the named
  demosaic, then LibRaw's colour steps: camera->sRGB matrix from the DNG, clip,
  sRGB encode.
- menon2007+oracle (reference, not a peer): Menon, then the exact inverse of the
  synthetic generator (its secret brightness gain and Brooks' tone curve). It
  shows what is left once demosaicking and denoising are the only errors.
- edge4k+gain-oracle (diagnostic, not a result): Edge4K's own output with one
  least-squares gain per colour channel fitted to the ground truth in linear
  light. The gap to plain edge4k is the part of its error that is a global
  brightness or white-balance offset rather than local detail or noise.

Metrics use libraries, not hand-written formulas: PSNR and SSIM from
scikit-image (data range 1, SSIM over the three channels), CIEDE2000 from
colour-science on CIELAB (D65) of the sRGB images, its mean and 95th percentile.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge4k.calibration.colour import CAMERA_MATRICES, srgb_decode, srgb_encode
from edge4k.calibration.dng import write_dng
from edge4k.calibration.unprocess import CFA_PATTERNS, RawCapture, reprocess, unprocess
from edge4k.errors import Edge4KError
from edge4k.files import atomic_output
from edge4k.kernels.raw import RawFrame, pack, read_raw

EVAL_SEED = 2024
EVAL_ISOS = (200.0, 1600.0)       # two captures per photo: a clean one and a noisy one
SETS = ("held-out",)

# LibRaw through rawpy: camera white balance, sRGB primaries, no auto-brightening,
# LibRaw's sRGB-like curve (power 1/2.4 with a 12.92 linear toe), AHD demosaic,
# highlights clipped, 16 bits out, no rotation.
LIBRAW_OPTIONS = dict(use_camera_wb=True, use_auto_wb=False, output_color="sRGB", no_auto_bright=True,
                      bright=1.0, gamma=(2.4, 12.92), demosaic_algorithm="AHD", highlight_mode="Clip",
                      output_bps=16, user_flip=0)

METHODS = ("edge4k", "libraw", "menon2007", "demosaicnet", "menon2007+oracle", "edge4k+gain-oracle")
PEERS = ("libraw", "demosaicnet")      # the targets are stated against these


@dataclass
class Case:
    name: str            # photo + condition, e.g. "astronaut/iso200"
    photo: str
    target: np.ndarray   # HxWx3 sRGB in [0, 1]
    capture: RawCapture


def eval_cases(images: dict[str, np.ndarray], seed: int = EVAL_SEED) -> list[Case]:
    """Fixed captures of each image: CFA patterns and cameras cycle so all four patterns appear."""
    cfas, cameras = list(CFA_PATTERNS), sorted(CAMERA_MATRICES)
    cases = []
    for i, (name, img) in enumerate(images.items()):
        for j, iso in enumerate(EVAL_ISOS):
            k = i * len(EVAL_ISOS) + j
            cap = unprocess(img, cfa=cfas[k % len(cfas)], camera=cameras[k % len(cameras)], iso=iso,
                            rng=np.random.default_rng((seed, i, j)))
            cases.append(Case(f"{name}/iso{iso:g}", name, img, cap))
    return cases


# ---- the pipelines ---------------------------------------------------------------------------

def run_edge4k(model):
    from edge4k.runtime.backends import EagerBackend
    from edge4k.runtime.pipeline import TileOptions, process
    backend = EagerBackend(model)

    def run(path, frame, case):
        image, _ = process(path, backend, model.cfg, TileOptions(tile=None, overlap=0, native=True))
        return image.clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float64)
    return run


def run_libraw(path, frame, case):
    import rawpy
    opts = dict(LIBRAW_OPTIONS)
    opts["output_color"] = rawpy.ColorSpace.sRGB
    opts["demosaic_algorithm"] = rawpy.DemosaicAlgorithm.AHD
    opts["highlight_mode"] = rawpy.HighlightMode.Clip
    with rawpy.imread(str(path)) as raw:
        return raw.postprocess(**opts).astype(np.float64) / 65535.0


def cfa_image(frame: RawFrame) -> np.ndarray:
    """The frontend's packed planes put back on the mosaic: (H, W) normalised, white-balanced, clipped at 1."""
    packed = np.minimum(pack(frame), 1.0)
    out = np.zeros((frame.height, frame.width), np.float64)
    for c, (i, j) in enumerate(frame.offsets()):
        out[i::2, j::2] = packed[c]
    return out


def finish(cam_wb: np.ndarray, frame: RawFrame) -> np.ndarray:
    """LibRaw's colour steps after demosaicking: camera->sRGB matrix, clip, sRGB encode."""
    lin = np.clip(cam_wb, 0, 1) @ frame.srgb_from_cam.T
    return srgb_encode(np.clip(lin, 0, 1))


def menon(frame: RawFrame) -> np.ndarray:
    from colour_demosaicing import demosaicing_CFA_Bayer_Menon2007
    return demosaicing_CFA_Bayer_Menon2007(cfa_image(frame), pattern=frame.cfa)


def run_menon(path, frame, case):
    return finish(menon(frame), frame)


def run_menon_oracle(path, frame, case):
    cap = case.capture
    return reprocess(menon(frame), srgb_from_cam=frame.srgb_from_cam, exposure_gain=cap.exposure_gain)


def gain_matched(out: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``out`` with the per-channel gain (linear light, least squares) that best fits ``target``."""
    lin, lin_t = srgb_decode(np.clip(out, 0, 1)), srgb_decode(target.astype(np.float64))
    gains = (lin * lin_t).sum(axis=(0, 1)) / np.maximum((lin * lin).sum(axis=(0, 1)), 1e-12)
    return srgb_encode(np.clip(lin * gains, 0, 1))


def load_demosaicnet():
    """demosaicnet's pretrained Bayer model (its wheel ships data/bayer.pth).

    The wheel imports pkg_resources only for resource_filename(); setuptools 81+
    no longer provides pkg_resources, so a stand-in with that one function is put
    in place for the import and removed afterwards."""
    shim = None
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")
        # pkg_resources resolves a resource beside the named module's file.
        shim.resource_filename = lambda mod, rel: os.path.join(os.path.dirname(sys.modules[mod].__file__), rel)
        sys.modules["pkg_resources"] = shim
    try:
        import demosaicnet
        net = demosaicnet.BayerDemosaick(pretrained=True).eval()   # valid convolutions, as its demo uses it
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return net


# demosaicnet expects the GRBG phase ("G r / b G") and sRGB-encoded values (it was trained on
# mosaicked sRGB photos). Prepending one reflected row/column moves any Bayer phase to GRBG;
# reflection keeps every pixel's colour site, so the padding is a valid mosaic too.
_TO_GRBG = {"GRBG": (0, 0), "RGGB": (0, 1), "BGGR": (1, 0), "GBRG": (1, 1)}
_DEMOSAICNET_MARGIN = 48


def run_demosaicnet_with(net):
    def run(path, frame, case):
        dy, dx = _TO_GRBG[frame.cfa]
        m = _DEMOSAICNET_MARGIN
        x = srgb_encode(cfa_image(frame))
        x = np.pad(x, ((m + dy, m + dy), (m + dx, m + dx)), mode="reflect")
        mosaic3 = np.zeros((3,) + x.shape, np.float32)
        # GRBG sites: R at (0, 1), B at (1, 0), G elsewhere.
        mosaic3[0, 0::2, 1::2] = x[0::2, 1::2]
        mosaic3[2, 1::2, 0::2] = x[1::2, 0::2]
        mosaic3[1, 0::2, 0::2] = x[0::2, 0::2]
        mosaic3[1, 1::2, 1::2] = x[1::2, 1::2]
        with torch.inference_mode():
            y = net(torch.from_numpy(mosaic3)[None])[0].numpy().transpose(1, 2, 0)
        # Valid convolutions shrink the image symmetrically; cut back to the frame.
        cut_y, cut_x = (x.shape[0] - y.shape[0]) // 2, (x.shape[1] - y.shape[1]) // 2
        oy, ox = m + dy - cut_y, m + dx - cut_x
        y = y[oy:oy + frame.height, ox:ox + frame.width]
        if y.shape[:2] != (frame.height, frame.width):
            raise RuntimeError("demosaicnet output does not cover the frame; raise _DEMOSAICNET_MARGIN")
        return finish(srgb_decode(np.clip(y.astype(np.float64), 0, 1)), frame)
    return run


# ---- metrics ----------------------------------------------------------------------------------

def metrics(target: np.ndarray, out: np.ndarray) -> dict[str, float]:
    import colour
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    t, o = np.asarray(target, np.float64), np.clip(np.asarray(out, np.float64), 0, 1)
    lab_t = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(t))
    lab_o = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(o))
    de = colour.delta_E(lab_t, lab_o, method="CIE 2000")
    with np.errstate(divide="ignore"):   # identical images: PSNR is inf
        psnr = float(peak_signal_noise_ratio(t, o, data_range=1.0))
    return {"psnr": psnr,
            "ssim": float(structural_similarity(t, o, channel_axis=2, data_range=1.0)),
            "de2000_mean": float(de.mean()), "de2000_p95": float(np.percentile(de, 95))}


# ---- the evaluation -----------------------------------------------------------------------------

def evaluate(model, images: dict[str, np.ndarray], *, methods=METHODS, progress: bool = True,
             keep_outputs: bool = False) -> dict:
    """Score every method on every case. Returns the report dict (and outputs if keep_outputs)."""
    from tqdm import tqdm
    runners, unavailable = {}, {}
    for m in methods:
        if m == "edge4k":
            runners[m] = run_edge4k(model)
        elif m == "libraw":
            runners[m] = run_libraw
        elif m == "menon2007":
            runners[m] = run_menon
        elif m == "menon2007+oracle":
            runners[m] = run_menon_oracle
        elif m == "edge4k+gain-oracle":
            if "edge4k" not in methods:
                raise Edge4KError("edge4k+gain-oracle needs the edge4k method too")
            runners[m] = None      # derived from the edge4k output below
        elif m == "demosaicnet":
            try:
                runners[m] = run_demosaicnet_with(load_demosaicnet())
            except Exception as e:  # report the reason rather than a number
                unavailable[m] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        else:
            raise Edge4KError(f"unknown method '{m}'; valid methods: {', '.join(METHODS)}")
    runners = dict(sorted(runners.items(), key=lambda kv: METHODS.index(kv[0])))   # derived rows run last
    cases = eval_cases(images)
    per_case, outputs = [], {}
    with tempfile.TemporaryDirectory(prefix="edge4k-eval-") as tmp:
        work = [(c, m) for c in cases for m in runners]
        bar = tqdm(total=len(work), desc="eval", unit="run", disable=not progress, leave=False)
        for case in cases:
            path = write_dng(Path(tmp) / (case.name.replace("/", "_") + ".dng"), case.capture)
            frame = read_raw(path)
            if keep_outputs:
                outputs[(case.name, "__target__")] = case.target
            row = {"case": case.name, "photo": case.photo, "cfa": case.capture.cfa, "camera": case.capture.camera,
                   "iso": case.capture.iso, "size": [frame.width, frame.height], "methods": {}}
            done = {}
            for name, run in runners.items():
                out = gain_matched(done["edge4k"], case.target) if run is None else run(path, frame, case)
                done[name] = out
                if out.shape != case.target.shape:
                    raise RuntimeError(f"{name} returned {out.shape}, expected {case.target.shape}")
                row["methods"][name] = {k: round(v, 4) for k, v in metrics(case.target, out).items()}
                if keep_outputs:
                    outputs[(case.name, name)] = out
                bar.update(1)
            per_case.append(row)
        bar.close()
    mean = {m: {k: round(float(np.mean([r["methods"][m][k] for r in per_case])), 4)
                for k in ("psnr", "ssim", "de2000_mean", "de2000_p95")} for m in runners}
    report = {"schema": "edge4k.eval/1", "cases": per_case, "mean": mean, "unavailable": unavailable,
              "libraw_options": LIBRAW_OPTIONS, "eval_seed": EVAL_SEED, "isos": list(EVAL_ISOS)}
    if keep_outputs:
        report["_outputs"] = outputs
    return report


LABELS = {"edge4k": "Edge4K (eager)", "libraw": "LibRaw (rawpy, AHD)", "menon2007": "Menon 2007 + LibRaw colour",
          "demosaicnet": "demosaicnet + LibRaw colour", "menon2007+oracle": "Menon 2007 + oracle finishing (reference)",
          "edge4k+gain-oracle": "Edge4K + fitted per-channel gain (diagnostic)"}


def markdown(report: dict, title: str) -> str:
    rows = [f"### {title}", "",
            "| method | PSNR (dB) | SSIM | CIEDE2000 mean | CIEDE2000 p95 |", "|---|---|---|---|---|"]
    for m, v in report["mean"].items():
        rows.append(f"| {LABELS.get(m, m)} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['de2000_mean']:.2f} | "
                    f"{v['de2000_p95']:.2f} |")
    for m, why in report["unavailable"].items():
        rows.append(f"| {LABELS.get(m, m)} | unavailable: {why} | | | |")
    rows += ["", "Per image (PSNR dB / SSIM / CIEDE2000 mean / p95):", "",
             "| case | CFA | camera | " + " | ".join(LABELS.get(m, m) for m in report["mean"]) + " |",
             "|---|---|---|" + "---|" * len(report["mean"])]
    for r in report["cases"]:
        cells = [f"{v['psnr']:.2f} / {v['ssim']:.3f} / {v['de2000_mean']:.2f} / {v['de2000_p95']:.2f}"
                 for v in r["methods"].values()]
        rows.append(f"| {r['case']} | {r['cfa']} | {r['camera']} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def crop_sheet(report: dict, cases: list[str], path: Path, *, size: int = 160, scale: int = 2) -> None:
    """Side-by-side crops (ground truth, LibRaw, Edge4K), one row per case, centre of the frame."""
    from PIL import Image, ImageDraw
    outs = report["_outputs"]
    size = min([size] + [d for name in cases for d in outs[(name, "__target__")].shape[:2]])
    cols = [("ground truth", None), ("LibRaw", "libraw"), ("Edge4K", "edge4k")]
    cols = [(label, m) for label, m in cols if m is None or (cases[0], m) in outs]
    head, cell = 18, size * scale
    sheet = Image.new("RGB", (cell * len(cols), (cell + head) * len(cases)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(cases):
        h, w = outs[(name, "__target__")].shape[:2]
        y0, x0 = (h - size) // 2, (w - size) // 2
        for col, (label, m) in enumerate(cols):
            img = outs[(name, "__target__")] if m is None else outs[(name, m)]
            crop = (np.clip(img[y0:y0 + size, x0:x0 + size], 0, 1) * 255 + 0.5).astype(np.uint8)
            tile = Image.fromarray(crop).resize((cell, cell), Image.NEAREST)
            top = row * (cell + head)
            sheet.paste(tile, (col * cell, top + head))
            draw.text((col * cell + 4, top + 3), f"{label}  {name}", fill="black")
    with atomic_output(path) as tmp:
        sheet.save(tmp, format="PNG")


def write_report(report: dict, out_dir: str | os.PathLike, *, set_name: str, title: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"eval_{set_name}.json", "md": out_dir / f"eval_{set_name}.md",
             "png": out_dir / f"crops_{set_name}.png"}
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    with atomic_output(paths["json"]) as tmp:
        tmp.write_text(json.dumps(public, indent=2) + "\n")
    with atomic_output(paths["md"]) as tmp:
        tmp.write_text(markdown(public, title))
    if "_outputs" in report:
        crop_sheet(report, [r["case"] for r in report["cases"] if r["iso"] == max(EVAL_ISOS)], paths["png"])
    else:
        paths.pop("png")
    return paths


# ---- one-step comparison: teacher at N steps, distilled student, directly trained model -------

def sharpness(target: np.ndarray, out: np.ndarray) -> float:
    """High-frequency energy ratio: mean squared Laplacian of the output's luma over the
    ground truth's. 1 is as sharp as the truth; below 1 is blurrier, above 1 is
    noisier or over-sharpened."""
    from scipy.ndimage import laplace
    luma = lambda im: np.asarray(im, np.float64) @ np.array([0.2126, 0.7152, 0.0722])  # noqa: E731
    return float(np.mean(laplace(luma(np.clip(out, 0, 1))) ** 2) / np.mean(laplace(luma(target)) ** 2))


def compare(models: dict[str, object], images: dict[str, np.ndarray], *, progress: bool = True,
            keep_outputs: bool = False) -> dict:
    """Every model on every held-out case (eager, native): quality, sharpness, GMAC per
    megapixel and wall-clock seconds per image."""
    import time
    from tqdm import tqdm
    from .cost import gmac_per_megapixel
    cases = eval_cases(images)
    rows = {label: [] for label in models}
    outputs = {}
    with tempfile.TemporaryDirectory(prefix="edge4k-compare-") as tmp:
        bar = tqdm(total=len(cases) * len(models), desc="compare", unit="run", disable=not progress, leave=False)
        for case in cases:
            path = write_dng(Path(tmp) / (case.name.replace("/", "_") + ".dng"), case.capture)
            frame = read_raw(path)
            outputs[(case.name, "__target__")] = case.target
            for label, model in models.items():
                start = time.perf_counter()
                out = run_edge4k(model)(path, frame, case)
                seconds = time.perf_counter() - start
                rows[label].append({"case": case.name, **metrics(case.target, out),
                                    "sharpness": sharpness(case.target, out), "seconds": seconds})
                if keep_outputs:
                    outputs[(case.name, label)] = out
                bar.update(1)
        bar.close()
    keys = ("psnr", "ssim", "de2000_mean", "de2000_p95", "sharpness", "seconds")
    report = {"schema": "edge4k.compare/1", "eval_seed": EVAL_SEED, "isos": list(EVAL_ISOS),
              "models": {label: {**{k: round(float(np.mean([r[k] for r in rs])), 4) for k in keys},
                                 "gmac_per_mp": round(gmac_per_megapixel(models[label]), 2),
                                 "cases": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                                           for r in rs]}
                         for label, rs in rows.items()}}
    if keep_outputs:
        report["_outputs"] = outputs
    return report


def compare_markdown(report: dict, title: str) -> str:
    rows = [f"### {title}", "",
            "| model | PSNR (dB) | SSIM | CIEDE2000 mean | sharpness (HF ratio, 1 = truth) | GMAC/MP | s / image |",
            "|---|---|---|---|---|---|---|"]
    for label, v in report["models"].items():
        rows.append(f"| {label} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['de2000_mean']:.2f} | {v['sharpness']:.3f} | "
                    f"{v['gmac_per_mp']:.1f} | {v['seconds']:.3f} |")
    return "\n".join(rows) + "\n"


def write_compare(report: dict, out_dir: str | os.PathLike, *, set_name: str, title: str) -> dict[str, Path]:
    from PIL import Image, ImageDraw
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"compare_{set_name}.json", "md": out_dir / f"compare_{set_name}.md",
             "png": out_dir / f"crops_compare_{set_name}.png"}
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    with atomic_output(paths["json"]) as tmp:
        tmp.write_text(json.dumps(public, indent=2) + "\n")
    with atomic_output(paths["md"]) as tmp:
        tmp.write_text(compare_markdown(public, title))
    # Crop sheet: ground truth then each model, one row per high-ISO case, centre 128 px at 2x.
    outs, labels = report["_outputs"], ["ground truth", *report["models"]]
    cases = [c["case"] for c in next(iter(report["models"].values()))["cases"]
             if c["case"].endswith(f"iso{max(EVAL_ISOS):g}")]
    size, scale, head = 128, 2, 18
    cell = size * scale
    sheet = Image.new("RGB", (cell * len(labels), (cell + head) * len(cases)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(cases):
        target = outs[(name, "__target__")]
        s = min(size, *target.shape[:2])
        y0, x0 = (target.shape[0] - s) // 2, (target.shape[1] - s) // 2
        for col, label in enumerate(labels):
            img = target if col == 0 else outs[(name, label)]
            crop = (np.clip(img[y0:y0 + s, x0:x0 + s], 0, 1) * 255 + 0.5).astype(np.uint8)
            sheet.paste(Image.fromarray(crop).resize((cell, cell), Image.NEAREST), (col * cell, row * (cell + head) + head))
            draw.text((col * cell + 4, row * (cell + head) + 3), f"{label}  {name}"[:40], fill="black")
    with atomic_output(paths["png"]) as tmp:
        sheet.save(tmp, format="PNG")
    return paths
