"""Evaluation: metrics, the reference pipelines, the report files, and the shipped model card's numbers."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge4k.calibration.dng import write_dng
from edge4k.cli import main
from edge4k.kernels.raw import read_raw
from edge4k.models import evaluate as ev

from conftest import smooth_image, tiny_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_EVAL = ROOT / "docs" / "eval" / "eval_held-out.json"


def test_metrics_of_identical_and_shifted_images():
    img = smooth_image(48, 64).astype(np.float64)
    same = ev.metrics(img, img)
    assert same["psnr"] == np.inf and same["ssim"] == pytest.approx(1) and same["de2000_mean"] == 0
    off = ev.metrics(img, np.clip(img * [1.0, 0.9, 1.0], 0, 1))
    assert 0 < off["de2000_mean"] <= off["de2000_p95"] and off["psnr"] < 40


def test_classical_pipeline_uses_libraws_colour_steps(tmp_path):
    # Menon + our colour steps and LibRaw differ only in the demosaic and LibRaw's own gamma table.
    case = ev.eval_cases({"s": smooth_image(96, 128)})[0]
    path = write_dng(tmp_path / "c.dng", case.capture)
    frame = read_raw(path)
    a, b = ev.run_libraw(path, frame, case), ev.run_menon(path, frame, case)
    assert -10 * np.log10(np.mean((a - b) ** 2)) > 30


def test_evaluate_scores_every_method_and_writes_the_report(tmp_path):
    report = ev.evaluate(tiny_model(), {"s": smooth_image(64, 96)}, progress=False, keep_outputs=True)
    assert report["unavailable"] == {}          # demosaicnet's wheel ships its pretrained Bayer weights
    assert list(report["mean"]) == list(ev.METHODS)
    assert [c["case"] for c in report["cases"]] == ["s/iso200", "s/iso1600"]
    for case in report["cases"]:
        for m in ev.METHODS:
            v = case["methods"][m]
            assert np.isfinite(list(v.values())).all() and 0 < v["ssim"] <= 1 and v["de2000_p95"] >= v["de2000_mean"]
    # Knowing the generator's brightness gain and tone curve must beat the same demosaic without them.
    assert report["mean"]["menon2007+oracle"]["psnr"] > report["mean"]["menon2007"]["psnr"]
    paths = ev.write_report(report, tmp_path, set_name="t", title="tiny")
    public = json.loads(paths["json"].read_text())
    assert "_outputs" not in public and public["libraw_options"]["no_auto_bright"] is True
    md = paths["md"].read_text()
    assert all(label in md for label in ev.LABELS.values())
    # GT, LibRaw, Edge4K side by side, one row (the ISO 1600 case), crops shrunk to fit the 64 px image.
    assert Image.open(paths["png"]).size == (3 * 2 * 64, 2 * 64 + 18)


def test_eval_cli_writes_json_markdown_and_crops(tmp_path, capsys):
    assert main(["eval", "--preset", "e4k-t-f16", "--methods", "edge4k", "-o", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "eval_held-out.json").read_text())
    assert report["model"]["weights"] == "seed:0"          # the tiny preset ships no checkpoint
    assert {c["photo"] for c in report["cases"]} == {"astronaut", "chelsea", "grace_hopper"}
    assert (tmp_path / "crops_held-out.png").is_file() and "Edge4K (eager)" in capsys.readouterr().out


def test_unknown_method_is_refused(capsys):
    assert main(["eval", "--methods", "nope", "-o", "/nonexistent"]) == 1
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_shipped_checkpoint_reproduces_the_model_card_table():
    """The committed table (docs/eval, written by `edge4k eval -o docs/eval`) comes back on a fresh
    checkout. To stay fast this re-runs the first held-out photo's cases (Edge4K and LibRaw); eval_cases
    seeds each photo by its position, so they are the same cases as in the full run."""
    from edge4k.calibration.photos import load_photo, photo_names
    from edge4k.cli import load_for_preset
    shipped = json.loads(SHIPPED_EVAL.read_text())
    model, weights = load_for_preset(shipped["model"]["preset"], None)
    assert weights == shipped["model"]["weights"]
    first = photo_names("held-out")[0]
    fresh = ev.evaluate(model, {first: load_photo(first)}, methods=("edge4k", "libraw"), progress=False)
    rows = {r["case"]: r for r in shipped["cases"]}
    for case in fresh["cases"]:
        for m, values in case["methods"].items():
            for k, v in values.items():
                assert v == pytest.approx(rows[case["case"]]["methods"][m][k], abs=0.01), (case["case"], m, k)
