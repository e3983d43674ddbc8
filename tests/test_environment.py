"""The install is locked and the repository root never shadows installed packages.

requirements/lock-*.txt are uv's output (`make lock`); `make setup` installs them hash-checked.
These tests fail when pyproject.toml's pins and a lock disagree (someone changed one without
`make lock`), and when the repository root is back on sys.path under `make test`."""
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Each lock and the extras `make lock` resolves for it (macOS arm64 has no onnxruntime-qnn wheel).
LOCKS = {
    "lock-linux-x86_64.txt": ("dev",),
    "lock-macos-arm64.txt": ("test", "executorch", "litert", "coreml", "train", "research", "native"),
}
# Folders of this repository that are also names of published packages (or could become so).
ROOT_FOLDERS = ("kernels", "models", "runtime", "compiler", "devices", "calibration")


def read_lock(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """{canonical name: (version, hashes)} of a pip requirements file with hashes."""
    pins = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
        line = entry.split("\n", 1)[0].rstrip(" \\")
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{path.name}: {line} is not an exact pin"
        pins[canonicalize_name(req.name)] = (Version(spec.version), re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
    return pins


def direct_pins(extras: tuple[str, ...]) -> dict[str, Version]:
    """pyproject's own pins: the dependencies plus the given extras, self-references expanded."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    pins, todo, seen = {}, list(PYPROJECT["project"]["dependencies"]), set()
    todo += [dep for extra in extras for dep in optional[extra]]
    while todo:
        req = Requirement(todo.pop())
        if canonicalize_name(req.name) == "edge4k":
            todo += [dep for extra in sorted(req.extras - seen) for dep in optional[extra]]
            seen |= req.extras
            continue
        (spec,) = req.specifier
        assert spec.operator == "==", f"pyproject.toml pins with ==: {req}"
        pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_agrees_with_pyproject_and_carries_hashes(lock):
    locked = read_lock(ROOT / "requirements" / lock)
    for name, version in direct_pins(LOCKS[lock]).items():
        assert name in locked, f"{name} is pinned in pyproject.toml but missing from {lock}: run `make lock`"
        # torch's CPU build carries a local label (2.13.0+cpu); the release must match
        assert locked[name][0].public == version.public, \
            f"{name}: pyproject.toml pins {version}, {lock} has {locked[name][0]}: run `make lock`"
    assert all(hashes for _, hashes in locked.values()), f"{lock} has a pin without a hash"
    assert "torch" in locked and not any(name.startswith("nvidia-") for name in locked), \
        f"{lock} pulls a CUDA build of torch"


def test_read_lock_sees_drift(tmp_path):
    """The comparison above can fail: a lock one release behind pyproject is caught."""
    lock = tmp_path / "lock.txt"
    lock.write_text("numpy==1.0.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via edge4k\n")
    assert read_lock(lock)["numpy"][0] != direct_pins(())["numpy"]


def test_make_setup_installs_the_lock_with_hashes():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*--require-hashes -r \$\(LOCK\)", makefile)
    assert re.search(r"pip install .*--no-deps .*-e \.", makefile)


PROBE = """import importlib.util, os, sys
ROOT = {root!r}
def test_probe():
    assert ROOT not in [os.path.abspath(p or os.curdir) for p in sys.path], sys.path
    for name in {names!r}:
        spec = importlib.util.find_spec(name)
        places = [] if spec is None else [spec.origin or "", *(spec.submodule_search_locations or [])]
        assert not any(p.startswith(os.path.join(ROOT, name)) for p in places), (name, places)
    import edge4k.kernels
    assert edge4k.kernels.__file__.startswith(ROOT)
"""


def make_test(probe_dir: Path, *make_args: str) -> subprocess.CompletedProcess:
    """`make test` run as CI runs it (from the root, no PYTHONSAFEPATH of ours), on a probe file."""
    probe = probe_dir / "test_probe.py"
    probe.write_text(PROBE.format(root=str(ROOT), names=ROOT_FOLDERS))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "MAKEFLAGS", "MAKELEVEL")}
    # DEPS= : the venv is this interpreter's, already set up
    return subprocess.run(["make", "-s", "test", f"BIN={Path(sys.executable).parent}", "DEPS=", *make_args,
                           f"PYTEST_ARGS=-q -p no:cacheprovider {probe}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_make_test_keeps_the_repository_root_off_sys_path(tmp_path):
    """None of the root folders is importable under its bare name from the repository."""
    done = make_test(tmp_path)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]


def test_probe_fails_with_the_root_on_sys_path(tmp_path):
    """The probe can fail: with the root put back on sys.path (`python -m` from the root
    without PYTHONSAFEPATH), `kernels`, `runtime`, ... resolve into this repository."""
    done = make_test(tmp_path, "PYTHONSAFEPATH=")
    assert done.returncode != 0 and "1 failed" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
