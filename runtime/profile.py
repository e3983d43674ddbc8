"""Per-stage timing, power sampling, and the edge4k.profile/1 JSON (validated on write)."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources

from edge4k.errors import Edge4KError
from edge4k.files import atomic_output
from edge4k.models import STAGES

SCHEMA_ID = "edge4k.profile/1"
RAPL_ENERGY = "/sys/class/powercap/intel-rapl:0/energy_uj"


class StageTimer:
    """Accumulates wall time per stage within one run; a run may enter a stage many
    times (once per tile batch)."""

    def __init__(self):
        self.runs: list[dict[str, float]] = []
        self.current: dict[str, float] | None = None

    def start_run(self):
        self.current = {s: 0.0 for s in STAGES}
        self._t0 = time.perf_counter()

    def end_run(self):
        self.current["total"] = time.perf_counter() - self._t0
        self.runs.append(self.current)
        self.current = None

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.current is not None:
                self.current[stage] += time.perf_counter() - t0

    def summary_ms(self) -> dict:
        out = {}
        for stage in (*STAGES, "total"):
            xs = [r[stage] * 1e3 for r in self.runs]
            out[stage] = {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3),
                          "max": round(max(xs), 3)}
        return out


class PowerMeter:
    """Host power from the RAPL package energy counter, when the kernel exposes it.
    Never invents a number: where the counter is unreadable the reason is reported."""

    def __init__(self, path: str = RAPL_ENERGY):
        self.path, self.reason = path, None
        try:
            with open(path) as f:
                int(f.read())
        except (OSError, ValueError) as e:
            self.reason = f"RAPL energy counter not readable at {path} ({e.strerror or e})"

    def _read_uj(self) -> int:
        with open(self.path) as f:
            return int(f.read())

    def start(self):
        if self.reason is None:
            self._e0, self._t0 = self._read_uj(), time.perf_counter()

    def stop(self, images: int) -> dict:
        if self.reason is not None:
            return {"available": False, "reason": self.reason}
        joules = (self._read_uj() - self._e0) / 1e6
        seconds = time.perf_counter() - self._t0
        if joules < 0:   # counter wrapped during the run
            return {"available": False, "reason": "RAPL counter wrapped during the run"}
        return {"available": True, "method": "RAPL package energy (whole CPU package, other processes included)",
                "mean_watts": round(joules / seconds, 3), "joules_per_image": round(joules / images, 4)}


def host_device(backend: str, delegate: str | None, threads: int) -> dict:
    soc = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            soc = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), soc)
    except OSError:
        pass
    return {"name": platform.node() or "host", "os": f"{platform.system()} {platform.release()}",
            "soc": soc, "backend": backend, "delegate": delegate, "threads": threads}


def versions() -> dict:
    import numpy
    import torch
    import edge4k
    return {"edge4k": edge4k.__version__, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@lru_cache(maxsize=1)
def profile_schema() -> dict:
    return json.loads(resources.files("edge4k.runtime").joinpath("profile.schema.json").read_text())


def validate_profile(profile: dict) -> None:
    import jsonschema
    try:
        jsonschema.validate(profile, profile_schema())
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise Edge4KError(f"profile does not match {SCHEMA_ID} at {where}: {e.message}") from None


def write_profile(path: str | os.PathLike, profile: dict) -> None:
    validate_profile(profile)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(profile, indent=2) + "\n")
