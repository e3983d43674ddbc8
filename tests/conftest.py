import dataclasses

import numpy as np
import pytest
import torch

from edge4k.calibration.dng import write_dng
from edge4k.calibration.unprocess import unprocess
from edge4k.cli import sample_path
from edge4k.models import build_model, get_preset


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth, colourful sRGB test image in [0, 1] (gradients plus a few blobs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.4 * np.sin(6 * xx + c + 3 * yy * (c + 1)) for c in range(3)], -1)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, 1, 3) * [h / max(h, w), w / max(h, w), 0.2]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (r + 0.05) ** 2] = rng.uniform(0.1, 0.9, 3)
    return img.astype(np.float32)


@pytest.fixture
def make_dng(tmp_path):
    """make_dng(h, w, cfa="RGGB", **write_kwargs) -> path of a fresh synthetic DNG."""
    def make(h=128, w=192, cfa="RGGB", name=None, **kwargs):
        cap = unprocess(smooth_image(h, w), cfa=cfa, camera=None, iso=None, rng=np.random.default_rng(1))
        return str(write_dng(tmp_path / (name or f"{cfa}_{w}x{h}.dng"), cap, **kwargs))
    return make


@pytest.fixture(scope="session")
def sample_dng():
    return sample_path()


def tiny_model(**changes):
    """The tiny preset with its zero-initialised output heads made random, so the
    network's output depends on every stage (a zero head would hide tiling effects)."""
    cfg = dataclasses.replace(get_preset("e4k-t-f16"), **changes) if changes else get_preset("e4k-t-f16")
    model = build_model(cfg, seed=0)
    torch.manual_seed(1)
    for conv in (model.decoder.head[-1], model.backbone.out):
        torch.nn.init.normal_(conv.weight, std=0.5)
    for role in ("gate_attn", "gate_ffn"):
        torch.nn.init.normal_(model.backbone.adaln.proj[role].weight, std=0.2)
        torch.nn.init.constant_(model.backbone.adaln.proj[role].bias, 0.5)
    return model.eval()


@pytest.fixture(scope="session")
def native_build():
    """The native runner and kernels library, built once per session into
    build/native-host (incremental, so a second session only relinks what changed)."""
    pytest.importorskip("executorch")
    from pathlib import Path
    from edge4k.devices.native import build_host
    root = Path(__file__).resolve().parents[1]
    return build_host(root / "build" / "native-host")

