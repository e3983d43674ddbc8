"""The multi-step teacher: conditional rectified flow in the E4K latent space.

The latent space is the one the one-step model's decoder reads. A teacher is built
on a trained one-step model (its "base"), whose global branch, encoder and
decoder it keeps frozen:

- target encoder: ground-truth RGB -> z1, trained first (`ae_steps`) so that the
  frozen decoder turns z1 back into the RGB; z1 is also pulled towards the base
  model's own latent, so the flow below has a short way to go.
- velocity net: a DiT (the backbone's blocks) on [x_t, c], conditioned on the
  global vector plus a timestep embedding, trained by flow matching on
  x_t = (1 - t) x0 + t z1 with x0 = c + sigma * noise, where c is the base
  encoder's latent of the packed RAW. The flow thus starts at the RAW's own latent
  (a bridge, as in InDI and I2SB) rather than at pure noise, which is what lets the
  shipped one-step network (latent in, latent out, no noise input) be the t = 0
  consistency function of this flow (see distill.py).

Sampling integrates dx/dt = v(x, t) from t = 0 to 1 with Euler or Heun steps. With
noise=None the source is x0 = c, so the teacher is deterministic, like the student.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from edge4k.errors import Edge4KError
from edge4k.files import atomic_output
from edge4k.models.blocks import AdaLNSingle, DiTBlock, make_act
from edge4k.models.checkpoint import default_checkpoint, describe, load_model, read_safetensors
from edge4k.models.config import E4KConfig
from edge4k.models.e4k import E4KNet, Encoder
from edge4k.training.train import TrainOptions, losses, run_training

FORMAT = "edge4k.teacher/1"
SOLVERS = ("euler", "heun")


@dataclass(frozen=True)
class TeacherConfig:
    width: int = 192
    depth: int = 6
    heads: int = 6
    mlp_ratio: float = 2.0
    source_noise: float = 0.5     # sigma of x0 = c + sigma * noise (latent units)

    def __post_init__(self):
        if self.width % self.heads:
            raise Edge4KError(f"teacher width {self.width} is not divisible by heads {self.heads}")
        if min(self.width, self.depth, self.heads) < 1 or self.source_noise < 0:
            raise Edge4KError("teacher width, depth and heads must be >= 1 and source noise >= 0")


class TimeEmbedding(nn.Module):
    """t in [0, 1] -> a vector added to the global conditioning. zero_at_start makes
    the embedding exactly 0 at t = 0, so a network trained with it is, at t = 0, the
    same network without it (how the one-step student keeps the shipped architecture)."""

    def __init__(self, dim: int, act: str, *, freqs: int = 16, max_freq: float = 1000.0, zero_at_start: bool = False):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(max_freq), freqs)), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * freqs, dim), make_act(act), nn.Linear(dim, dim))
        self.zero_at_start = zero_at_start

    def _embed(self, t):
        a = t[:, None] * self.freqs[None]
        return self.mlp(torch.cat([torch.sin(a), torch.cos(a)], 1))

    def forward(self, t):
        e = self._embed(t)
        return e - self._embed(torch.zeros_like(t)) if self.zero_at_start else e


class VelocityNet(nn.Module):
    """v(x_t, t | c, g): DiT blocks over the concatenated [x_t, c] latents."""

    def __init__(self, cfg: E4KConfig, tcfg: TeacherConfig):
        super().__init__()
        d = tcfg.width
        self.inp = nn.Conv2d(2 * cfg.latent_channels, d, 1)
        self.time = TimeEmbedding(cfg.global_dim, cfg.activation)
        self.adaln = AdaLNSingle(cfg.global_dim, d, cfg.activation)
        self.blocks = nn.ModuleList(DiTBlock(d, tcfg.heads, tcfg.mlp_ratio, cfg.attention, cfg.activation)
                                    for _ in range(tcfg.depth))
        self.out = nn.Conv2d(d, cfg.latent_channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, t, c, g, *, features: bool = False):
        mod = self.adaln(g + self.time(t))
        h = self.inp(torch.cat([x, c], 1))
        feats = []
        for blk in self.blocks:
            h = blk(h, mod)
            feats.append(h)
        return feats if features else self.out(h)


class TargetEncoder(nn.Module):
    """Ground-truth RGB (3 x T x T) -> z1 (C x T/f x T/f): the base encoder's layout on
    the pixel-unshuffled RGB."""

    def __init__(self, cfg: E4KConfig):
        super().__init__()
        self.net = Encoder(cfg, in_channels=12)

    def forward(self, rgb):
        return self.net(F.pixel_unshuffle(rgb, 2))


class FlowTeacher(nn.Module):
    def __init__(self, base: E4KNet, tcfg: TeacherConfig):
        super().__init__()
        self.cfg, self.tcfg = base.cfg, tcfg
        self.base = base.eval().requires_grad_(False)
        self.target_encoder = TargetEncoder(base.cfg)
        self.velocity = VelocityNet(base.cfg, tcfg)

    def train(self, mode: bool = True):
        super().train(mode)
        self.base.eval()          # frozen: its BatchNorm statistics must not move
        return self

    @torch.no_grad()
    def condition(self, packed, thumb, meta):
        """(c, g): the base model's latent of the packed RAW and its global vector."""
        return self.base.encoder(packed), self.base.global_branch(thumb, meta)

    def source(self, c, noise=None):
        return c if noise is None else c + self.tcfg.source_noise * noise

    def sample(self, c, g, *, steps: int, solver: str = "euler", noise=None):
        """Integrate the flow from x0 = source(c, noise) at t = 0 to t = 1."""
        if solver not in SOLVERS:
            raise Edge4KError(f"solver must be one of {', '.join(SOLVERS)}, got {solver}")
        if steps < 1:
            raise Edge4KError(f"steps must be >= 1, got {steps}")
        x = self.source(c, noise)
        ts = torch.linspace(0, 1, steps + 1, dtype=x.dtype)
        for t0, t1 in zip(ts[:-1], ts[1:]):
            tb = t0.expand(x.shape[0])
            v = self.velocity(x, tb, c, g)
            if solver == "heun":
                x_end = x + (t1 - t0) * v
                v = 0.5 * (v + self.velocity(x_end, t1.expand(x.shape[0]), c, g))
            x = x + (t1 - t0) * v
        return x


