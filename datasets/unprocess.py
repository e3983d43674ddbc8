"""Synthetic RAW captures from sRGB photographs ("unprocessing"), covering real capture.

After Brooks et al. 2019 ("Unprocessing Images for Learned Raw Denoising"), with the
capture conditions drawn from physics rather than independent uniforms:

1. Scene: the photo's inverse tone curve (smoothstep) and sRGB decode give linear sRGB.
2. Light: an illuminant (CIE daylight 4000-9000 K, Planckian 2500-4000 K for tungsten,
   or a CIE fluorescent FL1-FL12) lights the scene: Bradford adaptation D65 -> illuminant.
3. Camera: one of the real cameras' XYZ->camera matrices (kernels/cameras.json), with a
   small random perturbation so that no single matrix is memorised. The camera's neutral
   under the illuminant (AsShotNeutral) follows from the matrix, and so do the white-balance
   gains (real spread: R about 1.1-3.2, B about 1.1-3.6).
4. Exposure: the scene's mean luminance is put at mid-grey (0.18 of the sensor's white),
   then moved by EV in [-3, +1.5]; highlights clip per channel at the white level, before
   white balance, as sensors clip.
5. Mosaic in any of the four CFA phases; noise: shot + read (Brooks' log-linear read/shot
   relation, ISO 50-12800, sensors from full frame to phone), row noise (ELD, Wei et al.
   2020), quantisation at 10, 12 or 14 bits over a black level of 0-2048.

Every draw is recorded in CaptureParams (JSON-serialisable), and the capture keeps the
noise-free, sensor-clipped full-colour camera image, so the training and evaluation
targets follow exactly from the record (models.data / models.evaluate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from edge4k.kernels.colour import (
    D65_XY,
    FLUORESCENT_XY,
    LUMA,
    XYZ_FROM_SRGB,
    adaptation,
    camera_matrix,
    camera_names,
    camera_neutral,
    daylight_xy,
    inverse_smoothstep,
    planckian_xy,
    srgb_decode,
)

# 2x2 Bayer tiles as colour indices (0=R, 1=G, 2=B), row-major from (0, 0).
CFA_PATTERNS: dict[str, np.ndarray] = {
    "RGGB": np.array([[0, 1], [1, 2]], dtype=np.uint8),
    "BGGR": np.array([[2, 1], [1, 0]], dtype=np.uint8),
    "GRBG": np.array([[1, 0], [2, 1]], dtype=np.uint8),
    "GBRG": np.array([[1, 2], [0, 1]], dtype=np.uint8),
}

# The ranges drawn (documented in the README's data section and the coverage report).
EV_RANGE = (-3.0, 1.5)
ISO_RANGE = (50.0, 12800.0)
DAYLIGHT_K, TUNGSTEN_K = (4000.0, 9000.0), (2500.0, 4000.0)
ILLUMINANT_MIX = {"daylight": 0.45, "planckian": 0.35, "fluorescent": 0.20}
MID_GREY = 0.18
# Shot noise variance per unit signal at ISO 100 (signal normalised to the white level), i.e.
# 1 / full-well electrons: about 2e-5 for a full-frame sensor (50k e-), 2e-4 for a phone (5k e-).
SHOT_AT_ISO100 = (2e-5, 2e-4)
READ_LOG_SLOPE, READ_LOG_OFFSET, READ_LOG_SIGMA = 2.18, 1.20, 0.26   # Brooks et al., sec. 3.2
ROW_NOISE = (0.0, 0.3)            # row-noise sigma as a fraction of the read-noise sigma (ELD)
BLACK_LEVELS = {10: (0, 16, 64), 12: (0, 128, 256, 512), 14: (0, 512, 1024, 2048)}
BIT_DEPTHS = {10: 0.15, 12: 0.35, 14: 0.50}
MATRIX_JITTER = 0.02              # absolute sigma on each matrix entry, relative to the mean |entry|


@dataclass
class CaptureParams:
    """Every condition of one synthetic capture. Drawn by draw_params(), applied by synthesize()."""

    camera: str
    xyz_to_cam: list            # 3x3, the perturbed matrix the DNG carries
    illuminant: str             # "daylight", "planckian" or "FL1".."FL12"
    cct: float | None           # kelvin, for daylight and planckian
    illuminant_xy: tuple[float, float]
    ev: float                   # exposure in EV relative to the key below
    iso: float | None           # None: noise-free
    shot: float                 # noise variance = shot * signal + read (normalised units)
    read: float
    row: float                  # row-noise sigma (normalised units)
    bits: int
    black_level: int
    white_level: int
    cfa: str
    # "mean": the scene's mean luminance is put at mid-grey, then moved by ev (a camera's meter);
    # "absolute": scene values are reflectances, 1.0 lands on the white level at ev 0 (test charts).
    key: str = "mean"

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def as_shot_neutral(self) -> np.ndarray:
        return camera_neutral(np.asarray(self.xyz_to_cam), self.illuminant_xy)


@dataclass
class RawCapture:
    """A Bayer RAW frame plus the metadata a DNG needs (and, for synthetic captures, the record)."""

    mosaic: np.ndarray  # (H, W) uint16
    cfa: str = "RGGB"
    black_level: int = 0
    white_level: int = 65535
    xyz_to_cam: np.ndarray = field(default_factory=lambda: np.linalg.inv(XYZ_FROM_SRGB))
    as_shot_neutral: tuple[float, float, float] = (1.0, 1.0, 1.0)
    iso: float | None = None
    camera: str = "Edge4K synthetic"
    params: CaptureParams | None = None
    # Noise-free camera RGB (H, W, 3) before white balance, normalised to the white level and
    # clipped there: what a full-colour, noise-free sensor would have recorded.
    clean: np.ndarray | None = None

    @property
    def wb_gains(self) -> np.ndarray:
        """White-balance multipliers (R, G, B), green = 1."""
        return 1.0 / np.asarray(self.as_shot_neutral, dtype=np.float64)


def _check_cfa(cfa: str) -> np.ndarray:
    if cfa not in CFA_PATTERNS:
        raise ValueError(f"unknown cfa {cfa!r}; expected one of {', '.join(CFA_PATTERNS)}")
    return CFA_PATTERNS[cfa]


def mosaic(rgb: np.ndarray, cfa: str = "RGGB") -> np.ndarray:
    """Sample an (H, W, 3) image through a Bayer CFA into an (H, W) mosaic."""
    tile = _check_cfa(cfa)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    if h % 2 or w % 2 or h == 0 or w == 0:
        raise ValueError(f"image height and width must be even and non-zero, got {h}x{w}")
    index = np.tile(tile, (h // 2, w // 2))
    return np.take_along_axis(rgb, index[..., None].astype(np.intp), axis=2)[..., 0]


def noise_levels(iso: float, shot_at_iso100: float, rng: np.random.Generator | None = None) -> tuple[float, float]:
    """(shot, read) of the heteroscedastic model at ``iso``; rng adds Brooks' read-noise jitter."""
    shot = shot_at_iso100 * iso / 100.0
    log_read = READ_LOG_SLOPE * np.log(shot) + READ_LOG_OFFSET
    if rng is not None:
        log_read += rng.normal(0.0, READ_LOG_SIGMA)
    return float(shot), float(np.exp(log_read))


