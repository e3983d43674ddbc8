"""Colour decisions for a RAW frame, made before rendering and said out loud.

- Matrix (matrix_source), in this order: the file's own DNG ColorMatrix1/2 (interpolated for the
  as-shot white) and ForwardMatrix ("dng"); LibRaw's table ("libraw"); Edge4K's camera table by
  make and model ("camera-table", kernels/cameras.json); a 3x3 fitted to LibRaw's own
  rendering of the frame, camera space against linear sRGB ("libraw-fit"). Where none exists the
  frame is refused in one line: never a silent identity.
- White balance (wb_source): "camera" (as shot; a missing or invalid one falls back to "auto"
  with one warning), "auto" (the scene's grey pixels where they are strong evidence, else shades
  of grey over its distinct colours projected onto the camera's daylight/Planckian whites,
  nearest in log chromaticity),
  "daylight" (the camera's D65 neutral), a colour temperature with tint, or explicit multipliers.
- CFA sanity: the declared pattern's two green sites must agree better than the other diagonal.
- Finishing exposure: the natural look's highlight-aware metering (metered_gain), plus EV.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

from edge4k.errors import Edge4KWarning, RawInputError
from edge4k.kernels.colour import D65_XY, LUMA, CameraColour, kelvin_xy
from edge4k.kernels.postprocess import HIGHLIGHT_MODES
from edge4k.kernels.raw import CFA_PATTERNS, cell_offsets

WB_MODES = ("camera", "auto", "daylight")


class ColourWarning(Edge4KWarning):
    """A colour decision Edge4K made for the user (a fallback, a suspicious CFA): one line."""


def warn(message: str) -> None:
    warnings.warn(message, ColourWarning, stacklevel=3)


# ---- CFA sanity --------------------------------------------------------------------------------

def _green_disagreement(bayer: np.ndarray, black: float, white: float, sites) -> float:
    """Median relative difference of the two sites (row, col) of a 2x2 cell, over cells well
    above black and below white (a few thousand cells at most)."""
    (a0, a1), (b0, b1) = sites
    h, w = bayer.shape[0] // 2 * 2, bayer.shape[1] // 2 * 2
    step = max(1, int(np.sqrt((h // 2) * (w // 2) / 20000)))
    a = bayer[a0:h:2, a1:w:2][::step, ::step].astype(np.float64) - black
    b = bayer[b0:h:2, b1:w:2][::step, ::step].astype(np.float64) - black
    span = white - black
    ok = (a > 0.02 * span) & (b > 0.02 * span) & (a < 0.95 * span) & (b < 0.95 * span)
    if ok.sum() < 64:
        return float("nan")
    return float(np.median(np.abs(a[ok] - b[ok]) / (a[ok] + b[ok])))


# The declared green diagonal is suspicious when its two sites disagree this many times more than
# the other diagonal's, and by more than this relative difference.
CFA_RATIO, CFA_FLOOR = 4.0, 0.03


def cfa_suggestion(frame) -> list[str] | None:
    """None when the declared CFA's green diagonal looks like green; else the two patterns one
    pixel off it (a column, then a row), both with green on the other diagonal. Which of the two
    is right is a question of red against blue, which the mosaic's statistics do not settle (a
    swap of red and blue mirrors a white along the daylight/Planckian locus), so both are named."""
    g = [i for i, c in enumerate(frame.cfa) if c == "G"]
    o = [i for i in range(4) if i not in g]
    black, white = float(np.mean(frame.black_level)), frame.white_level
    declared = _green_disagreement(frame.bayer, black, white, [divmod(i, 2) for i in g])
    other = _green_disagreement(frame.bayer, black, white, [divmod(i, 2) for i in o])
    if not (declared > CFA_FLOOR and declared > CFA_RATIO * other):
        return None
    a, b, c, d = frame.cfa
    return [b + a + d + c, c + d + a + b]


def with_cfa(frame, cfa: str):
    """The frame read with another 2x2 pattern (--cfa): each packed channel keeps the black level
    of the site it now comes from."""
    cfa = str(cfa).upper()
    if cfa not in CFA_PATTERNS:
        raise RawInputError(f"unknown CFA {cfa!r}; Edge4K needs a 2x2 Bayer pattern: {', '.join(CFA_PATTERNS)}")
    site_black = dict(zip(cell_offsets(frame.cfa), frame.black_level))
    black = [site_black[site] for site in cell_offsets(cfa)]
    return dataclasses.replace(frame, cfa=cfa, black_level=np.array(black))


# ---- white balance -----------------------------------------------------------------------------

def _camera_image(frame, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(cells, ok): the frame at half size as (N, 3) camera RGB, black-subtracted and normalised
    to the white level (greens averaged), and the mask of cells with no channel near the clip."""
    h, w = frame.height, frame.width
    planes = [(frame.bayer[i:h:2, j:w:2][::step, ::step].astype(np.float64) - b) / (frame.white_level - b)
              for (i, j), b in zip(cell_offsets(frame.cfa), frame.black_level)]
    rgb = np.stack([planes[0], (planes[1] + planes[2]) / 2, planes[3]], axis=-1)
    ok = (rgb.max(axis=-1) < 0.95) & (rgb.min(axis=-1) > 0.002)
    return rgb, ok


