"""RAW frontend (the raw_preprocess stage): decode, levels, CFA, pack, WB, conditioning.

Host side reads any Bayer file LibRaw reads (through rawpy). The packed output is
4 x H/2 x W/2 in canonical channel order [R, Gr, Gb, B] whatever the sensor's
pattern: each 2x2 cell is gathered by colour, so BGGR/GRBG/GBRG need no cropping
(the four planes sit half a packed pixel apart, as they do for RGGB).
"""
from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rawpy
import tifffile
import torch
import torch.nn.functional as F
from PIL.ExifTags import Base

from edge4k.errors import Edge4KWarning, RawInputError
from edge4k.files import atomic_output, sha256_file
from edge4k.kernels.colour import D65_XY, DNG_ILLUMINANT_K, LUMA, CameraColour, camera_table, srgb_from_cam
from edge4k.stderr import captured_native_stderr

PACKED_CHANNELS = ("R", "Gr", "Gb", "B")
CFA_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
# Capture facts a frame may carry into its output image's EXIF (RawFrame.exif): camera make and
# model, exposure time in seconds, ISO, capture time as EXIF writes it ("YYYY:MM:DD HH:MM:SS").
EXIF_KEYS = ("make", "model", "exposure_time", "iso", "datetime")
# LibRaw's flip (sizes.flip; bits: 4 transpose, 2 flip rows, 1 flip columns) -> EXIF Orientation.
# LibRaw reads EXIF o as flip "50132467"[o & 7]; this is its inverse.
EXIF_FROM_LIBRAW_FLIP = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
# Pixel width over height that a frame may declare (RawFrame.pixel_aspect). LibRaw's non-square
# pixels are within it (the Kodak DC120's 1.53; 0.5 and 2 for some Foveon frames).
PIXEL_ASPECT_RANGE = (0.25, 4.0)


def cell_offsets(cfa: str) -> list[tuple[int, int]]:
    """Row/column offset inside the 2x2 cell of each packed channel [R, Gr, Gb, B]."""
    cells = [(i, j) for i in range(2) for j in range(2)]
    r = next(c for c in cells if cfa[c[0] * 2 + c[1]] == "R")
    b = next(c for c in cells if cfa[c[0] * 2 + c[1]] == "B")
    return [r, (r[0], 1 - r[1]), (b[0], 1 - b[1]), b]