def _draw_illuminant(rng, illuminant) -> tuple[str, float | None, tuple[float, float]]:
    """illuminant: None (drawn), a kind ("daylight"/"planckian"/"fluorescent"), "FLn", "D65" or a CCT in K
    (daylight locus from 4000 K, Planckian below)."""
    if isinstance(illuminant, (int, float)):
        cct = float(illuminant)
        return ("daylight", cct, daylight_xy(cct)) if cct >= 4000 else ("planckian", cct, planckian_xy(cct))
    if illuminant == "D65":
        return "daylight", 6504.0, D65_XY
    if illuminant in FLUORESCENT_XY:
        return illuminant, None, FLUORESCENT_XY[illuminant]
    kind = illuminant
    if kind is None:
        kinds = list(ILLUMINANT_MIX)
        kind = kinds[int(rng.choice(len(kinds), p=list(ILLUMINANT_MIX.values())))]
    if kind == "fluorescent":
        name = sorted(FLUORESCENT_XY)[int(rng.integers(len(FLUORESCENT_XY)))]
        return name, None, FLUORESCENT_XY[name]
    if kind in ("daylight", "planckian"):
        lo, hi = DAYLIGHT_K if kind == "daylight" else TUNGSTEN_K
        cct = 1e6 / rng.uniform(1e6 / hi, 1e6 / lo)      # uniform in mired, as colour perception is
        return kind, float(cct), (daylight_xy if kind == "daylight" else planckian_xy)(cct)
    raise ValueError(f"unknown illuminant {illuminant!r}; give a kind (daylight, planckian, fluorescent), "
                     "D65, FL1..FL12 or a colour temperature in kelvin")


