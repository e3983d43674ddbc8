"""Core ML target (ios-coreml). On Linux the converted programs are checked
structurally: input/output names, shapes and dtypes, the ops present, the weight
precision and the sizes. On macOS the build also runs predict and is compared with
eager; elsewhere that test is skipped with the reason."""
import platform

import pytest
import torch
from conftest import tiny_model

from edge4k.backends.base import PSNR_FLOOR, BuildSpec, example_inputs
from edge4k.compiler.build import compile_build
from edge4k.errors import Edge4KError
from edge4k.models import NETWORK_STAGES
from edge4k.runtime.manifest import load_manifest

pytest.importorskip("coremltools")

SPEC = dict(target="ios-coreml", preset="e4k-t-f16", width=256, height=256, tile=128, overlap=32, batch=2, calib=2)
ON_MAC = platform.system() == "Darwin"


def test_ane_attention_is_the_same_function_in_4d():
    from edge4k.backends.coreml.ane import LiteLAANE, ane_attention
    model = tiny_model()
    ane = ane_attention(model.backbone)
    assert any(isinstance(m, LiteLAANE) for m in ane.modules())
    x, g = torch.randn(2, 8, 8, 8), torch.randn(1, 16)
    with torch.no_grad():
        torch.testing.assert_close(ane(x, g), model.backbone(x, g), rtol=1e-5, atol=1e-6)
    graph = torch.export.export(ane, (x, g)).graph
    ranks = {len(n.meta["val"].shape) for n in graph.nodes if hasattr(n.meta.get("val"), "shape")}
    assert max(ranks) == 4 and "bmm" not in {str(n.target).split(".")[-2] for n in graph.nodes
                                             if n.op == "call_function" and "." in str(n.target)}


@pytest.fixture(scope="module")
def w8a8_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("coreml") / "w8a8"
    manifest = compile_build(tiny_model(), BuildSpec(precision="w8a8", **SPEC), out, weights="test")
    return out, manifest


def test_w8a8_build_structure(w8a8_build):
    out, manifest = w8a8_build
    assert load_manifest(out)["stages"] == manifest["stages"] and manifest["backend"] == "coreml"
    assert manifest["versions"]["coremltools"] == "9.0"
    if not ON_MAC:
        assert "needs macOS" in manifest["verification"]["skipped"]
    for stage in NETWORK_STAGES:
        entry = manifest["stages"][stage]
        assert (out / entry["file"] / "Manifest.json").is_file() and entry["bytes"] > 1000
        assert entry["minimum_deployment_target"] == "iOS17" and entry["max_rank"] <= 4
        assert entry["ops"]["quantize"] > 0 and entry["ops"]["dequantize"] > 0          # int8 activations
        assert entry["compressed_weight_ops"]                                           # int8 weights
        r = entry["activation_ranges"]
        assert r["matched"] >= 0.8 * r["values"], (stage, r)
        assert [i["name"] for i in entry["coreml_inputs"]] == [i["name"] for i in entry["inputs"]]
        assert [i["shape"] for i in entry["coreml_inputs"]] == [i["shape"] for i in entry["inputs"]]
        assert {i["dtype"] for i in entry["coreml_inputs"] + entry["coreml_outputs"]} == {"float16"}
        assert entry["coreml_outputs"][0]["name"] == entry["output"]
    assert manifest["stages"]["decoder"]["coreml_outputs"][0]["shape"] == [2, 3, 128, 128]
    assert "einsum" in manifest["stages"]["backbone"]["ops"] and "pixel_shuffle" in manifest["stages"]["decoder"]["ops"]


def test_weight_variants_compress_the_decoder():
    """fp16, int8 weights and 4-bit palettes on one converted stage: the right
    compressed-weight ops appear and the package shrinks in that order."""
    import tempfile
    from pathlib import Path

    from edge4k.backends.coreml import convert_stage, describe, export_stage, package_bytes
    from edge4k.backends.coreml.quantize import RECIPES, apply_recipe

    model = tiny_model()
    cfg = model.cfg
    ins = example_inputs(cfg, BuildSpec(**SPEC).plan(cfg), 2)["decoder"]
    program = export_stage(model, "decoder", ins)
    sizes, ops = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp16", "int8-weights", "palette4"):
            recipe = RECIPES[precision]()
            mlmodel, _ = apply_recipe(convert_stage(program, "decoder", ins, recipe.ios), recipe)
            mlmodel.save(str(Path(tmp) / f"{precision}.mlpackage"))
            sizes[precision] = package_bytes(Path(tmp) / f"{precision}.mlpackage")
            ops[precision] = describe(mlmodel)["compressed_weight_ops"]
    assert ops["fp16"] == {}
    assert set(ops["int8-weights"]) <= {"constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"}
    assert ops["int8-weights"] and ops["palette4"] == {"constexpr_lut_to_dense": ops["palette4"]["constexpr_lut_to_dense"]}
    assert sizes["palette4"] < sizes["int8-weights"] < sizes["fp16"], sizes


@pytest.mark.skipif(not ON_MAC, reason=f"Core ML prediction needs macOS; this is {platform.system()}")
def test_predict_matches_eager_on_macos(w8a8_build):
    _, manifest = w8a8_build
    assert all(v >= PSNR_FLOOR["w8a8"] for v in manifest["verification"]["psnr_db"].values())


@pytest.mark.skipif(ON_MAC, reason="on macOS the Core ML backend runs")
def test_coreml_backend_refuses_off_macos(w8a8_build):
    from edge4k.backends.registry import open_build
    with pytest.raises(Edge4KError, match="Core ML prediction needs macOS"):
        open_build(w8a8_build[0])
