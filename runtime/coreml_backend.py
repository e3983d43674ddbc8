"""Core ML backend: runs an ios-coreml build's `<stage>.mlpackage` files with
coremltools' predict, which exists on macOS only (elsewhere it refuses with the
reason). Used by the build's self-check and by `edge4k run --backend coreml` on a Mac.
Not exercised on Linux CI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge4k.errors import Edge4KError
from edge4k.models import NETWORK_STAGES, E4KConfig

from .backends import Backend


class CoreMLBackend(Backend):
    name = "coreml"

    def __init__(self, artifacts: Path, manifest: dict):
        from edge4k.compiler.coreml import prediction_unavailable
        reason = prediction_unavailable()
        if reason:
            raise Edge4KError(f"cannot run {artifacts}: {reason}")
        import coremltools as ct

        self.manifest, self.cfg = manifest, E4KConfig.from_dict(manifest["config"])
        self.precision, self.delegate = manifest["precision"], manifest["delegate"]
        self.weights = f"build:{Path(artifacts).name} ({manifest['weights']})"
        self.expected = {s: [tuple(i["shape"]) for i in manifest["stages"][s]["inputs"]] for s in NETWORK_STAGES}
        self.models = {}
        for stage in NETWORK_STAGES:
            path = Path(artifacts) / manifest["stages"][stage]["file"]
            if not path.is_dir():
                raise Edge4KError(f"{artifacts}: stage file {path.name} for {stage} is missing")
            self.models[stage] = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_AND_NE)

    def run(self, stage, *inputs):
        shapes = [tuple(t.shape) for t in inputs]
        if shapes != self.expected[stage]:
            raise Edge4KError(f"{stage}: the build takes inputs of shape {self.expected[stage]}, got {shapes}")
        specs = self.manifest["stages"][stage]["coreml_inputs"]
        out = self.models[stage].predict({s["name"]: t.numpy().astype(s["dtype"]) for s, t in zip(specs, inputs)})
        return torch.from_numpy(np.asarray(out[self.manifest["stages"][stage]["output"]], dtype=np.float32))

    def weight_bytes(self):
        return sum(s["bytes"] for s in self.manifest["stages"].values())
