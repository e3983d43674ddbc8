"""ruff (pyproject's [tool.ruff]) over the repository and mypy (its [tool.mypy]) over the public API
pass; each check is shown to fail on a file that breaks its rules."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool(name: str, *args, cwd=ROOT) -> subprocess.CompletedProcess:
    exe = BIN / name
    if not exe.exists():
        pytest.skip(f"{name} is not installed (the test extra pins it)")
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_ruff_passes_and_catches_an_unused_import(tmp_path):
    done = tool("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-3000:]
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    done = tool("ruff", "check", "--no-cache", "--config", ROOT / "pyproject.toml", bad)
    assert done.returncode == 1 and "F401" in done.stdout


def test_mypy_passes_on_the_public_api_and_catches_a_type_error(tmp_path):
    done = tool("mypy", "--config-file", ROOT / "pyproject.toml", "--cache-dir", tmp_path / "cache")
    assert done.returncode == 0, done.stdout[-3000:]
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x: int) -> str:\n    return x\n")
    done = tool("mypy", "--config-file", ROOT / "pyproject.toml", "--cache-dir", tmp_path / "cache", bad)
    assert done.returncode == 1 and "Incompatible return value" in done.stdout
