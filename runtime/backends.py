"""Backends run the four network stages. The pipeline only sees this interface, so
compiled backends (backends/: ExecuTorch, LiteRT, QNN, Core ML) plug in beside the eager one;
backends/registry.py maps their names to their classes."""
from __future__ import annotations

from pathlib import Path

import torch

from edge4k.errors import Edge4KError
from edge4k.files import sha256_file
from edge4k.kernels.threads import run_threads
from edge4k.models import NETWORK_STAGES, E4KConfig, E4KNet
from edge4k.runtime.limits import expected_outputs
from edge4k.runtime.memory import estimate_tile_bytes


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

    def placement(self, stage: str) -> dict | None:
        """Where a network stage runs ({"engine", "accelerator", ...}), the profile's "stages"
        entries as the native runner fills them for the same build; None: not recorded."""
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
        return estimate_tile_bytes(self.model, tile_height, tile_width, batch)

