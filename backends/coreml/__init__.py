"""Core ML target: ios-coreml.

Each network stage is exported with torch.export (BatchNorm folded, attention in
the ANE layout of ane.py) and converted with coremltools to its own
`<stage>.mlpackage`: an mlprogram for iOS 17 (iOS 18 for 4-bit grouped palettes), fixed shapes, NCHW (Core ML
and the Neural Engine are channels-first), fp16 compute and fp16 inputs and outputs
(coremltools picks fp16 I/O for fp16 programs on iOS 16+; the ANE wants it).
The precision variants are in quantize.py.

Core ML runs models only on macOS; elsewhere the build is checked structurally
(names, shapes, dtypes, ops, weight precision, sizes) and the manifest says why
prediction was skipped."""
from __future__ import annotations

import collections
import platform
import time
from pathlib import Path

import torch

from edge4k.backends.base import BuildSpec, Target
from edge4k.backends.coreml.ane import ane_attention
from edge4k.backends.coreml.quantize import RECIPES, activation_ranges, apply_recipe
from edge4k.backends.passes import fold_batchnorm
from edge4k.errors import Edge4KError
from edge4k.models import NETWORK_STAGES, E4KNet
from edge4k.optional import missing
from edge4k.runtime.manifest import INPUT_NAMES, OUTPUT_NAMES
from edge4k.stderr import captured_native_stderr

# Ops that hold compressed weights, by the recipe that makes them.
COMPRESSED_WEIGHT_OPS = {"constexpr_blockwise_shift_scale": "int8", "constexpr_affine_dequantize": "int8",
                         "constexpr_lut_to_dense": "palette"}


def require_coremltools() -> str:
    try:
        with captured_native_stderr():
            import coremltools
    except ImportError as e:
        raise missing("the Core ML target", "coremltools", e) from None
    return coremltools.__version__


def prediction_unavailable() -> str | None:
    if platform.system() != "Darwin":
        return (f"Core ML prediction needs macOS; this is {platform.system()} (coremltools converts "
                "and compresses here but cannot run a model)")
    return None


def export_stage(model: E4KNet, stage: str, example: tuple) -> torch.export.ExportedProgram:
    module = ane_attention(fold_batchnorm(model.stage(stage)))
    return torch.export.export(module, example).run_decompositions({})


def convert_stage(program, stage: str, example: tuple, ios: int = 17):
    import coremltools as ct
    with captured_native_stderr():
        return ct.convert(program, inputs=[ct.TensorType(name=n, shape=tuple(t.shape))
                                           for n, t in zip(INPUT_NAMES[stage], example)],
                          outputs=[ct.TensorType(name=OUTPUT_NAMES[stage])], convert_to="mlprogram",
                          minimum_deployment_target=getattr(ct.target, f"iOS{ios}"), compute_precision=ct.precision.FLOAT16)


def describe(mlmodel) -> dict:
    """What the structural checks look at: I/O, op histogram, weight precision, largest rank."""
    from coremltools.proto import FeatureTypes_pb2 as ft

    spec = mlmodel.get_spec()
    dtypes = {v: k.lower() for k, v in ft.ArrayFeatureType.ArrayDataType.items()}

    def io(features):
        return [{"name": f.name, "shape": list(f.type.multiArrayType.shape),
                 "dtype": dtypes[f.type.multiArrayType.dataType]} for f in features]
    ops, max_rank = collections.Counter(), 0
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                ops[op.type] += 1
                for out in op.outputs:
                    max_rank = max(max_rank, out.type.tensorType.rank)
    compressed = {k: n for k, n in ops.items() if k in COMPRESSED_WEIGHT_OPS}
    return {"inputs": io(spec.description.input), "outputs": io(spec.description.output),
            "ops": dict(ops), "max_rank": max_rank, "compressed_weight_ops": compressed,
            "spec_version": spec.specificationVersion}


def package_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class CoreMLTarget(Target):
    backend = "coreml"
    precisions = ("fp16", "int8-weights", "palette4", "w8a8")
    default_precision = "fp16"   # Core ML programs compute in fp16; there is no fp32 variant
    delegate = "coreml"

    def lower(self, model: E4KNet, spec: BuildSpec, inputs, calib, out_dir: Path, progress):
        require_coremltools()

        recipe = RECIPES[spec.precision]()
        result = {}
        for stage in NETWORK_STAGES:
            t0 = time.perf_counter()
            progress(f"export and convert {stage} with coremltools")
            program = export_stage(model, stage, inputs[stage])
            mlmodel = convert_stage(program, stage, inputs[stage], recipe.ios)
            ranges = None
            if recipe.activations:
                progress(f"calibrate {stage} activations ({len(calib)} samples)")
                ranges = activation_ranges(program, [c[stage] for c in calib])
            if recipe.weights or recipe.activations:
                progress(f"compress {stage} ({recipe.name})")
            with captured_native_stderr():
                mlmodel, notes = apply_recipe(mlmodel, recipe, ranges)
            path = out_dir / f"{stage}.mlpackage"
            with captured_native_stderr():
                mlmodel.save(str(path))
            info = describe(mlmodel)
            if info["max_rank"] > 4:
                raise Edge4KError(f"{stage}: the Core ML program has a rank-{info['max_rank']} tensor; "
                                  "the Neural Engine wants 4-D at most")
            result[stage] = {
                "file": path.name, "bytes": package_bytes(path), "layout": "NCHW",
                "weight_bytes": sum(t.numel() * t.element_size() for t in model.stage(stage).state_dict().values()),
                "precision": spec.precision, "quantization": recipe.name, **notes,
                "coreml_inputs": info["inputs"], "coreml_outputs": info["outputs"], "ops": info["ops"],
                "compressed_weight_ops": info["compressed_weight_ops"], "max_rank": info["max_rank"],
                "minimum_deployment_target": f"iOS{recipe.ios}", "spec_version": info["spec_version"],
                "export_seconds": round(time.perf_counter() - t0, 2)}
        return result

    def tool_versions(self):
        return {"coremltools": require_coremltools()}

    def verification_unavailable(self):
        return prediction_unavailable()


class IosCoreML(CoreMLTarget):
    name = "ios-coreml"
