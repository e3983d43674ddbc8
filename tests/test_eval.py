"""Evaluation: metrics, fair anchors (same finishing as the ground truth), the protocol, the report
files, the robustness sweep."""
import json

import numpy as np
import pytest
from conftest import smooth_image, tiny_model
from PIL import Image

from edge4k.cli import main
from edge4k.datasets.dng import write_dng
from edge4k.datasets.unprocess import draw_params, synthesize
from edge4k.errors import Edge4KError
from edge4k.evaluation import evaluate as ev
from edge4k.kernels.raw import read_raw
from edge4k.models import DEFAULT_PRESET, build_model, get_preset


def psnr(a, b):
    return -10 * np.log10(np.mean((np.asarray(a, np.float64) - b) ** 2))


def capture(img, tmp_path, **conditions):
    rng = np.random.default_rng(3)
    cap = synthesize(img, draw_params(rng, cameras="held-out", **conditions), rng)
    path = write_dng(tmp_path / "c.dng", cap)
    return cap, path, read_raw(path)


def test_metrics_of_identical_and_shifted_images():
    img = smooth_image(48, 64).astype(np.float64)
    same = ev.metrics(img, img)
    assert same["psnr"] == np.inf and same["ssim"] == pytest.approx(1) and same["de2000_mean"] == 0
    off = ev.metrics(img, np.clip(img * [1.0, 0.9, 1.0], 0, 1))
    assert 0 < off["de2000_mean"] <= off["de2000_p95"] and off["psnr"] < 40
    assert np.isnan(ev.metrics(img, img * np.nan)["psnr"])


@pytest.mark.parametrize("method", ["libraw-ahd", "libraw-dcb", "menon2007", "mhc"])
@pytest.mark.parametrize("exposure", [0.5, 2.3])
def test_every_anchor_reproduces_a_flat_field_exactly_so_the_ground_truth_is_fair(tmp_path, method, exposure):
    # On a noise-free flat field demosaicing has nothing to do: any disagreement with the ground truth
    # would be a convention (levels, white balance, clipping) the truth does not share with the anchor.
    # At +2.3 EV the field sits near (not at) the white level, where LibRaw's default adjust_maximum
    # would have rescaled it.
    cap, path, frame = capture(np.full((64, 64, 3), [0.6, 0.5, 0.4]), tmp_path, iso=None, ev=exposure,
                               illuminant=2856.0, cfa="GBRG", bits=14, black_level=2048)
    assert cap.clean.max() < 1 and (exposure < 2 or cap.clean.max() > 0.75)
    truth = ev.clean_linear(cap, frame)
    out = ev.make_runners(None, [method])[0][method](path, frame)
    inner = (slice(4, -4), slice(4, -4))
    np.testing.assert_allclose(out[inner], truth[inner], atol=2e-4)


def test_finishing_is_libraws_own_colour_pipeline(tmp_path):
    # LibRaw's sRGB output (its matrix, white balance and curve, no brightening) equals Edge4K's neutral
    # finishing of LibRaw's camera-space output: the neutral look is LibRaw's convention.
    import rawpy
    cap, path, frame = capture(smooth_image(96, 128), tmp_path, iso=None, ev=-0.5, illuminant="D65")
    with rawpy.imread(str(path)) as raw:
        own = raw.postprocess(use_camera_wb=True, no_auto_bright=True, output_color=rawpy.ColorSpace.sRGB,
                              gamma=(2.4, 12.92), output_bps=16, user_flip=0, adjust_maximum_thr=0.0,
                              highlight_mode=rawpy.HighlightMode.Clip).astype(np.float64) / 65535
    ours = ev.finished(ev.run_libraw("libraw-ahd")(path, frame), frame, 1.0, "neutral")
    assert psnr(ours, own) > 40


