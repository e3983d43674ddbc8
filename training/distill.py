"""`edge4k distill`: the one-step student from a flow teacher (flow.py).

The student is the shipped one-step network. Its backbone, given a time
embedding that is exactly zero at t = 0, is read as a consistency function on the
teacher's flow:

    f(x_t, t) = x_t + (1 - t) * F(x_t, t),   F(x, t) = backbone(x, g + temb(t)) - x

so f(x, 1) = x (the data end) and f(c, 0) = backbone(c, g): the shipped forward.
Two terms train it (each with a weight; weight 0 switches it off for ablation):

- consistency (continuous time, in the spirit of sCM / SANA-Sprint): along the
  teacher's ODE dx/dt = v(x_t, t), f must not change. The total derivative
  df/dt = v + (1 - t) dF/dt - F is one forward-mode JVP with tangents (v, 1). The
  loss pulls F towards the stop-gradient target F + df/dt / (|df/dt| + 0.1): a
  step towards the value of f a little later on the trajectory, with sCM's tangent
  normalisation. Its size is ~1 by construction, so the log's `tangent_rms`
  (the unnormalised |df/dt|) is what shows the student becoming consistent.
- adversarial (in the spirit of LADD): the student's prediction f(x_t, t) and the
  real latent are re-noised to a random s along the same flow, the frozen
  teacher's velocity net extracts features at every block, and light heads
  (1x1 convs) judge them, with hinge losses. The heads see the student's features
  detached; the student sees the heads' parameters detached, so one optimiser
  step trains both sides.

Only the student's backbone (and its time embedding, which is not shipped) is
trained; global branch, encoder and decoder are the teacher's base, frozen, so the
latent space stays the one the teacher was trained in. The saved model.safetensors
is a plain E4K checkpoint: compile, quantise and run it like any other.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp

from edge4k.errors import Edge4KError
from edge4k.models.checkpoint import save_checkpoint
from edge4k.training.flow import TimeEmbedding, load_teacher
from edge4k.training.train import TrainOptions, run_training

TANGENT_EPS = 0.1             # sCM's tangent normalisation constant
ZERO_T_FRACTION = 0.25        # share of samples at t = 0, the point the student ships at
RENOISE_RANGE = (0.3, 0.9)
TIME_MAX_FREQ = 8.0    # s for the discriminator's re-noised inputs (LADD samples mid-range noise)


@dataclass
class DistillOptions(TrainOptions):
    teacher: str = ""
    consistency_weight: float = 1.0
    adversarial_weight: float = 0.1


class DiscriminatorHeads(nn.Module):
    """One light head per teacher block: 1x1 conv -> SiLU -> 1x1 conv to a logit map."""

    def __init__(self, width: int, blocks: int):
        super().__init__()
        self.heads = nn.ModuleList(nn.Sequential(nn.Conv2d(width, width // 2, 1), nn.SiLU(),
                                                 nn.Conv2d(width // 2, 1, 1)) for _ in range(blocks))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([h(f).flatten(1) for h, f in zip(self.heads, feats)], 1)


class DistillTask(nn.Module):
    name = "distill"
    weights_name = "model.safetensors"
    curve_keys = ("loss", "consistency", "tangent_rms", "adv_g", "adv_d")

    def __init__(self, opts: DistillOptions):
        super().__init__()
        if not opts.teacher:
            raise Edge4KError("--teacher is required (a teacher.safetensors from `edge4k train-teacher`)")
        if opts.consistency_weight < 0 or opts.adversarial_weight < 0:
            raise Edge4KError("term weights must be >= 0")
        if opts.consistency_weight == 0 and opts.adversarial_weight == 0:
            raise Edge4KError("both terms are switched off; give --consistency-weight or --adversarial-weight > 0")
        teacher, meta = load_teacher(opts.teacher, opts.preset)
        self.teacher = teacher.requires_grad_(False)
        self.teacher_path = opts.teacher
        cfg = teacher.cfg
        torch.manual_seed(opts.seed)
        self.backbone = copy.deepcopy(teacher.base.backbone).requires_grad_(True)
        # Low frequencies: df/dt differentiates the embedding, and sin(1000 t) would
        # make the tangent explode (sCM found the same and lowered its Fourier scale).
        self.time = TimeEmbedding(cfg.global_dim, cfg.activation, max_freq=TIME_MAX_FREQ, zero_at_start=True)
        self.heads = DiscriminatorHeads(teacher.tcfg.width, teacher.tcfg.depth)
        self.w_cm, self.w_adv, self.seed = opts.consistency_weight, opts.adversarial_weight, opts.seed

    def train(self, mode: bool = True):
        super().train(mode)
        # Teacher frozen; the student keeps its trained BatchNorm statistics (a
        # forward-mode JVP through batch statistics would also differentiate them).
        self.teacher.eval()
        self.backbone.eval()
        return self

    def F(self, x, t, g):
        return self.backbone(x, g + self.time(t)) - x

    def forward(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        tch = self.teacher
        c, g = tch.condition(batch["packed"], batch["thumb"], batch["meta"])
        gen = torch.Generator().manual_seed(self.seed * 100003 + step)
        noise = lambda: torch.randn(c.shape, generator=gen).to(c)  # noqa: E731
        with torch.no_grad():
            z1 = tch.target_encoder(batch["target"])
        b = c.shape[0]
        t = torch.rand(b, generator=gen).to(c)
        t = torch.where(torch.rand(b, generator=gen).to(c) < ZERO_T_FRACTION, torch.zeros_like(t), t)
        tt = t[:, None, None, None]
        x0 = tch.source(c, noise())
        xt = (1 - tt) * x0 + tt * z1
        parts = {}
        F_theta = self.F(xt, t, g)
        if self.w_cm > 0:
            with torch.no_grad():
                v = tch.velocity(xt, t, c, g)
                F_minus, dF_dt = jvp(lambda x, s: self.F(x, s, g), (xt, t), (v, torch.ones_like(t)))
                df_dt = v + (1 - tt) * dF_dt - F_minus
                rms = df_dt.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
                target = F_minus + df_dt / (rms + TANGENT_EPS)
            parts["consistency"] = F.mse_loss(F_theta, target)
            parts["tangent_rms"] = rms.mean()
        if self.w_adv > 0:
            z_hat = xt + (1 - tt) * F_theta
            s = torch.empty(b).uniform_(*RENOISE_RANGE, generator=gen).to(c)
            ss = s[:, None, None, None]
            x0s = tch.source(c, noise())
            fake = tch.velocity((1 - ss) * x0s + ss * z_hat, s, c, g, features=True)
            with torch.no_grad():
                real = tch.velocity((1 - ss) * x0s + ss * z1, s, c, g, features=True)
            detached = {k: p.detach() for k, p in self.heads.named_parameters()}
            parts["adv_g"] = -functional_call(self.heads, detached, (fake,)).mean()
            parts["adv_d"] = (F.relu(1 - self.heads(real)).mean()
                              + F.relu(1 + self.heads([f.detach() for f in fake])).mean())
        loss = sum(w * parts[k] for k, w in (("consistency", self.w_cm), ("adv_g", self.w_adv)) if k in parts)
        parts["loss"] = loss + parts.get("adv_d", 0.0)
        return parts

    def student(self):
        """The shipped architecture: the teacher's base with the distilled backbone (t = 0)."""
        model = copy.deepcopy(self.teacher.base)
        model.backbone.load_state_dict(self.backbone.state_dict())
        return model.eval()

    def save(self, path: Path, **info) -> None:
        save_checkpoint(path, self.student(), distilled_from=Path(self.teacher_path).name,
                        consistency_weight=self.w_cm, adversarial_weight=self.w_adv, **info)


def distill(opts: DistillOptions, *, progress: bool = True) -> dict:
    return run_training(opts, DistillTask, progress=progress)
