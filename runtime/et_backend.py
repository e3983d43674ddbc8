"""ExecuTorch backend: runs a compiled build's .pte methods through ExecuTorch's
Python runtime (the same program the phone's native runner loads)."""
from __future__ import annotations

from pathlib import Path

import torch

from edge4k.errors import Edge4KError
from edge4k.models import NETWORK_STAGES, E4KConfig
from edge4k.stderr import captured_native_stderr

from .backends import Backend


class ExecuTorchBackend(Backend):
    name = "executorch"

    def __init__(self, artifacts: Path, manifest: dict):
        from edge4k.compiler.xnnpack import require_executorch
        installed = require_executorch()
        built = manifest["versions"].get("executorch")
        if built != installed:
            raise Edge4KError(f"{artifacts} was built with executorch {built}, but {installed} is installed; "
                              "recompile it with this version")
        from executorch.runtime import Runtime

        self.manifest, self.cfg = manifest, E4KConfig.from_dict(manifest["config"])
        self.precision, self.delegate = manifest["precision"], manifest["delegate"]
        self.weights = f"build:{Path(artifacts).name} ({manifest['weights']})"
        self.methods, programs = {}, {}
        for stage in NETWORK_STAGES:
            entry = manifest["stages"][stage]
            path = Path(artifacts) / entry["file"]
            if not path.is_file():
                raise Edge4KError(f"{artifacts}: stage file {entry['file']} for {stage} is missing")
            # loading a method prints cpuinfo notes on the C stderr; keep them for errors only
            with captured_native_stderr() as notes:
                try:
                    if path not in programs:
                        programs[path] = Runtime.get().load_program(str(path))
                    self.methods[stage] = programs[path].load_method(entry["method"])
                except RuntimeError as e:
                    last = notes().strip().splitlines()[-1:] or [""]
                    raise Edge4KError(f"ExecuTorch cannot load {stage} from {path}: {e} {last[0]}") from None
        # torch's OpenMP workers spin-wait and steal the cores XNNPACK's own thread pool
        # needs (measured: up to 2x slower stages on 2 cores); the host-side torch work
        # here (tile gathering, blending) is light, so give torch one thread.
        torch.set_num_threads(1)
        self.expected = {s: [tuple(i["shape"]) for i in manifest["stages"][s]["inputs"]] for s in NETWORK_STAGES}

    def run(self, stage, *inputs):
        shapes = [tuple(t.shape) for t in inputs]
        if shapes != self.expected[stage]:
            raise Edge4KError(f"{stage}: the build takes inputs of shape {self.expected[stage]}, got {shapes}")
        # clone: an output may live in the method's planned arena, which the next call reuses
        return self.methods[stage].execute([t.contiguous() for t in inputs])[0].clone()

    def threads(self):
        from executorch.extension.pybindings import portable_lib
        return int(portable_lib._threadpool_get_thread_count())

    def weight_bytes(self):
        return self.manifest["stages"]["global"]["file_bytes"]   # one .pte holds every stage

    def planned_arena_bytes(self):
        return sum(s["planned_arena_bytes"] for s in self.manifest["stages"].values())

    def estimate_tile_bytes(self, tile_height, tile_width, batch):
        return self.planned_arena_bytes()