class FlowSampler(nn.Module):
    """The teacher in the backbone's place: (latent c, g) -> z after `steps` solver steps.
    Lets the runtime, eval and the MAC counter treat an N-step teacher as a model."""

    def __init__(self, teacher: FlowTeacher, steps: int, solver: str):
        super().__init__()
        self.teacher, self.steps, self.solver = teacher, steps, solver

    def forward(self, latent, g):
        return self.teacher.sample(latent, g, steps=self.steps, solver=self.solver)


def teacher_as_model(teacher: FlowTeacher, steps: int, solver: str = "euler") -> E4KNet:
    """An E4KNet whose backbone stage is the N-step teacher (the other stages are the base's)."""
    model = E4KNet(teacher.cfg)
    base = teacher.base
    model.global_branch, model.encoder, model.decoder = base.global_branch, base.encoder, base.decoder
    model.backbone = FlowSampler(teacher, steps, solver)
    return model.eval()


# ---- checkpoint ---------------------------------------------------------------------------------

def save_teacher(path: str | os.PathLike, teacher: FlowTeacher, **info) -> Path:
    state = {k: v.detach().cpu().contiguous() for k, v in teacher.state_dict().items()}
    meta = {"format": FORMAT, "preset": teacher.cfg.name, "config": json.dumps(teacher.cfg.to_dict(), sort_keys=True),
            "teacher": json.dumps(asdict(teacher.tcfg), sort_keys=True), **{k: str(v) for k, v in info.items()}}
    with atomic_output(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(path)


def load_teacher(path: str | os.PathLike, preset: str | None = None) -> tuple[FlowTeacher, dict[str, str]]:
    """The teacher a file describes, in eval mode; refuses a one-step checkpoint or another preset."""
    state, meta = read_safetensors(path, "teacher")
    if meta.get("format") != FORMAT:
        raise Edge4KError(f"{path} is not an Edge4K teacher (no {FORMAT} metadata; make one with `edge4k train-teacher`)")
    cfg = E4KConfig.from_dict(json.loads(meta["config"]))
    if preset is not None and cfg.name != preset:
        raise Edge4KError(f"teacher {path} is built on preset {cfg.name}, not {preset}")
    teacher = FlowTeacher(E4KNet(cfg), TeacherConfig(**json.loads(meta["teacher"])))
    try:
        teacher.load_state_dict(state)
    except RuntimeError as e:
        raise Edge4KError(f"teacher {path} does not fit its own config: {str(e).splitlines()[0]}") from None
    return teacher.eval(), meta


# ---- training (`edge4k train-teacher`) ----------------------------------------------------------

@dataclass
class TeacherOptions(TrainOptions):
    base: str | None = None            # one-step checkpoint whose latent space the teacher lives in
    width: int = TeacherConfig.width
    depth: int = TeacherConfig.depth
    heads: int = TeacherConfig.heads
    source_noise: float = TeacherConfig.source_noise
    ae_steps: int = 300                # first steps: train the target encoder only
    anchor_weight: float = 0.1         # pull z1 towards the base model's latent


def _base_model(opts) -> tuple[E4KNet, str]:
    path = opts.base or default_checkpoint(opts.preset)
    if path is None:
        raise Edge4KError(f"no trained one-step {opts.preset} checkpoint to build the teacher on; pass --base")
    return load_model(path, opts.preset)[0], describe(path)


class TeacherTask(nn.Module):
    """Phase 1 (step < ae_steps): the target encoder, through the frozen decoder.
    Phase 2: flow matching of the velocity net on the frozen target latents."""

    name = "train-teacher"
    weights_name = "teacher.safetensors"
    curve_keys = ("loss", "l1", "anchor", "flow")

    def __init__(self, opts: TeacherOptions):
        super().__init__()
        if opts.ae_steps < 0 or opts.anchor_weight < 0:
            raise Edge4KError("--ae-steps and --anchor-weight must be >= 0")
        base, self.base_desc = _base_model(opts)
        torch.manual_seed(opts.seed)
        self.teacher = FlowTeacher(base, TeacherConfig(opts.width, opts.depth, opts.heads, 2.0, opts.source_noise))
        self.ae_steps, self.anchor_weight, self.seed = opts.ae_steps, opts.anchor_weight, opts.seed

    def forward(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        tch = self.teacher
        packed, target = batch["packed"], batch["target"]
        c, g = tch.condition(packed, batch["thumb"], batch["meta"])
        if step < self.ae_steps:
            z1 = tch.target_encoder(target)
            parts = losses(tch.base.decoder.render(z1, packed), batch)
            with torch.no_grad():
                z_base = tch.base.backbone(c, g)
            parts["anchor"] = F.mse_loss(z1, z_base)
            parts["loss"] = parts["loss"] + self.anchor_weight * parts["anchor"]
            return parts
        tch.target_encoder.eval()      # frozen from here on, BatchNorm statistics included
        gen = torch.Generator().manual_seed(self.seed * 100003 + step)
        with torch.no_grad():
            z1 = tch.target_encoder(target)
        x0 = tch.source(c, torch.randn(c.shape, generator=gen).to(c))
        t = torch.rand(c.shape[0], generator=gen).to(c)
        tt = t[:, None, None, None]
        flow = F.mse_loss(tch.velocity((1 - tt) * x0 + tt * z1, t, c, g), z1 - x0)
        return {"loss": flow, "flow": flow}

    def save(self, path: Path, **info) -> None:
        save_teacher(path, self.teacher, base=self.base_desc, ae_steps=self.ae_steps, **info)


def train_teacher(opts: TeacherOptions, *, progress: bool = True) -> dict:
    return run_training(opts, TeacherTask, progress=progress)
