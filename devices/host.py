"""Profiling on this machine through the Python runtime (`edge4k run` with a build)."""
from __future__ import annotations

from pathlib import Path

from edge4k.backends.registry import open_build
from edge4k.kernels.colourspace import get_space
from edge4k.kernels.rawcolour import ColourOptions
from edge4k.kernels.threads import set_threads
from edge4k.runtime.pipeline import TileOptions, run_and_profile


def profile_on_host(*, artifacts: Path, raw_input: str, out_dir: Path, runs: int, warmup: int,
                    threads: int | None = None, configure_backend=None, look: str = "natural",
                    exposure: float = 0.0, highlights: str = "clip", output_space: str = "srgb") -> dict:
    """`edge4k run` with the build, writing out_dir/output.png (16-bit for the spaces that band at 8) and
    out_dir/profile.json; exposure, highlights and output_space: as the runner's flags."""
    set_threads(threads)
    backend = open_build(artifacts)
    if configure_backend is not None:
        configure_backend(backend)
    return run_and_profile(raw_input, out_dir / "output.png", backend=backend,
                           opts=TileOptions.from_manifest(backend.manifest), runs=runs, warmup=warmup, look=look,
                           profile_path=out_dir / "profile.json", progress=False, output_space=output_space,
                           bits=16 if get_space(output_space).min_bits > 8 else None,
                           colour=ColourOptions(exposure=exposure, highlights=highlights))
