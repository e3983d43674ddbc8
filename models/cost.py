"""Parameter and MAC counts (torch's flop counter), per stage and per output megapixel."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from edge4k.models.e4k import E4KNet


@torch.inference_mode()
def stage_macs(model: E4KNet, tile: int = 512) -> dict[str, int]:
    """MACs of each network stage for one tile x tile output tile (global: once per image)."""
    cfg = model.cfg
    packed = torch.zeros(1, 4, tile // 2, tile // 2)
    thumb = torch.zeros(1, 4, cfg.thumb_size, cfg.thumb_size)
    meta = torch.zeros(1, cfg.meta_dim)
    macs = {}
    with FlopCounterMode(display=False) as fc:
        g = model.global_branch(thumb, meta)
    macs["global"] = fc.get_total_flops() // 2
    with FlopCounterMode(display=False) as fc:
        z = model.encoder(packed)
    macs["encoder"] = fc.get_total_flops() // 2
    with FlopCounterMode(display=False) as fc:
        z = model.backbone(z, g)
    macs["backbone"] = fc.get_total_flops() // 2
    with FlopCounterMode(display=False) as fc:   # the classical base the runtime adds runs in the decoder's time
        model.decoder.render(z, packed)
    macs["decoder"] = fc.get_total_flops() // 2
    return macs


def gmac_per_megapixel(model: E4KNet, tile: int = 512) -> float:
    """Per-tile stages, per output megapixel (the once-per-image global branch excluded)."""
    m = stage_macs(model, tile)
    return (m["encoder"] + m["backbone"] + m["decoder"]) / (tile * tile) * 1e6 / 1e9


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
