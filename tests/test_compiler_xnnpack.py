"""ExecuTorch/XNNPACK target: passes, small fp32 and int8 builds, the executorch
runtime backend, and the refusals. Builds are tiny (e4k-t-f16, 128-pixel tiles)."""
import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import build_below_the_floor_fails, tiny_model
from test_models import stage_inputs

from edge4k.backends.base import PSNR_FLOOR, TILE_PSNR_FLOOR, BuildSpec, psnr
from edge4k.backends.passes import count_batchnorms, fold_batchnorm
from edge4k.backends.registry import open_build
from edge4k.cli import main
from edge4k.compiler.build import compile_build
from edge4k.errors import Edge4KError
from edge4k.models import NETWORK_STAGES
from edge4k.runtime.backends import EagerBackend
from edge4k.runtime.manifest import load_manifest
from edge4k.runtime.pipeline import TileOptions, process

pytest.importorskip("executorch")


def randomise_norms(model):
    gen = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def test_fold_batchnorm_keeps_outputs_and_removes_every_norm():
    model = randomise_norms(tiny_model())
    ins = stage_inputs(model.cfg)
    for stage in NETWORK_STAGES:
        folded = fold_batchnorm(model.stage(stage))
        assert count_batchnorms(folded) == 0 and count_batchnorms(model.stage(stage)) > 0
        with torch.no_grad():
            torch.testing.assert_close(folded(*ins[stage]), model.stage(stage)(*ins[stage]), rtol=1e-4, atol=1e-5)


SPEC = dict(target="host-xnnpack", preset="e4k-t-f16", width=256, height=256, tile=128, overlap=32, batch=2, calib=2)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("builds")
    model = randomise_norms(tiny_model())
    out = {}
    for precision in ("fp32", "int8", "w4a8"):
        out[precision] = root / precision
        options = {"keep_fp32": ["decoder.head.1"]} if precision != "fp32" else {}
        compile_build(model, BuildSpec(precision=precision, options=options, **SPEC), out[precision], weights="test")
    return model, out


@pytest.mark.parametrize("precision", ["fp32", "int8", "w4a8"])
def test_build_manifest_accuracy_and_full_delegation(builds, precision):
    _, paths = builds
    manifest = load_manifest(paths[precision])
    assert manifest["target"] == "host-xnnpack" and manifest["precision"] == precision
    assert manifest["tiling"] == {"native": False, "tile": 128, "overlap": 32, "batch": 2, "tile_height": 128,
                                  "tile_width": 128, "padded": [272, 272]}   # 256 + 6 (phase padding)
    assert manifest["versions"]["executorch"].startswith("1.5")
    for stage in NETWORK_STAGES:
        entry = manifest["stages"][stage]
        assert entry["ops_outside_delegate"] == {}, (stage, entry["ops_outside_delegate"])
        assert entry["planned_arena_bytes"] > 0 and entry["file_bytes"] > 0
        assert manifest["verification"]["psnr_db"][stage] >= PSNR_FLOOR[precision]
    # the chained tile (every stage compiled, each fed the previous one's output) holds the floor too
    assert manifest["verification"]["floor_db"] == PSNR_FLOOR[precision]
    assert manifest["verification"]["tile_psnr_db"] >= PSNR_FLOOR[precision]
    assert manifest["stages"]["encoder"]["inputs"] == [{"name": "packed", "shape": [2, 4, 64, 64], "dtype": "float32"}]
    if precision != "fp32":
        assert manifest["stages"]["decoder"]["file_bytes"] < load_manifest(paths["fp32"])["stages"]["decoder"]["file_bytes"]
        assert manifest["stages"]["decoder"]["kept_fp32"] == ["head.1"]
        assert manifest["stages"]["backbone"]["precision"] == precision
        assert (manifest["stages"]["backbone"]["int4_linear_layers"] > 0) == (precision == "w4a8")


def test_compiled_pipeline_matches_eager(builds, sample_dng):
    model, paths = builds
    eager, _ = process(sample_dng, EagerBackend(model), model.cfg, TileOptions(tile=128, overlap=32, batch=2))
    for precision, floor in (("fp32", 60.0), ("int8", 30.0), ("w4a8", 25.0)):
        backend = open_build(paths[precision], backend="executorch")
        compiled, _ = process(sample_dng, backend, backend.cfg, TileOptions.from_manifest(backend.manifest))
        assert psnr(eager, compiled) >= floor, precision


