"""External commands (adb, cmake, xcrun): each with a timeout, echoed instead of
run in a dry run, and failing with one clear line."""
from __future__ import annotations

import os
import shlex
import subprocess
from typing import Callable

from edge4k.errors import Edge4KError


class Shell:
    """Runs commands, or in a dry run prints them (`$ cmd`) and pretends they worked."""

    def __init__(self, *, dry_run: bool = False, echo: Callable[[str], None] = print):
        self.dry_run, self.echo = dry_run, echo

    def run(self, argv: list[str], *, timeout: float, what: str, env: dict | None = None,
            cwd: str | os.PathLike | None = None, check: bool = True) -> subprocess.CompletedProcess:
        if self.dry_run:
            prefix = "".join(f"{k}={shlex.quote(str(v))} " for k, v in (env or {}).items())
            self.echo(("$ " if cwd is None else f"$ (cd {shlex.quote(os.fspath(cwd))}) ") + prefix + shlex.join(argv))
            return subprocess.CompletedProcess(argv, 0, "", "")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                                  env={**os.environ, **env} if env else None)
        except FileNotFoundError:
            raise Edge4KError(f"{argv[0]} not found on PATH (needed to {what})") from None
        except subprocess.TimeoutExpired:
            raise Edge4KError(f"{what} timed out after {timeout:.0f} s: {shlex.join(argv)}") from None
        if check and done.returncode != 0:
            raise Edge4KError(f"{what} failed (exit {done.returncode}): {last_line(done)}")
        return done


def last_line(done: subprocess.CompletedProcess) -> str:
    """The most telling line a failed command printed."""
    lines = [l.strip() for l in (done.stderr or "").splitlines() + (done.stdout or "").splitlines() if l.strip()]
    errors = [l for l in lines if "error" in l.lower()]
    return (errors or lines or ["no output"])[-1]
