"""The one registry of backends: every compiler target (by target name) and every runtime that
runs a build's stages (by the backend name a manifest records). A backend package imports its
toolchain (executorch, onnxruntime, litert, coremltools) only when it lowers or loads, so a
missing toolchain hides nothing here; it fails, in one line, when used."""
from __future__ import annotations

from pathlib import Path

from edge4k.backends.base import Target
from edge4k.backends.coreml import IosCoreML
from edge4k.backends.coreml.runtime import CoreMLBackend
from edge4k.backends.litert import AndroidLiteRT
from edge4k.backends.litert.runtime import LiteRTBackend
from edge4k.backends.qnn import AndroidQnn
from edge4k.backends.qnn.runtime import QnnHtpSimBackend
from edge4k.backends.xnnpack import AndroidXnnpack, HostXnnpack
from edge4k.backends.xnnpack.runtime import ExecuTorchBackend
from edge4k.errors import Edge4KError
from edge4k.runtime.backends import Backend, EagerBackend
from edge4k.runtime.manifest import load_manifest

TARGETS: dict[str, Target] = {t.name: t for t in (HostXnnpack(), AndroidXnnpack(), AndroidQnn(), AndroidLiteRT(),
                                                    IosCoreML())}
BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (EagerBackend, ExecuTorchBackend, QnnHtpSimBackend,
                                                          LiteRTBackend, CoreMLBackend)}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise Edge4KError(f"unknown target '{name}'; valid targets: {', '.join(sorted(TARGETS))}")
    return TARGETS[name]


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise Edge4KError(f"unknown backend '{name}'; valid backends: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name]


def open_build(artifacts, *, backend: str | None = None) -> Backend:
    """Open a compiled build folder with the backend its manifest names; if `backend`
    is given, refuse a build made for another one."""
    manifest = load_manifest(artifacts)
    if backend is not None and manifest["backend"] != backend:
        raise Edge4KError(f"{artifacts} was compiled for target {manifest['target']} (backend "
                          f"{manifest['backend']}), not for backend {backend}")
    return backend_class(manifest["backend"])(Path(artifacts), manifest)
