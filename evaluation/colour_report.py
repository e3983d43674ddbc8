"""The colour numbers the README quotes (kernels/rawcolour.py), measured:

    python -m edge4k.evaluation.colour_report [--kdc PATH] [--preset e4k-s-f16]

- Kodak DC50 (--kdc, rawpy's test file): mean HSV saturation of Edge4K's neutral look over
  LibRaw's matching rendering's (camera white balance, no auto-bright, the sRGB curve), and the
  matrix source;
- a Raspberry Pi DNG as PiDNG writes one (pi_dng(): 640x480, CFA declared one pixel off, no
  AsShotNeutral): the grey card's mean R, G, B rendered by Edge4K (neutral look, --cfa as the
  warning says, camera white balance falling back to auto) against LibRaw's on the same data with
  the right CFA and the same white balance;
- --wb-kelvin and daylight on the synthetic captures' illuminants: CIEDE2000 of a grey card;
- auto white balance on scenes two thirds one saturated colour: angular error, and grey world's;
- the natural look's metering on bright synthetic scenes (evaluation/bright_scenes.py) and on
  ordinary photographs (scikit-image's samples): error against the true exposure, in stops, for
  the highlight-aware rule and the frontend's mean rule; and on the real corpus files that carry
  the camera's own JPEG preview, against it (preview_metering_errors).
Needs the train extra (colour-science) and rawpy.
"""
from __future__ import annotations

import argparse
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import rawpy
import tifffile
from PIL import Image

from edge4k.api import render
from edge4k.datasets.dng import write_dng
from edge4k.datasets.unprocess import RawCapture, draw_params, scene_linear, synthesize
from edge4k.evaluation.bright_scenes import HARD_KINDS, KINDS, scene
from edge4k.kernels import rawcolour
from edge4k.kernels.colour import LUMA, srgb_decode
from edge4k.kernels.raw import RawFrame, exposure_gain, normalised_gains, pack, read_raw, thumbnail
from edge4k.kernels.rawcolour import ColourOptions, metered_gain, white_balance

PI_GREY = (slice(160, 320), slice(220, 420))   # the grey card in pi_dng()'s frame (rows, columns)
KELVINS = (2500, 3000, 3500, 4000, 5000, 6500, 8000, 9000)


