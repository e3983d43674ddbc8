"""The wheel maps every root folder into edge4k.* (an editable install would hide a
mapping bug), ships the sample and the schema, and leaves the tests out."""
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("models", "runtime", "kernels", "compiler", "devices", "calibration")


def test_wheel_contents_and_imports(tmp_path):
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "out", "*.egg-info",
                                                                "__pycache__", ".pytest_cache", "mutants"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(source)], check=True, timeout=300)
    wheel = next(tmp_path.glob("edge4k-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for sub in SUBPACKAGES:
        assert f"edge4k/{sub}/__init__.py" in names, sub
    assert "edge4k/backends/qnn/__init__.py" in names and "edge4k/backends/xnnpack/__init__.py" in names
    assert "edge4k/data/sample.dng" in names and "edge4k/runtime/profile.schema.json" in names
    assert "edge4k/datasets/sources.csv" in names      # `edge4k data` reads the manifest from the package
    # every file of the native runner's and kernels' sources, so an installed edge4k can build its runner
    native = {f"edge4k/{p.relative_to(ROOT).as_posix()}" for folder in ("runtime/native", "kernels/native")
              for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert "edge4k/runtime/native/src/srgb_icc.inc" in native and not native - set(names), native - set(names)
    assert not any(n.startswith("tests/") or "/tests/" in n for n in names)

    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    # -S: no site-packages processing, so the editable install's finder is not loaded
    # and edge4k can only come from the unpacked wheel.
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import edge4k, importlib;"
            f"mods = [importlib.import_module('edge4k.' + s) for s in {SUBPACKAGES!r}];"
            "import edge4k.kernels.raw, edge4k.runtime.pipeline, edge4k.cli, edge4k.backends.qnn, edge4k.backends.qnn.runtime;"
            "assert all(m.__file__.startswith(sys.argv[1]) for m in mods), [m.__file__ for m in mods];"
            "from edge4k.runtime.profile import profile_schema; profile_schema();"
            "from edge4k.files import sample_path; import os; assert os.path.getsize(sample_path()) > 0")
    subprocess.run([sys.executable, "-S", "-c", code, str(target), sysconfig.get_paths()["purelib"]],
                   check=True, timeout=120, cwd=tmp_path)
