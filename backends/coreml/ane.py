"""Apple Neural Engine layout for attention, after Apple's published ANE guidance
("Deploying Transformers on the Apple Neural Engine", ml-ane-transformers):
activations stay 4-D channels-first as (B, C, 1, S), attention is split into one
small einsum per head instead of folding heads into a 3-D batch, and nothing goes
through a 5-D or 3-D reshape. Numerically the same as LiteLA."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from edge4k.models.blocks import LiteLA


class LiteLAANE(nn.Module):
    """LiteLA with per-head einsums on (B, C, 1, S) tensors; shares LiteLA's convs."""

    def __init__(self, attn: LiteLA):
        super().__init__()
        self.heads, self.eps = attn.heads, attn.eps
        self.q, self.k, self.v, self.proj = attn.q, attn.k, attn.v, attn.proj

    def forward(self, x):
        b, c, h, w = x.shape
        n, d = h * w, c // self.heads
        q = F.relu(self.q(x)).reshape(b, c, 1, n)
        k = F.relu(self.k(x)).reshape(b, c, 1, n)
        v = self.v(x).reshape(b, c, 1, n)
        outs = []
        for i in range(self.heads):
            qh, kh, vh = (t[:, i * d:(i + 1) * d] for t in (q, k, v))           # (B, d, 1, S)
            kv = torch.einsum("bcxs,bexs->bcxe", vh, kh) * (1.0 / n)            # (B, d, 1, d)
            num = torch.einsum("bcxe,bexs->bcxs", kv, qh)                       # (B, d, 1, S)
            den = (kh.mean(dim=3, keepdim=True) * qh).sum(dim=1, keepdim=True)  # (B, 1, 1, S)
            outs.append(num / (den + self.eps))
        return self.proj(torch.cat(outs, dim=1).reshape(b, c, h, w))


def ane_attention(module: nn.Module) -> nn.Module:
    """A copy of `module` with every LiteLA replaced by its ANE form."""
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LiteLA):
                setattr(parent, name, LiteLAANE(child))
    return module