def _grey_world(frame) -> np.ndarray:
    rgb, ok = _camera_image(frame, step=2)
    n = rgb[ok].mean(axis=0) if ok.sum() > 16 else rgb.reshape(-1, 3).mean(axis=0)
    return np.maximum(n, 1e-9) / max(n[1], 1e-9)


AUTO_CELLS = 256      # cells on the long side auto white balance reads (noise averages out)


def _small_image(frame) -> tuple[np.ndarray, np.ndarray]:
    """_camera_image() area-averaged to at most AUTO_CELLS cells on its long side; a cell is ok
    when every cell averaged into it was. A sensor can saturate below the file's white level (the
    Canon EOS D30 at 0.94 of it), so a channel also counts as clipped near the frame's own maximum
    of it, as LibRaw's data maximum does."""
    rgb, ok = _camera_image(frame, step=max(1, max(frame.height, frame.width) // 2 // (2 * AUTO_CELLS)))
    ok &= np.all(rgb < 0.98 * rgb.reshape(-1, 3).max(axis=0), axis=-1)
    f = max(1, int(np.ceil(max(rgb.shape[:2]) / AUTO_CELLS)))
    h, w = rgb.shape[0] // f * f, rgb.shape[1] // f * f
    rgb = rgb[:h, :w].reshape(h // f, f, w // f, f, 3).mean(axis=(1, 3))
    ok = ok[:h, :w].reshape(h // f, f, w // f, f).all(axis=(1, 3))
    return rgb, ok


def distinct_colour_neutral(frame, p: float = 4.0, bin_width: float = 0.1) -> np.ndarray:
    """Shades of grey (Finlayson & Trezzi 2004: the Minkowski p-norm of the colours) over the
    scene's distinct colours rather than its pixels: cells are grouped by log chromaticity (log R/G,
    log B/G, bins bin_width wide) and each group counts once, at its mean colour, so that a large
    area of one colour (foliage, sky, a wall) weighs no more than a small patch of any other (as
    Gershon, Jepson & Tsotsos 1988 average surfaces, not pixels). A colour seen in one cell only
    is no surface (a defective pixel, noise, a glint) and is left out: counted once like the rest,
    it could outweigh them. Cells with a channel clipped or near black are left out too (a
    clipped channel reads the white level whatever the light). p and bin_width were chosen on
    synthetic dominant-colour scenes (README, "Colour")."""
    rgb, ok = _small_image(frame)
    x = rgb[ok]
    if len(x) < 16:
        return _grey_world(frame)
    bins = np.floor(np.log(x[:, [0, 2]] / x[:, [1]]) / bin_width).astype(np.int64)
    group = np.unique(bins, axis=0, return_inverse=True)[1].ravel()
    count = np.bincount(group)
    means = np.stack([np.bincount(group, x[:, c]) / count for c in range(3)], axis=-1)[count > 1]
    if not len(means):
        return _grey_world(frame)
    n = (means ** p).mean(axis=0) ** (1.0 / p)
    return n / n[1]


# Colour temperatures auto white balance searches, uniform in mired, with tints within +-TINT_LIMIT.
AUTO_KELVIN = 1e6 / np.linspace(1e6 / 2000, 1e6 / 12000, 121)
AUTO_TINTS = np.linspace(-30, 30, 13)


def _whites(colour: CameraColour) -> tuple[np.ndarray, np.ndarray]:
    neutrals, labels = [], []
    for k in AUTO_KELVIN:
        for t in AUTO_TINTS:
            neutrals.append(colour.neutral(kelvin_xy(k, t)))
            labels.append((k, t))
    return np.array(neutrals), np.array(labels)


def angle_degrees(a, b) -> float:
    """The angle between two RGB vectors, degrees (the usual white-balance error)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1.0, 1.0))))


def statistical_neutral(frame) -> np.ndarray:
    """distinct_colour_neutral(), moved to the nearest white the camera can see (a colour
    temperature 2000-12000 K with a tint within +-30, through the camera's matrix) when its
    calibration is known, so that a scene of one dominant colour cannot pull it off every
    plausible light. Nearest is Euclidean in log chromaticity (log R/G, log B/G): a sum of absolute
    differences moves it along one channel only, the cheaper one, far from where it was (the
    QuickTake cat came out yellow, the EOS D30 blue; corpus/README.md measures both)."""
    n = distinct_colour_neutral(frame)
    if frame.camera_colour is None:
        return n
    neutrals, _ = _whites(frame.camera_colour)
    neutrals = neutrals[np.all(neutrals > 0, axis=1)]      # a matrix far from its calibration can go negative
    if not len(neutrals):
        return n
    best = np.argmin(((np.log(neutrals) - np.log(n)) ** 2).sum(axis=1))
    return neutrals[best] / neutrals[best][1]


# Grey pixels (grey_pixels(), grey_pixel_neutral()): a cell is grey when its local contrast in log
# space, against the mean of its 8 neighbours, is at least GREY_CONTRAST (above the noise of a cell)
# and the same in the three channels to within GREY_TOLERANCE of that contrast; every channel of it
# and its neighbours above GREY_DARK of white and unclipped. The evidence is strong when
# - there are enough: at least GREY_CELLS grey cells (their median then moves by under a degree at the
#   spreads real files show, 2-4 degrees) and GREY_SHARE of the usable cells (a surface, not a few edges);
# - they agree: their median angle from their own estimate is within GREY_AGREE degrees;
# - it agrees with the statistical estimate to within GREY_AGREE degrees, about that estimate's own
#   90th-percentile error on dominant-colour scenes (7.4, evaluation/auto_white.py): grey pixels
#   correct it by what it typically errs, no further.
GREY_CONTRAST, GREY_TOLERANCE, GREY_DARK = 0.05, 0.1, 0.01
GREY_CELLS, GREY_SHARE, GREY_AGREE = 64, 0.005, 8.0


def grey_pixels(frame) -> tuple[np.ndarray, int]:
    """(cells, usable): the grey cells of _small_image() as (N, 3) camera RGB (rule above), and how
    many cells could have been (unclipped and above GREY_DARK with their neighbours)."""
    rgb, ok = _small_image(frame)
    ok &= rgb.min(axis=-1) > GREY_DARK
    h, w = ok.shape
    logs = np.pad(np.log(np.maximum(rgb, GREY_DARK)), ((1, 1), (1, 1), (0, 0)), mode="edge")
    oks = np.pad(ok, 1)
    around, usable = np.zeros_like(rgb), ok.copy()
    for dy, dx in [(dy, dx) for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)]:
        around += logs[dy:dy + h, dx:dx + w] / 8
        usable &= oks[dy:dy + h, dx:dx + w]
    contrast = logs[1:h + 1, 1:w + 1] - around
    mean = contrast.mean(axis=-1)
    spread = np.linalg.norm(contrast - mean[..., None], axis=-1)
    grey = usable & (np.abs(mean) >= GREY_CONTRAST) & (spread <= GREY_TOLERANCE * np.abs(mean))
    return rgb[grey], int(usable.sum())


def grey_pixel_neutral(frame, reference) -> tuple[np.ndarray | None, dict]:
    """The white of the scene's grey pixels (Yang, Gao & Li 2015, "Efficient illuminant estimation
    for color constancy using grey pixels": a surface grey in the world has the same contrast
    against its neighbours in every channel of the log image, whatever the light), the median of
    their log chromaticities, where the evidence is strong against `reference` (the statistical
    estimate; rule above), else None; and what was seen (share, spread, angle from reference).
    The rule is needed: the shading of one coloured surface (leaves, a red wall in varying light)
    has equal contrasts too, and alone it can be a tight cluster; it then lies far from any
    statistical estimate of the light."""
    cells, usable = grey_pixels(frame)
    seen = {"grey_cells": len(cells), "share": len(cells) / max(usable, 1)}
    if len(cells) < 3:
        return None, seen
    chroma = np.log(cells[:, [0, 2]] / cells[:, [1]])
    mid = np.median(chroma, axis=0)
    n = np.exp([mid[0], 0.0, mid[1]])
    seen["spread"] = float(np.median([angle_degrees(c, n) for c in cells / cells[:, [1]]]))
    seen["from_reference"] = angle_degrees(n, reference)
    strong = (len(cells) >= GREY_CELLS and seen["share"] >= GREY_SHARE and seen["spread"] <= GREY_AGREE
              and seen["from_reference"] <= GREY_AGREE)
    return (n if strong else None), seen


def auto_neutral(frame) -> np.ndarray:
    """auto white balance: the scene's grey pixels where they are strong evidence
    (grey_pixel_neutral(): enough of them, agreeing with each other and with the statistical
    estimate to within its typical error), else statistical_neutral(). The grey-pixel white is not
    held to the camera's whites: it is a measurement of the light, and a camera's matrix can put a
    real light off that band (the QuickTakes' white surfaces, corpus/README.md)."""
    n = statistical_neutral(frame)
    grey, _ = grey_pixel_neutral(frame, n)
    return n if grey is None else grey


def _valid_gains(gains) -> bool:
    g = np.asarray(gains, dtype=np.float64)
    return g.shape == (3,) and bool(np.all(np.isfinite(g)) and np.all(g > 0))


def white_balance(frame, wb="camera", *, kelvin: float | None = None, tint: float = 0.0):
    """The frame with the chosen white balance: wb "camera", "auto", "daylight" or three R, G, B
    multipliers; kelvin (with tint) takes precedence over wb. Records wb_source; where the
    camera's calibration depends on the white (two DNG matrices, ForwardMatrix), the colour
    matrix follows the new white."""
    colour = frame.camera_colour
    if kelvin is not None or wb == "daylight":
        if colour is None:
            raise RawInputError(f"{'--wb-kelvin' if kelvin is not None else '--wb daylight'} needs the camera's "
                                f"XYZ->camera matrix, and this frame's colour is {frame.matrix_source}; "
                                "use --wb camera, auto or explicit multipliers")
        xy = kelvin_xy(float(kelvin), float(tint)) if kelvin is not None else D65_XY
        gains, source = 1.0 / colour.neutral(xy), (f"kelvin {kelvin:g} tint {tint:g}" if kelvin is not None
                                                    else "daylight")
    elif isinstance(wb, str) and wb == "camera":
        if frame.wb_source not in ("as-shot-missing",):
            return frame
        warn(f"{frame.exif.get('model') or 'this file'} has no valid as-shot white balance; using auto "
             "(pass --wb to choose another)")
        gains, source = 1.0 / auto_neutral(frame), "auto (no as-shot white)"
    elif isinstance(wb, str) and wb == "auto":
        gains, source = 1.0 / auto_neutral(frame), "auto"
    elif isinstance(wb, str):
        raise RawInputError(f"unknown white balance {wb!r}; use {', '.join(WB_MODES)}, R,G,B multipliers or a kelvin")
    else:
        gains = np.asarray(wb, dtype=np.float64)
        if not _valid_gains(gains):
            raise RawInputError("white-balance multipliers must be three positive numbers R,G,B, "
                                f"got {list(np.ravel(wb))}")
        source = "multipliers"
    gains = gains / gains[1]
    matrix = frame.srgb_from_cam
    if colour is not None and frame.matrix_source == "dng" and (len(colour.matrices) > 1 or colour.forward):
        matrix = colour.srgb_from_cam(colour.white_xy(1.0 / gains))
    return dataclasses.replace(frame, wb_gains=gains, srgb_from_cam=matrix, wb_source=source)


# ---- options -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ColourOptions:
    """What the user chose: white balance (wb: "camera", "auto", "daylight" or R, G, B
    multipliers; wb_kelvin and wb_tint instead), a CFA override, exposure in EV on top of either
    look, and the highlight mode ("clip" or "reconstruct")."""
    wb: str | tuple = "camera"
    wb_kelvin: float | None = None
    wb_tint: float = 0.0
    cfa: str | None = None
    exposure: float = 0.0
    highlights: str = "clip"

    def __post_init__(self):
        if self.highlights not in HIGHLIGHT_MODES:
            raise RawInputError(f"unknown highlight mode {self.highlights!r}; use {', '.join(HIGHLIGHT_MODES)}")
        if not np.isfinite(self.exposure) or abs(self.exposure) > 10:
            raise RawInputError(f"exposure must be within -10..+10 EV, got {self.exposure:g}")
        if self.wb_kelvin is not None and not 1667 <= self.wb_kelvin <= 25000:
            raise RawInputError(f"--wb-kelvin must be within 1667-25000 K, got {self.wb_kelvin:g}")
        if self.wb_tint and self.wb_kelvin is None:
            raise RawInputError("--wb-tint needs --wb-kelvin")
        if isinstance(self.wb, str):
            if self.wb not in WB_MODES:
                raise RawInputError(f"unknown white balance {self.wb!r}; use {', '.join(WB_MODES)}, R,G,B "
                                    "multipliers or a kelvin")
        else:
            if not _valid_gains(self.wb):
                raise RawInputError("white-balance multipliers must be three positive numbers R,G,B, "
                                    f"got {list(np.ravel(self.wb))}")
            object.__setattr__(self, "wb", tuple(float(x) for x in np.ravel(self.wb)))

    def apply(self, frame):
        """The frame as the user asked for it: CFA override (else a one-line warning when the
        declared CFA looks wrong), then the white balance."""
        if self.cfa:
            frame = with_cfa(frame, self.cfa)
        else:
            suggestion = cfa_suggestion(frame)
            if suggestion:
                warn(f"the declared CFA {frame.cfa} does not look right (its two green sites disagree far more "
                     f"than the other diagonal's); try --cfa {suggestion[0]}, or --cfa {suggestion[1]} if red and "
                     "blue then look swapped")
        return white_balance(frame, self.wb, kelvin=self.wb_kelvin, tint=self.wb_tint)

    def record(self) -> dict:
        return {"wb": self.wb if isinstance(self.wb, str) else list(self.wb), "wb_kelvin": self.wb_kelvin,
                "wb_tint": self.wb_tint, "cfa": self.cfa, "exposure_ev": self.exposure,
                "highlights": self.highlights}


# ---- metering ----------------------------------------------------------------------------------
# The natural look's metering (highlight-aware). Two rules, blended by the scene's key:
# - mean: the mean luminance to mid-grey (0.18), held back so that no more than 2% of the
#   thumbnail clips in any channel (the frontend's rule, which looks at luminance alone, right
#   for most pictures);
# - highlights: the scene's bright end (the 99th percentile of the thumbnail's luminance) to
#   HIGHLIGHT_TARGET of white (photographs of snow, sky or a white aircraft keep them near white).
# key = mean / 99th percentile (scale-free: near 1 when most of the frame sits at its bright end).
# At key <= KEY_LOW the mean rule, at key >= KEY_HIGH the highlight rule, geometric blend between;
# then held back so that no more than 0.1% of the thumbnail clips in any channel (a dark frame lit
# by a few lights or by saturated stage light is exposed for them: metering its mean to mid-grey
# blew a blue-lit concert, whose blue hardly counts in luminance, up 4 stops); never darker than
# the capture, at most 16x. KEY_LOW and KEY_HIGH were set from the key of
# ordinary photographs (scikit-image's samples: 0.21-0.55) and of the bright scenes of
# evaluation/bright_scenes.py (0.56-0.65); evaluation/colour_report.py measures both.
HIGHLIGHT_PERCENTILE, HIGHLIGHT_TARGET, MID_GREY = 99.0, 0.85, 0.18
KEY_LOW, KEY_HIGH = 0.45, 0.65
MEAN_CLIP_PERCENTILE, CLIP_PERCENTILE = 98.0, 99.9


def metered_gain(thumb: np.ndarray, srgb_from_cam: np.ndarray) -> float:
    """The natural look's exposure gain from the (4, t, t) companded thumbnail (rule above)."""
    lin = thumb.astype(np.float64) ** 2
    cam = np.stack([lin[0], (lin[1] + lin[2]) / 2, lin[3]], axis=-1)
    rgb = np.maximum(cam @ np.asarray(srgb_from_cam).T, 0.0)
    y, peak = np.minimum(rgb, 1.0) @ LUMA, rgb.max(axis=-1)
    mean, high = max(float(y.mean()), 1e-6), max(float(np.percentile(y, HIGHLIGHT_PERCENTILE)), 1e-6)
    by_mean = min(MID_GREY / mean, 1.0 / max(float(np.percentile(peak, MEAN_CLIP_PERCENTILE)), 1e-6))
    w = float(np.clip((mean / high - KEY_LOW) / (KEY_HIGH - KEY_LOW), 0.0, 1.0))
    gain = by_mean ** (1.0 - w) * (HIGHLIGHT_TARGET / high) ** w
    gain = min(gain, 1.0 / max(float(np.percentile(peak, CLIP_PERCENTILE)), 1e-6))
    return float(np.clip(gain, 1.0, 16.0))
