"""Shared building blocks, named as in the papers they come from.

Every block stays in 4-D NCHW with static shapes and uses only ops that the
XNNPACK, Qualcomm HTP, Core ML and LiteRT delegates all run (see DESIGN.md's
op-coverage table): conv (incl. depthwise), BatchNorm (folded at export),
SiLU/ReLU, pixel (un)shuffle, 3-D bmm with heads folded into the batch, and
token sums written as a global average pool. No chunk/split, no GroupNorm,
no 5-D tensors.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Activation guards. The stages normalise with BatchNorm (it folds away at export), which in eval
# mode does not renormalise a frame unlike anything in training: a fully clipped white frame drove
# the gated Mix-FFN of the first trained model (x * act(x) per block, four blocks) from 10^2 to
# 10^17 and NaN. Clamps at a few times the largest value seen on training scenes (global vector
# 12, Mix-FFN branches 40, block outputs 170 for the first trained e4k-s-f16; docs/MODEL_CARD.md)
# never bind on real images, cost nothing (XNNPACK and the HTP fuse them into the convolutions)
# and bound every intermediate whatever the input.
GLOBAL_LIMIT, BRANCH_LIMIT, STREAM_LIMIT = 32.0, 128.0, 512.0


def make_act(name: str) -> nn.Module:
    # GELU is kept only for the ablation: Qualcomm's HTP does not place it.
    return nn.SiLU() if name == "silu" else nn.GELU(approximate="tanh")


class ConvBNAct(nn.Sequential):
    def __init__(self, cin, cout, k=3, stride=1, groups=1, act: str | None = "silu"):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(make_act(act))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Two convs and an identity shortcut. separable=True swaps each 3x3 conv for
    depthwise 3x3 + pointwise 1x1 (MobileDiffusion's separable-conv trick)."""

    def __init__(self, ch: int, act: str, separable: bool):
        super().__init__()
        if separable:
            self.body = nn.Sequential(
                ConvBNAct(ch, ch, 3, groups=ch, act=None), ConvBNAct(ch, ch, 1, act=act),
                ConvBNAct(ch, ch, 3, groups=ch, act=None), ConvBNAct(ch, ch, 1, act=None))
        else:
            self.body = nn.Sequential(ConvBNAct(ch, ch, 3, act=act), ConvBNAct(ch, ch, 3, act=None))

    def forward(self, x):
        return x + self.body(x)


class SpaceToChannelDown(nn.Module):
    """DC-AE style down-sampling: pixel_unshuffle(2) then a 1x1 conv, no strided conv."""

    def __init__(self, cin, cout):
        super().__init__()
        self.proj = ConvBNAct(4 * cin, cout, 1, act=None)

    def forward(self, x):
        return self.proj(F.pixel_unshuffle(x, 2))


class ChannelToSpaceUp(nn.Module):
    """DC-AE style up-sampling: a 1x1 conv to 4x channels, then pixel_shuffle(2)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.proj = nn.Conv2d(cin, 4 * cout, 1)

    def forward(self, x):
        return F.pixel_shuffle(self.proj(x), 2)


class LiteLA(nn.Module):
    """SANA's ReLU linear attention, O(N) in tokens.

    out = (V K^T) Q / (mean(K)^T Q) per head. K is averaged rather than summed over
    the N tokens (the 1/N cancels in the ratio) so intermediates stay in a range
    that fp16 and int8 can hold. Heads are folded into the batch for 3-D bmm, and
    the token mean is a global average pool, which every delegate runs.
    """

    def __init__(self, dim: int, heads: int, eps: float = 1e-6):
        super().__init__()
        self.heads, self.eps = heads, eps
        self.q, self.k, self.v = (nn.Conv2d(dim, dim, 1, bias=False) for _ in range(3))
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        n, bh, d = h * w, b * self.heads, c // self.heads
        q = F.relu(self.q(x)).reshape(bh, d, n)
        k4 = F.relu(self.k(x))
        k = k4.reshape(bh, d, n)
        v = self.v(x).reshape(bh, d, n)
        kv = torch.bmm(v, k.transpose(1, 2)) * (1.0 / n)           # (bh, d, d)
        num = torch.bmm(kv, q)                                      # (bh, d, n)
        k_mean = k4.mean(dim=(2, 3), keepdim=True).reshape(bh, 1, d)
        den = torch.bmm(k_mean, q)                                  # (bh, 1, n)
        out = (num / (den + self.eps)).reshape(b, c, h, w)
        return self.proj(out)


class SoftmaxAttention(nn.Module):
    """Plain multi-head softmax attention, O(N^2): the ablation baseline for LiteLA."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Conv2d(dim, dim, 1, bias=False) for _ in range(3))
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        n, bh, d = h * w, b * self.heads, c // self.heads
        q = self.q(x).reshape(bh, d, n).transpose(1, 2)             # (bh, n, d)
        k = self.k(x).reshape(bh, d, n)
        v = self.v(x).reshape(bh, d, n)
        attn = torch.softmax(torch.bmm(q, k) * d ** -0.5, dim=-1)   # (bh, n, n)
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(b, c, h, w)
        return self.proj(out)


