"""`edge4k eval`: image quality of Edge4K against classical and learned converters, fairly.

Protocol (seeded, fixed per set): every photo of the set is rendered as three RAW captures
(calibration.unprocess) at ISO 100, 800 and 3200, with conditions that cycle over the
cameras never used in training (calibration.colour.HELD_OUT_CAMERAS), all four CFA
phases, five exposures and five illuminants (PROTOCOL below); bit depth and black level
are drawn from the seed. Each capture is written as a real DNG and every method reads it.

Fairness: the ground truth is the capture's noise-free, full-colour sensor image through
Edge4K's exact finishing (white balance, the DNG's colour matrix, the look). Every method
is finished by that same code from its own camera-space output, so what differs between
rows is only demosaicing and denoising:
- libraw-* : LibRaw (rawpy) in camera colour space, linear, camera white balance, highlights
  clipped, no brightening, the file's white level (adjust_maximum_thr 0): AHD, DCB,
  AHD + FBDD noise reduction, AHD + 3 median passes;
- menon2007 : colour-demosaicing's Menon 2007 DDFAPD on the same white-balanced mosaic;
- mhc : Malvar-He-Cutler, Edge4K's own classical base (the untrained network);
- demosaicnet : Gharbi et al.'s pretrained network (learned, not classical);
- edge4k : the model under test (eager, native mode).
The natural look's exposure gain comes from Edge4K's frontend (kernels.raw.exposure_gain on
the RAW) and is given to every method and to the ground truth alike; nobody gets an oracle.

Metrics use libraries: PSNR and SSIM from scikit-image, CIEDE2000 from colour-science
(mean and 95th percentile), per case and mean.

The robustness sweep (sweep()) renders charts and photo crops over a grid of exposure,
illuminant and ISO with the held-out cameras and puts Edge4K next to the best classical
anchor in every cell.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rawpy
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from tqdm import tqdm

from edge4k.datasets.dng import write_dng
from edge4k.datasets.photos import load_split, read_srgb
from edge4k.datasets.sources import eval_set_files
from edge4k.datasets.unprocess import CFA_PATTERNS, RawCapture, draw_params, synthesize
from edge4k.errors import Edge4KError
from edge4k.files import atomic_output, sha256_file
from edge4k.kernels.colour import HELD_OUT_CAMERAS, srgb_decode, srgb_encode
from edge4k.kernels.postprocess import LOOKS, finish
from edge4k.kernels.raw import RawFrame, compand, normalised_gains, pack, pack_linear, phase_padding, prepare, read_raw
from edge4k.kernels.rawcolour import ColourOptions, metered_gain
from edge4k.models.blocks import mhc_demosaic_weight
from edge4k.models.cost import gmac_per_megapixel
from edge4k.optional import require
from edge4k.runtime.backends import Backend, EagerBackend
from edge4k.runtime.pipeline import TileOptions, process

EVAL_SEED = 2024
SETS = ("held-out", "kodak24", "mcmaster18")
EVAL_ISOS = (100.0, 800.0, 3200.0)
PROTOCOL = {   # cycled independently over the captures of a set
    "camera": tuple(sorted(HELD_OUT_CAMERAS)),
    "cfa": tuple(CFA_PATTERNS),
    "ev": (0.0, -1.0, 0.7, -2.0, 1.3),
    "illuminant": ("D65", 2856.0, "FL2", 5000.0, 3400.0),
}

CLASSICAL = ("libraw-ahd", "libraw-dcb", "libraw-ahd-fbdd", "libraw-ahd-median", "menon2007", "mhc")
METHODS = ("edge4k", *CLASSICAL, "demosaicnet")
LABELS = {"edge4k": "Edge4K", "libraw-ahd": "LibRaw AHD", "libraw-dcb": "LibRaw DCB",
          "libraw-ahd-fbdd": "LibRaw AHD + FBDD", "libraw-ahd-median": "LibRaw AHD + 3 median passes",
          "menon2007": "Menon 2007", "mhc": "Malvar-He-Cutler (Edge4K's base)", "demosaicnet": "demosaicnet"}


@dataclass
class Case:
    name: str              # e.g. "kodim01/iso800"
    photo: str
    capture: RawCapture    # with .params (the conditions) and .clean (noise-free sensor image)


def protocol_cases(images: dict[str, np.ndarray], seed: int = EVAL_SEED) -> list[Case]:
    """The fixed captures of a set (see PROTOCOL)."""
    cases = []
    for i, (name, img) in enumerate(images.items()):
        for j, iso in enumerate(EVAL_ISOS):
            k = i * len(EVAL_ISOS) + j
            rng = np.random.default_rng((seed, i, j))
            params = draw_params(rng, cameras="held-out", jitter=False, iso=iso,
                                 **{key: values[k % len(values)] for key, values in PROTOCOL.items()})
            cases.append(Case(f"{name}/iso{iso:g}", name, synthesize(img, params, rng)))
    return cases


# ---- the methods: each returns linear, white-balanced camera RGB (H, W, 3) in [0, 1] ---------

def clean_linear(capture: RawCapture, frame: RawFrame) -> np.ndarray:
    """The ground truth before finishing: the noise-free sensor image, white-balanced and clipped."""
    return np.minimum(capture.clean.astype(np.float64) * normalised_gains(frame.wb_gains)[[0, 1, 3]], 1.0)


# adjust_maximum_thr=0: LibRaw would otherwise take the frame's own data maximum as the white level
# whenever it lies above 75% of the file's (its default 0.75), brightening every such unclipped frame.
LIBRAW_OPTIONS = dict(use_camera_wb=True, use_auto_wb=False, no_auto_bright=True, bright=1.0, gamma=(1, 1),
                      output_bps=16, user_flip=0, adjust_maximum_thr=0.0)
LIBRAW_VARIANTS = {"libraw-ahd": dict(demosaic="AHD"), "libraw-dcb": dict(demosaic="DCB"),
                   "libraw-ahd-fbdd": dict(demosaic="AHD", fbdd_noise_reduction="Full"),
                   "libraw-ahd-median": dict(demosaic="AHD", median_filter_passes=3)}


def run_libraw(variant: str):
    def run(path, frame):
        v = dict(LIBRAW_VARIANTS[variant])
        opts = dict(LIBRAW_OPTIONS, output_color=rawpy.ColorSpace.raw, highlight_mode=rawpy.HighlightMode.Clip,
                    demosaic_algorithm=getattr(rawpy.DemosaicAlgorithm, v.pop("demosaic")))
        if "fbdd_noise_reduction" in v:
            opts["fbdd_noise_reduction"] = getattr(rawpy.FBDDNoiseReductionMode, v.pop("fbdd_noise_reduction"))
        opts.update(v)
        with rawpy.imread(str(path)) as raw:
            return raw.postprocess(**opts).astype(np.float64) / 65535.0
    return run


def cfa_image(frame: RawFrame) -> np.ndarray:
    """The frontend's linear, white-balanced planes put back on the frame's own mosaic (H, W)."""
    (top, _), (left, _) = phase_padding(frame.cfa)
    packed = pack_linear(frame)
    full = np.zeros((2 * packed.shape[1], 2 * packed.shape[2]))
    for c in range(4):
        full[c // 2::2, c % 2::2] = packed[c]
    return full[top:top + frame.height, left:left + frame.width]


def run_menon(path, frame):
    menon = require("colour_demosaicing", "the Menon 2007 baseline").demosaicing_CFA_Bayer_Menon2007
    return np.clip(menon(cfa_image(frame), pattern=frame.cfa), 0, 1)


def run_mhc(path, frame):
    (top, _), (left, _) = phase_padding(frame.cfa)
    x = torch.from_numpy(pack(frame))[None]
    out = F.pixel_shuffle(F.conv2d(x, mhc_demosaic_weight(), padding=1), 2)[0]
    out = out[:, top:top + frame.height, left:left + frame.width].clamp(0, 1) ** 2
    return out.permute(1, 2, 0).double().numpy()


def run_edge4k(model):
    """Edge4K on an eager model (native mode), or on a compiled build's Backend (its own tiling)."""
    if isinstance(model, Backend):
        backend, opts = model, TileOptions.from_manifest(model.manifest)
    else:
        backend, opts = EagerBackend(model), TileOptions(tile=None, overlap=0, native=True)

    def run(path, frame):
        out, _ = process(path, backend, backend.cfg, opts, look=None)
        return (out.clamp(0, 1) ** 2).permute(1, 2, 0).double().numpy()
    return run


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
        demosaicnet = require("demosaicnet", "the demosaicnet baseline")
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
    def run(path, frame):
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
        return srgb_decode(np.clip(y.astype(np.float64), 0, 1))
    return run


