"""Tiny training runs: outputs, determinism, resume after interruption, data parallel under torchrun."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image

from edge4k.cli import main
from edge4k.errors import Edge4KError
from edge4k.models.checkpoint import load_model
from edge4k.training.train import TrainOptions, losses, train

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(preset="e4k-t-f16", budget_minutes=5, batch=2, crop=32, log_every=1, threads=1)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A small folder of training images (fast to unprocess)."""
    folder = tmp_path_factory.mktemp("photos")
    for i in range(2):
        img = (smooth_image(96, 128, seed=i) * 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"p{i}.png")
    return str(folder)


def _weights(path):
    return load_model(path)[0].state_dict()


def test_tiny_run_writes_checkpoint_log_and_curve(tmp_path, photos):
    out = tmp_path / "run"
    summary = train(TrainOptions(out=str(out), steps=4, data=photos, checkpoint_every=2, **TINY), progress=False)
    assert summary["steps"] == 4 and summary["stopped_by"] == "steps" and summary["crops_seen"] == 8
    model, meta = load_model(out / "model.safetensors", "e4k-t-f16")
    assert meta["step"] == "4" and meta["seed"] == "0"
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in rows)
    assert Image.open(out / "loss_curve.png").size[0] > 100
    assert json.loads((out / "summary.json").read_text())["steps"] == 4
    # The trained weights moved away from the initial ones.
    from edge4k.models import build_model
    fresh = build_model(model.cfg, seed=0).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in model.state_dict().items())


def test_fine_tuning_starts_from_a_checkpoint_and_can_keep_the_norm_statistics(tmp_path, photos):
    base = tmp_path / "base"
    train(TrainOptions(out=str(base), steps=2, data=photos, **TINY), progress=False)
    start = _weights(base / "model.safetensors")
    runs = {}
    for freeze in (False, True):
        out = tmp_path / f"tuned-{freeze}"
        train(TrainOptions(out=str(out), steps=2, data=photos, init=str(base / "model.safetensors"), freeze_norm=freeze,
                           lr=1e-3, **TINY), progress=False)
        runs[freeze] = _weights(out / "model.safetensors")
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(runs[True][k], start[k]) for k in stats)          # frozen: untouched
    assert any(not torch.equal(runs[False][k], start[k]) for k in stats)               # else they move
    learned = [k for k in start if k.endswith("weight") and "demosaic" not in k]
    assert any(not torch.equal(runs[True][k], start[k]) for k in learned)              # weights still train
    with pytest.raises(Edge4KError, match="checkpoint .* is for preset"):
        train(TrainOptions(out=str(tmp_path / "x"), steps=1, data=photos, init=str(base / "model.safetensors"),
                           **{**TINY, "preset": "e4k-s-f16"}), progress=False)


