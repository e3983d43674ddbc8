"""ExecuTorch backend: runs a compiled build's .pte methods through ExecuTorch's
Python runtime (the same program the phone's native runner loads)."""
from __future__ import annotations

from pathlib import Path

from edge4k.errors import Edge4KError
from edge4k.stderr import captured_native_stderr

from .backends import BuildBackend, run_threads


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
        # the thread policy (backends.run_threads): XNNPACK's pool gets the run's threads, torch one
        from executorch.extension.pybindings import portable_lib
        with captured_native_stderr():   # resetting the pool prints cpuinfo notes
            if portable_lib._threadpool_get_thread_count() != run_threads():
                portable_lib._unsafe_reset_threadpool(run_threads())   # safe here: no method is running

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
