"""ExecuTorch backend: runs a compiled build's .pte methods through ExecuTorch's
Python runtime (the same program the phone's native runner loads)."""
from __future__ import annotations

import sys
from pathlib import Path

from edge4k.backends.xnnpack import require_executorch
from edge4k.errors import Edge4KError
from edge4k.kernels.threads import run_threads
from edge4k.runtime.backends import BuildBackend
from edge4k.stderr import captured_native_stderr


class ExecuTorchBackend(BuildBackend):
    name = "executorch"
    loaded_any = False   # has this process loaded an XNNPACK method yet (see size_threadpool)

    def __init__(self, artifacts: Path, manifest: dict):
        super().__init__(artifacts, manifest, tool="executorch", built=manifest["versions"].get("executorch"),
                         installed=require_executorch())
        from executorch.runtime import Runtime

        size_threadpool(run_threads())
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
            meta = self.methods[stage].metadata
            if meta.num_outputs() < 1:
                raise Edge4KError(f"{path}: {stage} returns nothing")
            self.check_program(stage, path, [meta.input_tensor_meta(i).sizes() for i in range(meta.num_inputs())],
                               meta.output_tensor_meta(0).sizes())
        ExecuTorchBackend.loaded_any = True

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

    def placement(self, stage):
        outside = self.manifest["stages"][stage].get("ops_outside_delegate")
        return {"engine": self.name, "accelerator": self.delegate,
                **({"ops_outside_delegate": outside} if outside is not None else {})}

    def estimate_tile_bytes(self, tile_height, tile_width, batch):
        return self.planned_arena_bytes()


def size_threadpool(threads: int) -> None:
    """The thread policy (backends.run_threads) for ExecuTorch: XNNPACK's pool gets the run's
    threads. The pool can only be resized before the process loads its first method: every
    loaded XNNPACK runtime keeps the pool it was made with, and running one after a resize
    deadlocks. After that, a different count is left as it is, with one warning line."""
    from executorch.extension.pybindings import portable_lib
    current = int(portable_lib._threadpool_get_thread_count())
    if current == threads:
        return
    if ExecuTorchBackend.loaded_any:
        print(f"edge4k: warning: ExecuTorch's thread pool already runs {current} threads in this process; "
              f"{threads} would need a new process", file=sys.stderr)
        return
    with captured_native_stderr():   # resizing prints cpuinfo notes
        portable_lib._unsafe_reset_threadpool(threads)