def test_the_thread_pool_is_not_resized_under_loaded_methods(builds, capsys):
    """Resizing XNNPACK's pool after a method is loaded deadlocks the next run (seen in CI)."""
    from executorch.extension.pybindings import portable_lib

    from edge4k.backends.xnnpack.runtime import size_threadpool
    _, paths = builds
    backend = open_build(paths["fp32"])
    before = portable_lib._threadpool_get_thread_count()
    size_threadpool(before + 1)
    assert portable_lib._threadpool_get_thread_count() == before
    assert "would need a new process" in capsys.readouterr().err
    assert backend.run("global", *[torch.zeros(s) for s in backend.expected["global"]]).isfinite().all()


def test_cli_run_with_a_build_writes_a_valid_profile(builds, sample_dng, tmp_path):
    _, paths = builds
    prof = tmp_path / "p.json"
    # a process of its own: XNNPACK's pool can only be resized before the first method is loaded
    done = subprocess.run([sys.executable, "-m", "edge4k", "run", str(sample_dng), "-o", str(tmp_path / "o.png"),
                           "--backend", "executorch", "--artifacts", str(paths["int8"]), "--profile", str(prof),
                           "--threads", "1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    profile = json.loads(prof.read_text())
    assert profile["device"]["threads"] == 1                  # --threads reached XNNPACK's pool
    assert profile["device"]["backend"] == "executorch" and profile["device"]["delegate"] == "xnnpack"
    assert profile["model"]["precision"] == "int8" and profile["memory"]["planned_arena_bytes"] > 0
    assert profile["tiling"]["tile"] == 128 and profile["tiling"]["batch"] == 2


@pytest.mark.parametrize("argv, needle", [
    (["--preset", "e4k-s-f16"], "holds preset e4k-t-f16"),
    (["--tile", "256"], "compiled with tile=128"),
    (["--native"], "compiled with native=False"),
])
def test_cli_refuses_flags_that_disagree_with_the_build(builds, sample_dng, tmp_path, capsys, argv, needle):
    _, paths = builds
    out = tmp_path / "o.png"
    assert main(["run", sample_dng, "-o", str(out), "--backend", "executorch",
                 "--artifacts", str(paths["fp32"]), *argv]) == 1
    assert needle in capsys.readouterr().err and not out.exists()


def test_broken_builds_are_refused(builds, tmp_path):
    _, paths = builds
    other = tmp_path / "b"
    shutil.copytree(paths["fp32"], other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["versions"]["executorch"] = "0.9.0"
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Edge4KError, match="built with executorch 0.9.0"):
        open_build(other)
    (other / "model.pte").unlink()
    manifest["versions"]["executorch"] = load_manifest(paths["fp32"])["versions"]["executorch"]
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Edge4KError, match="missing"):
        open_build(other)
    with pytest.raises(Edge4KError, match="not an Edge4K build"):
        open_build(tmp_path)
    with pytest.raises(Edge4KError, match="not for backend litert"):
        open_build(paths["fp32"], backend="litert")


def test_a_build_below_the_floor_fails_and_keeps_the_existing_build(builds, tmp_path, monkeypatch):
    model, paths = builds
    build_below_the_floor_fails(model, BuildSpec(precision="int8", options={"keep_fp32": ["decoder.head.1"]}, **SPEC),
                                paths["int8"], tmp_path, monkeypatch)


def test_native_build_refuses_another_resolution(tmp_path, sample_dng):
    model = tiny_model()
    out = tmp_path / "native"
    compile_build(model, BuildSpec(target="host-xnnpack", preset="e4k-t-f16", width=256, height=256,
                                   tile=None, overlap=0, native=True, calib=1), out, weights="test")
    backend = open_build(out)
    with pytest.raises(Edge4KError, match="pad to 272x272 \\(up to 266x266\\); the input is 512x512"):
        process(sample_dng, backend, backend.cfg, TileOptions.from_manifest(backend.manifest))


@pytest.mark.parametrize("argv, needle", [
    (["--target", "host-xnnpack", "--tile", "100"], "multiple of the latent compression"),
    (["--target", "nope"], "unknown target 'nope'; valid targets: "),
    (["--target", "host-xnnpack", "--quant", "int2"], "supports precisions fp32, int8, int8-mixed, w4a8"),
    (["--target", "host-xnnpack", "--resolution", "4k"], "--resolution must look like"),
    (["--target", "host-xnnpack", "--calib", "0"], "--calib must be >= 1"),
])
def test_compile_refuses_impossible_builds(tmp_path, capsys, argv, needle):
    out = tmp_path / "b"
    assert main(["compile", "--preset", "e4k-t-f16", "--resolution", "256x256", "-o", str(out), *argv]) == 1
    assert needle in capsys.readouterr().err and not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_sensitivity_ranks_every_layer_of_a_stage():
    from edge4k.backends.xnnpack.quantize import stage_keep_list
    from edge4k.calibration.sensitivity import layer_sensitivity
    from edge4k.compiler.build import prepare_inputs

    model = tiny_model()
    _, inputs, calib, held_out = prepare_inputs(model, BuildSpec(calib=2, **{k: v for k, v in SPEC.items() if k != "calib"}))
    report = layer_sensitivity(model, inputs, calib, held_out, stages=["global"], threshold_db=80.0)
    convs = [n for n, m in model.global_branch.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert sorted(r["layer"] for r in report["layers"]) == sorted(f"global.{n}" for n in convs)
    scores = [r["psnr_db"] for r in report["layers"]]
    assert scores == sorted(scores) and 20 < scores[0] < 80     # one int8 layer: measurable, not lossless
    assert report["keep_fp32"] == [r["layer"] for r in report["layers"] if r["psnr_db"] < 80.0]
    assert stage_keep_list(("decoder.head.1", "global"), "decoder") == ("head.1",)
    assert stage_keep_list(("decoder.head.1", "global"), "global") is None


def test_check_compares_an_executorch_build_stage_by_stage_and_whole_image(builds, make_dng):
    from edge4k.compiler.build import check_build

    model, paths = builds
    image = make_dng()
    report = check_build(model, paths["fp32"], images=[image], samples=1)
    assert report["failing"] == {} and report["floor_db"] == PSNR_FLOOR["fp32"]
    assert set(report["psnr_db"]) == set(NETWORK_STAGES) and report["image_psnr_db"]["RGGB_192x128.dng"] >= 60.0
    strict = check_build(model, paths["int8"], images=[image], samples=1, floor=200.0)
    assert set(strict["failing"]) == {*NETWORK_STAGES, "whole tile", "image RGGB_192x128.dng"}


def test_histogram_observer_reaches_the_quantiser():
    """The activation observer named in the recipe is the one that sets the input's
    int8 range: min-max gives exactly (max - min) / 255 of the calibration data, the
    histogram observer its own (narrower or equal) range."""
    from edge4k.backends.xnnpack.quantize import int8_recipe, quantize_stage
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1)).eval()
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    outlier = x.clone()
    outlier[0, 0, 0, 0] = 60.0
    scales = {}
    for observer in ("minmax", "histogram"):
        q = quantize_stage(conv, (x,), [(x,), (outlier,)], int8_recipe(observer))
        scales[observer] = next(n.args[1] for n in q.graph.nodes if "quantize_per_tensor" in str(n.target))
    assert scales["minmax"] == pytest.approx((60.0 - float(x.min())) / 255, rel=1e-5)
    assert scales["histogram"] <= scales["minmax"] and scales["histogram"] != scales["minmax"]
    with pytest.raises(Edge4KError, match="observer must be one of minmax, histogram, got percentile"):
        int8_recipe("percentile")


