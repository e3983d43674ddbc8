"""Memory: peak resident set of this process, and a pre-flight estimate of what a
native (one tile) run needs, so an oversized frame is refused before it starts."""
from __future__ import annotations

import os
import resource
import sys

import torch

from edge4k.errors import Edge4KError
from edge4k.kernels.tiling import DEFAULT_OVERLAP, DEFAULT_TILE
from edge4k.models import E4KNet

LIVE_TENSOR_FACTOR = 3   # input + output + one residual branch alive at the widest layer


def peak_rss_bytes() -> int:
    return peak_rss()[0]


def peak_rss() -> tuple[int, str]:
    """This process's peak resident set and where it was read (the profile's peak_rss_source, as
    the native runner words it). VmHWM first: ru_maxrss survives exec, so a process started by a
    large parent would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, "VmHWM in /proc/self/status"
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024), "ru_maxrss"     # macOS reports bytes, Linux KiB


def available_bytes() -> int:
    """MemAvailable, or EDGE4K_MEMORY_LIMIT_MB when set (for tests and shared hosts)."""
    limit = os.environ.get("EDGE4K_MEMORY_LIMIT_MB")
    if limit:
        return int(float(limit) * 2**20)
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 62


@torch.inference_mode()
def estimate_tile_bytes(model: E4KNet, tile_h: int, tile_w: int, batch: int = 1) -> int:
    """Working-set estimate for one forward over a (batch, tile_h, tile_w) tile batch.

    Probes the network at a small size with forward hooks, takes the largest
    activation per output pixel, and scales to the requested size; softmax attention
    adds its N x N score matrix."""
    cfg = model.cfg
    size = 2 * cfg.compression
    biggest = 0

    def hook(_m, inputs, output):
        nonlocal biggest
        n = sum(t.numel() for t in inputs if torch.is_tensor(t)) + output.numel()
        biggest = max(biggest, n)

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        packed = torch.zeros(1, 4, size // 2, size // 2)
        thumb = torch.zeros(1, 4, cfg.thumb_size, cfg.thumb_size)
        model(packed, thumb, torch.zeros(1, cfg.meta_dim))
    finally:
        for h in handles:
            h.remove()
    per_pixel = biggest / (size * size)
    total = per_pixel * tile_h * tile_w * batch * LIVE_TENSOR_FACTOR * 4
    if cfg.attention == "softmax":
        tokens = (tile_h // cfg.compression) * (tile_w // cfg.compression)
        total += 2 * batch * cfg.heads * tokens * tokens * 4
    return int(total)


def check_fits(need: int | None, what: str,
               hint: str = f"use tiled mode (--tile {DEFAULT_TILE} --overlap {DEFAULT_OVERLAP})") -> int | None:
    """Refuse work whose estimated working set exceeds the available memory."""
    have = available_bytes()
    if need is not None and need > have:
        raise Edge4KError(f"{what} needs about {need / 2**30:.1f} GiB but {have / 2**30:.1f} GiB is "
                          f"available; {hint}")
    return need
