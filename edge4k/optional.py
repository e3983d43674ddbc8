"""The optional dependencies, in one place: the compiler toolchains, training's and evaluation's
libraries and the research models, each installed by an extra (pyproject.toml). They are the only
modules imported inside functions, so that the package works without them; everything else is
imported at module level (tests/test_layers.py checks both)."""
from __future__ import annotations

import importlib
from types import ModuleType

from edge4k.errors import Edge4KError

# Top-level module -> (the distribution in the extra that brings it, the edge4k extra).
EXTRAS: dict[str, tuple[str, str]] = {
    "executorch": ("executorch", "executorch"),
    "torchao": ("torchao", "executorch"),
    "onnx": ("onnx", "qnn"),
    "onnxruntime": ("onnxruntime", "qnn"),
    "onnxruntime_qnn": ("onnxruntime-qnn", "qnn"),
    "litert_torch": ("litert-torch", "litert"),
    "ai_edge_litert": ("ai-edge-litert", "litert"),
    "ai_edge_quantizer": ("ai-edge-quantizer", "litert"),
    "coremltools": ("coremltools", "coreml"),
    "skimage": ("scikit-image", "train"),
    "scipy": ("scikit-image", "train"),   # a dependency of scikit-image
    "matplotlib": ("matplotlib", "train"),
    "colour": ("colour-science", "train"),
    "colour_demosaicing": ("colour-demosaicing", "train"),
    "demosaicnet": ("demosaicnet", "train"),
    "diffusers": ("diffusers", "research"),
}


def missing(needed_by: str, module: str, error: ImportError | None = None) -> Edge4KError:
    """The one-line error for an optional module that is not installed: what needs it and the extra
    to install. module: the one needed_by is named for; error: the ImportError caught, whose module
    is named instead when it is another optional one (a toolchain has several)."""
    failed = (error.name or "").split(".")[0] if error is not None else ""
    top = failed if failed in EXTRAS else module.split(".")[0]
    distribution, extra = EXTRAS[top]
    return Edge4KError(f"{needed_by} needs {distribution} ({top} is missing): pip install 'edge4k[{extra}]'")


def require(module: str, needed_by: str) -> ModuleType:
    """Import an optional module (dotted names too), or raise missing()'s error."""
    if module.split(".")[0] not in EXTRAS:
        raise KeyError(f"{module} is not an optional dependency listed in edge4k.optional.EXTRAS")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise missing(needed_by, module, e) from None
