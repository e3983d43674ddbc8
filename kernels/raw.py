"""RAW frontend (the raw_preprocess stage): decode, levels, CFA, pack, WB, conditioning.

Host side reads any Bayer file LibRaw reads (through rawpy). The packed output is
4 x H/2 x W/2 in canonical channel order [R, Gr, Gb, B] whatever the sensor's
pattern: each 2x2 cell is gathered by colour, so BGGR/GRBG/GBRG need no cropping
(the four planes sit half a packed pixel apart, as they do for RGGB).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edge4k.calibration.colour import LUMA, srgb_from_cam
from edge4k.errors import Edge4KError
from edge4k.stderr import captured_native_stderr

PACKED_CHANNELS = ("R", "Gr", "Gb", "B")


@dataclass
class RawFrame:
    """What the frontend reads from a RAW file; everything later stages need."""

    bayer: np.ndarray          # (H, W) uint16, visible area
    cfa: str                   # pattern at the visible origin, e.g. "RGGB"
    black_level: np.ndarray    # (4,) per packed channel [R, Gr, Gb, B]
    white_level: float
    wb_gains: np.ndarray       # (3,) R, G, B multipliers with G = 1
    srgb_from_cam: np.ndarray  # (3, 3) white-balanced camera RGB -> linear sRGB

    @property
    def height(self) -> int:
        return int(self.bayer.shape[0])

    @property
    def width(self) -> int:
        return int(self.bayer.shape[1])

    def offsets(self) -> list[tuple[int, int]]:
        """Row/column offset inside the 2x2 cell of each packed channel."""
        cells = [(i, j) for i in range(2) for j in range(2)]
        r = next(c for c in cells if self.cfa[c[0] * 2 + c[1]] == "R")
        b = next(c for c in cells if self.cfa[c[0] * 2 + c[1]] == "B")
        return [r, (r[0], 1 - r[1]), (b[0], 1 - b[1]), b]

    @classmethod
    def from_capture(cls, capture) -> "RawFrame":
        """A frame straight from an in-memory synthetic RawCapture (training pairs),
        holding what read_raw() would read from the same capture written as a DNG."""
        return cls(bayer=np.asarray(capture.mosaic, dtype=np.uint16), cfa=capture.cfa,
                   black_level=np.full(4, float(capture.black_level)),
                   white_level=float(capture.white_level),
                   wb_gains=np.asarray(capture.wb_gains, dtype=np.float64),
                   srgb_from_cam=srgb_from_cam(capture.xyz_to_cam))

    def info(self) -> dict:
        return {
            "width": self.width, "height": self.height, "cfa": self.cfa,
            "black_level": [float(x) for x in self.black_level], "white_level": float(self.white_level),
            "wb_gains": [round(float(x), 6) for x in self.wb_gains],
            "srgb_from_cam": np.round(self.srgb_from_cam, 6).tolist(),
        }


def read_raw(path: str | os.PathLike) -> RawFrame:
    """Decode a Bayer RAW file; refuse anything that is not a 2x2 Bayer mosaic."""
    import rawpy  # imported here so `edge4k --help` stays fast

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise Edge4KError(f"input not found: {path}")
    # LibRaw prints notes such as "Unexpected end of file" itself: fold them into the error.
    with captured_native_stderr() as messages:
        try:
            with rawpy.imread(path) as raw:
                return _frame_from_libraw(raw, path)
        except rawpy.LibRawError as e:
            said = messages().replace(path + ": ", "").strip().replace("\n", "; ")
            raise Edge4KError(f"cannot read RAW file {path}: {type(e).__name__}"
                              + (f" ({said})" if said else "")) from None


def _frame_from_libraw(raw, path: str) -> RawFrame:
    desc = raw.color_desc.decode(errors="replace")
    pattern = raw.raw_pattern
    if raw.raw_type != raw.raw_type.Flat or pattern is None or raw.num_colors < 3:
        kind = "monochrome" if raw.num_colors == 1 else f"non-mosaic ({raw.raw_type.name}, e.g. Foveon or linear)"
        raise Edge4KError(f"{path}: {kind} sensor data; Edge4K needs a 2x2 Bayer CFA")
    if pattern.shape != (2, 2):
        kind = {(6, 6): "X-Trans", (4, 4): "Quad-Bayer"}.get(pattern.shape, "non-Bayer")
        raise Edge4KError(f"{path}: {kind} CFA ({pattern.shape[0]}x{pattern.shape[1]} pattern); "
                          "Edge4K needs a 2x2 Bayer CFA (RGGB, BGGR, GRBG or GBRG)")
    colours = raw.raw_colors_visible[:2, :2]
    cfa = "".join(desc[c] for c in colours.flatten())
    if sorted(cfa) != sorted("RGGB"):
        # LibRaw reads a 4x4 Quad-Bayer tile as a 2x2 one with no blue site.
        raise Edge4KError(f"{path}: CFA reads as {cfa!r}, not a 2x2 Bayer cell (a Quad-Bayer or other "
                          "non-Bayer sensor?); Edge4K needs RGGB, BGGR, GRBG or GBRG")
    bayer = np.array(raw.raw_image_visible, dtype=np.uint16, copy=True)
    if bayer.shape[0] % 2 or bayer.shape[1] % 2:
        raise Edge4KError(f"{path}: odd frame size {bayer.shape[1]}x{bayer.shape[0]}; "
                          "a Bayer frame must have even width and height")
    frame = RawFrame(bayer=bayer, cfa=cfa, black_level=np.zeros(4),
                     white_level=float(raw.white_level), wb_gains=_wb_gains(raw),
                     srgb_from_cam=_srgb_from_cam(raw))
    blacks = np.asarray(raw.black_level_per_channel, dtype=np.float64)
    frame.black_level = np.array([blacks[colours[i, j]] for i, j in frame.offsets()])
    if np.any(frame.white_level <= frame.black_level):
        raise Edge4KError(f"{path}: white level {frame.white_level} is not above black level {frame.black_level.max()}")
    return frame


def _wb_gains(raw) -> np.ndarray:
    for wb in (raw.camera_whitebalance, raw.daylight_whitebalance):
        wb = np.asarray(wb[:3], dtype=np.float64)
        if np.all(wb > 0):
            return wb / wb[1]
    return np.ones(3)


def _srgb_from_cam(raw) -> np.ndarray:
    """LibRaw's rgb_cam (built from the DNG ColorMatrix or its own camera table) when
    set; else derived from its XYZ->camera matrix; else the identity (sRGB primaries)."""
    rgb_cam = np.asarray(raw.color_matrix, dtype=np.float64)[:, :3]
    if np.abs(rgb_cam).sum() > 0:
        return rgb_cam
    xyz_to_cam = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3]
    return srgb_from_cam(xyz_to_cam) if np.abs(xyz_to_cam).sum() > 0 else np.eye(3)


# Every frame is reflect-padded so that it is packed in RGGB phase with at least one whole
# cell of context on each side (what the in-graph 5x5 demosaic needs at the frame border):
# 2 + dy rows before and 4 - dy after, where dy is the red site's row in the 2x2 cell (same for
# columns). The padded frame is H + 6 by W + 6 whatever the CFA, so one compiled shape fits all
# four phases; finishing crops the frame back out. Reflection keeps every site's colour.
PHASE_PAD = 6


def phase_padding(cfa: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) mosaic padding that puts the frame in RGGB phase."""
    r = cfa.index("R")
    dy, dx = r // 2, r % 2
    return (2 + dy, PHASE_PAD - 2 - dy), (2 + dx, PHASE_PAD - 2 - dx)


