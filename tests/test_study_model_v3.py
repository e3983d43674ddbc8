"""The model_v3 study (issue 28) end to end with --quick: every arm trained from the start it
names, measured, and the answer built from the numbers."""
import json

from edge4k.studies import model_v3, run_study


def test_quick_model_v3_trains_every_arm_from_its_start_and_answers(tmp_path):
    run_study("model_v3", tmp_path / "reports" / "model_v3", quick=True, models_dir=tmp_path / "models", progress=None)
    data = json.loads((tmp_path / "reports" / "model_v3" / "model_v3.json").read_text())
    arms = data["arms"]
    assert [a["label"] for a in arms[1:]] == [label for label, _, _ in model_v3.ARMS]
    by = {(a["preset"], a["start"]): a for a in arms}
    assert by[("e4k-s-f16", "init")]["training"]["init"]["checkpoint"].startswith("e4k-s-f16.safetensors sha256:")
    warm = by[("e4k-v3-f16", "warm")]["training"]["init"]["warm_start"]
    assert 0 < warm["tensors_copied"] < warm["tensors"]                 # the encoder fits, the new DiT does not
    assert by[("e4k-s-f16-gate", "warm")]["training"]["init"]["warm_start"]["tensors_copied"] == \
        by[("e4k-s-f16-gate", "warm")]["training"]["init"]["warm_start"]["tensors"] - 2   # all but the gate
    assert by[("e4k-s-f16", "scratch")]["training"]["init"] is None
    assert by[("e4k-v3-f16", "scratch")]["gmac_per_mp"] < 0.65 * by[("e4k-s-f16", "scratch")]["gmac_per_mp"]
    for a in arms:
        q = a["quality"]["neutral"]
        assert q["edge4k"]["psnr"] > 15 and q["mhc"]["psnr"] > 15
        assert a["bright_sweep"]["cell_looks"] == 2
    assert data["answer"].count("dB neutral") == 5 and "x0.60" in data["answer"]
    md = (tmp_path / "reports" / "model_v3" / "model_v3.md").read_text()
    assert md.count("\n| ") >= 1 + len(arms) and "e4k-v3-f16" in md
