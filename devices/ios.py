"""iOS: on a Mac with Xcode. iPhones are found with `xcrun devicectl`; the
ios-coreml build is profiled on the Mac itself through coremltools' predict with
the chosen compute units (CPU, GPU, Neural Engine), writing the same profile JSON.
Anywhere else this says what is needed instead.

The Core ML runtime backend (from the ios-coreml target) chooses its compute units
through `backend.set_compute_units(name)`, name one of COMPUTE_UNITS."""
from __future__ import annotations

import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from edge4k.devices.commands import Shell
from edge4k.errors import DeviceNotFound, Edge4KError

COMPUTE_UNITS = ("all", "cpu", "cpu-gpu", "cpu-ne")
NEEDS = ("the ios device needs macOS with Xcode: Core ML predictions run only on macOS (coremltools) and "
         "iPhones are found with `xcrun devicectl`")


def check_host(shell: Shell) -> None:
    if shell.dry_run:
        return
    if sys.platform != "darwin":
        raise DeviceNotFound(f"{NEEDS}; this is {platform.system()}. Compile here with `edge4k compile --target "
                             "ios-coreml` and run `make ios-coreml` on a Mac")
    if not shutil.which("xcrun"):
        raise DeviceNotFound(f"{NEEDS}; xcrun is missing: install Xcode, then `sudo xcode-select -s "
                             "/Applications/Xcode.app`")


def list_devices(shell: Shell) -> list[dict]:
    """Connected iPhones/iPads as {name, model, os, udid} (devicectl's JSON output)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "devices.json"
        shell.run(["xcrun", "devicectl", "list", "devices", "--json-output", str(out)], timeout=60,
                  what="list iOS devices (xcrun devicectl)")
        if shell.dry_run:
            return []
        try:
            found = json.loads(out.read_text())["result"]["devices"]
        except (OSError, KeyError, json.JSONDecodeError) as e:
            raise Edge4KError(f"cannot read `xcrun devicectl list devices` output: {e}") from None
    return [{"name": d.get("deviceProperties", {}).get("name", "?"),
             "model": d.get("hardwareProperties", {}).get("marketingName", "?"),
             "os": d.get("deviceProperties", {}).get("osVersionNumber", "?"),
             "udid": d.get("hardwareProperties", {}).get("udid", "?")} for d in found]


def compute_units_setter(units: str):
    """A configure_backend hook for devices.host.profile_on_host."""
    if units not in COMPUTE_UNITS:
        raise Edge4KError(f"unknown compute units '{units}'; valid: {', '.join(COMPUTE_UNITS)}")

    def configure(backend):
        if not hasattr(backend, "set_compute_units"):
            raise Edge4KError(f"backend {backend.name} cannot choose Core ML compute units; profile an ios-coreml build")
        backend.set_compute_units(units)
    return configure
