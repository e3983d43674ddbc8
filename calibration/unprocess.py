"""Synthetic RAW captures from sRGB images ("unprocessing").

Follows Brooks et al. 2019, "Unprocessing Images for Learned Raw Denoising"
(CVPR): invert the tone curve, gamma, colour correction and white balance of
an sRGB image, mosaic it and add sensor noise, giving a plausible Bayer RAW.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .colour import CAMERA_MATRICES, SRGB_FROM_XYZ, cam_from_srgb, srgb_decode

# 2x2 Bayer tiles as colour indices (0=R, 1=G, 2=B), row-major from (0, 0).
CFA_PATTERNS: dict[str, np.ndarray] = {
    "RGGB": np.array([[0, 1], [1, 2]], dtype=np.uint8),
    "BGGR": np.array([[2, 1], [1, 0]], dtype=np.uint8),
    "GRBG": np.array([[1, 0], [2, 1]], dtype=np.uint8),
    "GBRG": np.array([[1, 2], [0, 1]], dtype=np.uint8),
}

# Noise model (Brooks et al. sec. 3.2), in units of the normalised signal
# x in [0, 1]: variance = shot * x + read.  The paper samples log(shot)
# uniformly in [log 1e-4, log 0.012] and fits log(read) = 2.18 log(shot) + 1.20
# (+ N(0, 0.26), a jitter we drop so ISO alone fixes the noise).  We tie shot
# to ISO linearly, shot = SHOT_AT_ISO100 * ISO / 100, which maps ISO 100 ..
# 12800 onto the paper's range 1e-4 .. 0.0128.
SHOT_AT_ISO100 = 1e-4
READ_LOG_SLOPE, READ_LOG_OFFSET = 2.18, 1.20


def noise_levels(iso: float) -> tuple[float, float]:
    """(shot, read) parameters of the heteroscedastic noise model at ``iso``."""
    shot = SHOT_AT_ISO100 * iso / 100.0
    read = float(np.exp(READ_LOG_SLOPE * np.log(shot) + READ_LOG_OFFSET))
    return shot, read


@dataclass
class RawCapture:
    """A Bayer RAW frame plus the metadata a DNG needs.

    ``as_shot_neutral`` is the camera-space colour of a neutral (grey) object,
    i.e. ``1 / wb_gains`` with green = 1.  ``exposure_gain`` is the extra
    brightness gain that unprocessing divided out (Brooks' rgb_gain); a
    processor would multiply by ``wb_gains * exposure_gain`` to undo both.
    """

    mosaic: np.ndarray  # (H, W) uint16
    cfa: str = "RGGB"
    black_level: int = 0
    white_level: int = 65535
    xyz_to_cam: np.ndarray = field(default_factory=lambda: SRGB_FROM_XYZ.copy())
    as_shot_neutral: tuple[float, float, float] = (1.0, 1.0, 1.0)
    iso: float | None = None  # informational only; None = noise-free
    camera: str = "Edge4K synthetic"
    exposure_gain: float = 1.0

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


def inverse_smoothstep(x: np.ndarray) -> np.ndarray:
    """Invert Brooks' global tone curve, smoothstep(x) = 3x^2 - 2x^3."""
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Brooks' global tone curve (forward), for reprocessing."""
    x = np.clip(x, 0.0, 1.0)
    return 3.0 * x**2 - 2.0 * x**3


def _pick_camera(camera: str | None, rng: np.random.Generator) -> str:
    names = sorted(CAMERA_MATRICES)
    if camera is None:
        return names[int(rng.integers(len(names)))]
    if camera not in CAMERA_MATRICES:
        raise ValueError(f"unknown camera {camera!r}; expected one of {', '.join(names)}")
    return camera


def _safe_invert_gains(cam: np.ndarray, inv_gains: np.ndarray) -> np.ndarray:
    """Apply inverse WB gains (< 1) without losing highlights.

    Plainly scaling by gains < 1 would pull saturated whites below the sensor's
    clip point, so re-applying the gains could never clip them again the way a
    real camera does.  As in the paper, pixels whose mean brightness is above
    0.9 are blended smoothly towards gain 1 (quadratic ramp up to 1.0).
    """
    grey = cam.mean(axis=-1, keepdims=True)
    ramp = (np.maximum(grey - 0.9, 0.0) / 0.1) ** 2
    safe = np.maximum(ramp + (1.0 - ramp) * inv_gains, inv_gains)
    return cam * safe


def unprocess(
    srgb: np.ndarray,
    *,
    cfa: str = "RGGB",
    camera: str | None = None,
    iso: float | None = 100.0,
    rng: np.random.Generator,
    black_level: int = 512,
    white_level: int = 16383,
) -> RawCapture:
    """Turn an sRGB image (float, HxWx3, values in [0, 1]) into a RawCapture.

    ``camera`` names an entry of CAMERA_MATRICES (random if None).  ``iso``
    sets the noise level (see :func:`noise_levels`); None or <= 0 gives a
    noise-free capture.  All randomness (camera, gains, noise) comes from ``rng``.
    """
    img = np.asarray(srgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"expected a float image in [0, 1], got dtype {img.dtype}")
    if not np.all(np.isfinite(img)) or img.min(initial=0) < 0 or img.max(initial=0) > 1:
        raise ValueError("image values must be finite and within [0, 1]")
    _check_cfa(cfa)
    if not 0 <= black_level < white_level <= 65535:
        raise ValueError(
            f"need 0 <= black_level < white_level <= 65535, got {black_level}, {white_level}"
        )
    name = _pick_camera(camera, rng)
    xyz_to_cam = CAMERA_MATRICES[name]

    # 1. Tone and gamma: inverse smoothstep, then the exact sRGB decode.
    lin = srgb_decode(inverse_smoothstep(img.astype(np.float64)))
    # 2. Colour: linear sRGB -> (white-balanced) camera RGB.
    cam = lin @ cam_from_srgb(xyz_to_cam).T
    # 3. White balance and brightness, drawn as in the paper.  The normal draw
    #    is clipped so the brightness gain stays positive and moderate.
    exposure_gain = 1.0 / float(np.clip(rng.normal(0.8, 0.1), 0.5, 1.1))
    red_gain, blue_gain = rng.uniform(1.9, 2.4), rng.uniform(1.5, 1.9)
    inv_gains = np.array([1.0 / red_gain, 1.0, 1.0 / blue_gain]) / exposure_gain
    cam = np.clip(_safe_invert_gains(cam, inv_gains), 0.0, 1.0)
    # 4. Mosaic.
    raw = mosaic(cam, cfa)
    # 5. Noise: Gaussian approximation of Poisson shot + Gaussian read noise.
    if iso is not None and iso > 0:
        shot, read = noise_levels(float(iso))
        raw = raw + rng.normal(size=raw.shape) * np.sqrt(raw * shot + read)
    # 6. Scale into [black, white] and quantise; values may dip below black
    #    (as real read noise does) but never below 0 or above white.
    dn = np.rint(black_level + raw * (white_level - black_level))
    dn = np.clip(dn, 0, white_level).astype(np.uint16)

    return RawCapture(
        mosaic=dn,
        cfa=cfa,
        black_level=int(black_level),
        white_level=int(white_level),
        xyz_to_cam=xyz_to_cam.copy(),
        as_shot_neutral=(1.0 / red_gain, 1.0, 1.0 / blue_gain),
        iso=float(iso) if iso is not None and iso > 0 else None,
        camera=name,
        exposure_gain=exposure_gain,
    )


def reprocess(cam_wb: np.ndarray, *, srgb_from_cam: np.ndarray, exposure_gain: float) -> np.ndarray:
    """Invert :func:`unprocess` steps 1-3 for a demosaicked capture.

    ``cam_wb`` is white-balanced camera RGB (HxWx3, as the RAW frontend packs it:
    black-subtracted, normalised, WB gains applied).  Multiplying back the
    exposure gain, applying the camera->sRGB matrix, the sRGB encode and Brooks'
    smoothstep gives the source photo again (up to mosaic, noise and clipping).
    Knowing ``exposure_gain`` is an oracle: a real pipeline does not.
    """
    from .colour import srgb_encode

    lin = np.asarray(cam_wb, dtype=np.float64) * exposure_gain
    lin = np.clip(lin, 0.0, 1.0) @ np.asarray(srgb_from_cam, dtype=np.float64).T
    return smoothstep(srgb_encode(np.clip(lin, 0.0, 1.0)))