@dataclass
class RawFrame:
    """One Bayer frame and everything later stages need: what read_raw() decodes from a RAW
    file, or what a camera app builds from its own in-memory mosaic.

    RawFrame(bayer=mosaic, cfa="RGGB", black_level=64, white_level=1023, wb_gains=(2.0, 1.0, 1.6),
             srgb_from_cam=matrix, orientation=6, exif={"make": "Acme", "iso": 400})

    bayer: (H, W) unsigned integers (uint16, or any integer array with values in 0..65535), H and W
    even; cfa: the 2x2 pattern at the top-left pixel; black_level: one number or four, per packed
    channel [R, Gr, Gb, B]; white_level: above every black level; wb_gains: R, G, B multipliers
    (only their ratios matter); srgb_from_cam: 3x3, white-balanced camera RGB -> linear sRGB;
    orientation: EXIF Orientation 1..8 (how to turn the sensor image upright); exif: any of
    EXIF_KEYS; matrix_source: where srgb_from_cam came from (read_raw: "dng", "libraw",
    "camera-table" or "libraw-fit"; default "given", the caller's); wb_source: where wb_gains came
    from ("as-shot", "as-shot-missing" when the file has no valid one, or the white balance
    chosen later); camera_colour: the camera's calibration (calibration.colour.CameraColour), which
    "daylight" and kelvin white balance need; pixel_aspect: a sensor pixel's width over its height
    (LibRaw's sizes.pixel_aspect, 0.25..4; finishing stretches the image to square pixels).
    Anything inconsistent raises RawInputError in one line. RawFrame.from_buffer() takes a flat
    buffer plus its width and height instead of a 2-D array."""

    bayer: np.ndarray          # (H, W) uint16, visible area
    cfa: str                   # pattern at the visible origin, e.g. "RGGB"
    black_level: np.ndarray    # (4,) per packed channel [R, Gr, Gb, B]
    white_level: float
    wb_gains: np.ndarray       # (3,) R, G, B multipliers with G = 1
    srgb_from_cam: np.ndarray  # (3, 3) white-balanced camera RGB -> linear sRGB
    orientation: int = 1       # EXIF Orientation of the sensor image; finishing turns it upright
    exif: dict = field(default_factory=dict)   # capture facts for the output (EXIF_KEYS)
    matrix_source: str = "given"
    wb_source: str = "given"
    camera_colour: CameraColour | None = None
    pixel_aspect: float = 1.0  # a sensor pixel's width / height; finishing stretches to square pixels

    def __post_init__(self):
        bayer = np.asarray(self.bayer)
        if bayer.ndim != 2 or bayer.size == 0:
            raise RawInputError(f"the Bayer mosaic must be a 2-D (height, width) array, got shape {bayer.shape}")
        if bayer.dtype != np.uint16:
            if bayer.dtype.kind not in "iu" or bayer.min() < 0 or bayer.max() > 65535:
                raise RawInputError(f"Bayer samples must be integers in 0..65535, got {bayer.dtype} "
                                    f"{'' if bayer.dtype.kind not in 'iu' else f'in {bayer.min()}..{bayer.max()}'}"
                                    .rstrip())
            bayer = bayer.astype(np.uint16)
        if bayer.shape[0] % 2 or bayer.shape[1] % 2:
            raise RawInputError(f"odd frame size {bayer.shape[1]}x{bayer.shape[0]}; "
                                "a Bayer frame must have even width and height")
        if not isinstance(self.cfa, str) or self.cfa.upper() not in CFA_PATTERNS:
            raise RawInputError(f"unknown CFA {self.cfa!r}; Edge4K needs a 2x2 Bayer pattern: {', '.join(CFA_PATTERNS)}")
        black = np.broadcast_to(np.asarray(self.black_level, dtype=np.float64), (4,)) \
            if np.size(self.black_level) in (1, 4) else None
        if black is None or not np.all(np.isfinite(black)) or np.any(black < 0):
            raise RawInputError(f"black_level must be one non-negative number or four (R, Gr, Gb, B), "
                                f"got {np.asarray(self.black_level).tolist()}")
        white = float(self.white_level)
        if not white > black.max():
            raise RawInputError(f"white level {white:g} is not above black level {black.max():g}")
        gains = np.asarray(self.wb_gains, dtype=np.float64)
        if gains.shape != (3,) or not np.all(np.isfinite(gains)) or np.any(gains <= 0):
            raise RawInputError(f"wb_gains must be three positive numbers (R, G, B), got {gains.tolist()}")
        matrix = np.asarray(self.srgb_from_cam, dtype=np.float64)
        if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
            raise RawInputError(f"srgb_from_cam must be a finite 3x3 matrix, got shape {matrix.shape}")
        if self.orientation not in EXIF_FROM_LIBRAW_FLIP.values():
            raise RawInputError(f"orientation must be an EXIF Orientation 1..8, got {self.orientation!r}")
        aspect, (low, high) = self.pixel_aspect, PIXEL_ASPECT_RANGE
        if isinstance(aspect, bool) or not isinstance(aspect, (int, float, np.number)) or not low <= aspect <= high:
            raise RawInputError(f"pixel_aspect must be a pixel's width over its height, {low:g}..{high:g}, "
                                f"got {aspect!r}")
        unknown = set(self.exif) - set(EXIF_KEYS)
        if unknown:
            raise RawInputError(f"unknown exif keys {', '.join(sorted(unknown))}; known: {', '.join(EXIF_KEYS)}")
        self.bayer, self.cfa, self.black_level, self.white_level = bayer, self.cfa.upper(), black.copy(), white
        self.wb_gains, self.srgb_from_cam, self.orientation = gains, matrix, int(self.orientation)
        self.pixel_aspect = float(aspect)

    @classmethod
    def from_buffer(cls, data, width: int, height: int, **metadata) -> "RawFrame":
        """A frame from a flat row-major buffer of width x height samples: bytes-like data holding
        little-endian uint16, or a 1-D integer array. `metadata` as for RawFrame(...)."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            if len(data) % 2:
                raise RawInputError(f"a uint16 Bayer buffer has an even number of bytes, got {len(data)}")
            samples = np.frombuffer(data, dtype="<u2")
        else:
            samples = np.asarray(data).reshape(-1)
        if int(width) <= 0 or int(height) <= 0 or samples.size != int(width) * int(height):
            raise RawInputError(f"the Bayer buffer holds {samples.size} samples, but a {width}x{height} frame "
                                f"needs {int(width) * int(height)}")
        return cls(bayer=samples.reshape(int(height), int(width)), **metadata)

    @property
    def height(self) -> int:
        return int(self.bayer.shape[0])

    @property
    def width(self) -> int:
        return int(self.bayer.shape[1])

    def offsets(self) -> list[tuple[int, int]]:
        """Row/column offset inside the 2x2 cell of each packed channel."""
        return cell_offsets(self.cfa)

    @classmethod
    def from_capture(cls, capture) -> "RawFrame":
        """A frame straight from an in-memory synthetic RawCapture (training pairs),
        holding what read_raw() would read from the same capture written as a DNG."""
        return cls(bayer=np.asarray(capture.mosaic, dtype=np.uint16), cfa=capture.cfa,
                   black_level=np.full(4, float(capture.black_level)),
                   white_level=float(capture.white_level),
                   wb_gains=np.asarray(capture.wb_gains, dtype=np.float64),
                   srgb_from_cam=srgb_from_cam(capture.xyz_to_cam), matrix_source="synthetic", wb_source="as-shot",
                   camera_colour=CameraColour([(6500, capture.xyz_to_cam)]))

    def info(self) -> dict:
        return {
            "width": self.width, "height": self.height, "cfa": self.cfa,
            "black_level": [float(x) for x in self.black_level], "white_level": float(self.white_level),
            "wb_gains": [round(float(x), 6) for x in self.wb_gains],
            "srgb_from_cam": np.round(self.srgb_from_cam, 6).tolist(),
            "orientation": self.orientation, "pixel_aspect": round(self.pixel_aspect, 6), "exif": dict(self.exif),
            "matrix_source": self.matrix_source, "wb_source": self.wb_source,
        }


def read_raw(source: str | os.PathLike | bytes | bytearray | memoryview) -> RawFrame:
    """Decode a Bayer RAW file; refuse anything that is not a 2x2 Bayer mosaic. source: the
    file's path, or its bytes (a folder, a numpy array or anything else is refused in one line)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), f"<{len(source)} bytes>"
    elif isinstance(source, np.ndarray):
        raise RawInputError("a numpy array is not a RAW file: wrap a Bayer mosaic in edge4k.RawFrame(bayer=array, "
                            "cfa=..., black_level=..., white_level=..., wb_gains=..., srgb_from_cam=...)")
    elif not isinstance(source, (str, os.PathLike)):
        raise RawInputError(f"a source is a RAW file's path, its bytes or an edge4k.RawFrame, not {type(source).__name__}")
    else:
        data, name = None, os.fspath(source)
        if os.path.isdir(name):
            raise RawInputError(f"{name} is a folder, not a RAW file (`edge4k run {name} -o OUTDIR` renders the RAW "
                                "files in it; in Python, Renderer.render_many)")
        if not os.path.isfile(name):
            raise RawInputError(f"input not found: {name}")
    # LibRaw prints notes such as "Unexpected end of file" itself: fold them into the error. Our
    # own warnings would print into that capture too, so they are held and said after it.
    with warnings.catch_warnings(record=True) as held, captured_native_stderr() as messages:
        warnings.simplefilter("always")
        try:
            with rawpy.imread(name if data is None else io.BytesIO(data)) as raw:
                stream = name if data is None else io.BytesIO(data)
                frame = _frame_from_libraw(raw, name, _exif_facts(raw, stream), dng_tags(stream))
        except rawpy.LibRawError as e:
            said = messages().replace(name + ": ", "").strip().replace("\n", "; ")
            raise RawInputError(f"cannot read RAW {'file ' if data is None else 'data '}{name}: {libraw_words(e)}"
                                + (f" ({said})" if said else "")) from None
    for warning in held:
        warnings.warn(warning.message, warning.category, stacklevel=2)
    return frame


