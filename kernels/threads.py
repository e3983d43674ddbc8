"""The run's CPU threads, one policy for every stage that computes on the CPU."""
from __future__ import annotations

import torch

# The run's CPU threads: --threads, else the cores torch uses. One policy for every backend:
# eager runs torch's pool on them; a compiled build's runtime (ExecuTorch's XNNPACK pool,
# onnxruntime, LiteRT) gets them while torch keeps one thread, since its idle OpenMP
# workers spin on the cores that runtime needs (measured: up to 2x slower stages on 2
# cores); the C++ CPU stages split their rows across backend.threads() (kernels/cpp.py).
_run_threads = torch.get_num_threads()


def set_threads(threads: int | None) -> None:
    """Set the run's CPU threads (None or 0: leave them); backends opened afterwards use them."""
    global _run_threads
    if threads:
        _run_threads = int(threads)
        torch.set_num_threads(_run_threads)


def run_threads() -> int:
    return _run_threads
