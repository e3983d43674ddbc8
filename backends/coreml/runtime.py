"""Core ML backend: runs an ios-coreml build's `<stage>.mlpackage` files with
coremltools' predict, which exists on macOS only (elsewhere it refuses with the
reason). Used by the build's self-check and by `edge4k run --backend coreml` on a Mac.
Not exercised on Linux CI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge4k.backends.coreml import prediction_unavailable
from edge4k.errors import Edge4KError
from edge4k.runtime.backends import BuildBackend


class CoreMLBackend(BuildBackend):
    name = "coreml"

    def __init__(self, artifacts: Path, manifest: dict):
        reason = prediction_unavailable()
        if reason:
            raise Edge4KError(f"cannot run {artifacts}: {reason}")
        import coremltools as ct

        super().__init__(artifacts, manifest, tool="coremltools", built=manifest["versions"].get("coremltools"),
                         installed=ct.__version__)
        self.models = {}
        for stage, _, path in self.stage_paths(artifacts):
            self.models[stage] = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_AND_NE)

    def run(self, stage, *inputs):
        self.check_inputs(stage, inputs)
        specs = self.manifest["stages"][stage]["coreml_inputs"]
        out = self.models[stage].predict({s["name"]: t.numpy().astype(s["dtype"]) for s, t in zip(specs, inputs)})
        return torch.from_numpy(np.asarray(out[self.manifest["stages"][stage]["output"]], dtype=np.float32))

    def weight_bytes(self):
        return sum(s["bytes"] for s in self.manifest["stages"].values())