# LibRaw's exception classes (rawpy's names), as a user reads them.
LIBRAW_WORDS = {
    "LibRawFileUnsupportedError": "unsupported or corrupt RAW file",
    "LibRawIOError": "read error (a truncated or unreadable file)",
    "LibRawDataError": "corrupt RAW data",
    "LibRawTooBigError": "image too large for LibRaw",
    "LibRawUnsufficientMemoryError": "out of memory while decoding",
    "LibRawMemPoolOverflowError": "out of memory while decoding",
    "LibRawRequestForNonexistentImageError": "the file holds no such image",
    "LibRawBadCropError": "bad crop in the file's metadata",
    "LibRawNoThumbnailError": "the file has no embedded preview",
    "LibRawUnsupportedThumbnailError": "the embedded preview is in a format LibRaw cannot extract",
    "LibRawCancelledByCallbackError": "decoding was cancelled",
    "LibRawInputClosedError": "the input was closed while decoding",
    "LibRawNotImplementedError": "a feature of this file that LibRaw does not implement",
}


def libraw_words(error: BaseException) -> str:
    """A LibRaw exception as words (LibRawFileUnsupportedError -> "unsupported or corrupt RAW file")."""
    return LIBRAW_WORDS.get(type(error).__name__, f"LibRaw error ({error or type(error).__name__})")


