"""qnn-htp-sim backend: runs an android-qnn build's per-stage EPContext models on
the HTP emulation that onnxruntime-qnn ships for x86-64.

The numbers are right (the emulator executes the same quantised graph the phone's
HTP runs); the latencies are not the phone's: they time an x86 emulation of the
Hexagon processor, and the profile says so."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge4k.backends.qnn import require_qnn
from edge4k.backends.qnn.ep import htp_session
from edge4k.backends.qnn.soc import get_soc
from edge4k.errors import Edge4KError
from edge4k.kernels.threads import run_threads
from edge4k.runtime.backends import BuildBackend


def check_soc(manifest: dict, soc: str | None, artifacts) -> None:
    """Refuse a build compiled for another SoC than the one asked for."""
    if soc is None:
        return

    want = get_soc(soc).name
    built = (manifest.get("qnn") or {}).get("soc")
    if built is None:
        raise Edge4KError(f"{artifacts} is a {manifest['target']} build, not compiled for a Qualcomm SoC; "
                          "drop --soc")
    if built != want:
        raise Edge4KError(f"{artifacts} holds context binaries for {built}, not {want}; "
                          f"recompile with --target android-qnn --soc {want}")


class QnnHtpSimBackend(BuildBackend):
    name = "qnn-htp-sim"
    delegate = "qnn-htp"

    def __init__(self, artifacts: Path, manifest: dict, *, soc: str | None = None):
        check_soc(manifest, soc, artifacts)
        super().__init__(artifacts, manifest, tool="QAIRT", built=manifest["versions"].get("qairt"),
                         installed=require_qnn()["qairt"])
        self.soc = get_soc(manifest["qnn"]["soc"])
        self.emulation_note = (f"network stages ran on an x86-64 emulation of the {self.soc.name} HTP "
                               f"(v{self.soc.htp_arch}); their latencies say nothing about the phone's speed")
        self.sessions, self.inputs = {}, {}
        for stage, _, path in self.stage_paths(artifacts):
            session = htp_session(path, self.soc, threads=run_threads())
            self.check_program(stage, path, [i.shape for i in session.get_inputs()], session.get_outputs()[0].shape)
            self.sessions[stage] = session
            self.inputs[stage] = [(i.name, tuple(i.shape)) for i in session.get_inputs()]

    def run(self, stage, *inputs):
        names = self.inputs[stage]
        shapes = [tuple(t.shape) for t in inputs]
        if shapes != [s for _, s in names]:
            raise Edge4KError(f"{stage}: the build takes inputs of shape {[s for _, s in names]}, got {shapes}")
        feed = {n: np.ascontiguousarray(t.detach().numpy(), dtype=np.float32) for (n, _), t in zip(names, inputs)}
        return torch.from_numpy(self.sessions[stage].run(None, feed)[0])

    def weight_bytes(self):
        return sum(s["weight_bytes"] for s in self.manifest["stages"].values())