def test_warm_start_copies_what_fits_into_another_preset(tmp_path, photos):
    base = tmp_path / "base"
    train(TrainOptions(out=str(base), steps=2, data=photos, **TINY), progress=False)
    v3 = tmp_path / "v3"
    summary = train(TrainOptions(out=str(v3), steps=1, data=photos, warm_start=str(base / "model.safetensors"),
                                 **{**TINY, "preset": "e4k-t-f16-v3"}), progress=False)
    start = _weights(base / "model.safetensors")
    assert summary["init"]["warm_start"]["tensors_copied"] == len(start)
    assert summary["crops_seen_total"] == summary["crops_seen"] == 2 and summary["init"]["crops_seen_total"] == 4
    assert summary["init"]["warm_start"]["tensors"] == len(_weights(v3 / "model.safetensors")) > len(start)
    with pytest.raises(Edge4KError, match="--init and --warm-start both name the starting weights"):
        train(TrainOptions(out=str(tmp_path / "x"), steps=1, data=photos, init=str(base / "model.safetensors"),
                           warm_start=str(base / "model.safetensors"), **TINY), progress=False)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_train_is_the_gpu_recipe_for_any_preset_and_warm_start(tmp_path, photos):
    """`make train PRESET=... WARM=...` (the command for a lent GPU) runs: one step of the recipe's
    batch and crop on a folder standing in for DATA/shards-gpu."""
    base = tmp_path / "base"
    train(TrainOptions(out=str(base), steps=1, data=photos, **TINY), progress=False)
    data = tmp_path / "data"
    (data / "shards-gpu").mkdir(parents=True)
    for i in range(2):
        Image.fromarray((smooth_image(288, 320, seed=i) * 255).astype(np.uint8)).save(data / "shards-gpu" / f"p{i}.png")
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "train", "STAMP=",
                           f"BIN={Path(sys.executable).parent}", "PRESET=e4k-t-f16-v3",
                           f"WARM={base / 'model.safetensors'}", f"DATA={data}", "STEPS=1", "WORKERS=0",
                           f"OUT={tmp_path / 'out'}"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "train" / "summary.json").read_text())
    assert summary["preset"] == "e4k-t-f16-v3" and summary["global_batch"] == 48 and summary["crop"] == 256
    assert summary["init"]["warm_start"]["tensors_copied"] > 0


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, photos):
    a, b = tmp_path / "a", tmp_path / "b"
    train(TrainOptions(out=str(a), steps=4, data=photos, **TINY), progress=False)
    train(TrainOptions(out=str(b), steps=2, data=photos, **TINY), progress=False)
    summary = train(TrainOptions(out=str(b), steps=4, data=photos, resume=True, **TINY), progress=False)
    assert summary["steps"] == 4
    wa, wb = _weights(a / "model.safetensors"), _weights(b / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [json.loads(r)["step"] for r in (b / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_bad_training_requests_are_clear_errors(tmp_path, photos):
    with pytest.raises(Edge4KError, match="nothing to resume"):
        train(TrainOptions(out=str(tmp_path / "none"), steps=1, data=photos, resume=True, **TINY), progress=False)
    train(TrainOptions(out=str(tmp_path / "r"), steps=1, data=photos, **TINY), progress=False)
    with pytest.raises(Edge4KError, match="already holds a training run; pass --resume"):
        train(TrainOptions(out=str(tmp_path / "r"), steps=1, data=photos, **TINY), progress=False)
    with pytest.raises(Edge4KError, match="holds a e4k-t-f16 run, not e4k-s-f16"):
        train(TrainOptions(**{**TINY, "preset": "e4k-s-f16"}, out=str(tmp_path / "r"), steps=2, data=photos,
                           resume=True), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Edge4KError, match="holds no images"):
        train(TrainOptions(out=str(tmp_path / "e"), steps=1, data=str(tmp_path / "empty"), **TINY), progress=False)
    with pytest.raises(Edge4KError, match="too small for a 128x128 crop"):
        train(TrainOptions(**{**TINY, "crop": 128}, out=str(tmp_path / "s"), steps=1, data=photos), progress=False)


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["train", "--preset", "e4k-t-f16", "--budget-minutes", "1", "--out", str(tmp_path / "o"),
               "--data", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("edge4k: error:") and err.count("\n") == 1


def test_loss_is_zero_for_a_perfect_output_and_sees_both_looks():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 32, 32, generator=g) * 0.5
    batch = {"target": y, "matrix": torch.eye(3).expand(2, 3, 3), "exposure": torch.tensor([1.0, 4.0])}
    parts = losses(y.clone(), batch)
    assert parts["loss"].item() == pytest.approx(0, abs=1e-5) and parts["ssim"].item() == pytest.approx(1, abs=1e-5)
    shifted = losses(y.flip(1), batch)      # swapped colour channels
    assert shifted["l1_neutral"] > 0.01 and shifted["l1_natural"] > 0.01 and shifted["loss"] > parts["loss"]
    # Dark errors weigh more in the natural look, which brightens the second image 4x.
    dark = y.clone()
    dark[1] += 0.02
    d = losses(dark, batch)
    assert d["l1_natural"] > d["l1_neutral"] > 0


def test_interrupted_cli_run_keeps_its_checkpoint_and_resumes(tmp_path, photos, monkeypatch, capsys):
    from edge4k.training.data import PairSampler
    real_batch = PairSampler.batch

    def batch_then_ctrl_c(self, step, size):   # the user presses Ctrl-C while step 3 is computed
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real_batch(self, step, size)

    monkeypatch.setattr(PairSampler, "batch", batch_then_ctrl_c)
    out = tmp_path / "run"
    args = ["train", "--preset", "e4k-t-f16", "--budget-minutes", "5", "--steps", "5", "--batch", "2",
            "--crop", "32", "--threads", "1", "--data", photos, "--out", str(out), "--log-every", "1"]
    assert main(args) == 130                      # the step in flight finishes, is saved, then it stops
    assert load_model(out / "model.safetensors")[1]["step"] == "3"
    monkeypatch.setattr(PairSampler, "batch", real_batch)
    assert main(args + ["--resume"]) == 0
    assert load_model(out / "model.safetensors")[1]["step"] == "5"
    steps = [json.loads(r)["step"] for r in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]               # continued from the checkpoint, nothing lost or redone
    assert "3 steps (interrupted)" in capsys.readouterr().out


def test_data_parallel_two_processes_on_cpu(tmp_path, photos):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "edge4k",
           "train", "--preset", "e4k-t-f16", "--budget-minutes", "20", "--steps", "3", "--batch", "2", "--crop", "32",
           "--data", photos, "--out", str(out), "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # 3 steps are the stop; the budget and timeout only have to outlast two processes starting
    # torch and gloo on a busy 2-core machine (tens of seconds idle)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world"] == 2 and summary["global_batch"] == 4 and summary["steps"] == 3
    model, meta = load_model(out / "model.safetensors", "e4k-t-f16")
    assert meta["global_batch"] == "4"
    assert res.stdout.count("trained e4k-t-f16") == 1      # rank 0 reports, once


def test_runs_record_their_command_and_crops_across_init_and_resume(tmp_path, photos):
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    common = ["train", "--preset", "e4k-t-f16", "--budget-minutes", "5", "--batch", "2", "--crop", "32",
              "--threads", "1", "--data", photos, "--log-every", "1"]
    assert main(common + ["--steps", "2", "--out", str(base)]) == 0
    first = common + ["--steps", "1", "--init", str(base / "model.safetensors"), "--out", str(tuned)]
    assert main(first) == 0
    assert main(common + ["--steps", "3", "--out", str(tuned), "--resume"]) == 0
    summary = json.loads((tuned / "summary.json").read_text())
    assert [(r["from_step"], r["to_step"], r["crops"]) for r in summary["runs"]] == [(0, 1, 2), (1, 3, 4)]
    assert summary["runs"][0]["command"].startswith("edge4k train --preset e4k-t-f16")
    assert summary["runs"][0]["command"].endswith(f"--out {tuned}") and "--init" in summary["runs"][0]["command"]
    assert summary["runs"][1]["command"].endswith("--resume") and summary["command"] == summary["runs"][1]["command"]
    assert summary["crops_seen"] == 6 and summary["init"]["crops_seen_total"] == 4
    assert summary["crops_seen_total"] == 10 and summary["init"]["checkpoint"].startswith("model.safetensors sha256:")
    meta = load_model(tuned / "model.safetensors")[1]
    assert meta["crops_seen"] == "6" and meta["crops_seen_total"] == "10" and meta["init"] == summary["init"]["checkpoint"]


def test_fast_loss_equals_the_reference_loss():
    from edge4k.benchmarks.training import reference_losses
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 3, 48, 48, generator=g) * 0.8
    x = (y + 0.05 * torch.randn(2, 3, 48, 48, generator=g)).requires_grad_()
    batch = {"target": y, "matrix": torch.eye(3).expand(2, 3, 3) * 1.2, "exposure": torch.tensor([1.0, 3.0])}
    fast, ref = losses(x, batch), reference_losses(x, batch)
    assert {k: round(v.item(), 6) for k, v in fast.items()} == {k: round(v.item(), 6) for k, v in ref.items()}
    gf, = torch.autograd.grad(fast["loss"], x)
    gr, = torch.autograd.grad(ref["loss"], x)
    torch.testing.assert_close(gf, gr, rtol=1e-4, atol=1e-8)


def test_training_benchmark_steps_two_presets_on_the_same_batches():
    """`python -m edge4k.benchmarks.training --variants before,PRESET:bf16`: another preset's model
    interleaved with the first's, each row with its own MACs; a preset that needs other batches is refused."""
    from edge4k.benchmarks.training import run
    res = run("e4k-v3-f16", batch=2, crop=64, threads=1, rounds=1, variants=("before", "e4k-s-f16:bf16"))
    rows = res["variants"]
    assert list(rows) == ["before", "e4k-s-f16:bf16"]
    # v2 has 5.70 GMAC per output MP to v3's 3.44 (models.cost); a training step, 3x the forward, likewise
    assert rows["e4k-s-f16:bf16"]["network_gmac_per_step"] > 1.4 * rows["before"]["network_gmac_per_step"] > 0
    assert rows["e4k-s-f16:bf16"]["speedup_per_cpu_s"]["over"] == "before"
    with pytest.raises(Edge4KError, match="needs other batches"):
        run("e4k-v3-f16", batch=2, crop=64, threads=1, rounds=1, variants=("before", "e4k-t-f16:after"))


def test_the_training_layout_computes_the_same_network():
    """Training runs channels-last on CPU; the network it trains is the NCHW one inference runs:
    the shipped weights give the same output in both layouts, and a training step the same gradients."""
    from edge4k.models import build_model, get_preset
    from edge4k.models.checkpoint import default_checkpoint
    from edge4k.training.train import batch_to
    model = load_model(default_checkpoint("e4k-s-f16"), "e4k-s-f16")[0]
    g = torch.Generator().manual_seed(0)
    batch = {"packed": torch.rand(1, 4, 32, 32, generator=g), "thumb": torch.rand(1, 4, 64, 64, generator=g),
             "meta": torch.rand(1, 5, generator=g)}
    with torch.no_grad():
        ref = model(batch["packed"], batch["thumb"], batch["meta"])
        cl = batch_to(batch, torch.device("cpu"))
        out = model.to(memory_format=torch.channels_last)(cl["packed"], cl["thumb"], cl["meta"])
    assert cl["packed"].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    tiny = build_model(get_preset("e4k-t-f16")).train()
    packed = torch.rand(2, 4, 16, 16, generator=g)
    thumb, meta = torch.rand(2, 4, 32, 32, generator=g), torch.rand(2, 5, generator=g)
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        tiny.zero_grad()
        tiny.to(memory_format=fmt)(packed.contiguous(memory_format=fmt), thumb, meta).square().mean().backward()
        grads.append([p.grad.clone() for p in tiny.parameters() if p.grad is not None])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_finishing_both_looks_at_once_equals_finish():
    from edge4k.kernels.postprocess import finish
    from edge4k.training.train import finish_looks
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 16, 16, generator=g) * 1.2 - 0.1          # some out of range, as a network's output
    m, e = torch.eye(3).expand(2, 3, 3) * 1.3 - 0.05, torch.tensor([1.0, 6.0])
    neutral, natural = finish_looks(x, m, e)
    assert torch.equal(neutral, finish(x, m, e, "neutral")) and torch.equal(natural, finish(x, m, e, "natural"))


def test_bf16_step_stays_close_to_fp32():
    """bf16 autocast (--bf16) from the shipped model on the bundled training photos: one step's loss
    within 5 % of fp32's (bf16 noise on the residual: measured 3-4 %) and the gradient pointing the same way
    (cosine > 0.99)."""
    from edge4k.models.checkpoint import default_checkpoint
    from edge4k.training.data import PairSampler
    from edge4k.training.train import DirectTask, batch_to, training_images
    task = DirectTask(TrainOptions(preset="e4k-s-f16", out="", init=str(default_checkpoint("e4k-s-f16"))))
    task = task.train().to(memory_format=torch.channels_last)
    cfg = task.model.cfg
    sampler = PairSampler(training_images(None), crop=64, thumb_size=cfg.thumb_size, multiple=cfg.compression)
    batch = batch_to(sampler.batch(0, 4), torch.device("cpu"))
    steps = {}
    for task.bf16 in (False, True):
        task.zero_grad()
        loss = task(batch, 0)["loss"]
        loss.backward()
        steps[task.bf16] = loss.item(), torch.cat([p.grad.flatten() for p in task.parameters() if p.grad is not None])
    (loss32, grad32), (loss16, grad16) = steps[False], steps[True]
    print(loss32, loss16, torch.nn.functional.cosine_similarity(grad16, grad32, 0).item())
    assert loss16 != loss32                                  # autocast did run
    assert loss16 == pytest.approx(loss32, rel=0.05)
    assert torch.nn.functional.cosine_similarity(grad16, grad32, 0) > 0.99


def test_bf16_training_tracks_fp32(tmp_path, photos):
    """30 steps of the tiny preset from scratch: the bf16 run's losses within 2 % of the fp32 run's."""
    runs = {}
    for bf16 in (False, True):
        out = tmp_path / f"bf16-{bf16}"
        summary = train(TrainOptions(out=str(out), steps=30, data=photos, bf16=bf16, **TINY), progress=False)
        assert summary["bf16"] is bf16 and summary["runs"][-1]["bf16"] is bf16
        runs[bf16] = np.array([json.loads(r)["loss"] for r in (out / "train_log.jsonl").read_text().splitlines()])
    print(runs[False][-5:], runs[True][-5:])
    assert not np.array_equal(runs[False], runs[True])
    np.testing.assert_allclose(runs[True][-10:].mean(), runs[False][-10:].mean(), rtol=0.02)


def test_freed_memory_stays_in_the_heap_on_linux():
    from edge4k.training.train import retain_freed_memory
    assert retain_freed_memory() is sys.platform.startswith("linux")


def test_cli_bf16_flag(tmp_path, photos, capsys):
    common = ["--preset", "e4k-t-f16", "--budget-minutes", "5", "--steps", "1", "--batch", "2", "--crop", "32",
              "--threads", "1", "--data", photos, "--bf16"]
    assert main(["train", *common, "--out", str(tmp_path / "t")]) == 0
    assert json.loads((tmp_path / "t" / "summary.json").read_text())["bf16"] is True
    assert main(["train-teacher", *common, "--out", str(tmp_path / "teacher")]) == 1
    assert "--bf16 is for `edge4k train` only" in capsys.readouterr().err
