"""LiteRT target (android-litert): small fp32 and int8 builds, the litert runtime
backend, the NHWC contract, and the refusals. Builds are tiny (e4k-t-f16, 128-pixel
tiles, 2 calibration samples); fp16 is checked on one stage."""
import json
import shutil

import pytest
import torch
from conftest import build_below_the_floor_fails, tiny_model

from edge4k.backends.base import PSNR_FLOOR, BuildSpec, psnr
from edge4k.backends.registry import open_build
from edge4k.cli import main
from edge4k.compiler.build import compile_build
from edge4k.errors import Edge4KError
from edge4k.models import NETWORK_STAGES
from edge4k.runtime.backends import EagerBackend
from edge4k.runtime.manifest import load_manifest
from edge4k.runtime.pipeline import TileOptions, process

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

SPEC = dict(target="android-litert", preset="e4k-t-f16", width=256, height=256, tile=128, overlap=32, batch=2,
            calib=2)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("litert")
    model = tiny_model()
    out = {}
    for precision in ("fp32", "int8"):
        out[precision] = root / precision
        compile_build(model, BuildSpec(precision=precision, **SPEC), out[precision], weights="test")
    return model, out


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_build_manifest_nhwc_io_ops_and_accuracy(builds, precision):
    _, paths = builds
    manifest = load_manifest(paths[precision])
    assert manifest["target"] == "android-litert" and manifest["backend"] == "litert"
    assert manifest["versions"]["litert-torch"].startswith("0.10") and "ai-edge-litert" in manifest["versions"]
    dtype = "int8" if precision == "int8" else "float32"
    for stage in NETWORK_STAGES:
        entry = manifest["stages"][stage]
        assert (paths[precision] / entry["file"]).is_file() and entry["bytes"] > 0
        assert manifest["verification"]["psnr_db"][stage] >= PSNR_FLOOR[precision]
        assert entry["ops"] and all(isinstance(n, int) and n > 0 for n in entry["ops"].values())
        assert entry["transpose_ops"] == entry["ops"].get("TRANSPOSE", 0)
        assert set(entry["delegates"]) >= {"gpu", "qnn"}
        assert all(isinstance(v["cpu_fallback_ops"], dict) for v in entry["delegates"].values())
    assert manifest["verification"]["floor_db"] == PSNR_FLOOR[precision]
    assert manifest["verification"]["tile_psnr_db"] >= PSNR_FLOOR[precision]    # the chained tile
    enc = manifest["stages"]["encoder"]
    assert enc["tflite_inputs"]["args_0"]["shape"] == [2, 64, 64, 4]        # NHWC packed tile
    assert enc["tflite_inputs"]["args_0"]["dtype"] == dtype
    assert manifest["stages"]["decoder"]["tflite_outputs"]["output_0"]["shape"] == [2, 128, 128, 3]
    assert manifest["stages"]["global"]["transpose_ops"] == 0
    if precision == "int8":
        assert "CONV_2D" in manifest["stages"]["decoder"]["ops"] and "DIV" in manifest["stages"]["backbone"]["float_ops"]
        assert manifest["stages"]["backbone"]["delegates"]["qnn"]["cpu_fallback_ops"]["DIV"]
        assert json.loads((paths[precision] / "quant_recipe.json").read_text())[0]["algorithm_key"]
        # int8 weights shrink the files where weights dominate: the global branch (62k parameters)
        # measures 0.31x fp32 and the whole build 0.56x. The tiny decoder (5k parameters) does
        # not shrink: its per-channel quantisation parameters outweigh the 15 KB of weights saved.
        fp32 = load_manifest(paths["fp32"])["stages"]
        assert manifest["stages"]["global"]["bytes"] < 0.4 * fp32["global"]["bytes"]
        total = sum(manifest["stages"][s]["bytes"] for s in NETWORK_STAGES)
        assert total < 0.65 * sum(fp32[s]["bytes"] for s in NETWORK_STAGES)


def test_a_build_below_the_floor_fails_and_keeps_the_existing_build(builds, tmp_path, monkeypatch):
    model, paths = builds
    build_below_the_floor_fails(model, BuildSpec(precision="fp32", **SPEC), paths["fp32"], tmp_path, monkeypatch)


