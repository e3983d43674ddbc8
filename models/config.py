"""Model configurations: one frozen dataclass, named presets in a plain registry."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from edge4k.errors import Edge4KError

ATTENTIONS = ("relu-linear", "softmax", "none")
ACTIVATIONS = ("silu", "gelu")


@dataclass(frozen=True)
class E4KConfig:
    """Everything that fixes the network's shape. Widths are per resolution level.

    compression is counted in output pixels per latent pixel (f8/f16/f32). The
    packed Bayer input is already at 1/2 resolution, so the encoder has
    log2(compression / 2) down-sampling levels and the decoder as many up-sampling ones.
    """

    name: str
    compression: int = 16
    stem_width: int = 16
    enc_widths: tuple[int, ...] = (32, 64, 96)   # after each /2 level
    latent_channels: int = 32
    dit_width: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    attention: str = "relu-linear"
    activation: str = "silu"
    separable: bool = True            # depthwise-separable convs in encoder/decoder blocks
    dec_widths: tuple[int, ...] = (96, 64, 32, 24)  # at latent res, then after each x2 level
    raw_skip: bool = True             # decoder sees the packed RAW tile (skip + classical base)
    clip_input: bool = False          # v3: the decoder's skip also sees which sites are at the clip
    residual_gate: bool = False       # v3: a learned per-cell gate (0..2) scales the residual over the base
    global_dim: int = 64
    thumb_size: int = 64              # global branch input: 4 x thumb x thumb packed thumbnail
    meta_dim: int = 5                 # kernels.raw.META: noise (2), exposure, WB gains R and B

    def __post_init__(self):
        levels = self.levels
        if self.compression not in (8, 16, 32):
            raise Edge4KError(f"compression must be 8, 16 or 32, got {self.compression}")
        if len(self.enc_widths) != levels or len(self.dec_widths) != levels + 1:
            raise Edge4KError(
                f"preset {self.name}: f{self.compression} needs {levels} encoder widths and "
                f"{levels + 1} decoder widths, got {len(self.enc_widths)} and {len(self.dec_widths)}")
        if self.attention not in ATTENTIONS:
            raise Edge4KError(f"attention must be one of {', '.join(ATTENTIONS)}, got {self.attention}")
        if self.activation not in ACTIVATIONS:
            raise Edge4KError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation}")
        if (self.clip_input or self.residual_gate) and not self.raw_skip:
            raise Edge4KError(f"preset {self.name}: clip_input and residual_gate need raw_skip")
        if self.dit_width % self.heads:
            raise Edge4KError(f"dit_width {self.dit_width} is not divisible by heads {self.heads}")

    @property
    def levels(self) -> int:
        return {8: 2, 16: 3, 32: 4}.get(self.compression, 0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "E4KConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise Edge4KError(f"unknown config fields: {', '.join(sorted(unknown))}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)

    def config_hash(self) -> str:
        # Fields at their default are left out, so adding a field keeps every existing preset's hash.
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        d = {k: v for k, v in self.to_dict().items()
             if k not in NEW_FIELDS or v != defaults[k]}
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# Fields added after checkpoints were shipped: a checkpoint's config without them reads as the default.
NEW_FIELDS = ("clip_input", "residual_gate")

PRESETS: dict[str, E4KConfig] = {}
DEFAULT_PRESET = "e4k-v3-f16"


def register_preset(cfg: E4KConfig) -> E4KConfig:
    if cfg.name in PRESETS:
        raise ValueError(f"preset {cfg.name} registered twice")
    PRESETS[cfg.name] = cfg
    return cfg


def get_preset(name: str) -> E4KConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise Edge4KError(f"unknown preset '{name}'; valid presets: {', '.join(sorted(PRESETS))}") from None


def variant(base: E4KConfig, name: str, **changes) -> E4KConfig:
    return register_preset(dataclasses.replace(base, name=name, **changes))


# The shipping family: latent compression f8 / f16 / f32 at similar cost.
_S_F16 = register_preset(E4KConfig(name="e4k-s-f16"))
register_preset(E4KConfig(
    name="e4k-s-f8", compression=8, enc_widths=(32, 64), latent_channels=16,
    dit_width=96, depth=3, heads=3, dec_widths=(64, 48, 24)))
register_preset(E4KConfig(
    name="e4k-s-f32", compression=32, enc_widths=(32, 64, 96, 128), latent_channels=64,
    dit_width=192, depth=4, heads=6, dec_widths=(128, 96, 64, 32, 24)))

# Ablations of the default, one change each (MobileDiffusion's trick list).
variant(_S_F16, "e4k-s-f16-softmax", attention="softmax")
variant(_S_F16, "e4k-s-f16-gelu", activation="gelu")
variant(_S_F16, "e4k-s-f16-fullconv", separable=False)
variant(_S_F16, "e4k-s-f16-noattn", attention="none")
variant(_S_F16, "e4k-s-f16-noskip", raw_skip=False)
variant(_S_F16, "e4k-s-f16-slimdec", dec_widths=(48, 32, 16, 12))   # about half the decoder widths

# Model v3 (issue 28): the cost moved from the latent grid, where no detail is made, to nothing (a
# narrower, shallower DiT and lighter low-resolution decoder levels: 3.44 GMAC per output MP against
# v2's 5.70), and two decoder inputs where detail is made: which sites are clipped, and a gate on the
# residual. One change at a time over v2, for the A/B at equal training budget (docs/MODEL_CARD.md).
_V3 = register_preset(dataclasses.replace(
    _S_F16, name="e4k-v3-f16", dit_width=96, heads=4, depth=2, mlp_ratio=1.5, dec_widths=(64, 48, 32, 24),
    clip_input=True, residual_gate=True))
variant(_S_F16, "e4k-s-f16-clipin", clip_input=True)
variant(_S_F16, "e4k-s-f16-gate", residual_gate=True)
variant(_V3, "e4k-v3-f16-plain", clip_input=False, residual_gate=False)   # v3's cost cut alone
# v3 at the other compressions (the encoder and decoder levels the compression needs, latent channels as in
# the f8/f32 presets above, the DiT unchanged) and with each MobileDiffusion trick toggled: the arms of the
# compression, attention and tricks studies (docs/RESEARCH.md).
variant(_V3, "e4k-v3-f8", compression=8, enc_widths=(32, 64), latent_channels=16, dec_widths=(48, 32, 24))
variant(_V3, "e4k-v3-f32", compression=32, enc_widths=(32, 64, 96, 128), latent_channels=64,
        dec_widths=(80, 64, 48, 32, 24))
variant(_V3, "e4k-v3-f16-softmax", attention="softmax")
variant(_V3, "e4k-v3-f16-gelu", activation="gelu")
variant(_V3, "e4k-v3-f16-fullconv", separable=False)
variant(_V3, "e4k-v3-f16-noattn", attention="none")
variant(_V3, "e4k-v3-f16-slimdec", dec_widths=(32, 24, 16, 12))   # about half the decoder widths

# Tiny: same structure, a few thousand parameters; for tests and smoke runs.
register_preset(E4KConfig(
    name="e4k-t-f16", stem_width=8, enc_widths=(8, 16, 16), latent_channels=8, dit_width=16,
    depth=1, heads=2, dec_widths=(16, 16, 8, 8), global_dim=16, thumb_size=32))
variant(PRESETS["e4k-t-f16"], "e4k-t-f16-v3", clip_input=True, residual_gate=True)   # v3's decoder inputs, tiny
