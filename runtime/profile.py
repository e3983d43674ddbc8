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
from importlib import metadata, resources

import jsonschema
import numpy
import torch

from edge4k.errors import Edge4KError
from edge4k.files import atomic_output
from edge4k.models import STAGES

SCHEMA_ID = "edge4k.profile/1"
POWERCAP_ROOT = "/sys/class/powercap"
RAPL_PACKAGE = "intel-rapl:0"   # the powercap zone of CPU package 0


class StageTimer:
    """Accumulates wall time per stage within one run; a run may enter a stage many
    times (once per tile batch). clock is the timer (tests pass a fake one)."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.runs: list[dict[str, float]] = []
        self.current: dict[str, float] | None = None

    def start_run(self):
        self.current = {s: 0.0 for s in STAGES}
        self._t0 = self.clock()

    def end_run(self):
        self.current["total"] = self.clock() - self._t0
        self.runs.append(self.current)
        self.current = None

    @contextmanager
    def __call__(self, stage: str):
        t0 = self.clock()
        try:
            yield
        finally:
            if self.current is not None:
                self.current[stage] += self.clock() - t0

    def summary_ms(self) -> dict:
        out = {}
        for stage in (*STAGES, "total"):
            xs = [r[stage] * 1e3 for r in self.runs]
            out[stage] = {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3),
                          "max": round(max(xs), 3)}
        return out


class PowerMeter:
    """Host power from the RAPL package energy counter (powercap's energy_uj), when the
    kernel exposes it. Never invents a number: where the counter is unreadable the
    reason is reported. root is the powercap folder (tests point it at a fake tree);
    clock is the timer the elapsed seconds come from."""

    def __init__(self, root: str | os.PathLike = POWERCAP_ROOT, clock=time.perf_counter):
        zone = os.path.join(root, RAPL_PACKAGE)
        self.path, self.range_path, self.clock, self.reason = (os.path.join(zone, "energy_uj"),
                                                               os.path.join(zone, "max_energy_range_uj"), clock, None)
        try:
            self._read_uj()
            self.max_range_uj = self._read_int(self.range_path)
        except (OSError, ValueError) as e:
            self.reason = f"RAPL energy counter not readable in {zone} ({getattr(e, 'strerror', None) or e})"

    @staticmethod
    def _read_int(path: str) -> int:
        with open(path) as f:
            return int(f.read())

    def _read_uj(self) -> int:
        return self._read_int(self.path)

    def start(self):
        if self.reason is None:
            self._e0, self._t0 = self._read_uj(), self.clock()

    def stop(self, images: int) -> dict:
        if self.reason is not None:
            return {"available": False, "reason": self.reason}
        used_uj = self._read_uj() - self._e0
        seconds = self.clock() - self._t0
        if used_uj < 0:   # the counter wrapped (once) past max_energy_range_uj back to 0
            used_uj += self.max_range_uj
        joules = used_uj / 1e6
        if seconds <= 0:
            return {"available": False, "reason": "no time elapsed between the power readings"}
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
    return {"edge4k": metadata.version("edge4k"), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@lru_cache(maxsize=1)
def profile_schema() -> dict:
    return json.loads(resources.files("edge4k.runtime").joinpath("profile.schema.json").read_text())


@lru_cache(maxsize=1)
def _validator():
    """The schema's validator, built (and the schema itself checked) once per process."""
    schema = profile_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_profile(profile: dict) -> None:
    try:
        error = jsonschema.exceptions.best_match(_validator().iter_errors(profile))
    except RecursionError:
        raise Edge4KError(f"profile does not match {SCHEMA_ID}: it is nested too deeply") from None
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)[:100] or "(root)"
        raise Edge4KError(f"profile does not match {SCHEMA_ID} at {where}: {error.message[:300]}")


def write_profile(path: str | os.PathLike, profile: dict) -> None:
    validate_profile(profile)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(profile, indent=2) + "\n")
