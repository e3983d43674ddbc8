"""The memory pre-flight: estimate_tile_bytes against the peak resident memory a forward
really adds, measured in a fresh process at two tile sizes, so a native 4K run that
would be killed for memory is refused instead."""
import json
import subprocess
import sys

import pytest

from edge4k.errors import Edge4KError
from edge4k.runtime import memory

# Peak RSS rise over the estimate. Measured on x86 (e4k-s-f16, 1-4 threads): 0.5-0.8.
# Above MAX_UNDER, the pre-flight would let through runs that need more than it says.
MAX_UNDER, MAX_OVER = 1.5, 3.0

PROBE = r"""
import json, sys, torch
from edge4k.models import build_model, get_preset
from edge4k.runtime.memory import estimate_tile_bytes, peak_rss_bytes
torch.set_num_threads(2)
model = build_model(get_preset(sys.argv[1]), seed=0).eval()
cfg = model.cfg
def forward(size):
    with torch.inference_mode():
        model(torch.zeros(1, 4, size // 2, size // 2), torch.zeros(1, 4, cfg.thumb_size, cfg.thumb_size),
              torch.zeros(1, cfg.meta_dim))
forward(2 * cfg.compression)          # warm up at the smallest tile: weights, allocator, kernels
estimate = estimate_tile_bytes(model, int(sys.argv[2]), int(sys.argv[2]))
before = peak_rss_bytes()
forward(int(sys.argv[2]))
print(json.dumps({"estimate": estimate, "measured": peak_rss_bytes() - before}))
"""


def probe(preset, size):
    done = subprocess.run([sys.executable, "-c", PROBE, preset, str(size)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_estimate_tracks_the_measured_peak_at_two_sizes():
    small, large = probe("e4k-s-f16", 512), probe("e4k-s-f16", 1024)
    for size, r in ((512, small), (1024, large)):
        ratio = r["measured"] / r["estimate"]
        assert 1 / MAX_OVER <= ratio <= MAX_UNDER, (size, r, ratio)
    assert large["estimate"] == pytest.approx(4 * small["estimate"], rel=0.01)   # working set grows with area
    assert 2.0 < large["measured"] / small["measured"] < 6.0, (small, large)


def test_a_native_4k_tile_that_does_not_fit_is_refused(monkeypatch):
    from edge4k.models import build_model, get_preset
    model = build_model(get_preset("e4k-s-f16"), seed=0)
    need = memory.estimate_tile_bytes(model, 2160, 3840)
    assert need > 4 * memory.estimate_tile_bytes(model, 1024, 1024)
    monkeypatch.setenv("EDGE4K_MEMORY_LIMIT_MB", str(need / 2**20 * 0.9))
    with pytest.raises(Edge4KError, match=rf"a native 4K tile needs about {need / 2**30:.1f} GiB but "
                                          rf"{0.9 * need / 2**30:.1f} GiB is available; use tiled mode"):
        memory.check_fits(need, "a native 4K tile")
    monkeypatch.setenv("EDGE4K_MEMORY_LIMIT_MB", str(need / 2**20 * 1.1))
    assert memory.check_fits(need, "a native 4K tile") == need