def normalised_gains(wb_gains) -> np.ndarray:
    """[R, G, G, B] white-balance gains scaled so the smallest is 1 (LibRaw's convention: after
    them, a pixel clipped at the white level in any channel is clipped white, not tinted)."""
    g = np.asarray(wb_gains, dtype=np.float64)
    g = g / g.min()
    return np.array([g[0], g[1], g[1], g[2]])


def pack_linear(frame: RawFrame) -> np.ndarray:
    """Bayer (H, W) uint16 -> (4, (H+6)/2, (W+6)/2) float32 in canonical [R, Gr, Gb, B] order and
    RGGB phase: black-subtracted, normalised by the white level, white-balanced, clipped to [0, 1]."""
    (top, bottom), (left, right) = phase_padding(frame.cfa)
    mosaic = np.pad(frame.bayer, ((top, bottom), (left, right)), mode="reflect")
    # After padding the red site is at (0, 0): channel c sits at (c // 2, c % 2) of each cell.
    gains = normalised_gains(frame.wb_gains)
    planes = []
    for c in range(4):
        black = frame.black_level[c]
        plane = (mosaic[c // 2::2, c % 2::2].astype(np.float32) - black) * np.float32(
            gains[c] / (frame.white_level - black))
        planes.append(np.clip(plane, 0.0, 1.0))
    return np.stack(planes).astype(np.float32, copy=False)


def compand(linear):
    """The network's working space: square root (gives dark tones int8 resolution). Works on
    numpy arrays and torch tensors."""
    return linear ** 0.5


def expand(companded):
    """Inverse of compand(): back to linear light."""
    return companded * companded


def pack(frame: RawFrame) -> np.ndarray:
    """The encoder's input: pack_linear(), companded."""
    return compand(pack_linear(frame))


def thumbnail(packed: np.ndarray, size: int) -> np.ndarray:
    """Area-averaged (4, size, size) thumbnail of the whole packed frame (global branch input)."""
    t = torch.from_numpy(np.ascontiguousarray(packed))[None]
    return F.adaptive_avg_pool2d(t, (size, size))[0].numpy()


NOISE_BINS, NOISE_BLOCK, NOISE_QUANTILE = 8, 8, 0.2
# The 20% quantile of a variance estimated from 64 normal samples, over the true variance
# (chi-square with 63 degrees of freedom: scipy.stats.chi2.ppf(0.2, 63) / 63).
_NOISE_QUANTILE_BIAS = 0.8478


def noise_estimate(packed: np.ndarray) -> tuple[float, float]:
    """(shot, read): the noise variance shot * level + read of the packed frame, measured on it.

    The two green sites of a cell see nearly the same light, so d = (Gr - Gb) / sqrt(2) is
    mostly noise. Its variance in 8x8-cell blocks is taken in brightness bins at the 20%
    quantile (the flattest blocks: texture only adds variance), unbiased, and fitted by least
    squares to a line in brightness."""
    gr, gb = expand(packed[1].astype(np.float64)), expand(packed[2].astype(np.float64))   # linear light
    n = NOISE_BLOCK
    h, w = gr.shape[0] // n * n, gr.shape[1] // n * n
    blocks = lambda a: a[:h, :w].reshape(h // n, n, w // n, n).transpose(0, 2, 1, 3).reshape(-1, n * n)  # noqa: E731
    diff, level = blocks((gr - gb) / np.sqrt(2)), blocks((gr + gb) / 2).mean(axis=1)
    var = diff.var(axis=1, ddof=1)
    keep = (level > 1e-3) & (level < 0.85)          # away from the clip at 0 and at the white level
    level, var = level[keep], var[keep]
    if level.size < 4 * NOISE_BINS:
        return 0.0, 0.0
    order = np.argsort(level, kind="stable")
    means, variances = [], []
    for chunk in np.array_split(order, NOISE_BINS):
        means.append(level[chunk].mean())
        variances.append(np.quantile(var[chunk], NOISE_QUANTILE) / _NOISE_QUANTILE_BIAS)
    shot, read = np.polyfit(np.array(means), np.array(variances), 1)
    return float(max(shot, 0.0)), float(max(read, 0.0))


def exposure_gain(thumb: np.ndarray, srgb_from_cam: np.ndarray) -> float:
    """The natural look's automatic exposure: mean luminance to mid-grey (0.18), held back so
    that no more than 2% of the thumbnail clips, never darker than the capture, at most 16x."""
    lin = expand(thumb.astype(np.float64))
    cam = np.stack([lin[0], (lin[1] + lin[2]) / 2, lin[3]], axis=-1)
    y = np.clip(cam @ np.asarray(srgb_from_cam).T, 0.0, 1.0) @ LUMA
    gain = min(0.18 / max(float(y.mean()), 1e-6), 1.0 / max(float(np.percentile(y, 98)), 1e-6))
    return float(np.clip(gain, 1.0, 16.0))


META = ("log_shot", "log_read", "log_exposure", "log_gain_r", "log_gain_b")
# Centre and scale of each log, so that the vector stays near [-2, 2] over real captures (shot
# 1e-6..1e-2, read 1e-9..1e-4, exposure 1..16, gains 1..4): int8 builds quantise it well.
META_CENTRE = np.array([-9.0, -14.0, 1.0, 0.7, 0.7], dtype=np.float32)
META_SCALE = np.array([3.0, 4.0, 1.0, 0.5, 0.5], dtype=np.float32)
META_LIMIT = 3.0   # and clipped there, so that no capture conditions the network far outside training


def meta_vector(frame: RawFrame, packed: np.ndarray, exposure: float) -> np.ndarray:
    """What the global branch is told about the capture besides the thumbnail: the measured
    noise, the natural look's exposure gain and the white-balance gains (normalised logs)."""
    shot, read = noise_estimate(packed)
    gains = normalised_gains(frame.wb_gains)
    logs = np.log(np.array([shot + 1e-6, read + 1e-9, exposure, gains[0], gains[3]], dtype=np.float64))
    return np.clip((logs - META_CENTRE) / META_SCALE, -META_LIMIT, META_LIMIT).astype(np.float32)


@dataclass
class Prepared:
    """The raw_preprocess stage's output for one frame."""
    packed: np.ndarray      # (4, (H+6)/2, (W+6)/2) companded, RGGB phase
    thumb: np.ndarray       # (4, t, t)
    meta: np.ndarray        # (len(META),)
    exposure: float         # natural look gain
    crop: tuple[int, int]   # (top, left): where the frame sits in the padded output


def prepare(frame: RawFrame, thumb_size: int) -> Prepared:
    packed = pack(frame)
    thumb = thumbnail(packed, thumb_size)
    exposure = exposure_gain(thumb, frame.srgb_from_cam)
    (top, _), (left, _) = phase_padding(frame.cfa)
    return Prepared(packed, thumb, meta_vector(frame, packed, exposure), exposure, (top, left))


BAYER_SCHEMA = "edge4k.bayer/1"


def write_bayer(frame: RawFrame, json_path: str | os.PathLike, *, source: str | os.PathLike | None = None) -> Path:
    """Hand a decoded frame to the native runner: the Bayer mosaic as a plain
    little-endian uint16 buffer (`<name>.u16`) and a JSON sidecar with what pack()
    needs (size, CFA, levels, WB gains, colour matrix). Both written atomically."""
    from edge4k.files import atomic_output, sha256_file

    json_path = Path(json_path)
    data = json_path.with_suffix(".u16")
    with atomic_output(data) as tmp:
        frame.bayer.astype("<u2").tofile(tmp)
    sidecar = {"schema": BAYER_SCHEMA, "data": data.name, "width": frame.width, "height": frame.height,
               "cfa": frame.cfa, "black_level": [float(x) for x in frame.black_level],
               "white_level": float(frame.white_level), "wb_gains": [float(x) for x in frame.wb_gains],
               "srgb_from_cam": [[float(x) for x in row] for row in frame.srgb_from_cam]}
    if source is not None:
        sidecar["source"] = {"path": os.fspath(source), "sha256": sha256_file(source)}
    with atomic_output(json_path) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
    return json_path
