"""Auto white balance (kernels/rawcolour.py, auto_neutral) against known whites, the numbers
corpus/README.md and the README's "Colour" quote:

    python -m edge4k.evaluation.auto_white [--scenes 8]

- synthetic: scenes two thirds one random saturated colour (colour_report.dominant_scene),
  --scenes at each of the synthetic set's illuminants 2500-9000 K, held-out cameras, ISO 100,
  400 or 1600, 0 to +2 EV: angular error (degrees, camera RGB) against the true neutral, also
  per illuminant; and colour_report's scenes two thirds red, green or blue (the tests' scenes);
- real: the corpus files with no as-shot white balance, against an independent white where one
  exists: the EOS D30's own JPEG preview (the white at which our linear render of the frame
  matches the camera's JPEG best, per pixel in log chromaticity, the JPEG allowed a saturation
  factor: the camera's white balance, not ground truth); the DC120's ColorChecker (the mean of
  its white and four grey patches); hand-picked surfaces that are white in the world in three
  QuickTake frames (a white cat, a radiator and window frame, house walls; the brighter half of
  their cells). The QuickTake night street has none. Grey world (LibRaw's fallback) beside.

Each line gives auto (auto_neutral) and, beside it, the statistical estimate alone
(statistical_neutral: what auto was before grey pixels), and for the real files what the grey
pixels showed (grey_pixel_neutral: their share of the cells, their spread and their angle from the
statistical estimate, degrees) and whether auto used them.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import rawpy
from PIL import Image

from edge4k.datasets.unprocess import camera_names, draw_params, synthesize
from edge4k.evaluation.colour_report import DOMINANT_HUES, KELVINS, auto_wb_errors, dominant_scene
from edge4k.kernels import rawcolour
from edge4k.kernels.colour import srgb_decode
from edge4k.kernels.raw import RawFrame, read_raw

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
# Surfaces white in the world: (top, bottom, left, right) in half-size sensor pixels (2x2 cells).
WHITE_SURFACES = {
    "apple_quicktake_100_cat.qtk": [(42, 75, 60, 82), (92, 108, 72, 100)],            # the cat, its tail
    "apple_quicktake_100_room.qtk": [(212, 238, 215, 315), (178, 195, 205, 315), (20, 150, 185, 197)],
    "apple_quicktake_150_houses.qtk": [(150, 170, 8, 40), (150, 170, 70, 92), (175, 198, 8, 40),
                                       (165, 195, 205, 235)],                         # sunlit and shaded walls
}
DC120_CHART = ((190, 91), (190, 623), (680, 91), (680, 623))   # corner patch centres, sensor (row, column)


angle = rawcolour.angle_degrees


def synthetic_errors(per_kelvin: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Angular errors of auto white balance, the statistical estimate alone and grey world on the
    dominant-colour scenes, KELVINS in order, per_kelvin each."""
    cameras, auto, statistical, grey = camera_names("held-out"), [], [], []
    for i, kelvin in enumerate(KELVINS):
        for j in range(per_kelvin):
            seed = 1000 + per_kelvin * i + j
            rng = np.random.default_rng(seed)
            hue = rng.uniform(0.05, 1.0, 3)
            hue[rng.integers(3)] *= 0.15
            params = draw_params(rng, camera=cameras[int(rng.integers(len(cameras)))], iso=float(rng.choice([100, 400, 1600])),
                                 ev=float(rng.uniform(0, 2)), illuminant=float(kelvin), jitter=False, cfa="RGGB")
            frame = RawFrame.from_capture(synthesize(dominant_scene(seed, hue), params, rng))
            auto.append(angle(rawcolour.auto_neutral(frame), params.as_shot_neutral))
            statistical.append(angle(rawcolour.statistical_neutral(frame), params.as_shot_neutral))
            grey.append(angle(rawcolour._grey_world(frame), params.as_shot_neutral))
    return np.array(auto), np.array(statistical), np.array(grey)


def surfaces_white(frame, boxes) -> np.ndarray:
    rgb, ok = rawcolour._camera_image(frame)
    cells = np.concatenate([rgb[t:b, l:r][ok[t:b, l:r]] for t, b, l, r in boxes])
    s = cells.sum(-1)
    n = cells[s >= np.median(s)].mean(0)
    return n / n[1]


def chart_white(frame) -> np.ndarray:
    tl, tr, bl, br = (np.asarray(c, dtype=np.float64) for c in DC120_CHART)
    centres = [(1 - v) * ((1 - u) * tl + u * tr) + v * ((1 - u) * bl + u * br)
               for v in np.arange(4) / 3 for u in np.arange(6) / 5][18:23]    # white and the four greys
    rgb, ok = rawcolour._camera_image(frame)
    patches = []
    for y, x in centres:
        y, x = int(y) // 2, int(x) // 2
        assert ok[y - 6:y + 6, x - 6:x + 6].all(), "a chart patch is clipped"
        patches.append(rgb[y - 6:y + 6, x - 6:x + 6].reshape(-1, 3).mean(0))
    return np.mean([p / p[1] for p in patches], axis=0)