def _frame_from_libraw(raw, path: str, exif: dict, tags: dict | None = None) -> RawFrame:
    desc = raw.color_desc.decode(errors="replace")
    pattern = raw.raw_pattern
    if raw.raw_type != raw.raw_type.Flat or pattern is None or raw.num_colors < 3:
        kind = "monochrome" if raw.num_colors == 1 else f"non-mosaic ({raw.raw_type.name}, e.g. Foveon or linear)"
        raise RawInputError(f"{path}: {kind} sensor data; Edge4K needs a 2x2 Bayer CFA")
    if pattern.shape != (2, 2):
        kind = {(6, 6): "X-Trans", (4, 4): "Quad-Bayer"}.get(pattern.shape, "non-Bayer")
        raise RawInputError(f"{path}: {kind} CFA ({pattern.shape[0]}x{pattern.shape[1]} pattern); "
                          "Edge4K needs a 2x2 Bayer CFA (RGGB, BGGR, GRBG or GBRG)")
    colours = raw.raw_colors_visible[:2, :2]
    cfa = "".join(desc[c] for c in colours.flatten())
    if sorted(cfa) != sorted("RGGB"):
        # LibRaw reads a 4x4 Quad-Bayer tile as a 2x2 one with no blue site.
        raise RawInputError(f"{path}: CFA reads as {cfa!r}, not a 2x2 Bayer cell (a Quad-Bayer or other "
                          "non-Bayer sensor?); Edge4K needs RGGB, BGGR, GRBG or GBRG")
    bayer = np.array(raw.raw_image_visible, dtype=np.uint16, copy=True)
    if not bayer.any():   # LibRaw reads a file whose image data is missing as zeros
        warnings.warn(f"{path}: every pixel is 0: a metadata-only or truncated file (no image data), or a "
                      "black frame; the render will be black", Edge4KWarning, stacklevel=2)
    if bayer.shape[0] % 2 or bayer.shape[1] % 2:
        raise RawInputError(f"{path}: odd frame size {bayer.shape[1]}x{bayer.shape[0]}; "
                          "a Bayer frame must have even width and height")
    blacks = np.asarray(raw.black_level_per_channel, dtype=np.float64)
    black_level = np.array([blacks[colours[i, j]] for i, j in cell_offsets(cfa)])
    if np.any(float(raw.white_level) <= black_level):
        raise RawInputError(f"{path}: white level {raw.white_level} is not above black level {black_level.max()}")
    gains = as_shot = _wb_gains(raw)
    matrix, matrix_source, colour = frame_colour(raw, tags or {}, path, gains)
    if gains is None and colour is not None:     # until a white balance is chosen: the camera's daylight
        daylight = 1.0 / colour.neutral(D65_XY)
        gains = daylight if np.all(daylight > 0) else None
    return RawFrame(bayer=bayer, cfa=cfa, black_level=black_level, white_level=float(raw.white_level),
                    wb_gains=np.ones(3) if gains is None else gains, srgb_from_cam=matrix,
                    orientation=EXIF_FROM_LIBRAW_FLIP.get(raw.sizes.flip, 1), exif=exif,
                    matrix_source=matrix_source, wb_source="as-shot" if as_shot is not None else "as-shot-missing",
                    camera_colour=colour, pixel_aspect=_pixel_aspect(raw.sizes.pixel_aspect, path))