def test_analyze_writes_a_plan_that_compile_keeps_in_fp32(tmp_path, capsys):
    common = ["--preset", "e4k-t-f16", "--resolution", "256x256", "--tile", "128", "--overlap", "32", "--calib", "2"]
    plan = tmp_path / "plan.json"
    assert main(["analyze", *common, "--stages", "global", "--threshold", "80", "-o", str(plan)]) == 0
    assert f"use it with `edge4k compile --fp32-plan {plan}`" in capsys.readouterr().out
    report = json.loads(plan.read_text())
    keep = report["keep_fp32"]
    assert keep and all(k.startswith("global.") for k in keep) and report["observer"] == "histogram"
    assert keep == [r["layer"] for r in report["layers"] if r["psnr_db"] < 80.0]
    out = tmp_path / "b"
    assert main(["compile", "--target", "host-xnnpack", *common, "--quant", "int8", "--observer", "minmax",
                 "--keep-fp32", "decoder.head.1", "--fp32-plan", str(plan), "-o", str(out)]) == 0
    manifest = load_manifest(out)
    assert manifest["options"]["observer"] == "minmax" and manifest["stages"]["encoder"]["observer"] == "minmax"
    assert manifest["options"]["keep_fp32"] == ["decoder.head.1", *keep]
    assert manifest["stages"]["global"]["kept_fp32"] == [k.removeprefix("global.") for k in keep]
    assert manifest["stages"]["decoder"]["kept_fp32"] == ["head.1"]
    assert manifest["stages"]["encoder"]["precision"] == "int8"
    bad = tmp_path / "bad.json"
    bad.write_text('{"layers": []}')
    assert main(["compile", "--target", "host-xnnpack", *common, "--fp32-plan", str(bad), "-o", str(tmp_path / "c")]) == 1
    assert "cannot read keep_fp32 from" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_int8_mixed_keeps_the_global_branch_and_the_decoder_head_in_fp32(tmp_path, monkeypatch):
    model = tiny_model()     # a random residual head: the tile is not the exact fp32 base
    spec = BuildSpec(target="host-xnnpack", preset="e4k-t-f16", width=256, height=256, tile=128, overlap=32, calib=2,
                     precision="int8-mixed")
    out = tmp_path / "mixed"
    compile_build(model, spec, out, weights="test")
    checked = load_manifest(out)["verification"]
    # its stages are held to int8's floor, its chained tile to int8-mixed's own
    assert checked["floor_db"] == PSNR_FLOOR["int8"] and checked["tile_floor_db"] == TILE_PSNR_FLOOR["int8-mixed"]
    assert TILE_PSNR_FLOOR["int8-mixed"] <= checked["tile_psnr_db"] < 200
    monkeypatch.setitem(TILE_PSNR_FLOOR, "int8-mixed", 1000.0)
    with pytest.raises(Edge4KError, match="whole tile"):
        compile_build(model, spec, tmp_path / "x", weights="test")
    assert not (tmp_path / "x").exists()
    stages = load_manifest(out)["stages"]
    assert stages["global"]["precision"] == "fp32" and stages["global"]["quantization"] is None
    assert stages["decoder"]["kept_fp32"] == ["head"] and stages["decoder"]["quantization"]
    assert stages["encoder"]["precision"] == stages["backbone"]["precision"] == "int8"
    assert stages["encoder"]["observer"] == "histogram" and stages["global"]["observer"] is None   # the default