def camera_jpeg_white(path: Path, frame) -> np.ndarray:
    """The white n at which our linear sRGB render (camera RGB / n through the frame's matrix)
    matches the camera's JPEG preview best: per 8x8-cell block, log chromaticity of the JPEG
    (decoded to linear) against s times ours, least squares, s fitted in closed form, n found on a
    grid refined five times."""
    with rawpy.imread(str(path)) as raw:
        jpeg = Image.open(io.BytesIO(raw.extract_thumb().data)).convert("RGB")
    rgb, ok = rawcolour._camera_image(frame)
    h, w = rgb.shape[0] // 8, rgb.shape[1] // 8
    cam = rgb[:h * 8, :w * 8].reshape(h, 8, w, 8, 3).mean((1, 3))
    ok = ok[:h * 8, :w * 8].reshape(h, 8, w, 8).all((1, 3))
    ref = srgb_decode(np.asarray(jpeg.resize((w, h), Image.BOX), dtype=np.float64) / 255)
    use = ok & (ref.max(-1) < 0.95) & (ref.min(-1) > 0.01)
    cam, ref = cam[use], ref[use]

    def chroma(x):
        x = np.maximum(x, 1e-4)
        return np.log(x[:, [0, 2]] / x[:, [1]]).ravel()

    target, matrix = chroma(ref), np.asarray(frame.srgb_from_cam)

    def loss(lr, lb):
        ours = chroma((cam / np.exp([lr, 0.0, lb])) @ matrix.T)
        s = ours @ target / (ours @ ours)
        return float(((target - s * ours) ** 2).sum())

    centre, span = np.zeros(2), 1.5
    for _ in range(5):
        grid = [(centre[0] + a, centre[1] + b) for a in np.linspace(-span, span, 21) for b in np.linspace(-span, span, 21)]
        centre = np.array(min(grid, key=lambda v: loss(*v)))
        span /= 5
    return np.exp([centre[0], 0.0, centre[1]])


def real_whites() -> dict:
    """{file: (frame, independent white or None, what it is)}."""
    out = {}
    d30 = read_raw(CORPUS / "canon_eos_d30.crw")
    out["canon_eos_d30.crw"] = (d30, camera_jpeg_white(CORPUS / "canon_eos_d30.crw", d30), "its camera JPEG")
    dc120 = read_raw(CORPUS / "kodak_dc120.kdc")
    out["kodak_dc120.kdc"] = (dc120, chart_white(dc120), "ColorChecker greys")
    for name, boxes in WHITE_SURFACES.items():
        frame = read_raw(CORPUS / name)
        out[name] = (frame, surfaces_white(frame, boxes), "white surfaces")
    out["apple_quicktake_150_night.qtk"] = (read_raw(CORPUS / "apple_quicktake_150_night.qtk"), None, "none")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", type=int, default=8, help="synthetic scenes per colour temperature (default 8)")
    args = p.parse_args()
    auto, statistical, grey = synthetic_errors(args.scenes)
    for label, e in (("auto", auto), ("statistical alone", statistical), ("grey world", grey)):
        print(f"synthetic, {e.size} dominant-colour scenes 2500-9000 K, {label}: mean {e.mean():.2f}, median "
              f"{np.median(e):.2f}, 90th percentile {np.percentile(e, 90):.2f}, worst {e.max():.2f} degrees")
    print(f"  auto differs from the statistical estimate on {int((np.abs(auto - statistical) > 1e-9).sum())} of "
          f"{auto.size} scenes")
    for kelvin, a, s in zip(KELVINS, auto.reshape(len(KELVINS), -1), statistical.reshape(len(KELVINS), -1)):
        print(f"  {kelvin} K: auto mean {a.mean():.2f}, worst {a.max():.2f}; statistical alone mean {s.mean():.2f}, "
              f"worst {s.max():.2f} degrees")
    tests = {name: (auto_wb_errors(hue)[0], auto_wb_errors(hue, auto=rawcolour.statistical_neutral)[0])
             for name, hue in DOMINANT_HUES.items()}
    for i, label in enumerate(("auto", "statistical alone")):
        e = np.concatenate([t[i] for t in tests.values()])
        print(f"colour_report's scenes two thirds red, green or blue at 3000, 5500 and 7500 K, {label}: median "
              f"{np.median(e):.2f}, worst {e.max():.2f} degrees")
    for name, (frame, white, what) in real_whites().items():
        n, s, gw = rawcolour.auto_neutral(frame), rawcolour.statistical_neutral(frame), rawcolour._grey_world(frame)
        against = (f"against {what}: auto {angle(n, white):.1f}, statistical alone {angle(s, white):.1f}, grey world "
                   f"{angle(gw, white):.1f} degrees; " if white is not None else "no independent white; ")
        used, seen = rawcolour.grey_pixel_neutral(frame, s)
        pixels = (f"grey pixels {seen['grey_cells']} cells, {seen['share']:.1%} of the usable" +
                  (f", spread {seen['spread']:.1f}, {seen['from_reference']:.1f} from the statistical estimate"
                   if "spread" in seen else "") + (", used" if used is not None else ", not used"))
        print(f"{name}: {against}auto against grey world {angle(n, gw):.1f} degrees; {pixels}")


if __name__ == "__main__":
    main()