def make_runners(model, methods) -> tuple[dict, dict]:
    """{method: run(path, frame) -> linear camera RGB} and {method: why it is unavailable}."""
    runners, unavailable = {}, {}
    for m in methods:
        if m == "edge4k":
            if model is None:
                raise Edge4KError("the edge4k method needs a model")
            runners[m] = run_edge4k(model)
        elif m in LIBRAW_VARIANTS:
            runners[m] = run_libraw(m)
        elif m == "menon2007":
            runners[m] = run_menon
        elif m == "mhc":
            runners[m] = run_mhc
        elif m == "demosaicnet":
            try:
                runners[m] = run_demosaicnet_with(load_demosaicnet())
            except Exception as e:  # report the reason rather than a number
                unavailable[m] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        else:
            raise Edge4KError(f"unknown method '{m}'; valid methods: {', '.join(METHODS)}")
    return runners, unavailable


def finished(linear: np.ndarray, frame: RawFrame, exposure: float, look: str) -> np.ndarray:
    """Linear camera RGB (H, W, 3) -> display sRGB in the look, through the runtime's finishing."""
    x = torch.from_numpy(compand(np.clip(linear, 0, 1)).transpose(2, 0, 1).astype(np.float32))
    return finish(x, frame.srgb_from_cam, exposure, look).permute(1, 2, 0).double().numpy()


# ---- metrics ----------------------------------------------------------------------------------

def metrics(target: np.ndarray, out: np.ndarray) -> dict[str, float]:
    colour = require("colour", "CIEDE2000")
    skimage_metrics = require("skimage.metrics", "PSNR and SSIM")
    peak_signal_noise_ratio, structural_similarity = (skimage_metrics.peak_signal_noise_ratio,
                                                      skimage_metrics.structural_similarity)
    t, o = np.asarray(target, np.float64), np.clip(np.asarray(out, np.float64), 0, 1)
    if not np.all(np.isfinite(out)):
        return dict.fromkeys(("psnr", "ssim", "de2000_mean", "de2000_p95", "de2000_cast"), float("nan"))
    lab = lambda img: colour.XYZ_to_Lab(colour.sRGB_to_XYZ(img))  # noqa: E731
    lab_t, lab_o = lab(t), lab(o)
    de = colour.delta_E(lab_t, lab_o, method="CIE 2000")
    # The colour cast: CIEDE2000 between the mean colours (averaged in linear light), noise left out.
    mean_colour = lambda img: srgb_encode(srgb_decode(img).mean(axis=(0, 1)))  # noqa: E731
    cast = float(colour.delta_E(lab(mean_colour(t)), lab(mean_colour(o)), method="CIE 2000"))
    with np.errstate(divide="ignore"):   # identical images: PSNR is inf
        psnr = float(peak_signal_noise_ratio(t, o, data_range=1.0))
    win = min(7, *t.shape[:2]) // 2 * 2 + 1 if min(t.shape[:2]) < 7 else 7
    return {"psnr": psnr,
            "ssim": float(structural_similarity(t, o, channel_axis=2, data_range=1.0, win_size=win)),
            "de2000_mean": float(de.mean()), "de2000_p95": float(np.percentile(de, 95)), "de2000_cast": cast}


KEEP_CROP = 160   # side of the centre crop kept of each output for the crop sheets


