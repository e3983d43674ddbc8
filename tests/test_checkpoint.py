"""Checkpoints: round trip, and every kind of mismatch refused with a message that names it."""
import dataclasses
import json

import pytest
import torch
from conftest import tiny_model
from safetensors.torch import load_file, save_file

from edge4k.cli import main
from edge4k.errors import Edge4KError
from edge4k.models import DEFAULT_PRESET, E4KNet, get_preset
from edge4k.models.checkpoint import default_checkpoint, load_model, read_checkpoint, save_checkpoint


def _inputs(cfg):
    torch.manual_seed(0)
    return (torch.rand(2, 4, 32, 32), torch.rand(2, 4, cfg.thumb_size, cfg.thumb_size), torch.rand(2, cfg.meta_dim))


def test_round_trip_keeps_weights_statistics_and_metadata(tmp_path):
    model = tiny_model()
    model.decoder.head[0].body[1][1].running_mean.fill_(0.25)   # BatchNorm statistics travel too
    path = save_checkpoint(tmp_path / "m.safetensors", model, step=7)
    loaded, meta = load_model(path, "e4k-t-f16")
    assert meta["preset"] == "e4k-t-f16" and meta["step"] == "7" and meta["config_hash"] == model.cfg.config_hash()
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(*_inputs(model.cfg)), model(*_inputs(model.cfg)), rtol=0, atol=0)


def test_wrong_preset_is_refused_naming_both(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    with pytest.raises(Edge4KError, match="is for preset e4k-t-f16, not e4k-s-f16"):
        load_model(path, "e4k-s-f16")


def test_changed_config_under_the_same_name_is_refused(tmp_path):
    cfg = dataclasses.replace(get_preset("e4k-t-f16"), depth=2)
    path = save_checkpoint(tmp_path / "m.safetensors", E4KNet(cfg))
    with pytest.raises(Edge4KError, match="different e4k-t-f16 config \\(depth: checkpoint 2 vs preset 1\\)"):
        load_model(path, "e4k-t-f16")


def _rewrite(path, change):
    state, meta = load_file(path), read_checkpoint(path)[2]
    change(state, meta)
    save_file(state, str(path), metadata=meta)


def test_wrong_shapes_and_missing_tensors_are_named(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    key = "encoder.net.0.0.weight"
    _rewrite(path, lambda s, m: s.__setitem__(key, torch.zeros(3, 4, 3, 3)))
    with pytest.raises(Edge4KError, match=f"tensor {key} has shape \\(3, 4, 3, 3\\), the model expects \\(8, 4, 3, 3\\)"):
        load_model(path, "e4k-t-f16")
    _rewrite(path, lambda s, m: s.pop(key))
    with pytest.raises(Edge4KError, match=f"missing tensors {key}"):
        load_model(path)


def test_corrupt_or_foreign_files_are_refused(tmp_path):
    good = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(good.read_bytes()[:1000])
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    for bad in (truncated, garbage):
        with pytest.raises(Edge4KError, match="corrupt or not a safetensors file"):
            load_model(bad)
    foreign = tmp_path / "f.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(Edge4KError, match="not an Edge4K checkpoint"):
        load_model(foreign)
    with pytest.raises(Edge4KError, match="checkpoint not found"):
        load_model(tmp_path / "none.safetensors")


def test_run_uses_a_given_checkpoint_and_names_it_in_the_profile(tmp_path, sample_dng, capsys):
    ckpt = save_checkpoint(tmp_path / "m.safetensors", tiny_model())
    prof = tmp_path / "p.json"
    assert main(["run", sample_dng, "-o", str(tmp_path / "o.png"), "--preset", "e4k-t-f16", "--native",
                 "--checkpoint", str(ckpt), "--profile", str(prof)]) == 0
    weights = json.loads(prof.read_text())["model"]["weights"]
    assert weights.startswith("m.safetensors sha256:") and len(weights.split(":")[1]) == 12
    # A checkpoint for another preset: one line, exit 1, no output image.
    assert main(["run", sample_dng, "-o", str(tmp_path / "x.png"), "--checkpoint", str(ckpt)]) == 1
    assert f"is for preset e4k-t-f16, not {DEFAULT_PRESET}" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_the_default_preset_ships_a_trained_checkpoint_and_others_fall_back_to_seed_init():
    path = default_checkpoint(DEFAULT_PRESET)
    assert path is not None, f"models/weights/{DEFAULT_PRESET}.safetensors is missing"
    model, meta = load_model(path, DEFAULT_PRESET)
    assert int(meta["step"]) > 0
    assert default_checkpoint("e4k-t-f16") is None
