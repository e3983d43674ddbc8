"""android-qnn target: passes, a small int8 build for one SoC run on the HTP emulation
of onnxruntime-qnn, its placement and accuracy, the qnn-htp-sim backend, `edge4k
check`, and the refusals. Builds are tiny (e4k-t-f16, 128-pixel tiles, 2 calibration
samples); the build is of e4k-t-f16-v3, so model v3's decoder inputs (the clip mask, the residual
gate) are placed and checked too."""
import json
import shutil
import sys

import pytest
import torch
from conftest import build_below_the_floor_fails, tiny_model
from test_models import stage_inputs

from edge4k.backends.base import PSNR_FLOOR, BuildSpec, example_inputs
from edge4k.backends.passes import fold_batchnorm, space_to_channel_as_conv
from edge4k.backends.qnn.runtime import check_soc
from edge4k.backends.registry import open_build
from edge4k.cli import main
from edge4k.compiler.build import check_build, compile_build
from edge4k.errors import Edge4KError
from edge4k.models import NETWORK_STAGES
from edge4k.models.blocks import SpaceToChannelDown
from edge4k.runtime.manifest import INPUT_NAMES, OUTPUT_NAMES, load_manifest

onnxruntime_qnn = pytest.importorskip("onnxruntime_qnn")

SPEC = dict(target="android-qnn", preset="e4k-t-f16-v3", width=256, height=256, tile=128, overlap=32, batch=2, calib=2)


def test_space_to_channel_as_conv_keeps_outputs_and_removes_every_unshuffle():
    model = tiny_model()
    ins = stage_inputs(model.cfg)
    rewritten = space_to_channel_as_conv(fold_batchnorm(model.encoder))
    assert not [m for m in rewritten.modules() if isinstance(m, SpaceToChannelDown)]
    assert [m for m in model.encoder.modules() if isinstance(m, SpaceToChannelDown)]
    with torch.no_grad():
        torch.testing.assert_close(rewritten(*ins["encoder"]), model.encoder(*ins["encoder"]), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    model = tiny_model(name="e4k-t-f16-v3", clip_input=True, residual_gate=True)
    torch.manual_seed(2)
    for conv in (model.decoder.clip_skip, model.decoder.gate):    # zero-initialised: made to act
        torch.nn.init.normal_(conv.weight, std=0.5)
    out = tmp_path_factory.mktemp("qnn") / "int8"
    compile_build(model, BuildSpec(precision="int8", options={"soc": "SM8650"}, **SPEC), out, weights="test")
    return model, out


def test_build_manifest_records_soc_placement_and_accuracy(build):
    _, path = build
    manifest = load_manifest(path)
    assert manifest["target"] == "android-qnn" and manifest["backend"] == "qnn-htp-sim"
    assert manifest["qnn"] == {"soc": "SM8650", "soc_model": 57, "htp_arch": 75, "device": "Snapdragon 8 Gen 3",
                               "backend": "HTP", "qairt": onnxruntime_qnn.build_and_package_info.qnn_version,
                               "emulated_here": True}
    assert manifest["versions"]["onnxruntime_qnn"] == onnxruntime_qnn.__version__
    for stage in NETWORK_STAGES:
        entry = manifest["stages"][stage]
        place = entry["placement"]
        # every node inside one context binary on the HTP, nothing left to the CPU
        assert place["cpu"] == 0 and place["cpu_qdq"] == 0 and place["context_binaries"] == 1, (stage, place)
        assert place["htp"] == place["nodes"] > 0
        assert entry["context_binary_bytes"] > 0 and (path / entry["file"]).is_file()
        assert entry["context_sdk"][0].startswith(f"v{manifest['qnn']['qairt']}")
        assert manifest["verification"]["psnr_db"][stage] >= PSNR_FLOOR["int8"]
    assert manifest["verification"]["floor_db"] == PSNR_FLOOR["int8"]
    assert manifest["verification"]["tile_psnr_db"] >= PSNR_FLOOR["int8"]      # the chained tile
    assert manifest["stages"]["backbone"]["quantization"]["fp16_nodes"] > 0     # LiteLA's core
    assert manifest["stages"]["decoder"]["quantization"]["activations"] == "uint8"
    assert manifest["stages"]["encoder"]["inputs"] == [{"name": "packed", "shape": [2, 4, 64, 64], "dtype": "float32"}]


def test_a_build_below_the_floor_fails_and_keeps_the_existing_build(build, tmp_path, monkeypatch):
    model, path = build
    build_below_the_floor_fails(model, BuildSpec(precision="int8", options={"soc": "SM8650"}, **SPEC), path,
                                tmp_path, monkeypatch)


def test_check_runs_the_whole_image_on_the_htp_emulation(build, sample_dng):
    model, path = build
    report = check_build(model, path, images=[sample_dng], samples=1)
    assert report["failing"] == {}, report
    assert report["image_psnr_db"]["sample.dng"] >= 35.0
    assert set(report["psnr_db"]) == set(NETWORK_STAGES)


def test_cli_run_writes_a_profile_labelled_emulated(build, make_dng, tmp_path):
    _, path = build
    prof = tmp_path / "p.json"
    assert main(["run", make_dng(), "-o", str(tmp_path / "o.png"), "--backend", "qnn-htp-sim",
                 "--artifacts", str(path), "--soc", "sm8650", "--profile", str(prof)]) == 0
    profile = json.loads(prof.read_text())
    assert profile["device"]["backend"] == "qnn-htp-sim" and profile["device"]["delegate"] == "qnn-htp"
    assert profile["timing"]["emulated"] is True and "say nothing about the phone" in profile["timing"]["note"]
    assert profile["model"]["precision"] == "int8" and profile["tiling"]["batch"] == 2


def test_run_refuses_a_build_for_another_soc(build, sample_dng, tmp_path, capsys):
    _, path = build
    out = tmp_path / "o.png"
    assert main(["run", sample_dng, "-o", str(out), "--backend", "qnn-htp-sim", "--artifacts", str(path),
                 "--soc", "SM8750"]) == 1
    assert "holds context binaries for SM8650, not SM8750" in capsys.readouterr().err and not out.exists()
    with pytest.raises(Edge4KError, match="not compiled for a Qualcomm SoC"):
        check_soc({"target": "host-xnnpack"}, "SM8650", "b")


def test_broken_qnn_builds_are_refused(build, tmp_path):
    _, path = build
    other = tmp_path / "b"
    shutil.copytree(path, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["versions"]["qairt"] = "2.20.0"
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Edge4KError, match="built with QAIRT 2.20.0"):
        open_build(other)
    (other / "decoder.ctx.onnx").unlink()
    manifest["versions"]["qairt"] = load_manifest(path)["versions"]["qairt"]
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Edge4KError, match="decoder.ctx.onnx for decoder is missing"):
        open_build(other)