class GLUMBConv(nn.Module):
    """SANA's Mix-FFN: 1x1 expand, 3x3 depthwise (the positional signal, no position
    embedding), gated by a second branch, 1x1 project. The value and gate branches are
    separate convs instead of one conv followed by chunk, which XNNPACK leaves outside."""

    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.value = nn.Sequential(nn.Conv2d(dim, hidden, 1), make_act(act),
                                   nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden))
        self.gate = nn.Sequential(nn.Conv2d(dim, hidden, 1), make_act(act),
                                  nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden))
        self.act = make_act(act)
        self.out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        value = self.value(x).clamp(-BRANCH_LIMIT, BRANCH_LIMIT)
        return self.out(value * self.act(self.gate(x)).clamp(-BRANCH_LIMIT, BRANCH_LIMIT))


MOD_ROLES = ("shift_attn", "scale_attn", "gate_attn", "shift_ffn", "scale_ffn", "gate_ffn")


class AdaLNSingle(nn.Module):
    """SANA/PixArt AdaLN-single: the conditioning vector is projected to the six
    modulation vectors once per forward; each block only adds its own small table.
    Six separate projections (not one split into six) keep the graph free of chunk."""

    def __init__(self, cond_dim: int, dim: int, act: str):
        super().__init__()
        self.act = make_act(act)
        self.proj = nn.ModuleDict({r: nn.Linear(cond_dim, dim) for r in MOD_ROLES})
        for role in ("gate_attn", "gate_ffn"):       # blocks start as identity
            nn.init.zeros_(self.proj[role].weight)
            nn.init.zeros_(self.proj[role].bias)

    def forward(self, g):
        g = self.act(g)
        return {r: self.proj[r](g).reshape(g.shape[0], -1, 1, 1) for r in MOD_ROLES}


class DiTBlock(nn.Module):
    """Linear DiT block: modulated norm -> attention -> gated residual, then
    modulated norm -> Mix-FFN -> gated residual. The norm is BatchNorm, which
    folds into a per-channel affine at export (LayerNorm and GroupNorm do not
    run on every delegate)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, attention: str, act: str):
        super().__init__()
        self.attn = {"relu-linear": LiteLA, "softmax": SoftmaxAttention}.get(attention)
        self.attn = self.attn(dim, heads) if self.attn else None
        self.norm_attn = nn.BatchNorm2d(dim, affine=False) if self.attn else None
        self.norm_ffn = nn.BatchNorm2d(dim, affine=False)
        self.ffn = GLUMBConv(dim, int(dim * mlp_ratio), act)
        self.table = nn.ParameterDict({r: nn.Parameter(torch.zeros(1, dim, 1, 1)) for r in MOD_ROLES})

    def forward(self, x, mod: dict[str, torch.Tensor]):
        m = {r: mod[r] + self.table[r] for r in MOD_ROLES}
        if self.attn is not None:
            h = self.norm_attn(x) * (1.0 + m["scale_attn"]) + m["shift_attn"]
            x = x + m["gate_attn"] * self.attn(h)
        h = self.norm_ffn(x) * (1.0 + m["scale_ffn"]) + m["shift_ffn"]
        return (x + m["gate_ffn"] * self.ffn(h)).clamp(-STREAM_LIMIT, STREAM_LIMIT)


# Malvar, He and Cutler (ICASSP 2004), "High-quality linear interpolation for demosaicing of
# Bayer-patterned color images": 5x5 gradient-corrected kernels (x 1/8), centred on the pixel.
_MHC_G_AT_RB = [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]]
_MHC_ROW = [[0, 0, .5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, .5, 0, 0]]
_MHC_COL = [list(r) for r in zip(*_MHC_ROW)]
_MHC_DIAG = [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]]
_IDENTITY = [[0] * 5, [0] * 5, [0, 0, 8, 0, 0], [0] * 5, [0] * 5]
# Which kernel gives colour (R, G, B) at each site of an RGGB cell (R, Gr, Gb, B). "ROW": that
# colour's sites are the left/right neighbours, "COL": above/below, "DIAG": the diagonals.
_MHC_PLAN = {
    "R": (_IDENTITY, _MHC_ROW, _MHC_COL, _MHC_DIAG),
    "G": (_MHC_G_AT_RB, _IDENTITY, _IDENTITY, _MHC_G_AT_RB),
    "B": (_MHC_DIAG, _MHC_COL, _MHC_ROW, _IDENTITY),
}


def mhc_demosaic_weight() -> torch.Tensor:
    """Malvar-He-Cutler demosaicing as one 3x3 conv on the packed RGGB planes: (12, 4, 3, 3),
    output channel c * 4 + k is colour c at cell site k, laid out for pixel_shuffle(2)."""
    w = torch.zeros(12, 4, 3, 3, dtype=torch.float64)
    for c, colour in enumerate("RGB"):
        for k, kernel in enumerate(_MHC_PLAN[colour]):
            a, b = divmod(k, 2)                          # the output site inside the cell
            for u in range(-2, 3):
                for v in range(-2, 3):
                    tap = kernel[u + 2][v + 2] / 8
                    if tap:
                        y, x = a + u, b + v              # mosaic offset from the cell origin
                        site = (y % 2) * 2 + x % 2       # packed channel that holds that pixel
                        w[c * 4 + k, site, y // 2 + 1, x // 2 + 1] += tap
    return w.float()


class BayerDemosaic(nn.Module):
    """Fixed (untrained) Malvar-He-Cutler demosaic of packed RGGB planes -> 12 channels before
    pixel_shuffle(2). A plain conv with frozen weights, so every compiler target carries it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 12, 3, padding=1, bias=False)
        self.conv.weight.data.copy_(mhc_demosaic_weight())
        self.conv.weight.requires_grad_(False)

    def forward(self, packed):
        return self.conv(packed)
