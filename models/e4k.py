"""The E4K network: four exportable stages (global, encoder, backbone, decoder).

raw_preprocess and postprocess are CPU kernels (edge4k.kernels); these are the
network stages that the compiler lowers one by one, each at a fixed shape.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from edge4k.models.blocks import (
    GLOBAL_LIMIT,
    AdaLNSingle,
    BayerDemosaic,
    ChannelToSpaceUp,
    ConvBNAct,
    DiTBlock,
    ResBlock,
    SpaceToChannelDown,
    make_act,
)
from edge4k.models.config import E4KConfig

STAGES = ("raw_preprocess", "global", "encoder", "backbone", "decoder", "postprocess")
NETWORK_STAGES = ("global", "encoder", "backbone", "decoder")


class GlobalBranch(nn.Module):
    """Thumbnail of the whole frame + capture metadata (measured noise, exposure, WB gains;
    kernels.raw.META) -> one vector per image, shared by every tile so tiles agree."""

    def __init__(self, cfg: E4KConfig):
        super().__init__()
        act = cfg.activation
        self.features = nn.Sequential(
            ConvBNAct(4, 16, 3, 2, act=act), ConvBNAct(16, 32, 3, 2, act=act),
            ConvBNAct(32, 64, 3, 2, act=act), ConvBNAct(64, 64, 3, 2, act=act))
        self.from_image = nn.Linear(64, cfg.global_dim)
        self.from_meta = nn.Linear(cfg.meta_dim, cfg.global_dim)
        self.act = make_act(act)
        self.out = nn.Linear(cfg.global_dim, cfg.global_dim)

    def forward(self, thumb, meta):
        f = self.features(thumb).mean(dim=(2, 3), keepdim=True).flatten(1)
        return self.out(self.act(self.from_image(f) + self.from_meta(meta))).clamp(-GLOBAL_LIMIT, GLOBAL_LIMIT)


class Encoder(nn.Module):
    """Packed RAW tile (4 x T/2 x T/2) -> latent (C x T/f x T/f). The flow teacher's
    target encoder reuses it on RGB at half resolution (in_channels 12)."""

    def __init__(self, cfg: E4KConfig, in_channels: int = 4):
        super().__init__()
        act, layers, width = cfg.activation, [], cfg.stem_width
        layers.append(ConvBNAct(in_channels, width, 3, act=act))
        for w in cfg.enc_widths:
            layers += [SpaceToChannelDown(width, w), ResBlock(w, act, cfg.separable)]
            width = w
        layers.append(nn.Conv2d(width, cfg.latent_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, packed):
        return self.net(packed)


class Backbone(nn.Module):
    """Linear DiT on the latent grid, conditioned on the global vector (AdaLN-single).

    One-step use needs no timestep input: a fixed t is a constant that folds into
    the modulation tables."""

    def __init__(self, cfg: E4KConfig):
        super().__init__()
        d = cfg.dit_width
        self.inp = nn.Conv2d(cfg.latent_channels, d, 1)
        self.adaln = AdaLNSingle(cfg.global_dim, d, cfg.activation)
        self.blocks = nn.ModuleList(
            DiTBlock(d, cfg.heads, cfg.mlp_ratio, cfg.attention, cfg.activation) for _ in range(cfg.depth))
        self.out = nn.Conv2d(d, cfg.latent_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, latent, g):
        mod = self.adaln(g)
        h = self.inp(latent)
        for blk in self.blocks:
            h = blk(h, mod)
        return latent + self.out(h)


# Largest residual over the classical base, in companded (square-root) units. The trained model's
# corrections stay below 0.26 even at ISO 12800 (99.99th percentile 0.18), so 0.4 never binds on
# real images; it only caps a runaway output.
RESIDUAL_LIMIT = 0.4
# Where "at the clip" starts, in companded units, for both clip masks below.
CLIP_RAMP_START = 0.96


class ClippedCells(nn.Module):
    """1 where all four sites of a packed cell are at the clip (white balance already applied, so the
    frontend has clipped them to 1), 0 below CLIP_RAMP_START, a ramp between. Nothing is known of a scene past
    the clip, so there the output is the classical render: white, as LibRaw renders it. A fixed 1x1
    conv (the ramp over the sum of the four channels) and a clamp, which every target runs."""

    def __init__(self, start: float = CLIP_RAMP_START):
        super().__init__()
        # (sum - 4 start) / (4 (1 - start)) as one conv with a bias: constants, not weights.
        # The four companded sites sum to at least 4 * start only if every one is at least 4 * start - 3.
        self.register_buffer("weight", torch.full((1, 4, 1, 1), 1 / (4 * (1 - start))), persistent=False)
        self.register_buffer("bias", torch.tensor([-start / (1 - start)]), persistent=False)

    def forward(self, packed):
        return F.conv2d(packed, self.weight, self.bias).clamp(0.0, 1.0)


class ClippedSites(nn.Module):
    """Per site of a packed cell: 1 at the clip, 0 below CLIP_RAMP_START, a ramp between (clamp of an affine map).
    ClippedCells switches the residual off only where all four sites clip; with this as an input the
    decoder knows which of a cell's sites carry no information and can rebuild them from the others."""

    def __init__(self, start: float = CLIP_RAMP_START):
        super().__init__()
        self.start = start

    def forward(self, packed):
        return ((packed - self.start) * (1.0 / (1.0 - self.start))).clamp(0.0, 1.0)


