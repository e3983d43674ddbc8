"""The training studies (compression, attention, tricks) end to end in quick mode,
sharing one models folder as `edge4k study all` does (tricks reuses compression's
int8 build of e4k-v3-f16 and attention's softmax model)."""
import json
import math

import pytest

from edge4k.models import build_model, get_preset
from edge4k.studies import run_study
from edge4k.studies.attention import predicted_seconds, softmax_matrix_bytes

pytest.importorskip("executorch")
pytest.importorskip("onnxruntime_qnn")

# Small enough that softmax's 4096-token point (2 x 4 heads x 4096^2 x 4 B = 512 MiB) cannot fit.
MEMORY_LIMIT_MB = "256"


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    out = {}
    for name in ("compression", "attention", "tricks"):
        with pytest.MonkeyPatch.context() as mp:
            if name == "attention":
                mp.setenv("EDGE4K_MEMORY_LIMIT_MB", MEMORY_LIMIT_MB)
            run_study(name, root / name, quick=True, models_dir=root / "models", progress=None)
        out[name] = json.loads((root / name / f"{name}.json").read_text())
    return root, out


def finite_positive(*values):
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)


def figures_exist(root, name, blob):
    assert blob["figures"] and all((root / name / f).stat().st_size > 1000 for f in blob["figures"])
    section = (root / name / f"{name}.md").read_text()
    assert blob["answer"] in section and all(f in section for f in blob["figures"])