def _pixel_aspect(aspect: float, path: str) -> float:
    """LibRaw's pixel aspect for the file; one outside PIXEL_ASPECT_RANGE is damaged metadata,
    not a reason to refuse an otherwise readable file: square pixels, with a warning."""
    low, high = PIXEL_ASPECT_RANGE
    if low <= aspect <= high:
        return float(aspect)
    warnings.warn(f"{path}: pixel aspect {aspect:g} outside {low:g}..{high:g} ignored; rendering square pixels",
                  Edge4KWarning, stacklevel=2)
    return 1.0


# TIFF tags (IFD0, or the EXIF IFD, or IFD0 as TIFF/EP and DNG allow) holding each EXIF_KEYS fact.
_TIFF_EXIF_TAGS = {"make": ("Make",), "model": ("Model",), "exposure_time": ("ExposureTime",),
                   "iso": ("ISOSpeedRatings", "PhotographicSensitivity"),
                   "datetime": ("DateTimeOriginal", "DateTime")}


def _exif_facts(raw, source) -> dict:
    """EXIF_KEYS facts about the capture: the file's own TIFF/EXIF tags where it is TIFF-based
    (DNG, CR2, NEF, ARW, PEF, ...; rawpy does not expose make and model), else LibRaw's reading
    of exposure time, ISO and capture time (any format LibRaw reads)."""
    facts = _tiff_facts(source)
    other = raw.other
    if "exposure_time" not in facts and other.shutter_speed > 0:
        facts["exposure_time"] = float(other.shutter_speed)
    if "iso" not in facts and other.iso_speed > 0:
        facts["iso"] = float(other.iso_speed)
    if "datetime" not in facts and other.timestamp.year > 1970:
        facts["datetime"] = other.timestamp.strftime("%Y:%m:%d %H:%M:%S")
    return facts


def _tiff_facts(source) -> dict:
    try:
        with tifffile.TiffFile(source) as tif:
            tags = tif.pages.first.tags
            exif = tags.get("ExifTag")
            found = {**{t.name: t.value for t in tags.values()}, **(exif.value if exif is not None else {})}
    except Exception:   # not TIFF-based (CR3, RAF, ...) or tags tifffile cannot parse: LibRaw's facts only
        return {}
    facts = {}
    for key, names in _TIFF_EXIF_TAGS.items():
        value = next((found[n] for n in names if found.get(n) not in (None, "", 0, (0, 0))), None)
        if isinstance(value, tuple) and len(value) == 2 and key == "exposure_time" and value[1]:
            value = value[0] / value[1]
        elif isinstance(value, (tuple, list)):
            value = value[0] if value else None
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if isinstance(value, str):
            value = value.strip("\x00 ")
        if value not in (None, ""):
            facts[key] = float(value) if key in ("exposure_time", "iso") else str(value)
    return facts


def _wb_gains(raw) -> np.ndarray | None:
    """The as-shot multipliers, green = 1; None when the file has none that make sense (a
    missing AsShotNeutral reads as [0, 1, 0, 0])."""
    wb = np.asarray(raw.camera_whitebalance[:3], dtype=np.float64)
    if np.all(np.isfinite(wb)) and np.all(wb > 0):
        return wb / wb[1]
    return None


# Colour matrix sources, in the order frame_colour() tries them (RawFrame.matrix_source).
MATRIX_SOURCES = ("dng", "libraw", "camera-table", "libraw-fit", "synthetic", "given")


def _rationals(tag) -> np.ndarray | None:
    if tag is None:
        return None
    v = np.asarray(tag.value, dtype=np.float64).ravel()
    if tag.dtype in (5, 10):          # (numerator, denominator) pairs
        num, den = v[0::2], v[1::2]
        if np.any(den == 0):
            return None
        v = num / den
    return v