def test_the_benchmarks_int8_probe_is_integer_end_to_end_and_fully_delegated():
    """The benchmark's int8-over-fp32 kernel figure is only what it says if the quantised chain has
    no fp32 island: every conv reads dequantised int8, its output is quantised again (or first goes
    through the ReLU that XNNPACK fuses into it), and XNNPACK takes the whole graph as one partition."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edge4k.backends.xnnpack import ops_outside_delegate
    from edge4k.benchmarks.frame4k import chain_program

    outputs = {}
    for precision in ("fp32", "int8"):
        exported, example = chain_program(8, 16, precision)
        compute = [n for n in exported.graph.nodes if n.op == "call_function"
                   and "quantize" not in str(n.target) and "getitem" not in str(n.target)]
        assert sorted({str(n.target) for n in compute}) == ["aten.conv2d.default", "aten.relu.default"]
        if precision == "int8":
            for node in compute:
                is_relu = "relu" in str(node.target)
                # a ReLU reads its conv alone (XNNPACK fuses the two); a conv reads int8
                assert ("conv" in str(node.args[0].target) and len(node.args[0].users) == 1) if is_relu \
                    else "dequantize" in str(node.args[0].target), node
                ends = [u for u in node.users if not (not is_relu and "relu" in str(u.target))]
                assert all("quantize_per_tensor" in str(u.target) for u in ends), node
        edge = to_edge_transform_and_lower({"forward": exported}, partitioner=[XnnpackPartitioner()])
        assert ops_outside_delegate(edge, "forward") == {}
        outputs[precision] = exported.module()(*example)
    assert psnr(outputs["fp32"], outputs["int8"]) > 30