def _centre(img: np.ndarray, size: int = KEEP_CROP, at: tuple[int, int] | None = None) -> np.ndarray:
    """The size x size window at (top, left), by default the centre one."""
    y, x = at or (max(img.shape[0] - size, 0) // 2, max(img.shape[1] - size, 0) // 2)
    return img[y:y + size, x:x + size].astype(np.float32)


def detailed_window(img: np.ndarray, size: int) -> tuple[int, int]:
    """(top, left) of the size x size window of an sRGB image (H, W, 3) with the most detail: the
    largest mean luminance gradient, over windows a quarter of a window apart. Text, foliage,
    noise in the shadows and the edges of highlights score high; sky and walls score low."""
    y = img.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])
    grad = np.zeros_like(y)
    grad[:-1, :-1] = np.abs(np.diff(y, axis=0))[:, :-1] + np.abs(np.diff(y, axis=1))[:-1]
    integral = np.pad(grad.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = max(y.shape[0] - size, 0), max(y.shape[1] - size, 0)
    step = max(1, size // 4)
    tops, lefts = np.arange(0, h + 1, step), np.arange(0, w + 1, step)
    t, l = np.meshgrid(tops, lefts, indexing="ij")
    b, r = np.minimum(t + size, y.shape[0]), np.minimum(l + size, y.shape[1])
    score = integral[b, r] - integral[t, r] - integral[b, l] + integral[t, l]
    i, j = np.unravel_index(np.argmax(score), score.shape)
    return int(tops[i]), int(lefts[j])


def _score_capture(capture: RawCapture, runners: dict, looks, tmp: Path, name: str, keep: dict | None):
    """Write the capture as a DNG, run every method, score each look. Returns {look: {method: metrics}}.
    keep: a dict that receives the centre crop of every finished output (and of the ground truth)."""
    path = write_dng(tmp / (name.replace("/", "_") + ".dng"), capture)
    frame = read_raw(path)
    exposure = prepare(frame, 64).exposure
    truth = clean_linear(capture, frame)
    outs = {m: run(path, frame) for m, run in runners.items()}
    scores = {}
    for look in looks:
        target = finished(truth, frame, exposure, look)
        scores[look] = {}
        for m, lin in outs.items():
            if lin.shape != truth.shape:
                raise RuntimeError(f"{m} returned {lin.shape}, expected {truth.shape}")
            img = finished(lin, frame, exposure, look)
            scores[look][m] = {k: round(v, 4) for k, v in metrics(target, img).items()}
            if keep is not None:
                keep[(name, look, m)] = _centre(img)
        if keep is not None:
            keep[(name, look, "__target__")] = _centre(target)
    return scores, {"exposure_gain": round(exposure, 4)}


def _mean(rows: list[dict], look: str, methods) -> dict:
    keys = ("psnr", "ssim", "de2000_mean", "de2000_p95", "de2000_cast")
    return {m: {k: round(float(np.mean([r["scores"][look][m][k] for r in rows])), 4) for k in keys} for m in methods}


def evaluate(model, images: dict[str, np.ndarray], *, methods=METHODS, looks=LOOKS, progress: bool = True,
             keep_outputs: bool = False) -> dict:
    """Score every method on every case of the protocol, in each look. Returns the report dict."""
    runners, unavailable = make_runners(model, methods)
    cases = protocol_cases(images)
    rows, outputs = [], ({} if keep_outputs else None)
    with tempfile.TemporaryDirectory(prefix="edge4k-eval-") as tmp:
        for case in tqdm(cases, desc="eval", unit="capture", disable=not progress, leave=False):
            scores, extra = _score_capture(case.capture, runners, looks, Path(tmp), case.name, outputs)
            p = case.capture.params
            rows.append({"case": case.name, "photo": case.photo, "size": list(case.capture.mosaic.shape[::-1]),
                         "conditions": {"camera": p.camera, "cfa": p.cfa, "iso": p.iso, "ev": p.ev,
                                        "illuminant": p.illuminant if p.cct is None else f"{p.cct:.0f} K",
                                        "bits": p.bits, "black_level": p.black_level},
                         **extra, "scores": scores})
    report = {"schema": "edge4k.eval/2", "eval_seed": EVAL_SEED, "isos": list(EVAL_ISOS),
              "protocol": {k: list(v) for k, v in PROTOCOL.items()}, "unavailable": unavailable,
              "libraw_options": {**LIBRAW_OPTIONS, "output_color": "raw", "highlight_mode": "Clip",
                                 "variants": LIBRAW_VARIANTS},
              "looks": list(looks), "cases": rows,
              "mean": {look: _mean(rows, look, runners) for look in looks}}
    for look in looks:
        classical = {m: v["psnr"] for m, v in report["mean"][look].items() if m in CLASSICAL}
        if classical:
            report.setdefault("best_classical", {})[look] = max(classical, key=classical.get)
    if keep_outputs:
        report["_outputs"] = outputs
    return report


def markdown(report: dict, title: str) -> str:
    rows = [f"### {title}", ""]
    for look in report["looks"]:
        best = report.get("best_classical", {}).get(look)
        rows += [f"**{look} look** ({len(report['cases'])} captures; best classical anchor: "
                 f"{LABELS.get(best, best)})", "",
                 "| method | PSNR (dB) | SSIM | CIEDE2000 mean | CIEDE2000 p95 |", "|---|---|---|---|---|"]
        for m, v in report["mean"][look].items():
            rows.append(f"| {LABELS.get(m, m)} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['de2000_mean']:.2f} | "
                        f"{v['de2000_p95']:.2f} |")
        for m, why in report["unavailable"].items():
            rows.append(f"| {LABELS.get(m, m)} | unavailable: {why} | | | |")
        rows.append("")
    look = report["looks"][0]
    methods = list(report["mean"][look])
    rows += [f"Per capture, {look} look, PSNR dB (CIEDE2000 mean):", "",
             "| capture | camera | CFA | EV | illuminant | " + " | ".join(LABELS.get(m, m) for m in methods) + " |",
             "|---|---|---|---|---|" + "---|" * len(methods)]
    for r in report["cases"]:
        c = r["conditions"]
        cells = [f"{r['scores'][look][m]['psnr']:.2f} ({r['scores'][look][m]['de2000_mean']:.2f})" for m in methods]
        rows.append(f"| {r['case']} | {c['camera']} | {c['cfa']} | {c['ev']:+.1f} | {c['illuminant']} | "
                    + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def crop_sheet(outputs: dict, cases: list[str], look: str, methods: list[str], path: Path, *,
               size: int = 128, scale: int = 2) -> None:
    """Side-by-side centre crops (ground truth, then each method), one row per case."""
    cols = [("ground truth", "__target__")] + [(LABELS.get(m, m), m) for m in methods]
    size = min([size] + [d for name in cases for d in outputs[(name, look, "__target__")].shape[:2]])
    head, cell = 18, size * scale
    sheet = Image.new("RGB", (cell * len(cols), (cell + head) * len(cases)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(cases):
        target = outputs[(name, look, "__target__")]
        y0, x0 = (target.shape[0] - size) // 2, (target.shape[1] - size) // 2
        for col, (label, m) in enumerate(cols):
            img = outputs[(name, look, m)]
            crop = (np.clip(img[y0:y0 + size, x0:x0 + size], 0, 1) * 255 + 0.5).astype(np.uint8)
            top = row * (cell + head)
            sheet.paste(Image.fromarray(crop).resize((cell, cell), Image.NEAREST), (col * cell, top + head))
            draw.text((col * cell + 4, top + 3), f"{label}  {name}"[:36], fill="black")
    with atomic_output(path) as tmp:
        sheet.save(tmp, format="PNG")


def write_report(report: dict, out_dir: str | os.PathLike, *, set_name: str, title: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"eval_{set_name}.json", "md": out_dir / f"eval_{set_name}.md"}
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    with atomic_output(paths["json"]) as tmp:
        tmp.write_text(json.dumps(public, indent=2) + "\n")
    with atomic_output(paths["md"]) as tmp:
        tmp.write_text(markdown(public, title))
    if "_outputs" in report:
        shown = [m for m in ("libraw-ahd", report.get("best_classical", {}).get(report["looks"][0]), "demosaicnet",
                             "edge4k") if m in report["mean"][report["looks"][0]]]
        shown = list(dict.fromkeys(shown))
        cases = [r["case"] for r in report["cases"] if r["case"].endswith(f"iso{max(EVAL_ISOS):g}")][:8]
        for look in report["looks"]:
            paths[f"png_{look}"] = out_dir / f"crops_{set_name}_{look}.png"
            crop_sheet(report["_outputs"], cases, look, shown, paths[f"png_{look}"])
    return paths


# ---- the evaluation sets ----------------------------------------------------------------------

DEFAULT_DATA = "data"


def load_set(set_name: str, data: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """held-out: the bundled held-out photos (calibration.photos). kodak24 / mcmaster18: the image
    files in DATA/eval/<set> (DATA: --data, else $EDGE4K_DATA, else ./data), checked against the
    data manifest's sha256 (datasets/sources.csv; datasets/DATA.md says how to get them)."""
    if set_name == "held-out":
        return load_split("held-out")
    if set_name not in SETS:
        raise Edge4KError(f"unknown evaluation set '{set_name}'; valid sets: {', '.join(SETS)}")
    root = Path(data or os.environ.get("EDGE4K_DATA") or DEFAULT_DATA) / "eval" / set_name
    files = sorted(p for p in root.glob("*") if p.suffix.lower() in (".png", ".tif", ".tiff", ".bmp", ".jpg"))
    if not files:
        raise Edge4KError(f"no {set_name} images in {root}; fetch them as datasets/DATA.md says, or point "
                          "--data (or EDGE4K_DATA) at the folder holding eval/{set_name}")
    expected = eval_set_files(set_name)
    if expected:
        wrong = [p.name for p in files if expected.get(p.name) not in (None, sha256_file(p))]
        if wrong or len(files) != len(expected):
            raise Edge4KError(f"{root} does not hold the {set_name} images of the data manifest "
                              f"({len(files)} files, {len(expected)} expected"
                              + (f"; sha256 differs for {', '.join(wrong[:3])}" if wrong else "") + ")")
    return {p.stem: read_srgb(p) for p in files}


# ---- one-step comparison: teacher at N steps, distilled student, directly trained model -------

def sharpness(target: np.ndarray, out: np.ndarray) -> float:
    """High-frequency energy ratio: mean squared Laplacian of the output's luma over the
    ground truth's. 1 is as sharp as the truth; below 1 is blurrier, above 1 is
    noisier or over-sharpened."""
    from scipy.ndimage import laplace
    luma = lambda im: np.asarray(im, np.float64) @ np.array([0.2126, 0.7152, 0.0722])  # noqa: E731
    return float(np.mean(laplace(luma(np.clip(out, 0, 1))) ** 2) / np.mean(laplace(luma(target)) ** 2))


def compare(models: dict[str, object], images: dict[str, np.ndarray], *, look: str = "natural",
            progress: bool = True, keep_outputs: bool = False) -> dict:
    """Every model on every case of the protocol (eager, native), in one look: quality,
    sharpness, GMAC per megapixel and wall-clock seconds per image."""
    seconds = {label: [] for label in models}
    timed = {label: _timed(run_edge4k(model), seconds[label]) for label, model in models.items()}
    rows, outputs = {label: [] for label in models}, {}
    with tempfile.TemporaryDirectory(prefix="edge4k-compare-") as tmp:
        for case in tqdm(protocol_cases(images), desc="compare", unit="capture", disable=not progress, leave=False):
            scores, _ = _score_capture(case.capture, timed, (look,), Path(tmp), case.name, outputs)
            target = outputs[(case.name, look, "__target__")]
            for label in models:
                rows[label].append({"case": case.name, **scores[look][label],
                                    "sharpness": round(sharpness(target, outputs[(case.name, look, label)]), 4),
                                    "seconds": round(seconds[label][-1], 4)})
    keys = ("psnr", "ssim", "de2000_mean", "de2000_p95", "sharpness", "seconds")
    report = {"schema": "edge4k.compare/2", "eval_seed": EVAL_SEED, "isos": list(EVAL_ISOS), "look": look,
              "models": {label: {**{k: round(float(np.mean([r[k] for r in rs])), 4) for k in keys},
                                 "gmac_per_mp": round(gmac_per_megapixel(models[label]), 2), "cases": rs}
                         for label, rs in rows.items()}}
    if keep_outputs:
        report["_outputs"] = outputs
    return report


def _timed(run, into: list):
    """run, appending each call's wall-clock seconds to ``into``."""
    def timed(path, frame):
        start = time.perf_counter()
        out = run(path, frame)
        into.append(time.perf_counter() - start)
        return out
    return timed


def compare_markdown(report: dict, title: str) -> str:
    rows = [f"### {title}", "", f"{report['look']} look.", "",
            "| model | PSNR (dB) | SSIM | CIEDE2000 mean | sharpness (HF ratio, 1 = truth) | GMAC/MP | s / image |",
            "|---|---|---|---|---|---|---|"]
    for label, v in report["models"].items():
        rows.append(f"| {label} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['de2000_mean']:.2f} | {v['sharpness']:.3f} | "
                    f"{v['gmac_per_mp']:.1f} | {v['seconds']:.3f} |")
    return "\n".join(rows) + "\n"


def write_compare(report: dict, out_dir: str | os.PathLike, *, set_name: str, title: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"compare_{set_name}.json", "md": out_dir / f"compare_{set_name}.md",
             "png": out_dir / f"crops_compare_{set_name}.png"}
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    with atomic_output(paths["json"]) as tmp:
        tmp.write_text(json.dumps(public, indent=2) + "\n")
    with atomic_output(paths["md"]) as tmp:
        tmp.write_text(compare_markdown(public, title))
    cases = [c["case"] for c in next(iter(report["models"].values()))["cases"]
             if c["case"].endswith(f"iso{max(EVAL_ISOS):g}")]
    crop_sheet(report["_outputs"], cases, report["look"], list(report["models"]), paths["png"])
    return paths


# ---- the robustness sweep ---------------------------------------------------------------------

SWEEP_GRID = {"ev": (-3.0, -1.5, 0.0, 1.0, 1.5), "iso": (50.0, 400.0, 3200.0, 12800.0),
              "illuminant": (2500.0, 4000.0, 6500.0, 9000.0)}
SWEEP_QUICK = {"ev": (0.0, 1.5), "iso": (100.0, 6400.0), "illuminant": (2856.0,)}
SWEEP_METHODS = ("edge4k", "libraw-ahd", "libraw-dcb", "libraw-ahd-fbdd", "menon2007", "mhc")
FLAT_CHARTS = ("black", "grey", "white")
# The flat-field criterion (cast within FLAT_DE2000_LIMIT) is judged on grey and white. A black
# field is reported beside it: its noise is clipped at the black level by every converter (LibRaw
# too), so its mean rises with ISO, and the natural look multiplies that by up to 16.
LIT_FLATS = ("grey", "white")
CHARTS = (*FLAT_CHARTS, "colours", "zone_plate", "siemens_star")
FLAT_DE2000_LIMIT = 2.0


def chart(name: str, size: int) -> np.ndarray:
    """A synthetic test chart, sRGB float (size, size, 3) in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if name in FLAT_CHARTS:
        return np.full((size, size, 3), {"black": 0.0, "grey": 0.5, "white": 1.0}[name])
    if name == "colours":        # six saturated fields: red, green, blue, cyan, magenta, yellow
        fields = np.array([[.9, .1, .1], [.1, .9, .1], [.1, .1, .9], [.1, .9, .9], [.9, .1, .9], [.9, .9, .1]])
        return fields[np.minimum((xx * 6 // size).astype(int), 5)]
    r2 = (yy - size / 2) ** 2 + (xx - size / 2) ** 2
    if name == "zone_plate":     # frequency rises to Nyquist at the edge
        g = 0.5 + 0.4 * np.cos(np.pi * r2 / size)
    elif name == "siemens_star":
        g = 0.5 + 0.4 * np.sign(np.sin(36 * np.arctan2(yy - size / 2, xx - size / 2)))
    else:
        raise ValueError(f"unknown chart {name!r}; valid charts: {', '.join(CHARTS)}")
    return np.repeat(g[..., None], 3, axis=2)


def sweep_items(size: int) -> dict[str, np.ndarray]:
    """The sweep's content: the charts and a centre crop of each held-out photo."""
    items = {name: chart(name, size) for name in CHARTS}
    for name, img in load_split("held-out").items():
        y, x = (img.shape[0] - size) // 2 // 2 * 2, (img.shape[1] - size) // 2 // 2 * 2
        items[f"photo:{name}"] = np.ascontiguousarray(img[y:y + size, x:x + size])
    return items


def sweep(model, *, grid: dict = SWEEP_GRID, size: int = 192, methods=SWEEP_METHODS, progress: bool = True,
          seed: int = EVAL_SEED) -> dict:
    """Edge4K next to the best classical anchor in every (exposure, ISO, illuminant) cell, over charts
    and photo crops rendered with the held-out cameras (cycled over the items). Both looks."""
    runners, _ = make_runners(model, methods)
    items, cameras = sweep_items(size), sorted(HELD_OUT_CAMERAS)
    cells = list(itertools.product(grid["ev"], grid["iso"], grid["illuminant"]))
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge4k-sweep-") as tmp, \
            tqdm(total=len(cells) * len(items), desc="sweep", unit="capture", disable=not progress) as bar:
        for c, (ev, iso, illuminant) in enumerate(cells):
            per_item = {}
            for k, (name, img) in enumerate(items.items()):
                rng = np.random.default_rng((seed, c, k))
                # Charts are exposed as reflectances (white lands on the white level at 0 EV, so it clips
                # above); photos as a camera meters them (mean luminance at mid-grey).
                params = draw_params(rng, cameras="held-out", camera=cameras[(c * len(items) + k) % len(cameras)],
                                     jitter=False, ev=ev, iso=iso, illuminant=illuminant,
                                     key="mean" if name.startswith("photo:") else "absolute")
                per_item[name], _ = _score_capture(synthesize(img, params, rng), runners, LOOKS, Path(tmp),
                                                   f"{c}_{k}", None)
                bar.update(1)
            rows.append(_sweep_cell(ev, iso, illuminant, per_item))
    deltas = [r[look]["delta_db"] for r in rows for look in LOOKS]
    casts = [r[look]["flat_cast_de2000_max"] for r in rows for look in LOOKS]
    black = [(r[look]["black_cast_de2000"]["edge4k"], min(v for m, v in r[look]["black_cast_de2000"].items()
                                                          if m in CLASSICAL)) for r in rows for look in LOOKS]
    return {"schema": "edge4k.sweep/1", "seed": seed, "size": size, "grid": {k: list(v) for k, v in grid.items()},
            "items": list(items), "cameras": cameras, "methods": list(runners), "cells": rows,
            "summary": {"worst_delta_db": round(float(min(deltas)), 4), "mean_delta_db": round(float(np.mean(deltas)), 4),
                        "cells_below_0.5db": int(sum(d < -0.5 for d in deltas)),
                        "worst_flat_cast_de2000": round(float(max(casts)), 4),
                        "worst_black_cast_de2000": round(float(max(b[0] for b in black)), 4),
                        "black_cast_above_best_classical": int(sum(e > c + 0.5 for e, c in black)),
                        "worst_grey_cast_de2000": round(float(max(r[look]["grey_cast_de2000"] for r in rows
                                                                  for look in LOOKS)), 4),
                        "white_cast_above_best_classical": int(sum(
                            r[look]["white_cast_de2000"] > max(FLAT_DE2000_LIMIT, r[look]["white_cast_best_classical"] + 0.5)
                            for r in rows for look in LOOKS)),
                        "flat_limit": FLAT_DE2000_LIMIT,
                        "non_finite": int(sum(r["non_finite"] for r in rows))}}


def _sweep_cell(ev, iso, illuminant, per_item: dict) -> dict:
    row = {"ev": ev, "iso": iso, "illuminant": illuminant,
           "non_finite": int(any(not np.isfinite(s["psnr"]) and s["psnr"] != float("inf")
                                 for scores in per_item.values() for look in LOOKS for s in scores[look].values()))}
    for look in LOOKS:
        # PSNR is infinite for an exact render (a flat black field): cap it so that means stay finite.
        mean = {m: float(np.mean([min(per_item[i][look][m]["psnr"], 60.0) for i in per_item]))
                for m in per_item[next(iter(per_item))][look]}
        classical = {m: v for m, v in mean.items() if m in CLASSICAL}
        best = max(classical, key=classical.get)
        row[look] = {"psnr": {m: round(v, 3) for m, v in mean.items()}, "best_classical": best,
                     "delta_db": round(mean["edge4k"] - classical[best], 3),
                     "flat_cast_de2000_max": round(max(per_item[f][look]["edge4k"]["de2000_cast"] for f in LIT_FLATS), 3),
                     "grey_cast_de2000": round(per_item["grey"][look]["edge4k"]["de2000_cast"], 3),
                     "white_cast_de2000": round(per_item["white"][look]["edge4k"]["de2000_cast"], 3),
                     "white_cast_best_classical": round(min(v["de2000_cast"] for m, v in per_item["white"][look].items()
                                                            if m in CLASSICAL), 3),
                     "black_cast_de2000": {m: round(v["de2000_cast"], 3) for m, v in per_item["black"][look].items()},
                     "flat_de2000_max": round(max(per_item[f][look]["edge4k"]["de2000_mean"] for f in FLAT_CHARTS), 3)}
    return row


def sweep_markdown(report: dict) -> str:
    s = report["summary"]
    rows = ["### Robustness sweep", "",
            f"{len(report['cells'])} cells (exposure x ISO x illuminant), {len(report['items'])} items each "
            f"({', '.join(report['items'])}), {len(report['cameras'])} held-out cameras, both looks. "
            f"Edge4K minus the best classical anchor: worst {s['worst_delta_db']:+.2f} dB, mean "
            f"{s['mean_delta_db']:+.2f} dB, {s['cells_below_0.5db']} cell-looks more than 0.5 dB below; worst "
            f"colour cast of a grey or white field (CIEDE2000 of the mean colour) {s['worst_flat_cast_de2000']:.2f} "
            f"(limit {s['flat_limit']}); black field: worst cast {s['worst_black_cast_de2000']:.2f}, more than 0.5 "
            f"above the best classical anchor's in {s['black_cast_above_best_classical']} cell-looks; non-finite "
            f"outputs: {s['non_finite']}. Flat fields are charts exposed as reflectances (white clips above 0 EV). "
            "A black field's noise is clipped at the black level by every converter, so its mean rises with ISO "
            "(and the natural look brightens it up to 16x); the per-pixel CIEDE2000 column includes the noise left "
            "after denoising.", "",
            "| EV | ISO | illuminant (K) | Edge4K neutral (dB) | best classical neutral | delta | Edge4K natural | "
            "delta natural | grey/white cast (neutral / natural) | black cast, Edge4K / best classical (natural) | "
            "flat per-pixel CIEDE2000 (neutral / natural) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["cells"]:
        n, t = r["neutral"], r["natural"]
        rows.append(f"| {r['ev']:+.1f} | {r['iso']:g} | {r['illuminant']:g} | {n['psnr']['edge4k']:.2f} | "
                    f"{n['psnr'][n['best_classical']]:.2f} ({LABELS.get(n['best_classical'])}) | {n['delta_db']:+.2f} | "
                    f"{t['psnr']['edge4k']:.2f} | {t['delta_db']:+.2f} | {n['flat_cast_de2000_max']:.2f} / "
                    f"{t['flat_cast_de2000_max']:.2f} | {t['black_cast_de2000']['edge4k']:.2f} / "
                    f"{min(v for m, v in t['black_cast_de2000'].items() if m in CLASSICAL):.2f} | "
                    f"{n['flat_de2000_max']:.2f} / {t['flat_de2000_max']:.2f} |")
    return "\n".join(rows) + "\n"


def sweep_heatmap(report: dict, path: Path) -> None:
    """(Edge4K - best classical) dB: exposure x ISO and exposure x illuminant (means over the other axis), per look."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    grid = report["grid"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), dpi=100)
    for row, look in enumerate(LOOKS):
        for col, axis in enumerate(("iso", "illuminant")):
            values = np.array([[np.mean([c[look]["delta_db"] for c in report["cells"] if c["ev"] == ev and c[axis] == a])
                                for a in grid[axis]] for ev in grid["ev"]])
            ax = axes[row, col]
            lim = max(1.0, float(np.abs(values).max()))
            im = ax.imshow(values, cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
            ax.set_xticks(range(len(grid[axis])), [f"{a:g}" for a in grid[axis]])
            ax.set_yticks(range(len(grid["ev"])), [f"{e:+.1f}" for e in grid["ev"]])
            ax.set_xlabel("ISO" if axis == "iso" else "illuminant (K)")
            ax.set_ylabel("exposure (EV)")
            ax.set_title(f"{look}: Edge4K - best classical (dB)")
            for (i, j), v in np.ndenumerate(values):
                ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=8)
            fig.colorbar(im, ax=ax)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_sweep(report: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "sweep.json", "md": out_dir / "sweep.md", "png": out_dir / "sweep.png"}
    with atomic_output(paths["json"]) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_output(paths["md"]) as tmp:
        tmp.write_text(sweep_markdown(report))
    sweep_heatmap(report, paths["png"])
    return paths


# ---- real camera RAWs: a gallery, LibRaw beside Edge4K ----------------------------------------

def gallery(model, paths, out_dir: str | os.PathLike, *, crop: int = 192, progress: bool = True) -> dict[str, Path]:
    """For each real RAW file: LibRaw (AHD) and Edge4K (tiled 512/32), both finished by the same code
    in both looks, as crops at 2x of the file's most detailed window (detailed_window() on LibRaw's
    neutral render) plus an Edge4K overview; one PNG sheet and a Markdown table.
    Real files have no ground truth: this is for eyes, not numbers (sensor orientation, no EXIF turn)."""
    backend, rows, tiles = EagerBackend(model), [], []
    for path in tqdm([Path(p) for p in paths], desc="gallery", unit="raw", disable=not progress):
        frame = ColourOptions().apply(read_raw(path))    # the white balance the render uses, for the table
        exposure = metered_gain(prepare(frame, backend.cfg.thumb_size).thumb, frame.srgb_from_cam)   # as `edge4k run`
        out, _ = process(frame, backend, backend.cfg, TileOptions(fit=True), look=None)
        renders = {"Edge4K": (out.clamp(0, 1) ** 2).permute(1, 2, 0).double().numpy(),
                   "LibRaw AHD": run_libraw("libraw-ahd")(path, frame)}
        at = detailed_window(finished(renders["LibRaw AHD"], frame, exposure, "neutral"), crop)
        row = []
        for look in LOOKS:
            for label, lin in renders.items():
                row.append((f"{label}, {look}", _centre(finished(lin, frame, exposure, look), crop, at)))
        full = finished(renders["Edge4K"], frame, exposure, "natural")
        tiles.append((path.name, row, full))
        rows.append({"file": path.name, "size": f"{frame.width}x{frame.height}", "cfa": frame.cfa,
                     "wb_gains": [round(float(g), 3) for g in frame.wb_gains], "exposure_gain": round(exposure, 3)})
    scale, head = 2, 16
    cell = crop * scale
    sheet = Image.new("RGB", (cell * 5, (cell + head) * len(tiles)), "white")
    draw = ImageDraw.Draw(sheet)
    to8 = lambda img: Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))  # noqa: E731
    for r, (name, row, full) in enumerate(tiles):
        top = r * (cell + head)
        overview = to8(full)
        overview.thumbnail((cell, cell))
        sheet.paste(overview, (0, top + head))
        draw.text((4, top + 2), f"{name} (Edge4K natural)"[:40], fill="black")
        for c, (label, img) in enumerate(row, start=1):
            sheet.paste(to8(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST),
                        (c * cell, top + head))
            draw.text((c * cell + 4, top + 2), label, fill="black")
    out_dir = Path(out_dir)
    paths_out = {"png": out_dir / "gallery.png", "md": out_dir / "gallery.md"}
    with atomic_output(paths_out["png"]) as tmp:
        sheet.save(tmp, format="PNG")
    md = ["### Real camera RAWs", "", "Crops at 2x of each file's most detailed window (largest mean luminance "
          "gradient); LibRaw AHD and Edge4K, both through Edge4K's finishing "
          "(the file's matrix and white balance; the natural look's metered exposure, as `edge4k run` renders it).", "",
          "| file | size | CFA | WB gains (R, G, B) | natural exposure gain | note |", "|---|---|---|---|---|---|"]
    md += [f"| {r['file']} | {r['size']} | {r['cfa']} | {r['wb_gains']} | {r['exposure_gain']} | "
           + ("unit white-balance gains (the file's, or none in the file): a raw sensor's green shows unless "
              "its data are already balanced" if r["wb_gains"] == [1.0, 1.0, 1.0] else "") + " |" for r in rows]
    with atomic_output(paths_out["md"]) as tmp:
        tmp.write_text("\n".join(md) + "\n")
    return paths_out


# ---- the README's quality tables, from what the eval commands wrote ------------------------------

PUBLIC_SETS = ("kodak24", "mcmaster18")


def with_anchors(report: dict, anchors: dict, source: str) -> dict:
    """report with the methods it lacks taken from anchors, an earlier report of the same set.

    The protocol is seeded, so both reports hold the same captures; the classical anchors and
    demosaicnet are deterministic, so their scores need not be recomputed for every new model (on
    this CPU that is over an hour per set). Refuses reports whose captures differ."""
    def captures(r):
        return [(c["case"], c["conditions"], c.get("exposure_gain")) for c in r["cases"]]
    if (report.get("eval_seed"), report.get("protocol")) != (anchors.get("eval_seed"), anchors.get("protocol")) \
            or captures(report) != captures(anchors):
        raise Edge4KError(f"{source} was evaluated on other captures (seed, protocol or cases differ); "
                          "its anchors cannot stand beside this model's scores")
    merged = json.loads(json.dumps(report))
    for look in merged["looks"]:
        extra = [m for m in anchors["mean"][look] if m not in merged["mean"][look]]
        for case, theirs in zip(merged["cases"], anchors["cases"]):
            case["scores"][look].update({m: theirs["scores"][look][m] for m in extra})
        means = {**anchors["mean"][look], **merged["mean"][look]}
        order = [*anchors["mean"][look], *(m for m in merged["mean"][look] if m not in anchors["mean"][look])]
        merged["mean"][look] = {m: means[m] for m in order}     # the anchors' table order
    return merged


def summary_tables(eval_dir: str | os.PathLike, builds: dict[str, str | os.PathLike] | None = None,
                   anchors: str | os.PathLike | None = None) -> str:
    """Markdown from eval_{kodak24,mcmaster18,held-out}.json in eval_dir: per look, every method's
    PSNR / CIEDE2000 mean per set and over all Kodak24 + McMaster18 captures pooled, the per-ISO
    means, and, for each {label: folder} in builds (`eval --artifacts` outputs), the compiled
    build's pooled numbers beside the eager model's. anchors: a folder of earlier reports of the
    same sets, whose methods fill those eval_dir's reports lack (with_anchors)."""
    eval_dir = Path(eval_dir)
    sets = {s: json.loads((eval_dir / f"eval_{s}.json").read_text()) for s in (*PUBLIC_SETS, "held-out")}
    if anchors is not None:
        for s, report in sets.items():
            path = Path(anchors) / f"eval_{s}.json"
            sets[s] = with_anchors(report, json.loads(path.read_text()), str(path))
    for s, report in sets.items():
        lacking = [m for m in ("edge4k", *CLASSICAL) for look in LOOKS if m not in report["mean"].get(look, {})]
        if lacking:
            raise Edge4KError(f"{eval_dir / f'eval_{s}.json'} has no scores for {', '.join(dict.fromkeys(lacking))}; "
                              "pass --anchors with a folder of full reports of the same captures")

    def cases(report_sets, look, method):
        return [c["scores"][look][method] for s in report_sets for c in s["cases"]]

    def pooled(report_sets, look, method, key="psnr"):
        return float(np.mean([v[key] for v in cases(report_sets, look, method)]))

    def iso_mean(report_sets, look, method, iso):
        return float(np.mean([c["scores"][look][method]["psnr"] for s in report_sets for c in s["cases"]
                              if c["case"].endswith(f"/iso{iso}")]))

    public = [sets[s] for s in PUBLIC_SETS]
    lines = []
    for look in LOOKS:
        methods = list(sets["kodak24"]["mean"][look])
        lines += ["", f"**{look} look**, PSNR dB / CIEDE2000 mean (Kodak24 + McMaster18: all "
                  f"{len(cases(public, look, 'edge4k'))} captures pooled)", "",
                  "| method | Kodak24 | McMaster18 | Kodak24 + McMaster18 | held-out |", "|---|---|---|---|---|"]
        for m in methods:
            cells = [f"{sets[s]['mean'][look][m]['psnr']:.2f} / {sets[s]['mean'][look][m]['de2000_mean']:.2f}"
                     for s in PUBLIC_SETS]
            cells.append(f"{pooled(public, look, m):.2f} / {pooled(public, look, m, 'de2000_mean'):.2f}")
            h = sets["held-out"]["mean"][look][m]
            cells.append(f"{h['psnr']:.2f} / {h['de2000_mean']:.2f}")
            name = f"**{LABELS.get(m, m)}**" if m == "edge4k" else LABELS.get(m, m)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        best = max(CLASSICAL, key=lambda m: pooled(public, look, m))
        below = [d for d in (e["psnr"] - a["psnr"] for e, a in zip(cases(public, look, "edge4k"),
                                                                   cases(public, look, "libraw-ahd")))]
        lines += ["", f"Pooled, {look}: Edge4K {pooled(public, look, 'edge4k') - pooled(public, look, 'libraw-ahd'):+.2f} dB "
                  f"over LibRaw AHD, {pooled(public, look, 'edge4k') - pooled(public, look, best):+.2f} dB over the best "
                  f"classical anchor ({LABELS[best]}); {sum(d < -0.5 for d in below)} captures more than 0.5 dB below "
                  f"LibRaw AHD (worst {min(below):+.2f} dB). By ISO: " + "; ".join(
                      f"{iso}: " + ", ".join(
                          f"{LABELS.get(m, m)} {iso_mean(public, look, m, iso):.2f}"
                          for m in ("edge4k", "libraw-ahd", "menon2007", "demosaicnet") if m in methods)
                      for iso in (100, 800, 3200)) + "."]
    for label, folder in (builds or {}).items():
        built = {s: json.loads((Path(folder) / f"eval_{s}.json").read_text()) for s in PUBLIC_SETS
                 if (Path(folder) / f"eval_{s}.json").is_file()}
        for s, report in built.items():
            # The same captures (the protocol is seeded), so LibRaw AHD's score of each is in the eager report.
            ahd = {c["case"]: c["scores"] for c in sets[s]["cases"]}
            for look in LOOKS:
                ours, eager = pooled([report], look, "edge4k"), pooled([sets[s]], look, "edge4k")
                isos = "; ".join(f"ISO {iso} {iso_mean([report], look, 'edge4k', iso):.2f} "
                                 f"({iso_mean([report], look, 'edge4k', iso) - iso_mean([sets[s]], look, 'edge4k', iso):+.2f})"
                                 for iso in (100, 800, 3200))
                under = [c["scores"][look]["edge4k"]["psnr"] - ahd[c["case"]][look]["libraw-ahd"]["psnr"]
                         for c in report["cases"] if c["case"] in ahd and "libraw-ahd" in ahd[c["case"]][look]]
                lines.append(f"- {label}, {s}, {look}: {ours:.2f} dB / CIEDE2000 "
                             f"{pooled([report], look, 'edge4k', 'de2000_mean'):.2f} "
                             f"(eager {eager:.2f}; {ours - eager:+.2f} dB); {isos}"
                             + (f"; {sum(d < -0.5 for d in under)} of {len(under)} captures more than 0.5 dB below "
                                f"LibRaw AHD" if under else ""))
    return "\n".join(lines).strip() + "\n"