def _mixed_scene(seed: int, shape=(480, 640)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = shape
    img = rng.uniform(0.05, 0.95, size=(h // 40 + 1, w // 40 + 1, 3)).repeat(40, 0).repeat(40, 1)[:h, :w]
    return img


def pi_dng(folder: Path, *, cfa_declared: str = "GRBG") -> Path:
    """A Raspberry Pi DNG as PiDNG writes one: 640x480 RGGB sensor data declared GRBG (one pixel
    off), Make RaspberryPi, no AsShotNeutral; a mid-grey card on a scene of coloured patches."""
    rng = np.random.default_rng(3)
    img = _mixed_scene(3)
    img[PI_GREY] = 0.5
    params = draw_params(rng, camera="Nikon Z 7", iso=200.0, ev=-0.5, illuminant=4500.0, jitter=False, cfa="RGGB",
                         bits=10, black_level=64)
    return write_dng(folder / "pi.dng", synthesize(img, params, rng), cfa_pattern=cfa_declared, make="RaspberryPi",
                     model="RP_ov5647", drop_tags=(50728,))


def pi_grey(path: Path, preset: str | None, wb: str = "camera") -> tuple[np.ndarray, np.ndarray, str]:
    """(Edge4K's grey card R, G, B, LibRaw's, the warning Edge4K gave) in 8-bit levels, both in
    the neutral look with the same white balance: Edge4K's `wb` choice given to LibRaw as user_wb;
    wb="daylight": each its own (LibRaw's default, the camera's D65 white from the matrix)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ColourOptions().apply(read_raw(path))     # for what `edge4k run` says about the file
    said = " | ".join(str(w.message) for w in caught)
    fix = said.split("--cfa ")[1][:4] if "--cfa " in said else None
    ours = render(path, look="neutral", cfa=fix, preset=preset, wb=wb).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        balanced = ColourOptions(cfa=fix, wb=wb).apply(read_raw(path))     # the white balance the render chose
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        cm = np.array(tags[50721].value, dtype=np.float64).reshape(-1, 2)
        fixed = RawCapture(mosaic=tif.pages.first.asarray(), cfa=fix or "GRBG", black_level=int(tags[50714].value),
                           white_level=int(tags[50717].value), xyz_to_cam=(cm[:, 0] / cm[:, 1]).reshape(3, 3))
    right = write_dng(path.with_name("pi-right-cfa.dng"), fixed, make="RaspberryPi", model="RP_ov5647",
                      drop_tags=(50728,))
    g = balanced.wb_gains
    with rawpy.imread(str(right)) as raw:
        own = {} if wb == "daylight" else {"user_wb": [g[0], g[1], g[2], g[1]]}
        lib = raw.postprocess(no_auto_bright=True, gamma=(2.4, 12.92), **own)
    inner = (slice(PI_GREY[0].start + 8, PI_GREY[0].stop - 8), slice(PI_GREY[1].start + 8, PI_GREY[1].stop - 8))
    return ours[inner].reshape(-1, 3).mean(0), lib[inner].reshape(-1, 3).astype(np.float64).mean(0), said


def kelvin_delta_e(folder: Path) -> dict[str, float]:
    """CIEDE2000 of a grey card captured under each illuminant, white-balanced by --wb-kelvin at the
    illuminant's temperature (and daylight for D65), rendered through the frame's matrix."""
    import colour

    srgb_to_xyz = colour.RGB_COLOURSPACES["sRGB"].matrix_RGB_to_XYZ
    out = {}
    for label, illuminant, choice in ([(f"{k} K", float(k), {"kelvin": k}) for k in KELVINS]
                                      + [("daylight (D65)", "D65", {"wb": "daylight"})]):
        rng = np.random.default_rng(0)
        params = draw_params(rng, camera="Nikon Z 7", iso=None, ev=0.0, illuminant=illuminant, jitter=False,
                             cfa="RGGB", bits=14, black_level=0)
        path = write_dng(folder / "grey.dng", synthesize(np.full((32, 32, 3), 0.6), params, rng))
        frame = white_balance(read_raw(path), **choice)
        cam = pack(frame)[:, 4:-4, 4:-4].reshape(4, -1).mean(axis=1) ** 2
        rgb = frame.srgb_from_cam @ np.array([cam[0], (cam[1] + cam[2]) / 2, cam[3]])
        lab = colour.XYZ_to_Lab(srgb_to_xyz @ rgb / rgb[1] * 0.2)
        out[label] = float(colour.delta_E(lab, np.array([lab[0], 0.0, 0.0]), method="CIE 2000"))
    return out


def metering_error(img: np.ndarray, seed: int, rule) -> float:
    """log2(metered gain / true gain) for one picture captured at a mid-grey meter (EV 0): the true
    gain brings the finished image's luminance (unclipped pixels) back to the picture's."""
    h, w = img.shape[:2]
    img = img[: h // 2 * 2, : w // 2 * 2]
    rng = np.random.default_rng(seed)
    params = draw_params(rng, iso=None, ev=0.0, cameras="held-out", illuminant="D65", jitter=False)
    capture = synthesize(img, params, rng)
    frame = RawFrame.from_capture(capture)
    cam = capture.clean * normalised_gains(frame.wb_gains)[[0, 1, 3]]
    rendered = np.clip(cam @ frame.srgb_from_cam.T, 0, 1) @ LUMA
    ok = capture.clean.max(-1) < 0.999
    true = (scene_linear(img) @ LUMA)[ok].sum() / rendered[ok].sum()
    return float(np.log2(rule(thumbnail(pack(frame), 64), frame.srgb_from_cam) / true))


def metering_errors(rule, seeds=range(3), kinds=KINDS) -> np.ndarray:
    """metering_error() over the bright scenes (evaluation/bright_scenes.py), or other kinds."""
    return np.array([metering_error(scene(kind, seed), seed, rule) for kind in kinds for seed in seeds])


# Ordinary photographs (scikit-image's colour samples; a dark space picture among them).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina", "hubble_deep_field", "cat")


def photo_metering_errors(rule) -> np.ndarray:
    """metering_error() over ordinary photographs, which the highlight rule must not brighten."""
    import skimage.data
    return np.array([metering_error(getattr(skimage.data, name)()[..., :3].astype(np.float64) / 255, i, rule)
                     for i, name in enumerate(PHOTOS)])


# Corpus files whose embedded JPEG preview is a finished picture of the capture: the camera's own,
# but for the Nikon DNG's, which Adobe's DNG converter wrote at its defaults.
CORPUS = Path(__file__).resolve().parents[1] / "corpus"
PREVIEWED = ("canon_eos_d30.crw", "canon_powershot_g2.crw", "canon_powershot_s40.crw", "canon_powershot_s40_chart.crw",
             "canon_eos_30d.cr2", "nikon_d5000.dng", "sony_ilce_7rm3.arw")


def preview_metering_errors(preset: str | None = None) -> dict[str, float]:
    """The natural look's exposure against each PREVIEWED file's JPEG preview, in stops: log2 of
    the median linear luminance of Edge4K's half-size natural render over the preview's, both 256
    pixels wide, over pixels below 250 in every channel of both. The two tone curves differ, so a
    shift shared by every file is the curve's, not the metering's."""
    def luminance(img: Image.Image) -> np.ndarray:
        return srgb_decode(np.asarray(img, dtype=np.float64) / 255) @ LUMA

    errors = {}
    for name in PREVIEWED:
        with rawpy.imread(str(CORPUS / name)) as raw:
            preview = Image.open(io.BytesIO(raw.extract_thumb().data)).convert("RGB")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = render(CORPUS / name, look="natural", half_size=True, bits=8, preset=preset)
        ours = Image.fromarray(ours).resize((256, round(256 * ours.shape[0] / ours.shape[1])), Image.BOX)
        preview = preview.resize(ours.size, Image.BOX)
        ok = (np.asarray(ours).max(-1) < 250) & (np.asarray(preview).max(-1) < 250)
        errors[name] = float(np.log2(np.median(luminance(ours)[ok]) / np.median(luminance(preview)[ok])))
    return errors


def dominant_scene(seed: int, hue) -> np.ndarray:
    """A scene two thirds one saturated colour, the rest varied greys and colours (texture)."""
    rng = np.random.default_rng(seed)
    h, w = 96, 128
    img = rng.uniform(0.05, 0.95, size=(h // 8, w // 8, 3)).repeat(8, 0).repeat(8, 1)
    img[:, : 2 * w // 3] = np.asarray(hue) * rng.uniform(0.7, 1.0, size=(h, 2 * w // 3, 1))
    return img


DOMINANT_HUES = {"red": (0.8, 0.15, 0.1), "green": (0.2, 0.6, 0.15), "blue": (0.15, 0.3, 0.8)}


def auto_wb_errors(hue, kelvins=(3000.0, 5500.0, 7500.0), auto=rawcolour.auto_neutral) -> tuple[np.ndarray, np.ndarray]:
    """Angular error (degrees, camera space) of auto white balance (or another estimate `auto` of
    the frame's neutral) and of grey world against the true neutral, on dominant_scene() captures
    lit at each colour temperature (ISO 400)."""
    errors, grey_world = [], []
    for seed, kelvin in enumerate(kelvins):
        rng = np.random.default_rng(seed)
        params = draw_params(rng, camera="Nikon Z 7", iso=400.0, ev=0.0, illuminant=kelvin, jitter=False, cfa="RGGB")
        capture = synthesize(dominant_scene(seed, hue), params, rng)
        frame, truth = RawFrame.from_capture(capture), params.as_shot_neutral
        def angle(n, truth=truth):
            return np.degrees(np.arccos(n @ truth / np.linalg.norm(n) / np.linalg.norm(truth)))
        errors.append(angle(auto(frame)))
        grey_world.append(angle(rawcolour._grey_world(frame)))
    return np.array(errors), np.array(grey_world)


def kdc_saturation(path: Path, preset: str | None) -> tuple[float, float, str]:
    def saturation(img):
        f = img.astype(np.float64) / 255
        return float(np.where(f.max(-1) > 0, np.ptp(f, axis=-1) / np.maximum(f.max(-1), 1e-9), 0).mean())
    with rawpy.imread(str(path)) as raw:     # matched: the neutral look is this rendering of LibRaw's
        libraw = saturation(raw.postprocess(use_camera_wb=True, no_auto_bright=True, gamma=(2.4, 12.92)))
    return saturation(render(path, look="neutral", preset=preset)), libraw, read_raw(path).matrix_source


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kdc", type=Path, help="rawpy's RAW_KODAK_DC50.KDC")
    p.add_argument("--preset", help="model preset for the renders (default: the SDK's)")
    p.add_argument("--seeds", type=int, default=10, help="bright scenes per kind (default 10)")
    args = p.parse_args()
    if args.kdc:
        ours, libraw, source = kdc_saturation(args.kdc, args.preset)
        print(f"KDC mean saturation: Edge4K neutral look {ours:.3f}, LibRaw (camera WB, no auto-bright, sRGB curve) "
              f"{libraw:.3f}, "
              f"ratio {ours / libraw:.3f} (matrix_source {source})")
    with tempfile.TemporaryDirectory() as tmp:
        ours, lib, said = pi_grey(pi_dng(Path(tmp)), args.preset)
        print(f"Pi DNG warning: {said}")
        print(f"Pi DNG grey card R,G,B, auto white balance (LibRaw given Edge4K's): Edge4K "
              f"{np.round(ours, 1).tolist()}, LibRaw {np.round(lib, 1).tolist()}, difference "
              f"{np.round(ours - lib, 1).tolist()} levels")
        ours, lib, _ = pi_grey(pi_dng(Path(tmp)), args.preset, wb="daylight")
        print(f"Pi DNG grey card R,G,B, daylight white balance (each its own): Edge4K {np.round(ours, 1).tolist()}, "
              f"LibRaw {np.round(lib, 1).tolist()}, difference {np.round(ours - lib, 1).tolist()} levels")
        for label, de in kelvin_delta_e(Path(tmp)).items():
            print(f"grey card CIEDE2000 {label:>15}: {de:.3f}")
    for name, hue in DOMINANT_HUES.items():
        auto, grey_world = auto_wb_errors(hue)
        print(f"auto white balance, scenes two thirds {name}: angular error {np.round(auto, 2).tolist()} degrees "
              f"(grey world {np.round(grey_world, 2).tolist()}) at 3000, 5500, 7500 K")
    for name, rule in (("highlight-aware", metered_gain), ("old mean-to-mid-grey", exposure_gain)):
        seeds = range(100, 100 + args.seeds)
        for what, e in (("bright scenes", metering_errors(rule, seeds)),
                        *((f"{kind} scenes", metering_errors(rule, seeds, (kind,))) for kind in HARD_KINDS),
                        ("ordinary photographs", photo_metering_errors(rule))):
            print(f"metering {name:>21}: median |error| {np.median(np.abs(e)):.2f} stops (median "
                  f"{np.median(e):+.2f}, max |error| {np.abs(e).max():.2f}) over {e.size} {what}")
    if CORPUS.is_dir():
        errors = preview_metering_errors(args.preset)
        e = np.array(list(errors.values()))
        print(f"metering against the corpus files' JPEG previews: median |error| {np.median(np.abs(e)):.2f} stops "
              f"(median {np.median(e):+.2f}, max |error| {np.abs(e).max():.2f}): "
              + ", ".join(f"{name} {err:+.2f}" for name, err in errors.items()))


if __name__ == "__main__":
    main()
