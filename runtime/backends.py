"""Backends run the four network stages. The pipeline only sees this interface, so
compiled backends (ExecuTorch, LiteRT, QNN) plug in beside the eager one.

BACKENDS maps a name to "module:Class", imported on first use, so a backend whose
toolchain is not installed costs nothing until it is asked for."""
from __future__ import annotations

import importlib
from pathlib import Path

import torch

from edge4k.errors import Edge4KError
from edge4k.files import sha256_file
from edge4k.models import NETWORK_STAGES, E4KConfig, E4KNet

BACKENDS = {
    "eager": "edge4k.runtime.backends:EagerBackend",
    "executorch": "edge4k.runtime.et_backend:ExecuTorchBackend",
    "qnn-htp-sim": "edge4k.runtime.qnn_backend:QnnHtpSimBackend",
    "litert": "edge4k.runtime.litert_backend:LiteRTBackend",
    "coreml": "edge4k.runtime.coreml_backend:CoreMLBackend",
}


# The run's CPU threads: --threads, else the cores torch uses. One policy for every backend:
# eager runs torch's pool on them; a compiled build's runtime (ExecuTorch's XNNPACK pool,
# onnxruntime, LiteRT) gets them while torch keeps one thread, since its idle OpenMP
# workers spin on the cores that runtime needs (measured: up to 2x slower stages on 2
# cores); the C++ CPU stages split their rows across backend.threads() (kernels/cpp.py).
_run_threads = torch.get_num_threads()


def set_threads(threads: int | None) -> None:
    """Set the run's CPU threads (None or 0: leave them); backends opened afterwards use them."""
    global _run_threads
    if threads:
        _run_threads = int(threads)
        torch.set_num_threads(_run_threads)


def run_threads() -> int:
    return _run_threads


def backend_class(name: str) -> type["Backend"]:
    if name not in BACKENDS:
        raise Edge4KError(f"unknown backend '{name}'; valid backends: {', '.join(sorted(BACKENDS))}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


class Backend:
    """run(stage, *tensors) -> tensor, for stage in NETWORK_STAGES:
    global(thumb, meta), encoder(packed), backbone(latent, g), decoder(latent, packed)."""

    name = "base"
    precision = "fp32"
    delegate: str | None = None
    cfg: E4KConfig
    weights = ""          # what the weights are: "seed:N", a checkpoint, a build
    manifest: dict | None = None   # compiled builds: their manifest.json
    emulation_note: str | None = None   # set when the stages run on an emulated accelerator

    def run(self, stage: str, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weight_bytes(self) -> int:
        return 0

    def param_count(self) -> int | None:
        return None

    def planned_arena_bytes(self) -> int | None:
        return None

    def estimate_tile_bytes(self, tile_height: int, tile_width: int, batch: int) -> int | None:
        return None

    def threads(self) -> int:
        return torch.get_num_threads()


class BuildBackend(Backend):
    """A compiled build's stages, as its manifest describes them. Subclasses load
    each stage's file (stage_paths) and check inputs before running (check_inputs)."""

    def __init__(self, artifacts: Path, manifest: dict, *, tool: str, built: str | None, installed: str):
        """tool/built/installed: the toolchain whose version the build must match."""
        if built != installed:
            raise Edge4KError(f"{artifacts} was built with {tool} {built}, but {installed} is installed; "
                              "recompile it with this version")
        self.manifest, self.cfg = manifest, E4KConfig.from_dict(manifest["config"])
        self.precision, self.delegate = manifest["precision"], manifest["delegate"]
        self.weights = f"build:{Path(artifacts).name} ({manifest['weights']})"
        self.expected = {s: [tuple(i["shape"]) for i in manifest["stages"][s]["inputs"]] for s in NETWORK_STAGES}
        torch.set_num_threads(1)   # the thread policy (run_threads): the build's runtime gets them

    def threads(self) -> int:
        return run_threads()

    def stage_paths(self, artifacts: Path):
        """(stage, manifest entry, path) for each network stage; a missing file is an error."""
        self._digests = {}
        for stage in NETWORK_STAGES:
            entry = self.manifest["stages"][stage]
            path = Path(artifacts) / entry["file"]
            if not path.exists():
                raise Edge4KError(f"{artifacts}: stage file {entry['file']} for {stage} is missing")
            digest = entry.get("file_sha256")
            if digest and path.is_file() and path not in self._digests:
                self._digests[path] = sha256_file(path)
            if digest and path.is_file() and self._digests[path] != digest:
                raise Edge4KError(f"{path}: sha256 {self._digests[path]} is not the {digest} its build's "
                                  f"manifest.json records for {stage}; the file was damaged or replaced")
            yield stage, entry, path

    def check_program(self, stage: str, path, inputs: list, output) -> None:
        """A stage's input and output shapes as its program declares them, against the manifest's
        (which load_manifest checked against its config and tiling): one line naming both and the file."""
        from .limits import expected_outputs
        inputs, output = [list(s) for s in inputs], list(output)
        declared = [list(s) for s in self.expected[stage]]
        want = expected_outputs(self.manifest["config"], self.manifest["tiling"])[stage]
        if inputs != declared:
            raise Edge4KError(f"{path}: {stage} takes inputs {inputs} in the program, but {declared} in "
                              f"manifest.json (stages.{stage}.inputs)")
        if output != want:
            raise Edge4KError(f"{path}: {stage} returns {output} in the program, but {want} from manifest.json's "
                              "config and tiling")

    def check_inputs(self, stage: str, inputs) -> None:
        shapes = [tuple(t.shape) for t in inputs]
        if shapes != self.expected[stage]:
            raise Edge4KError(f"{stage}: the build takes inputs of shape {self.expected[stage]}, got {shapes}")


class EagerBackend(Backend):
    """PyTorch eager on the host CPU, fp32."""

    name = "eager"

    def __init__(self, model: E4KNet, weights: str = "seed:0"):
        self.model, self.cfg, self.weights = model.eval(), model.cfg, weights
        torch.set_num_threads(run_threads())   # a compiled backend opened before may have left torch one

    @torch.inference_mode()
    def run(self, stage, *inputs):
        return self.model.stage(stage)(*inputs)

    def weight_bytes(self):
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values())

    def param_count(self):
        return sum(p.numel() for p in self.model.parameters())

    def estimate_tile_bytes(self, tile_height, tile_width, batch):
        from .memory import estimate_tile_bytes
        return estimate_tile_bytes(self.model, tile_height, tile_width, batch)


def open_build(artifacts, *, backend: str | None = None) -> Backend:
    """Open a compiled build folder with the backend its manifest names; if `backend`
    is given, refuse a build made for another one."""
    from edge4k.compiler.build import load_manifest

    manifest = load_manifest(artifacts)
    if backend is not None and manifest["backend"] != backend:
        raise Edge4KError(f"{artifacts} was compiled for target {manifest['target']} (backend "
                          f"{manifest['backend']}), not for backend {backend}")
    return backend_class(manifest["backend"])(Path(artifacts), manifest)