def dng_tags(source) -> dict:
    """The DNG colour tags of IFD0 (ColorMatrix1/2, ForwardMatrix1/2, CalibrationIlluminant1/2,
    AsShotNeutral, AsShotWhiteXY) as numbers, plus Make and Model; {} for a non-TIFF file."""
    names = {Base.ColorMatrix1: "cm1", Base.ColorMatrix2: "cm2", Base.ForwardMatrix1: "fm1", Base.ForwardMatrix2: "fm2",
             Base.AsShotNeutral: "neutral", Base.AsShotWhiteXY: "white_xy"}
    try:
        with tifffile.TiffFile(source) as tif:
            tags = tif.pages.first.tags
            found = {key: _rationals(tags.get(code)) for code, key in names.items()}
            for code, key in ((Base.CalibrationIlluminant1, "ill1"), (Base.CalibrationIlluminant2, "ill2")):
                found[key] = int(tags[code].value) if code in tags else None
            for code, key in ((Base.Make, "make"), (Base.Model, "model")):
                value = tags[code].value if code in tags else ""
                found[key] = (value.decode(errors="replace") if isinstance(value, bytes) else str(value)).strip("\x00 ")
    except Exception:   # not TIFF-based: LibRaw's sources only
        return {}
    finally:
        if hasattr(source, "seek"):
            source.seek(0)
    return {k: v for k, v in found.items() if v is not None and (not isinstance(v, np.ndarray) or v.size)}


def dng_colour(tags: dict) -> CameraColour | None:
    """The file's own calibration: ColorMatrix1 (and 2), with ForwardMatrix where both are present
    for every matrix; None if the file has no 3x3 ColorMatrix."""
    matrices, forward = [], []
    for i in (1, 2):
        cm, fm = tags.get(f"cm{i}"), tags.get(f"fm{i}")
        if cm is None or cm.size != 9 or not np.abs(cm).sum():
            continue
        kelvin = DNG_ILLUMINANT_K.get(tags.get(f"ill{i}") or 21, 6500)
        matrices.append((kelvin, cm.reshape(3, 3)))
        if fm is not None and fm.size == 9:
            forward.append((kelvin, fm.reshape(3, 3)))
    if not matrices:
        return None
    return CameraColour(matrices, forward if len(forward) == len(matrices) else None)


def table_colour(make: str, model: str) -> CameraColour | None:
    """Edge4K's camera table entry for this make and model (case-insensitive), if any."""
    key = f"{make} {model}".strip().lower()
    for name, cam in camera_table().items():
        if key in (name.lower(), f"{cam['make']} {cam['model']}".lower()) or model.strip().lower() == name.lower():
            return CameraColour([(6500, cam["xyz_to_cam"])])
    return None


# Fitting LibRaw's rendering: pixels below this fraction of the 16-bit range in both renderings
# (and above the dark floor) are used; a fit needs this many of them.
FIT_CEILING, FIT_FLOOR, FIT_MIN_PIXELS = 0.9, 0.01, 1000


def fit_libraw_matrix(raw, wb_gains) -> np.ndarray:
    """The white-balanced camera -> linear sRGB matrix LibRaw applies to this frame: its output
    in camera space (output_color=raw) against its linear sRGB output, both with the same
    white balance, no auto-brightening and gamma (1, 1), fitted by least squares."""
    g = np.asarray(wb_gains, dtype=np.float64)
    common = dict(gamma=(1, 1), no_auto_bright=True, output_bps=16, half_size=True, user_flip=0,
                  user_wb=[float(g[0]), float(g[1]), float(g[2]), float(g[1])])
    cam = raw.postprocess(output_color=rawpy.ColorSpace.raw, **common).reshape(-1, 3) / 65535.0
    rgb = raw.postprocess(output_color=rawpy.ColorSpace.sRGB, **common).reshape(-1, 3) / 65535.0
    ok = (cam.max(1) < FIT_CEILING) & (rgb.max(1) < FIT_CEILING) & (cam.min(1) > FIT_FLOOR) & (rgb.min(1) > 0)
    if ok.sum() < FIT_MIN_PIXELS:
        raise RawInputError(f"too few unclipped pixels ({int(ok.sum())}) to fit LibRaw's colour matrix")
    m, *_ = np.linalg.lstsq(cam[ok], rgb[ok], rcond=None)
    return m.T


