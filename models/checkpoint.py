"""Model checkpoints: safetensors weights with the preset's config inside.

The file's metadata holds the format tag, the preset name, its full config (JSON)
and config hash, plus free-form training facts (step, seed, ...). Loading checks
all of it against the preset asked for, then every tensor's name and shape, and
says exactly what does not match.
"""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from edge4k.errors import Edge4KError
from edge4k.files import atomic_output, sha256_file
from edge4k.models.config import E4KConfig, get_preset
from edge4k.models.e4k import E4KNet, build_model

FORMAT = "edge4k.checkpoint/1"


def save_checkpoint(path: str | os.PathLike, model: E4KNet, **info) -> Path:
    """Write the model's weights (and BatchNorm statistics) atomically; ``info`` values go to the metadata."""
    cfg = model.cfg
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "preset": cfg.name, "config": json.dumps(cfg.to_dict(), sort_keys=True),
            "config_hash": cfg.config_hash(), **{k: str(v) for k, v in info.items()}}
    with atomic_output(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(path)


def read_safetensors(path: str | os.PathLike, what: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; one-line Edge4KError if missing or damaged."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise Edge4KError(f"{what} not found: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except Exception as e:  # safetensors raises several types for damaged files
        raise Edge4KError(f"{what} {path} is corrupt or not a safetensors file ({str(e).splitlines()[0]})") from None


def read_checkpoint(path: str | os.PathLike) -> tuple[E4KConfig, dict[str, torch.Tensor], dict[str, str]]:
    """(config, state dict, metadata) of a checkpoint file; Edge4KError if it is not one."""
    state, meta = read_safetensors(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise Edge4KError(f"checkpoint {path} is not an Edge4K checkpoint (no {FORMAT} metadata)")
    try:
        cfg = E4KConfig.from_dict(json.loads(meta["config"]))
    except (ValueError, TypeError, Edge4KError) as e:
        raise Edge4KError(f"checkpoint {path} has an unusable config: {e}") from None
    return cfg, state, meta


def _config_diff(a: E4KConfig, b: E4KConfig) -> str:
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k}: checkpoint {da[k]} vs preset {db[k]}" for k in da if da[k] != db[k])


def load_model(path: str | os.PathLike, preset: str | E4KConfig | None = None) -> tuple[E4KNet, dict[str, str]]:
    """Build the model a checkpoint describes, in eval mode; with ``preset``, refuse a checkpoint
    made for another preset or another version of the same preset."""
    cfg, state, meta = read_checkpoint(path)
    if preset is not None:
        want = get_preset(preset) if isinstance(preset, str) else preset
        if cfg.name != want.name:
            raise Edge4KError(f"checkpoint {path} is for preset {cfg.name}, not {want.name}")
        if cfg != want:
            raise Edge4KError(f"checkpoint {path} was made for a different {want.name} config ({_config_diff(cfg, want)})")
    model = E4KNet(cfg)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise Edge4KError(f"checkpoint {path} does not fit preset {cfg.name}: "
                          + "; ".join(f"{what} tensors {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                                      for what, names in (("missing", missing), ("unexpected", unexpected)) if names))
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise Edge4KError(f"checkpoint {path} does not fit preset {cfg.name}: tensor {k} has shape "
                              f"{tuple(state[k].shape)}, the model expects {tuple(v.shape)}")
    model.load_state_dict({k: state[k].to(v.dtype) for k, v in expected.items()})
    return model.eval(), meta


def warm_start(model: E4KNet, path: str | os.PathLike) -> dict:
    """Copy into ``model`` every tensor of another preset's checkpoint that has the same name and
    shape (a new architecture starts from what an older one learned); the rest keep their init.
    Returns what was copied, for the run's record."""
    _, state, _ = read_checkpoint(path)
    own = model.state_dict()
    copied = {k: state[k].to(v.dtype) for k, v in own.items() if k in state and state[k].shape == v.shape}
    if not copied:
        raise Edge4KError(f"checkpoint {path} shares no tensor of the same name and shape with {model.cfg.name}")
    model.load_state_dict(copied, strict=False)
    learned = [v for k, v in copied.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    return {"tensors_copied": len(copied), "tensors": len(own), "parameters_copied": int(sum(v.numel() for v in learned))}


def default_checkpoint(preset: str) -> Path | None:
    """The trained checkpoint shipped in the package for ``preset``, if there is one."""
    path = resources.files("edge4k.models").joinpath(f"weights/{preset}.safetensors")
    return Path(str(path)) if path.is_file() else None


def describe(path: str | os.PathLike) -> str:
    """How a profile names the weights: file name + sha256 prefix."""
    return f"{Path(path).name} sha256:{sha256_file(path)[:12]}"


def load_for_preset(preset: str, checkpoint: str | os.PathLike | None, seed: int = 0) -> tuple[E4KNet, str]:
    """(model, weights description): the given checkpoint, else the shipped one, else seed init."""
    path = checkpoint or default_checkpoint(preset)
    if path is None:
        return build_model(get_preset(preset), seed=seed), f"seed:{seed}"
    model, _ = load_model(path, preset)
    return model, describe(path)
