"""The flow teacher and one-step distillation at tiny shapes: the maths (sampler,
time embedding, JVP tangent), then the commands end to end (losses finite and falling)."""
import json

import numpy as np
import pytest
import torch
from conftest import smooth_image, tiny_model
from PIL import Image

from edge4k.cli import main
from edge4k.errors import Edge4KError
from edge4k.models.checkpoint import load_model
from edge4k.training.distill import DistillOptions, DistillTask, distill
from edge4k.training.flow import (
    FlowTeacher,
    TeacherConfig,
    TeacherOptions,
    TimeEmbedding,
    load_teacher,
    teacher_as_model,
    train_teacher,
)
from edge4k.training.train import TrainOptions, train

TINY = dict(preset="e4k-t-f16", budget_minutes=5, batch=2, crop=32, log_every=1, threads=1)
TEACHER = dict(width=16, depth=2, heads=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """base (one-step) -> teacher (4 autoencoder + 36 flow steps) -> student (24 distillation steps)."""
    root = tmp_path_factory.mktemp("distill")
    photos = root / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray((smooth_image(96, 128, seed=i) * 255).astype(np.uint8)).save(photos / f"p{i}.png")
    common = dict(TINY, data=str(photos))
    train(TrainOptions(out=str(root / "base"), steps=2, **common), progress=False)
    teacher = train_teacher(TeacherOptions(out=str(root / "teacher"), steps=40, ae_steps=4, lr=1e-2,
                                           base=str(root / "base" / "model.safetensors"), **TEACHER, **common),
                            progress=False)
    student = distill(DistillOptions(out=str(root / "student"), steps=24, lr=1e-3,
                                     teacher=str(root / "teacher" / "teacher.safetensors"), **common), progress=False)
    return root, teacher, student


def _log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_teacher_losses_are_finite_and_the_flow_loss_falls(runs):
    root, summary, _ = runs
    assert summary["task"] == "train-teacher" and summary["steps"] == 40
    rows = _log(root / "teacher" / "train_log.jsonl")
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert {"l1", "anchor"} <= set(rows[0]) and "flow" in rows[-1]      # both phases ran
    flow = [r["flow"] for r in rows if "flow" in r]
    assert np.mean(flow[-6:]) < np.mean(flow[:6])
    teacher, meta = load_teacher(root / "teacher" / "teacher.safetensors", "e4k-t-f16")
    assert teacher.tcfg == TeacherConfig(width=16, depth=2, heads=2) and meta["ae_steps"] == "4"


def test_distillation_losses_are_finite_and_the_student_becomes_consistent(runs):
    root, _, summary = runs
    assert summary["task"] == "distill" and summary["steps"] == 24
    rows = _log(root / "student" / "train_log.jsonl")
    assert all(np.isfinite(r[k]) for r in rows for k in ("loss", "consistency", "adv_g", "adv_d"))
    tangent = [r["tangent_rms"] for r in rows]
    assert np.mean(tangent[-6:]) < np.mean(tangent[:6])


def test_the_student_is_a_plain_checkpoint_of_the_preset_with_a_new_backbone(runs):
    root, _, _ = runs
    student, meta = load_model(root / "student" / "model.safetensors", "e4k-t-f16")
    base, _ = load_model(root / "base" / "model.safetensors", "e4k-t-f16")
    assert meta["distilled_from"] == "teacher.safetensors"
    s, b = student.state_dict(), base.state_dict()
    assert all(torch.equal(s[k], b[k]) for k in s if not k.startswith("backbone."))
    assert any(not torch.equal(s[k], b[k]) for k in s if k.startswith("backbone."))


def test_time_embedding_vanishes_at_t0_so_the_t0_student_is_the_shipped_forward():
    emb = TimeEmbedding(16, "silu", zero_at_start=True)
    assert torch.equal(emb(torch.zeros(3)), torch.zeros(3, 16))
    assert emb(torch.full((1,), 0.5)).abs().sum() > 0


def _teacher(v_const=None, field=None):
    teacher = FlowTeacher(tiny_model(), TeacherConfig(**TEACHER)).eval()
    if v_const is not None:
        field = lambda x, t: torch.full_like(x, v_const)
    if field is not None:   # t arrives as one value per batch item
        teacher.velocity.forward = lambda x, t, c, g, features=False: field(x, t.reshape(-1, *[1] * (x.dim() - 1)))
    return teacher


def test_euler_and_heun_integrate_a_constant_field_exactly():
    teacher = _teacher(v_const=0.25)
    c, g = torch.randn(2, 8, 2, 2, generator=torch.Generator().manual_seed(0)), torch.zeros(2, 16)
    for solver in ("euler", "heun"):
        for steps in (1, 3):
            assert torch.allclose(teacher.sample(c, g, steps=steps, solver=solver), c + 0.25)
    with pytest.raises(Edge4KError, match="solver"):
        teacher.sample(c, g, steps=2, solver="rk4")


def test_heun_is_exact_for_a_field_linear_in_t_where_euler_is_not():
    # dx/dt = 2t: x(1) = x(0) + 1. Euler with N steps sums 2 t_k h over the left ends: (N - 1) / N.
    teacher = _teacher(field=lambda x, t: 2 * t * torch.ones_like(x))
    c, g = torch.randn(2, 8, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64), None
    for steps in (1, 2, 5):
        torch.testing.assert_close(teacher.sample(c, g, steps=steps, solver="heun"), c + 1.0)
        torch.testing.assert_close(teacher.sample(c, g, steps=steps, solver="euler"), c + (steps - 1) / steps)


def test_heun_matches_its_closed_form_on_dx_dt_equals_t_x():
    """dx/dt = t x, so x(1) = x(0) e^(1/2). One Heun step from t0 to t1 = t0 + h multiplies x
    by 1 + h/2 (t0 + t1 (1 + h t0)); Euler's by 1 + h t0. Heun's error falls ~4x per halving
    of the step (second order; 4.7x and 4.5x at these step counts), Euler's ~2x."""
    teacher = _teacher(field=lambda x, t: t * x)
    c = torch.linspace(-1, 2, 8, dtype=torch.float64).reshape(2, 4, 1, 1)
    exact = c * np.exp(0.5)
    errors = {}
    for solver, factor in (("heun", lambda t0, h: 1 + h / 2 * (t0 + (t0 + h) * (1 + h * t0))),
                           ("euler", lambda t0, h: 1 + h * t0)):
        for steps in (4, 8, 16):
            h = 1 / steps
            closed = float(np.prod([factor(k * h, h) for k in range(steps)]))
            got = teacher.sample(c, None, steps=steps, solver=solver)
            torch.testing.assert_close(got, c * closed, rtol=1e-12, atol=1e-12)
            errors[solver, steps] = float((got - exact).abs().max())
    for steps in (4, 8):
        assert 3.5 < errors["heun", steps] / errors["heun", 2 * steps] < 5.5
        assert 1.5 < errors["euler", steps] / errors["euler", 2 * steps] < 2.5
    assert errors["heun", 16] < errors["euler", 16] / 20


def test_teacher_as_model_runs_the_n_step_sampler_in_the_backbone_stage():
    teacher = _teacher()
    torch.nn.init.normal_(teacher.velocity.out.weight, std=0.3)
    g = torch.Generator().manual_seed(0)
    packed, thumb = torch.rand(1, 4, 16, 16, generator=g), torch.rand(1, 4, 32, 32, generator=g)
    meta = torch.rand(1, teacher.cfg.meta_dim, generator=g)
    c, g = teacher.condition(packed, thumb, meta)
    with torch.no_grad():
        one, four = (teacher_as_model(teacher, n)(packed, thumb, meta) for n in (1, 4))
        expected = teacher.base.decoder.render(teacher.sample(c, g, steps=4), packed)
    assert torch.allclose(four, expected) and not torch.allclose(one, four)


def test_consistency_tangent_matches_a_finite_difference(runs):
    """df/dt along the teacher's ODE, as the JVP computes it, against (f(x + h v, t + h) - f(x, t)) / h."""
    root, _, _ = runs
    task = DistillTask(DistillOptions(preset="e4k-t-f16", out=str(root / "unused"),
                                      teacher=str(root / "teacher" / "teacher.safetensors"))).eval()
    torch.manual_seed(0)
    x, g, c = torch.randn(2, 8, 2, 2), torch.randn(2, 16), torch.randn(2, 8, 2, 2)
    t = torch.tensor([0.2, 0.6])
    f = lambda x, t: x + (1 - t)[:, None, None, None] * task.F(x, t, g)  # noqa: E731
    with torch.no_grad():
        v = task.teacher.velocity(x, t, c, g)
        _, dF = torch.func.jvp(lambda x, s: task.F(x, s, g), (x, t), (v, torch.ones_like(t)))
        analytic = v + (1 - t)[:, None, None, None] * dF - task.F(x, t, g)
        h = 1e-3
        numeric = (f(x + h * v, t + h) - f(x - h * v, t - h)) / (2 * h)
    assert torch.allclose(analytic, numeric, atol=1e-3, rtol=1e-2)


def test_distill_refuses_bad_setups(runs, tmp_path):
    root, _, _ = runs
    teacher = str(root / "teacher" / "teacher.safetensors")
    with pytest.raises(Edge4KError, match="both terms"):
        DistillTask(DistillOptions(out=str(tmp_path), teacher=teacher, preset="e4k-t-f16",
                                   consistency_weight=0, adversarial_weight=0))
    with pytest.raises(Edge4KError, match="not e4k-s-f16"):
        DistillTask(DistillOptions(out=str(tmp_path), teacher=teacher, preset="e4k-s-f16"))
    with pytest.raises(Edge4KError, match="not an Edge4K teacher"):
        load_teacher(root / "base" / "model.safetensors")
    # A distillation run cannot be resumed as a teacher run.
    with pytest.raises(Edge4KError, match="`edge4k distill` run"):
        train_teacher(TeacherOptions(out=str(root / "student"), resume=True, **TEACHER, **TINY), progress=False)


def test_eval_compares_teacher_steps_student_and_direct_model(runs, tmp_path, monkeypatch):
    import edge4k.evaluation.evaluate as evaluate  # where the comparison loads the held-out photos
    root, _, _ = runs
    monkeypatch.setattr(evaluate, "load_split", lambda split, dtype=None: {"s": smooth_image(64, 96)})
    rc = main(["eval", "--preset", "e4k-t-f16", "--teacher", str(root / "teacher" / "teacher.safetensors"),
               "--student", str(root / "student" / "model.safetensors"),
               "--checkpoint", str(root / "base" / "model.safetensors"), "--steps", "1,2", "-o", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "compare_held-out.json").read_text())
    labels = list(report["models"])
    assert labels[:2] == ["teacher euler 1 step", "teacher euler 2 steps"]
    assert labels[2] == "distilled student, 1 step" and labels[3].startswith("direct one-step")
    for v in report["models"].values():
        assert np.isfinite(v["psnr"]) and v["sharpness"] > 0 and v["seconds"] > 0 and len(v["cases"]) == 3
    # Two teacher steps evaluate the velocity net twice: more MACs than one.
    assert report["models"][labels[1]]["gmac_per_mp"] > report["models"][labels[0]]["gmac_per_mp"]
    assert Image.open(tmp_path / "crops_compare_held-out.png").size[0] == 5 * 2 * 64   # 64 px crops at 2x
