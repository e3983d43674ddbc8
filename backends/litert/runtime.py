"""LiteRT backend: runs a LiteRT build's `<stage>.tflite` files through ai-edge-litert's
interpreter (XNNPACK on the host CPU). The stages take NHWC tensors; the pipeline
hands NCHW ones, so this backend transposes once at each call's boundary, and for
full-integer builds quantises inputs and dequantises outputs with the file's own
scale and zero point."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge4k.backends.litert import SIGNATURE, require_litert
from edge4k.errors import Edge4KError
from edge4k.kernels.threads import run_threads
from edge4k.runtime.backends import BuildBackend
from edge4k.stderr import captured_native_stderr


class LiteRTBackend(BuildBackend):
    name = "litert"

    def __init__(self, artifacts: Path, manifest: dict):
        super().__init__(artifacts, manifest, tool="ai-edge-litert", built=manifest["versions"].get("ai-edge-litert"),
                         installed=require_litert())
        from ai_edge_litert.interpreter import Interpreter

        self.runners, self.io = {}, {}
        for stage, _entry, path in self.stage_paths(artifacts):
            with captured_native_stderr() as notes:
                try:
                    it = Interpreter(model_path=str(path), num_threads=run_threads())
                    runner = it.get_signature_runner(SIGNATURE)
                except (ValueError, RuntimeError) as e:
                    last = notes().strip().splitlines()[-1:] or [""]
                    raise Edge4KError(f"LiteRT cannot load {stage} from {path}: {e} {last[0]}".strip()) from None
            ins, outs = runner.get_input_details(), runner.get_output_details()
            found = [tuple(int(v) for v in ins[f"args_{i}"]["shape"]) if f"args_{i}" in ins else None
                     for i in range(len(self.expected[stage]))]
            want = [tuple(s[i] for i in (0, 2, 3, 1)) if len(s) == 4 else s for s in self.expected[stage]]
            if found != want or len(ins) != len(want):
                raise Edge4KError(f"{path} takes inputs {sorted((k, tuple(v['shape'])) for k, v in ins.items())}, "
                                  f"but the manifest's {stage} stage expects NHWC {want}")
            self.runners[stage] = runner
            self.io[stage] = (ins, outs)

    def run(self, stage, *inputs):
        self.check_inputs(stage, inputs)
        ins, outs = self.io[stage]
        feed = {}
        for i, t in enumerate(inputs):
            x = (t.permute(0, 2, 3, 1) if t.dim() == 4 else t).contiguous().numpy()
            feed[f"args_{i}"] = _quantise(x, ins[f"args_{i}"])
        (name, out), = self.runners[stage](**feed).items()
        y = torch.from_numpy(_dequantise(out, outs[name]))
        return y.permute(0, 3, 1, 2).contiguous() if y.dim() == 4 else y

    def weight_bytes(self):
        return sum(s["bytes"] for s in self.manifest["stages"].values())


def _quantise(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def _dequantise(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.copy()   # the runner's buffer is reused by the next call
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