def test_check_cli_fails_with_a_clear_message(build, make_dng, tmp_path, capsys):
    # the CLI rebuilds the eager model from the seed or checkpoint the manifest names; this build names neither
    _, path = build
    assert main(["check", "--artifacts", str(path)]) == 1
    assert "was built from test; pass that checkpoint with --checkpoint" in capsys.readouterr().err
    seeded = tmp_path / "seeded"
    shutil.copytree(path, seeded)
    manifest = json.loads((seeded / "manifest.json").read_text())
    manifest["weights"] = "seed:0"          # an untrained seed-0 model is not what was compiled: it must fail
    (seeded / "manifest.json").write_text(json.dumps(manifest))
    assert main(["check", make_dng(), "--artifacts", str(seeded), "--samples", "1", "--floor", "30"]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "fails the accuracy check" in captured.err and "(--floor)" in captured.err


@pytest.fixture(scope="module")
def backbone_onnx(tmp_path_factory):
    from edge4k.backends.qnn.lower import export_onnx
    from edge4k.kernels.tiling import plan_tiles

    model = tiny_model()
    inputs = example_inputs(model.cfg, plan_tiles(128, 128, compression=16, tile=128, overlap=0, native=False), 1)
    path = tmp_path_factory.mktemp("onnx") / "backbone.onnx"
    export_onnx(fold_batchnorm(model.backbone), inputs["backbone"], path, input_names=INPUT_NAMES["backbone"],
                output_name=OUTPUT_NAMES["backbone"])
    return model, inputs["backbone"], path


def test_a16_layer_gets_uint16_activations_and_the_rest_uint8(backbone_onnx, tmp_path):
    import onnx

    from edge4k.backends.qnn.quantize import qnn_recipe, quantize_stage

    model, example, path = backbone_onnx
    samples = [(torch.randn_like(example[0]), torch.randn_like(example[1]))]
    recipe = qnn_recipe("int8", a16=("backbone.blocks.0.ffn",))
    info = quantize_stage(path, tmp_path / "q.onnx", stage="backbone", names=INPUT_NAMES["backbone"],
                          example=example, samples=samples, recipe=recipe)
    assert info["activations"] == "uint8" and info["a16_layers"] == ["blocks.0.ffn"] and info["a16_tensors"] > 0
    q = onnx.load(tmp_path / "q.onnx")
    zero_point_types = {i.data_type for i in q.graph.initializer if i.name.endswith("_zero_point")}
    assert onnx.TensorProto.UINT16 in zero_point_types and onnx.TensorProto.UINT8 in zero_point_types
    with pytest.raises(Edge4KError, match="no such layer in the backbone stage"):
        quantize_stage(path, tmp_path / "q2.onnx", stage="backbone", names=INPUT_NAMES["backbone"],
                       example=example, samples=samples, recipe=qnn_recipe("int8", a16=("backbone.blocks.7",)))


def test_calibration_set_empty_or_of_the_wrong_shape_is_refused(backbone_onnx, tmp_path):
    from edge4k.backends.qnn.quantize import qnn_recipe, quantize_stage

    _, example, path = backbone_onnx
    kwargs = dict(stage="backbone", names=INPUT_NAMES["backbone"], example=example, recipe=qnn_recipe("int8"))
    with pytest.raises(Edge4KError, match="calibration set for backbone is empty"):
        quantize_stage(path, tmp_path / "q.onnx", samples=[], **kwargs)
    wrong = (torch.zeros(1, 8, 4, 4), example[1])
    with pytest.raises(Edge4KError, match=r"calibration sample 0 for backbone has input shapes .*\(1, 8, 4, 4\)"):
        quantize_stage(path, tmp_path / "q.onnx", samples=[wrong], **kwargs)
    assert not (tmp_path / "q.onnx").exists()


def test_missing_onnxruntime_qnn_is_a_clear_error(monkeypatch):
    from edge4k.backends.qnn import ep

    monkeypatch.setitem(sys.modules, "onnxruntime_qnn", None)
    monkeypatch.setattr(ep, "_registered", None)
    with pytest.raises(Edge4KError, match=r"needs onnxruntime-qnn .*pip install 'edge4k\[qnn\]'"):
        ep.require_qnn()


@pytest.mark.parametrize("argv, needle", [
    (["--target", "android-qnn", "--soc", "SM9999"], "unknown SoC 'SM9999'; valid SoCs: SM8550, SM8650, SM8750"),
    (["--target", "android-qnn", "--quant", "fp32"], "supports precisions int8, int8-a16"),
    (["--target", "android-qnn", "--keep-fp32", "blocks.0.attn"], "use --a16 STAGE[.LAYER]"),
    (["--target", "android-qnn", "--a16", "head"], "--a16 takes a stage"),
    (["--target", "host-xnnpack", "--soc", "SM8650"], "target host-xnnpack takes no --soc option"),
    (["--target", "android-qnn", "--calib", "0"], "--calib must be >= 1"),
])
def test_compile_refuses_impossible_qnn_builds(tmp_path, capsys, argv, needle):
    out = tmp_path / "b"
    assert main(["compile", "--preset", "e4k-t-f16", "--resolution", "256x256", "-o", str(out), *argv]) == 1
    assert needle in capsys.readouterr().err and not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_run_soc_needs_a_compiled_build(tmp_path, capsys):
    assert main(["run", "-o", str(tmp_path / "o.png"), "--soc", "SM8650"]) == 1
    assert "--soc needs a compiled backend" in capsys.readouterr().err


def test_placement_reports_nodes_the_htp_leaves_to_the_cpu(tmp_path):
    """Without the strided-conv pass, pixel_unshuffle exports as a 6-D reshape/transpose
    that the HTP does not take: the placement report must name those nodes."""
    import onnx

    from edge4k.backends.qnn import get_soc
    from edge4k.backends.qnn.ep import compile_context
    from edge4k.backends.qnn.lower import export_onnx, placement
    from edge4k.backends.qnn.quantize import qnn_recipe, quantize_stage

    model = tiny_model()
    example = stage_inputs(model.cfg)["encoder"]
    export_onnx(fold_batchnorm(model.encoder), example, tmp_path / "f.onnx", input_names=INPUT_NAMES["encoder"],
                output_name=OUTPUT_NAMES["encoder"])
    quantize_stage(tmp_path / "f.onnx", tmp_path / "q.onnx", stage="encoder", names=INPUT_NAMES["encoder"],
                   example=example, samples=[example], recipe=qnn_recipe("int8"))
    compile_context(tmp_path / "q.onnx", tmp_path / "c.onnx", get_soc("SM8550"))
    place = placement(onnx.load(tmp_path / "f.onnx"), onnx.load(tmp_path / "c.onnx"))
    levels = len(model.cfg.enc_widths)
    assert place["cpu_ops"] == {"Reshape": 2 * levels, "Transpose": levels}, place
    assert place["htp"] == place["nodes"] - 3 * levels and len(place["cpu_nodes"]) == 3 * levels
