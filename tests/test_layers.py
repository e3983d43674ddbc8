"""The layers as a contract (pyproject.toml [tool.importlinter], README "Layout"): import-linter's
layers and backend-independence contracts hold, no modules import each other in a circle (counting
imports inside functions), imports inside functions are only of the optional dependencies
(edge4k/optional.py), and each check fails when someone breaks it.

The repository's root folders map into edge4k.* only through the editable install's finder, which
import-linter (grimp) cannot walk, so each check runs on a copy of the package laid out as the
wheel lays it out (pyproject's package-dir)."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge4k.errors import Edge4KError
from edge4k.optional import EXTRAS, missing, require

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# Strongly connected components of the module graph with more than one module, printed as a list.
CYCLES = """
import sys, grimp
graph = grimp.build_graph("edge4k", cache_dir=None)
index, low, stack, on, cycles = {}, {}, [], set(), []
sys.setrecursionlimit(10000)
def visit(v):
    index[v] = low[v] = len(index); stack.append(v); on.add(v)
    for w in graph.find_modules_directly_imported_by(v):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        component = []
        while True:
            w = stack.pop(); on.discard(w); component.append(w)
            if w == v:
                break
        if len(component) > 1:
            cycles.append(sorted(component))
for module in sorted(graph.modules):
    if module not in index:
        visit(module)
print(cycles)
"""


def package_copy(dest: Path) -> Path:
    """The package's .py files under dest/edge4k/..., as the wheel installs them."""
    folders = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in folders.items():
        target = dest.joinpath(*package.split("."))
        for source in (ROOT / folder).rglob("*.py"):
            out = target / source.relative_to(ROOT / folder)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out)
    return dest


def run_in(copy: Path, *command: str) -> subprocess.CompletedProcess:
    # cwd: import-linter puts the working directory first on sys.path, so the copy is what it reads
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONSAFEPATH": "1"}
    return subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=120)


def lint(copy: Path) -> subprocess.CompletedProcess:
    return run_in(copy, str(LINT_IMPORTS), "--no-cache", str(PYPROJECT))


def cycles(copy: Path) -> str:
    result = run_in(copy, sys.executable, "-c", CYCLES)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def copy(tmp_path) -> Path:
    return package_copy(tmp_path)


def test_layers_and_backend_independence_hold(copy):
    result = lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_an_upward_or_cross_backend_import_is_caught(copy):
    (copy / "edge4k" / "kernels" / "probe_upward.py").write_text("def f():\n    from edge4k.api import render\n")
    (copy / "edge4k" / "backends" / "xnnpack" / "probe_cross.py").write_text("import edge4k.backends.qnn.soc\n")
    result = lint(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Layers BROKEN" in result.stdout and "edge4k.kernels.probe_upward -> edge4k.api" in result.stdout
    assert "Backends are independent of each other BROKEN" in result.stdout
    assert "edge4k.backends.xnnpack.probe_cross -> edge4k.backends.qnn.soc" in result.stdout


def test_no_import_cycles(copy):
    assert cycles(copy) == "[]"


def test_a_cycle_through_a_function_local_import_is_caught(copy):
    kernels = copy / "edge4k" / "kernels"
    (kernels / "probe_a.py").write_text("import edge4k.kernels.probe_b\n")
    (kernels / "probe_b.py").write_text("def f():\n    import edge4k.kernels.probe_a\n")
    assert cycles(copy) == "[['edge4k.kernels.probe_a', 'edge4k.kernels.probe_b']]"


# Modules that import the rest of the package (and numpy, torch, ...) on first use, so that
# `import edge4k`, `edge4k --help` and the CLI's argument checks stay light: the package's lazy
# names, the API and its batch planner, the CLI and its command modules.
LAZY = ("edge4k", "edge4k.api", "edge4k.batch", "edge4k.cli")


def function_local_imports(copy: Path) -> list[tuple[str, int, str]]:
    """(module, line, imported module) for every import inside a function of the package."""
    found = []
    for path in sorted((copy / "edge4k").rglob("*.py")):
        parts = list(path.relative_to(copy).with_suffix("").parts)
        package = parts[:-1]   # what a relative import starts from, for a package's __init__ too
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    found += [(module, node.lineno, alias.name) for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = package[:len(package) - node.level + 1] if node.level else []
                    found.append((module, node.lineno, ".".join(base + ([node.module] if node.module else []))))
    return sorted(set(found))


def test_function_local_imports_are_optional_dependencies(copy):
    """Inside functions: only edge4k.optional's modules, except in the lazy modules."""
    wrong = [f"{module}:{line} imports {name}" for module, line, name in function_local_imports(copy)
             if name.split(".")[0] not in EXTRAS and not (module in LAZY or module.startswith("edge4k.cli."))]
    assert wrong == []


def test_the_local_import_check_sees_imports_inside_functions(copy):
    (copy / "edge4k" / "kernels" / "probe_local.py").write_text(
        "def f():\n    if True:\n        import numpy\n        from .raw import read_raw\n")
    found = [(line, name) for module, line, name in function_local_imports(copy) if module == "edge4k.kernels.probe_local"]
    assert found == [(3, "numpy"), (4, "edge4k.kernels.raw")]


def test_each_optional_module_names_an_extra_that_installs_it():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    for module, (distribution, extra) in EXTRAS.items():
        pinned = [requirement.split("==")[0] for requirement in extras[extra]]
        assert distribution in pinned, (module, distribution, extra)


def test_require_says_which_extra_installs_a_missing_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "demosaicnet", None)   # import demosaicnet raises ImportError
    with pytest.raises(Edge4KError, match=r"^the baseline needs demosaicnet \(demosaicnet is missing\): "
                                          r"pip install 'edge4k\[train\]'$"):
        require("demosaicnet", "the baseline")
    # a toolchain of several modules: the error names the one that failed
    error = missing("the android-qnn target", "onnxruntime_qnn", ImportError("no onnx", name="onnx"))
    assert str(error) == "the android-qnn target needs onnx (onnx is missing): pip install 'edge4k[qnn]'"
    with pytest.raises(KeyError, match="numpy is not an optional dependency"):
        require("numpy", "anything")
