"""Profiling on this machine through the Python runtime (`edge4k run` with a build)."""
from __future__ import annotations

from pathlib import Path
from edge4k.backends.registry import open_build
from edge4k.kernels.threads import set_threads
from edge4k.runtime.pipeline import TileOptions, run_and_profile


def profile_on_host(*, artifacts: Path, raw_input: str, out_dir: Path, runs: int, warmup: int,
                    threads: int | None = None, configure_backend=None, look: str = "natural") -> dict:
    set_threads(threads)
    backend = open_build(artifacts)
    if configure_backend is not None:
        configure_backend(backend)
    return run_and_profile(raw_input, out_dir / "output.png", backend=backend,
                           opts=TileOptions.from_manifest(backend.manifest), runs=runs, warmup=warmup, look=look,
                           profile_path=out_dir / "profile.json", progress=False)
