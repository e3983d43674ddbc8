"""Backends run the four network stages. The pipeline only sees this interface,
so compiled backends (ExecuTorch, LiteRT, QNN) plug in beside the eager one."""
from __future__ import annotations

from typing import Callable

import torch

from edge4k.errors import Edge4KError
from edge4k.models import E4KNet

BACKENDS: dict[str, Callable[..., "Backend"]] = {}


def register_backend(name: str):
    def deco(factory):
        BACKENDS[name] = factory
        return factory
    return deco


def get_backend(name: str, **kwargs) -> "Backend":
    if name not in BACKENDS:
        raise Edge4KError(f"unknown backend '{name}'; valid backends: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name](**kwargs)


class Backend:
    """run(stage, *tensors) -> tensor, for stage in NETWORK_STAGES:
    global(thumb, meta), encoder(packed), backbone(latent, g), decoder(latent, packed)."""

    name = "base"
    precision = "fp32"
    delegate = None

    def run(self, stage: str, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weight_bytes(self) -> int:
        return 0

    def planned_arena_bytes(self) -> int | None:
        return None


@register_backend("eager")
class EagerBackend(Backend):
    """PyTorch eager on the host CPU, fp32."""

    name = "eager"

    def __init__(self, model: E4KNet, **_):
        self.model = model.eval()

    @torch.inference_mode()
    def run(self, stage, *inputs):
        return self.model.stage(stage)(*inputs)

    def weight_bytes(self):
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
