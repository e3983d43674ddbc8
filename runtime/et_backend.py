"""ExecuTorch backend: runs a compiled build's .pte methods through ExecuTorch's
Python runtime (the same program the phone's native runner loads)."""
from __future__ import annotations

from pathlib import Path

import torch

from edge4k.errors import Edge4KError
from edge4k.stderr import captured_native_stderr

from .backends import BuildBackend


class ExecuTorchBackend(BuildBackend):
    name = "executorch"

    def __init__(self, artifacts: Path, manifest: dict):
        from edge4k.compiler.xnnpack import require_executorch
        super().__init__(artifacts, manifest, tool="executorch", built=manifest["versions"].get("executorch"),
                         installed=require_executorch())
        from executorch.runtime import Runtime

        self.methods, programs = {}, {}
        for stage, entry, path in self.stage_paths(artifacts):
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

    def run(self, stage, *inputs):
        self.check_inputs(stage, inputs)
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