def frame_colour(raw, tags: dict, name: str,
                 wb_gains: np.ndarray | None) -> tuple[np.ndarray, str, CameraColour | None]:
    """(srgb_from_cam for the as-shot white, matrix_source, the camera's calibration or None),
    from the sources in order; RawInputError when there is none."""
    white = None
    colour = dng_colour(tags)
    if colour is not None:
        if "white_xy" in tags and tags["white_xy"].size == 2:
            white = tuple(tags["white_xy"])
        elif wb_gains is not None:
            white = colour.white_xy(1.0 / wb_gains)
        return colour.srgb_from_cam(white or D65_XY), "dng", colour
    rgb_cam = np.asarray(raw.color_matrix, dtype=np.float64)[:, :3]
    xyz_to_cam = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3]
    colour = CameraColour([(6500, xyz_to_cam)]) if np.abs(xyz_to_cam).sum() else None
    if np.abs(rgb_cam).sum():
        return rgb_cam, "libraw", colour
    if colour is not None:
        return srgb_from_cam(xyz_to_cam), "libraw", colour
    colour = table_colour(tags.get("make", ""), tags.get("model", ""))
    if colour is not None:
        return colour.srgb_from_cam(D65_XY), "camera-table", colour
    try:
        fitted = fit_libraw_matrix(raw, wb_gains if wb_gains is not None else np.ones(3))
    except Exception as e:   # LibRaw cannot render it, or too little to fit
        raise RawInputError(f"{name}: no colour matrix for this camera (none in the file, LibRaw's table or "
                            f"Edge4K's) and none could be fitted to LibRaw's rendering ({e})") from None
    if np.abs(fitted - np.eye(3)).max() < 1e-3:
        raise RawInputError(f"{name}: no colour matrix for this camera (none in the file, LibRaw's table or "
                            "Edge4K's, and LibRaw renders it without one); give RawFrame(srgb_from_cam=...)")
    return fitted, "libraw-fit", None


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


def write_bayer(frame: RawFrame, json_path: str | os.PathLike, *, source: str | os.PathLike | None = None,
                colour: dict | None = None) -> Path:
    """Hand a decoded frame to the native runner: the Bayer mosaic as a plain
    little-endian uint16 buffer (`<name>.u16`) and a JSON sidecar with what pack()
    needs (size, CFA, levels, WB gains, colour matrix), the EXIF Orientation that finishing
    applies last (as the host pipeline does) and the capture's EXIF facts for the output.
    colour: the host's colour choices already applied to the frame (kernels/rawcolour.py:
    ColourOptions.record()), which the runner's profile records. Both written atomically. A frame
    with non-square pixels is refused: the runner does not stretch (the host render does)."""
    if frame.pixel_aspect != 1:
        raise RawInputError(f"this frame's pixels are not square (pixel aspect {frame.pixel_aspect:.4g}) and the "
                            "native runner does not stretch them; render it on the host (edge4k run)")
    json_path = Path(json_path)
    data = json_path.with_suffix(".u16")
    with atomic_output(data) as tmp:
        frame.bayer.astype("<u2").tofile(tmp)
    sidecar = {"schema": BAYER_SCHEMA, "data": data.name, "width": frame.width, "height": frame.height,
               "cfa": frame.cfa, "black_level": [float(x) for x in frame.black_level],
               "white_level": float(frame.white_level), "wb_gains": [float(x) for x in frame.wb_gains],
               "srgb_from_cam": [[float(x) for x in row] for row in frame.srgb_from_cam],
               "orientation": frame.orientation, "exif": dict(frame.exif),
               "matrix_source": frame.matrix_source, "wb_source": frame.wb_source}   # for the runner's profile
    if source is not None:
        sidecar["source"] = {"path": os.fspath(source), "sha256": sha256_file(source)}
    if colour is not None:
        sidecar["colour"] = colour
    with atomic_output(json_path) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
    return json_path