def draw_params(rng: np.random.Generator, *, cameras: str = "train", camera: str | None = None,
                cfa: str | None = None, iso: float | None | str = "random", ev: float | None = None,
                illuminant=None, bits: int | None = None, black_level: int | None = None,
                jitter: bool = True, key: str = "mean") -> CaptureParams:
    """Draw one capture's conditions; every keyword that is given is used as is.

    cameras: the camera split to draw from ("train", "held-out", "all"); iso: "random", a value,
    or None for a noise-free capture; jitter: perturb the camera matrix (training)."""
    names = camera_names(cameras)
    camera = camera or names[int(rng.integers(len(names)))]
    m = camera_matrix(camera)
    if jitter:
        m = m + rng.normal(0.0, MATRIX_JITTER * np.abs(m).mean(), size=(3, 3))
    kind, cct, xy = _draw_illuminant(rng, illuminant)
    if ev is None:   # half near a good exposure, half spread over the whole range
        ev = float(np.clip(rng.normal(-0.3, 0.6), *EV_RANGE)) if rng.random() < 0.5 else float(rng.uniform(*EV_RANGE))
    if iso == "random":
        iso = float(np.exp(rng.uniform(*np.log(ISO_RANGE))))
    shot_100 = float(np.exp(rng.uniform(*np.log(SHOT_AT_ISO100))))
    shot, read = noise_levels(iso, shot_100, rng) if iso else (0.0, 0.0)
    row = float(rng.uniform(*ROW_NOISE)) * np.sqrt(read)
    if bits is None:
        bits = int(rng.choice(list(BIT_DEPTHS), p=list(BIT_DEPTHS.values())))
    if black_level is None:
        black_level = int(rng.choice(BLACK_LEVELS[bits]))
    white_level = (1 << bits) - 1
    if not 0 <= black_level < white_level:
        raise ValueError(f"black level {black_level} must be below the {bits}-bit white level {white_level}")
    cfa = cfa or list(CFA_PATTERNS)[int(rng.integers(4))]
    _check_cfa(cfa)
    if key not in ("mean", "absolute"):
        raise ValueError(f"unknown exposure key {key!r}; expected mean or absolute")
    return CaptureParams(camera=camera, xyz_to_cam=np.round(m, 4).tolist(), illuminant=kind, cct=cct,
                         illuminant_xy=(float(xy[0]), float(xy[1])), ev=float(ev),
                         iso=float(iso) if iso else None, shot=shot, read=read, row=float(row), bits=bits,
                         black_level=black_level, white_level=white_level, cfa=cfa, key=key)


_LINEAR_FROM_8BIT = srgb_decode(inverse_smoothstep(np.arange(256) / 255.0))


def scene_linear(srgb: np.ndarray) -> np.ndarray:
    """Photo (sRGB: float in [0, 1], or uint8) -> linear sRGB scene: inverse tone curve, then
    the sRGB decode (for uint8 through a 256-entry table, the same values)."""
    img = np.asarray(srgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return _LINEAR_FROM_8BIT[img]
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"expected a float image in [0, 1] or uint8, got dtype {img.dtype}")
    if not np.all(np.isfinite(img)) or img.min(initial=0) < 0 or img.max(initial=0) > 1:
        raise ValueError("image values must be finite and within [0, 1]")
    return srgb_decode(inverse_smoothstep(img.astype(np.float64)))


def synthesize(srgb: np.ndarray, params: CaptureParams, rng: np.random.Generator) -> RawCapture:
    """Render the photo as a RAW capture under ``params`` (noise drawn from rng)."""
    lin = scene_linear(srgb)
    m = np.asarray(params.xyz_to_cam, dtype=np.float64)
    # Camera response to the lit scene, normalised so that a white surface's brightest channel is 1.
    to_cam = m @ adaptation(D65_XY, params.illuminant_xy) @ XYZ_FROM_SRGB
    white = to_cam.sum(axis=1)
    scale = 2.0 ** params.ev
    if params.key == "mean":
        scale *= MID_GREY / max(float((lin @ LUMA).mean()), 1e-4)
    clean = np.clip(lin @ (to_cam / white.max()).T * scale, 0.0, 1.0)         # sensor clip, per channel
    raw = mosaic(clean, params.cfa)
    if params.iso:
        raw = raw + rng.normal(size=raw.shape) * np.sqrt(np.maximum(raw, 0.0) * params.shot + params.read)
        raw = raw + rng.normal(0.0, params.row, size=(raw.shape[0], 1))
    span = params.white_level - params.black_level
    dn = np.clip(np.rint(params.black_level + raw * span), 0, params.white_level).astype(np.uint16)
    return RawCapture(mosaic=dn, cfa=params.cfa, black_level=params.black_level, white_level=params.white_level,
                      xyz_to_cam=m, as_shot_neutral=tuple(float(v) for v in params.as_shot_neutral),
                      iso=params.iso, camera=params.camera, params=params, clean=clean.astype(np.float32))


def unprocess(srgb: np.ndarray, *, rng: np.random.Generator, **conditions) -> RawCapture:
    """Draw the conditions (draw_params keywords fix any of them) and synthesize the capture."""
    return synthesize(srgb, draw_params(rng, **conditions), rng)