def test_untrained_edge4k_is_exactly_its_classical_base(tmp_path):
    model = build_model(get_preset("e4k-t-f16"))       # zero-initialised residual head
    cap, path, frame = capture(smooth_image(64, 96), tmp_path, iso=800)
    a = ev.run_edge4k(model)(path, frame)
    b = ev.run_mhc(path, frame)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_protocol_cycles_held_out_cameras_phases_exposures_and_light():
    cases = ev.protocol_cases({f"p{i}": smooth_image(32, 32, seed=i) for i in range(4)})
    assert [c.name for c in cases[:3]] == ["p0/iso100", "p0/iso800", "p0/iso3200"]
    params = [c.capture.params for c in cases]
    assert {p.camera for p in params} <= set(ev.HELD_OUT_CAMERAS) and len({p.camera for p in params}) == 12
    assert {p.cfa for p in params} == {"RGGB", "BGGR", "GRBG", "GBRG"}
    assert len({p.ev for p in params}) == 5 and len({p.illuminant_xy for p in params}) == 5
    again = ev.protocol_cases({f"p{i}": smooth_image(32, 32, seed=i) for i in range(4)})
    assert all(np.array_equal(a.capture.mosaic, b.capture.mosaic) for a, b in zip(cases, again))   # seeded


def test_evaluate_scores_every_method_in_both_looks_and_writes_the_report(tmp_path):
    report = ev.evaluate(tiny_model(), {"s": smooth_image(64, 96)}, progress=False, keep_outputs=True)
    assert report["unavailable"] == {}          # demosaicnet's wheel ships its pretrained Bayer weights
    assert report["looks"] == ["neutral", "natural"]
    assert [c["case"] for c in report["cases"]] == ["s/iso100", "s/iso800", "s/iso3200"]
    for look in report["looks"]:
        assert list(report["mean"][look]) == list(ev.METHODS)
        assert report["best_classical"][look] in ev.CLASSICAL
        for case in report["cases"]:
            for m in ev.METHODS:
                v = case["scores"][look][m]
                assert np.isfinite(list(v.values())).all() and 0 < v["ssim"] <= 1
                assert v["de2000_p95"] >= v["de2000_mean"]
    assert all(c["exposure_gain"] >= 1 for c in report["cases"])
    # The natural look brightens: the ground truth differs between the looks of a dark capture.
    dark = next(c for c in report["cases"] if c["conditions"]["ev"] < 0)
    assert dark["exposure_gain"] > 1.2
    paths = ev.write_report(report, tmp_path, set_name="t", title="tiny")
    public = json.loads(paths["json"].read_text())
    assert "_outputs" not in public and public["libraw_options"]["no_auto_bright"] is True
    md = paths["md"].read_text()
    assert all(ev.LABELS[m] in md for m in ev.METHODS) and "natural look" in md
    # Ground truth + LibRaw AHD + best classical (if another) + demosaicnet + Edge4K, one row (ISO 3200).
    cols = len({"libraw-ahd", report["best_classical"]["neutral"], "demosaicnet", "edge4k"}) + 1
    assert Image.open(paths["png_natural"]).size == (cols * 2 * 64, 2 * 64 + 18)


def test_eval_cli_writes_json_markdown_and_crops(tmp_path, capsys):
    assert main(["eval", "--preset", "e4k-t-f16", "--methods", "edge4k", "mhc", "--look", "neutral",
                 "-o", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "eval_held-out.json").read_text())
    assert report["model"]["weights"] == "seed:0"          # the tiny preset ships no checkpoint
    assert report["looks"] == ["neutral"]
    assert {c["photo"] for c in report["cases"]} == {"astronaut", "chelsea", "grace_hopper"}
    assert (tmp_path / "crops_held-out_neutral.png").is_file() and "Malvar-He-Cutler" in capsys.readouterr().out