class Decoder(nn.Module):
    """Latent (+ packed RAW tile) -> companded camera RGB tile (3 x T x T).

    With raw_skip the image is a residual over a correct classical render: a fixed
    Malvar-He-Cutler demosaic of the packed RAW. The stage (forward, what every build
    compiles) returns only the residual; the base is added in fp32 outside it (render() here,
    add_classical_base() in the runtimes), so an integer build never quantises the base
    (reports/int8_residual: -0.79 -> -0.27 dB for XNNPACK int8). The residual head starts
    at zero, so an untrained model is exactly that classical converter; training teaches it
    what classical demosaicing does badly (detail, zipper, false colour) and to denoise. A
    3x3 conv brings the RAW's local detail in at half resolution beside the up-sampled latent.
    Colour is not learned: finishing applies the file's matrix (kernels.postprocess)."""

    def __init__(self, cfg: E4KConfig):
        super().__init__()
        act, w = cfg.activation, cfg.dec_widths
        layers = [nn.Conv2d(cfg.latent_channels, w[0], 1), ResBlock(w[0], act, cfg.separable)]
        for cin, cout in zip(w[:-1], w[1:]):
            layers += [ChannelToSpaceUp(cin, cout), ResBlock(cout, act, cfg.separable)]
        self.up = nn.Sequential(*layers)
        self.raw_skip, self.clip_input, self.residual_gate = cfg.raw_skip, cfg.clip_input, cfg.residual_gate
        if cfg.raw_skip:
            self.skip = ConvBNAct(4, w[-1], 3, act=act)
            self.demosaic = BayerDemosaic()
            self.clipped = ClippedCells()
        if cfg.clip_input:     # zero-initialised: a v2 checkpoint warm-started into it renders as before
            self.clip_sites = ClippedSites()
            self.clip_skip = nn.Conv2d(4, w[-1], 1)
            nn.init.zeros_(self.clip_skip.weight)
            nn.init.zeros_(self.clip_skip.bias)
        if cfg.residual_gate:  # 2 sigmoid(0) = 1 at the start: the residual as without the gate
            self.gate = nn.Conv2d(w[-1], 1, 1)
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
        self.head = nn.Sequential(ResBlock(w[-1], act, cfg.separable), nn.Conv2d(w[-1], 12, 1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, latent, packed=None):
        x = self.up(latent)
        if not self.raw_skip:     # ablation: no classical base, the network renders alone
            return F.pixel_shuffle(self.head(x), 2) + 0.5
        x = x + self.skip(packed)
        if self.clip_input:
            x = x + self.clip_skip(self.clip_sites(packed))
        hidden = self.head[0](x)
        # The correction is bounded: on inputs far from anything trained on, the output stays within
        # RESIDUAL_LIMIT (companded units) of the classical render instead of running away.
        residual = self.head[1](hidden).clamp(-RESIDUAL_LIMIT, RESIDUAL_LIMIT) * (1.0 - self.clipped(packed))
        if self.residual_gate:   # where the classical base is already right, the gate can turn the residual off
            residual = residual * (2.0 * torch.sigmoid(self.gate(hidden)))
        return F.pixel_shuffle(residual, 2)

    def render(self, latent, packed):
        """The tile's image: the stage's output plus, with raw_skip, the classical base."""
        out = self(latent, packed)
        return out + F.pixel_shuffle(self.demosaic(packed), 2) if self.raw_skip else out


class E4KNet(nn.Module):
    """The four network stages together. forward() runs one batch of tiles end to
    end (used in training); the runtime calls the stages one by one."""

    def __init__(self, cfg: E4KConfig):
        super().__init__()
        self.cfg = cfg
        self.global_branch = GlobalBranch(cfg)
        self.encoder = Encoder(cfg)
        self.backbone = Backbone(cfg)
        self.decoder = Decoder(cfg)

    def stage(self, name: str) -> nn.Module:
        return {"global": self.global_branch, "encoder": self.encoder,
                "backbone": self.backbone, "decoder": self.decoder}[name]

    def forward(self, packed, thumb, meta):
        g = self.global_branch(thumb, meta)
        return self.decoder.render(self.backbone(self.encoder(packed), g), packed)


@functools.cache
def _runtime_demosaic() -> BayerDemosaic:
    return BayerDemosaic().eval()


def add_classical_base(cfg: E4KConfig, decoded: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """The tiles' images from the decoder stage's output (B, 3, 2h, 2w) and its packed input
    (B, 4, h, w): with cfg.raw_skip the stage returned only its residual, and the classical base
    is added here in fp32, as Decoder.render() does (the native runner's C++ kernel does the same)."""
    if not cfg.raw_skip:
        return decoded
    with torch.no_grad():
        return decoded + F.pixel_shuffle(_runtime_demosaic()(packed.float()), 2)


def build_model(cfg: E4KConfig, *, seed: int = 0) -> E4KNet:
    """Seed-initialised model in eval mode (deterministic for a given seed)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = E4KNet(cfg)
    finally:
        torch.random.set_rng_state(gen_state)
    return model.eval()