def test_fp16_weights_recipe_keeps_accuracy_and_halves_weights():
    from ai_edge_litert.interpreter import Interpreter

    from edge4k.backends.litert import lower_stage, signature_inputs
    from edge4k.backends.litert.quantize import fp16_recipe, quantize_tflite
    from edge4k.backends.passes import fold_batchnorm

    model = tiny_model()
    x = torch.rand(1, 4, 32, 32), torch.rand(1, model.cfg.meta_dim)
    flat = lower_stage(fold_batchnorm(model.global_branch), x)
    half = quantize_tflite(flat, fp16_recipe())
    assert len(half) < 0.7 * len(flat)
    runner = Interpreter(model_content=half).get_signature_runner()
    (out,) = runner(**signature_inputs(x)).values()
    with torch.no_grad():
        assert psnr(model.global_branch(*x), torch.from_numpy(out)) >= PSNR_FLOOR["fp16"]


def test_litert_pipeline_matches_eager(builds, sample_dng):
    model, paths = builds
    eager, _ = process(sample_dng, EagerBackend(model), model.cfg, TileOptions(tile=128, overlap=32, batch=2))
    for precision, floor in (("fp32", 60.0), ("int8", 30.0)):
        backend = open_build(paths[precision], backend="litert")
        compiled, _ = process(sample_dng, backend, backend.cfg, TileOptions.from_manifest(backend.manifest))
        assert psnr(eager, compiled) >= floor, precision


def test_cli_run_litert_writes_a_valid_profile(builds, sample_dng, tmp_path):
    _, paths = builds
    prof = tmp_path / "p.json"
    assert main(["run", sample_dng, "-o", str(tmp_path / "o.png"), "--backend", "litert",
                 "--artifacts", str(paths["int8"]), "--profile", str(prof)]) == 0
    profile = json.loads(prof.read_text())
    assert profile["device"]["backend"] == "litert" and profile["model"]["precision"] == "int8"
    assert profile["tiling"]["tile"] == 128 and profile["memory"]["weight_bytes"] > 0


def test_broken_litert_builds_are_refused(builds, tmp_path):
    _, paths = builds
    other = tmp_path / "b"
    shutil.copytree(paths["fp32"], other)
    # a stage file swapped for another stage's: not the file the manifest's digest names
    shutil.copy(other / "global.tflite", other / "encoder.tflite")
    with pytest.raises(Edge4KError, match=r"encoder.tflite: sha256 .* is not the .* manifest.json records"):
        open_build(other)
    # and with its digest recorded (a build made that way), its NHWC input shape is not the manifest's
    from edge4k.files import sha256_file
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["stages"]["encoder"]["file_sha256"] = sha256_file(other / "encoder.tflite")
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Edge4KError, match=r"encoder.tflite takes inputs .* expects NHWC \[\(2, 64, 64, 4\)\]"):
        open_build(other)
    (other / "encoder.tflite").unlink()
    with pytest.raises(Edge4KError, match="stage file encoder.tflite for encoder is missing"):
        open_build(other)
    with pytest.raises(Edge4KError, match="compiled for target android-litert .*not for backend executorch"):
        open_build(paths["fp32"], backend="executorch")
    backend = open_build(paths["fp32"])
    with pytest.raises(Edge4KError, match=r"encoder: the build takes inputs of shape \[\(2, 4, 64, 64\)\], got"):
        backend.run("encoder", torch.zeros(1, 4, 64, 64))


def test_cli_refuses_a_build_for_another_backend(builds, sample_dng, tmp_path, capsys):
    _, paths = builds
    out = tmp_path / "o.png"
    assert main(["run", sample_dng, "-o", str(out), "--backend", "executorch", "--artifacts", str(paths["fp32"])]) == 1
    err = capsys.readouterr().err
    assert "compiled for target android-litert (backend litert), not for backend executorch" in err
    assert not out.exists()


def test_litert_refuses_unknown_precision(tmp_path, capsys):
    assert main(["compile", "--target", "android-litert", "--preset", "e4k-t-f16", "--resolution", "256x256",
                 "--quant", "w8a8", "-o", str(tmp_path / "b")]) == 1
    assert "supports precisions fp32, fp16, int8" in capsys.readouterr().err