def test_bad_eval_requests_are_one_line_errors(tmp_path, capsys):
    assert main(["eval", "--methods", "nope", "-o", str(tmp_path)]) == 1
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["eval", "--set", "kodak24", "--data", str(tmp_path), "--methods", "mhc", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no kodak24 images in" in err and err.count("\n") == 1


def test_quick_sweep_reports_every_cell_against_the_best_classical_anchor(tmp_path):
    model = tiny_model()
    report = ev.sweep(model, grid={"ev": (0.0, 1.5), "iso": (100.0,), "illuminant": (2856.0,)}, size=48,
                      progress=False)
    assert len(report["cells"]) == 2 and report["summary"]["non_finite"] == 0
    assert set(report["items"]) >= {"black", "grey", "white", "colours", "zone_plate", "siemens_star"}
    for cell in report["cells"]:
        for look in ("neutral", "natural"):
            c = cell[look]
            assert c["best_classical"] in ev.CLASSICAL
            assert c["delta_db"] == pytest.approx(c["psnr"]["edge4k"] - c["psnr"][c["best_classical"]], abs=2e-3)
            assert c["flat_de2000_max"] >= 0 and set(c["black_cast_de2000"]) == set(report["methods"])
    paths = ev.write_sweep(report, tmp_path)
    assert Image.open(paths["png"]).size[0] > 400 and "Robustness sweep" in paths["md"].read_text()


@pytest.fixture(scope="module")
def shipped_quick_sweep():
    """A reduced robustness sweep with the shipped checkpoint: white charts that clip, saturated colours,
    a zone plate, a Siemens star and photo crops, at 0 and +1.5 EV, ISO 100 and 6400, under tungsten
    light, held-out cameras."""
    from edge4k.models.checkpoint import load_for_preset
    model, weights = load_for_preset(DEFAULT_PRESET, None)
    assert not weights.startswith("seed:")
    return ev.sweep(model, grid=ev.SWEEP_QUICK, size=96, progress=False)


def test_shipped_model_is_not_beaten_by_classical_converters_on_bright_clipped_or_noisy_captures(shipped_quick_sweep):
    """CI guard against the 'magenta noise on bright scenes' failure."""
    report = shipped_quick_sweep
    assert report["summary"]["non_finite"] == 0
    # The failure this guards against rendered bright scenes 20-30 dB below LibRaw. The model card's
    # target (no cell more than 0.5 dB below the best classical anchor) is a benchmark number that
    # the shipped model does not meet everywhere (docs/MODEL_CARD.md); here no cell may fall 2 dB below.
    deltas = [(c["ev"], c["iso"], look, c[look]["delta_db"]) for c in report["cells"] for look in ev.LOOKS]
    assert min(d[-1] for d in deltas) >= -2.0, deltas
    grey = [c[look]["grey_cast_de2000"] for c in report["cells"] for look in ev.LOOKS]
    assert max(grey) <= ev.FLAT_DE2000_LIMIT, grey                           # a grey field stays grey


def test_white_field_at_the_clip_is_no_worse_than_classical(shipped_quick_sweep):
    # Model v2 failed this (a white field at the clip under ISO 6400 noise: CIEDE2000 8.7 against
    # LibRaw AHD's 3.8); model v3 passes.
    assert shipped_quick_sweep["summary"]["white_cast_above_best_classical"] == 0, shipped_quick_sweep["summary"]


# Known shortfalls of the shipped model (docs/MODEL_CARD.md), strict: a model that fixes one makes its
# test fail until the mark is taken off.
@pytest.mark.xfail(strict=True, reason="known: at ISO 6400 a black field's mean (clipped noise) comes out "
                   "more coloured than the best classical converter's")
def test_black_field_is_no_worse_than_classical(shipped_quick_sweep):
    assert shipped_quick_sweep["summary"]["black_cast_above_best_classical"] == 0, shipped_quick_sweep["summary"]


def test_gallery_puts_libraw_beside_edge4k_in_both_looks(tmp_path, sample_dng):
    paths = ev.gallery(tiny_model(), [sample_dng], tmp_path, crop=64, progress=False)
    sheet = np.asarray(Image.open(paths["png"]))
    assert sheet.shape == (64 * 2 + 16, 64 * 2 * 5, 3)          # overview + 2 methods x 2 looks, at 2x
    crops = [sheet[16:, c * 128:(c + 1) * 128] for c in range(1, 5)]
    assert all(c.std() > 1 for c in crops)                       # every cell holds a picture
    assert not np.array_equal(crops[0], crops[2])                # the looks differ
    assert "sample.dng" in paths["md"].read_text()


def test_gallery_window_is_where_the_detail_is_not_the_flat_centre():
    img = np.full((300, 400, 3), 0.5)
    img[:, 200:] = np.linspace(0.2, 0.8, 200)[None, :, None]          # a smooth ramp: little detail
    img[210:270, 20:80] = np.random.default_rng(0).uniform(0, 1, (60, 60, 1))   # texture, bottom left
    top, left = ev.detailed_window(img, 64)
    assert top <= 210 and top + 64 >= 270 and left <= 20 and left + 64 >= 80, (top, left)
    assert ev.detailed_window(img[:50, :60], 64) == (0, 0)            # a frame smaller than the window


def test_summary_tables_are_the_committed_evaluation(capsys):
    """The README's quality tables come from `edge4k eval --summary docs/eval --anchors docs/eval-v2`:
    each set's column is that set's committed mean, the pooled column is the mean over both sets'
    captures, and the anchors' rows are the earlier full report's, on the same captures."""
    from pathlib import Path
    docs = Path(__file__).parent.parent / "docs" / "eval"
    anchors = docs.parent / "eval-v2"
    assert main(["eval", "--summary", str(docs)]) == 1                 # the default's reports score no anchors
    assert "pass --anchors" in capsys.readouterr().err
    assert main(["eval", "--summary", str(docs), "--anchors", str(anchors)]) == 0
    out = capsys.readouterr().out
    ahd = json.loads((anchors / "eval_kodak24.json").read_text())["mean"]["neutral"]["libraw-ahd"]
    assert f"| LibRaw AHD | {ahd['psnr']:.2f} / {ahd['de2000_mean']:.2f} |" in out
    kodak, mcmaster = (json.loads((docs / f"eval_{s}.json").read_text()) for s in ("kodak24", "mcmaster18"))
    row = next(l for l in out.splitlines() if l.startswith("| **Edge4K**"))   # the neutral table comes first
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    neutral = kodak['mean']['neutral']['edge4k']
    assert cells[0] == f"{neutral['psnr']:.2f} / {neutral['de2000_mean']:.2f}"
    assert cells[1].startswith(f"{mcmaster['mean']['neutral']['edge4k']['psnr']:.2f} /")
    pooled = np.mean([c["scores"]["neutral"]["edge4k"]["psnr"] for r in (kodak, mcmaster) for c in r["cases"]])
    assert cells[2].startswith(f"{pooled:.2f} /") and len(kodak["cases"]) + len(mcmaster["cases"]) == 126
    assert main(["eval", "--summary", str(docs), "--anchors", str(anchors), "--build", "no-label"]) == 1
    # A "build" that is the eager evaluation itself: zero deltas, overall and per ISO, and its count of
    # captures below LibRaw AHD is the eager model's.
    assert main(["eval", "--summary", str(docs), "--anchors", str(anchors), "--build", f"same={docs}"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("- same, mcmaster18, neutral:"))
    mcmaster_ahd = json.loads((anchors / "eval_mcmaster18.json").read_text())
    below = sum(c["scores"]["neutral"]["edge4k"]["psnr"] < a["scores"]["neutral"]["libraw-ahd"]["psnr"] - 0.5
                for c, a in zip(mcmaster["cases"], mcmaster_ahd["cases"]))
    assert "; +0.00 dB)" in line and line.count("(+0.00)") == 3 and f"{below} of 54 captures more than 0.5 dB below" in line


def test_anchors_from_other_captures_are_refused(tmp_path):
    """An anchors folder evaluated on other captures cannot fill a model's table."""
    from pathlib import Path
    report = json.loads((Path(__file__).parent.parent / "docs" / "eval-v2" / "eval_kodak24.json").read_text())
    other = json.loads(json.dumps(report))
    other["cases"][0]["conditions"]["iso"] += 1
    mine = {**report, "mean": {k: {"edge4k": v["edge4k"]} for k, v in report["mean"].items()}}
    assert ev.with_anchors(mine, report, "a")["mean"]["neutral"] == report["mean"]["neutral"]
    with pytest.raises(Edge4KError, match="other captures"):
        ev.with_anchors(mine, other, "b")
