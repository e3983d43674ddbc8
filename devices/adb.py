"""adb, from the user's PATH (Android platform-tools). Every call has a timeout; a
phone that disappears mid-run gives one clear line, never a hang or a traceback."""
from __future__ import annotations

import os
import shutil
import subprocess

from edge4k.devices.commands import Shell, last_line
from edge4k.errors import DeviceNotFound, Edge4KError

CONNECT_HINT = ("connect an Android phone with USB debugging on (Settings > Developer options) and accept "
                "the prompt, or set ANDROID_SERIAL to pick one of several")
# What adb prints when the phone went away.
LOST = ("not found", "offline", "no devices", "device unauthorized", "closed", "disconnected", "protocol fault",
        "no such device")


class Adb:
    def __init__(self, shell: Shell, *, serial: str | None = None, exe: str = "adb", timeout: float = 30.0):
        self.shell, self.exe, self.timeout = shell, exe, timeout
        self.serial = serial or os.environ.get("ANDROID_SERIAL") or None
        self.selected = False

    def available(self) -> bool:
        return self.shell.dry_run or shutil.which(self.exe) is not None

    def devices(self) -> list[tuple[str, str]]:
        """(serial, state) of every phone adb sees."""
        if not self.available():
            raise DeviceNotFound(f"adb not found on PATH: install Android platform-tools and {CONNECT_HINT}")
        done = self._run(["devices"], what="adb devices", timeout=self.timeout)
        rows = [line.split() for line in done.stdout.splitlines()[1:] if line.strip() and not line.startswith("*")]
        return [(r[0], r[1]) for r in rows if len(r) >= 2]

    def select(self) -> str:
        """Pick the phone: the requested serial, or the only one connected."""
        if self.selected:
            return self.serial
        self.selected = True
        if self.shell.dry_run:
            self.devices()
            self.serial = self.serial or "<serial>"
            return self.serial
        found = self.devices()
        ready = [s for s, state in found if state == "device"]
        if self.serial:
            state = dict(found).get(self.serial)
            if state is None:
                seen = ", ".join(s for s, _ in found) or "none"
                raise DeviceNotFound(f"no phone with serial {self.serial} (connected: {seen}); {CONNECT_HINT}")
        elif len(ready) == 1:
            self.serial, state = ready[0], "device"
        elif len(ready) > 1:
            raise Edge4KError(f"{len(ready)} phones connected ({', '.join(ready)}); set ANDROID_SERIAL or pass --serial")
        elif found:
            self.serial, state = found[0]
        else:
            raise DeviceNotFound(f"no Android phone connected: {CONNECT_HINT}")
        if state == "unauthorized":
            raise DeviceNotFound(f"phone {self.serial} is unauthorized: unlock it and accept the USB debugging prompt")
        if state != "device":
            raise DeviceNotFound(f"phone {self.serial} is {state}: reconnect it (adb reconnect) and unlock it")
        return self.serial

    def getprop(self, name: str) -> str:
        return self.sh(f"getprop {name}", what=f"read {name}").stdout.strip() or ("<" + name + ">" if self.shell.dry_run else "")

    def push(self, local, remote: str, *, timeout: float = 600) -> None:
        self._run(["-s", self.serial, "push", os.fspath(local), remote], what=f"push {os.path.basename(local)}",
                  timeout=timeout)

    def pull(self, remote: str, local, *, timeout: float = 600) -> None:
        self._run(["-s", self.serial, "pull", remote, os.fspath(local)], what=f"pull {os.path.basename(remote)}",
                  timeout=timeout)

    def sh(self, command: str, *, what: str, timeout: float | None = None, check: bool = True):
        return self._run(["-s", self.serial, "shell", command], what=what, timeout=timeout or self.timeout, check=check)

    def _run(self, args: list[str], *, what: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
        argv = [self.exe, *args]
        if self.shell.dry_run:
            return self.shell.run(argv, timeout=timeout, what=what)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise DeviceNotFound(f"adb not found on PATH: install Android platform-tools and {CONNECT_HINT}") from None
        except subprocess.TimeoutExpired:
            raise Edge4KError(f"adb timed out after {timeout:.0f} s during '{what}' on {self.serial}: is the phone "
                              "still connected and unlocked?") from None
        if done.returncode != 0 and (check or _lost(done)):
            if _lost(done):
                raise Edge4KError(f"phone {self.serial} disconnected during '{what}' ({last_line(done)}); "
                                  "reconnect it and run again")
            raise Edge4KError(f"'{what}' failed on {self.serial}: {last_line(done)}")
        return done


def _lost(done: subprocess.CompletedProcess) -> bool:
    text = f"{done.stderr}\n{done.stdout}".lower()
    return done.returncode != 0 and any(s in text for s in LOST)