def test_compression(studies):
    root, all_ = studies
    blob = all_["compression"]
    rows = blob["presets"]
    assert [r["compression"] for r in rows] == [8, 16, 32]
    assert [r["preset"] for r in rows] == ["e4k-v3-f8", "e4k-v3-f16", "e4k-v3-f32"]
    for r in rows:   # every arm is v3 (clip input, residual gate), trained the same way: bf16, same steps
        cfg = get_preset(r["preset"])
        assert cfg.clip_input and cfg.residual_gate and cfg.dit_width == get_preset("e4k-v3-f16").dit_width
        assert r["training"]["bf16"] and r["training"]["crops_seen"] == 3 * 2, r["training"]
    tile = blob["settings"]["tile"]
    for r in rows:
        q = r["quality"]
        assert finite_positive(q["psnr"], q["ssim"], q["de2000_mean"], r["gmac_per_mp"], r["eager_tile_estimate_mib"])
        assert r["tokens"]["per_tile"] == (tile // r["compression"]) ** 2
        for label, (w, h) in blob["settings"]["resolutions"].items():
            assert r["tokens"]["native"][label] == math.ceil(w / r["compression"]) * math.ceil(h / r["compression"])
            eager = r["latency"][label]["eager"]
            assert finite_positive(eager["total_ms"], eager["peak_rss_mib"]) and eager["tiles"] >= 1
    for r in rows:
        assert r["params"] == sum(p.numel() for p in build_model(get_preset(r["preset"])).parameters()), r["preset"]
    f16 = rows[1]
    assert finite_positive(f16["int8_build"]["planned_arena_mib"], f16["int8_build"]["tile_psnr_db_vs_fp32"])
    for label in blob["settings"]["resolutions"]:
        assert finite_positive(f16["latency"][label]["int8"]["total_ms"])
    assert "not built in quick mode" in rows[0]["int8_build"]["error"]
    # the answer names the largest compression within the tolerance of the best PSNR
    best = max(r["quality"]["psnr"] for r in rows)
    largest = max(r["compression"] for r in rows if r["quality"]["psnr"] >= best - blob["tolerance_db"])
    assert blob["answer"].startswith(f"f{largest} ")
    figures_exist(root, "compression", blob)


def test_attention(studies):
    root, all_ = studies
    blob = all_["attention"]
    for kind in ("relu-linear", "softmax"):
        assert finite_positive(blob["quality"][kind]["psnr"], blob["quality"][kind]["de2000_mean"])
    relu, softmax = blob["sweep"]["relu-linear"], blob["sweep"]["softmax"]
    assert [p["tokens"] for p in relu] == [256, 1024, 4096] == [p["tokens"] for p in softmax]
    # the first points are timed; a later one may be skipped as too slow by the quick point limit,
    # a rule that depends on this machine's speed and load, and must then say so
    assert finite_positive(relu[0]["ms"], relu[0]["peak_rise_mib"] + 1) and finite_positive(softmax[0]["ms"])
    for p in relu[1:] + softmax[1:2]:
        assert finite_positive(p["ms"]) if "ms" in p else p["skipped"].startswith("too slow: predicted"), p
    assert softmax[2]["skipped"].startswith("does not fit: needs 0.5 GiB") and "ms" not in softmax[2]
    assert "Softmax stops fitting at 4096 tokens" in blob["answer"]
    assert f"{blob['quality']['softmax']['psnr'] - blob['quality']['relu-linear']['psnr']:+.2f} dB" in blob["answer"]
    figures_exist(root, "attention", blob)


def test_attention_skip_rules():
    assert softmax_matrix_bytes(4, 32400) / 2**30 == pytest.approx(31.29, abs=0.01)   # 4K native at f16
    assert predicted_seconds([], 1000) is None
    assert predicted_seconds([(100, 1.0)], 400) == pytest.approx(4.0)                   # one point: linear
    assert predicted_seconds([(100, 1.0), (200, 4.0)], 400) == pytest.approx(16.0)      # quadratic series
    assert predicted_seconds([(100, 1.0), (200, 1.5)], 400) == pytest.approx(3.0)       # never below linear


def test_tricks(studies):
    root, all_ = studies
    blob = all_["tricks"]
    rows = blob["presets"]
    assert list(rows) == ["e4k-v3-f16", "e4k-v3-f16-gelu", "e4k-v3-f16-softmax", "e4k-v3-f16-fullconv",
                          "e4k-v3-f16-noattn", "e4k-v3-f16-slimdec"]
    for r in rows.values():
        assert finite_positive(r["quality"]["psnr"], r["gmac_per_mp"], r["params"])
    base = rows["e4k-v3-f16"]
    assert finite_positive(base["int8"]["total_ms"])
    stages = base["htp"]["stages"]
    assert set(stages) == {"global", "encoder", "backbone", "decoder"}
    assert all(st["nodes"] > 0 and st["htp"] + st["cpu"] == st["nodes"] for st in stages.values())
    assert "not built in quick mode" in rows["e4k-v3-f16-gelu"]["htp"]["error"]
    effects = {e["variant"]: e for e in blob["effects"]}
    for e in blob["effects"]:     # each effect: the model with the trick against the model without it
        with_, without = (base, rows[e["variant"]]) if e["variant_does"] == "removes" else (rows[e["variant"]], base)
        assert e["d_psnr_db"] == pytest.approx(with_["quality"]["psnr"] - without["quality"]["psnr"], abs=1e-3)
        assert e["mac_ratio"] == pytest.approx(with_["gmac_per_mp"] / without["gmac_per_mp"], abs=1e-3)
    for name, r in rows.items():  # parameters counted here, from the preset
        assert r["params"] == sum(p.numel() for p in build_model(get_preset(name)).parameters()), name
    # MACs from the flop counter: separable convs, no attention and a slim decoder each save work
    assert effects["e4k-v3-f16-fullconv"]["mac_ratio"] < 0.6
    assert effects["e4k-v3-f16-noattn"]["mac_ratio"] < 1 and effects["e4k-v3-f16-slimdec"]["mac_ratio"] < 1
    assert effects["e4k-v3-f16-gelu"]["mac_ratio"] == pytest.approx(1.0, abs=0.01)
    assert all(e["trick"] in blob["answer"] for e in blob["effects"])
    spread = blob["seed_spread"]     # the baseline from a second seed: a different model, scored the same way
    assert spread["seed"] == 1 and math.isfinite(spread["quality"]["psnr"])
    assert spread["d_psnr_db"] == pytest.approx(spread["quality"]["psnr"] - base["quality"]["psnr"], abs=1e-3)
    assert spread["d_psnr_db"] != 0
    for e in blob["effects"]:
        with_, without = (base, rows[e["variant"]]) if e["variant_does"] == "removes" else (rows[e["variant"]], base)
        assert e["beyond_seed_spread"] == (abs(with_["quality"]["psnr"] - without["quality"]["psnr"])
                                           > abs(spread["d_psnr_db"]))
    assert f"seed {spread['seed']}" in blob["answer"]
    figures_exist(root, "tricks", blob)


def test_study_threads_flag_is_checked(capsys):
    from edge4k.cli import main
    assert main(["study", "phone", "--threads", "0", "--quick"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--threads" in err and "\n" not in err
