"""ExecuTorch + XNNPACK targets: host-xnnpack (this machine) and android-xnnpack (arm64 phones).

Both write one .pte holding one method per network stage, so a single program
file carries the whole network and the runtime loads each stage by name."""
from __future__ import annotations

import collections
import os
import time
from pathlib import Path

import torch

from edge4k.backends.base import BuildSpec, Target
from edge4k.backends.passes import PointwiseLinear, fold_batchnorm
from edge4k.backends.xnnpack.quantize import W4A8, int8_recipe, quantize_stage, stage_keep_list, w4a8_stage
from edge4k.models import NETWORK_STAGES, E4KNet
from edge4k.optional import missing
from edge4k.stderr import captured_native_stderr

PTE = "model.pte"


def require_executorch():
    try:
        with captured_native_stderr():   # torchao/cpuinfo notes about optional CUDA kernels
            import executorch  # noqa: F401
            import torchao  # noqa: F401
            from executorch import version
            from executorch.runtime import Runtime
            Runtime.get()
    except ImportError as e:
        raise missing("the ExecuTorch targets", "executorch", e) from None
    return version.__version__


def ops_outside_delegate(edge, method: str) -> dict[str, int]:
    """Count the ATen ops a method still runs outside XNNPACK (each is a CPU fallback)."""
    graph = edge.exported_program(method).graph_module.graph
    names = [str(n.target) for n in graph.nodes if n.op == "call_function"
             and "executorch_call_delegate" not in str(n.target) and "getitem" not in str(n.target)]
    return dict(collections.Counter(n.split("::")[-1].split(">")[0].strip() for n in names))


def planned_memory(program) -> dict[str, int]:
    """Memory-planned activation arena bytes per method, read from the program."""
    return {plan.name: int(sum(plan.non_const_buffer_sizes)) for plan in program.execution_plan}


# What int8-mixed keeps in fp32: the once-per-image global branch and the decoder's last layers,
# whose int8 rounding the finishing's exposure gain (up to 16x in linear light) magnifies (the
# classical base is added outside the graph, in fp32, by every build: models.e4k.add_classical_base).
INT8_MIXED_FP32 = ("global", "decoder.head")


class XnnpackTarget(Target):
    backend = "executorch"
    # w4a8: the backbone's 1x1 convs as int4-weight linears (8da4w), other stages int8;
    # int8-mixed: int8 with histogram ranges and INT8_MIXED_FP32 left in fp32
    precisions = ("fp32", "int8", "int8-mixed", "w4a8")
    delegate = "xnnpack"

    def lower(self, model: E4KNet, spec: BuildSpec, inputs, calib, out_dir: Path, progress):
        require_executorch()
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        keep = tuple(spec.options.get("keep_fp32", ())) + (INT8_MIXED_FP32 if spec.precision == "int8-mixed" else ())
        # histogram ranges: min-max lets rare outliers stretch a tensor's scale (39.4 against 43.9 dB per
        # tile for the default preset's int8 build)
        observer = spec.options.get("observer", "histogram")
        programs, seconds, recipes, int4 = {}, {}, {}, {}
        for stage in NETWORK_STAGES:
            t0 = time.perf_counter()
            progress(f"export {stage}")
            module = fold_batchnorm(model.stage(stage))
            stage_keep = stage_keep_list(keep, stage)
            recipe = None   # None: this stage stays fp32
            if stage_keep is not None and spec.precision == "w4a8" and stage == "backbone":
                progress("int4 group-wise weights for the backbone")
                recipe, module = W4A8, w4a8_stage(module)
            elif stage_keep is not None and spec.precision in ("int8", "int8-mixed", "w4a8"):
                recipe = int8_recipe(observer, stage_keep)
                progress(f"quantise {stage} ({recipe.observer}, {len(calib)} calibration samples)")
                module = quantize_stage(module, inputs[stage], [c[stage] for c in calib], recipe)
            recipes[stage] = recipe
            int4[stage] = sum(isinstance(m, PointwiseLinear) for m in module.modules()) if recipe == W4A8 else 0
            programs[stage] = torch.export.export(module, inputs[stage])
            seconds[stage] = time.perf_counter() - t0
        progress("lower to XNNPACK")
        edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()])
        outside = {s: ops_outside_delegate(edge, s) for s in NETWORK_STAGES}
        et = edge.to_executorch()
        path = out_dir / PTE
        path.write_bytes(et.buffer)
        arenas = planned_memory(et.executorch_program)
        return {s: {"file": PTE, "method": s, "file_bytes": os.path.getsize(path),
                    "planned_arena_bytes": arenas[s],
                    "fp32_weight_bytes": sum(t.numel() * t.element_size() for t in model.stage(s).state_dict().values()),
                    "precision": _stage_precision(recipes[s]), "ops_outside_delegate": outside[s],
                    "quantization": recipes[s].name if recipes[s] else None,
                    "observer": recipes[s].observer if recipes[s] else None,   # "dynamic" for int4
                    "kept_fp32": list(recipes[s].keep_fp32) if recipes[s] else [],
                    "int4_linear_layers": int4[s],
                    "export_seconds": round(seconds[s], 2)} for s in NETWORK_STAGES}

    def tool_versions(self):
        import torchao
        return {"executorch": require_executorch(), "torchao": torchao.__version__}


def _stage_precision(recipe) -> str:
    return "fp32" if recipe is None else "w4a8" if recipe == W4A8 else "int8"


class HostXnnpack(XnnpackTarget):
    name = "host-xnnpack"


class AndroidXnnpack(XnnpackTarget):
    name = "android-xnnpack"
