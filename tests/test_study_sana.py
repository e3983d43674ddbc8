"""`edge4k study sana`: SANA's published architecture (diffusers classes, configs in the
repo) profiled stage by stage next to Edge4K's default; --quick runs tiny configs."""
import json
import math

import pytest
import torch

from edge4k.studies import run_study, sana

STAGES = ("encoder", "backbone", "decoder")


def test_configs_are_the_published_06b_dit_and_dc_ae_f32c32():
    cfg = sana.sana_configs()
    dit, ae = cfg["transformer"], cfg["autoencoder"]
    assert dit["num_layers"] == 28 and dit["num_attention_heads"] * dit["attention_head_dim"] == 1152
    assert dit["caption_channels"] == 2304 and dit["mlp_ratio"] == 2.5
    assert ae["latent_channels"] == 32 and len(ae["encoder_block_out_channels"]) == 6    # f32: 5 down-samplings
    with torch.device("meta"):
        params = {s: sum(p.numel() for p in sana.build_stage(s, cfg).parameters()) for s in STAGES}
    assert 0.55e9 < params["backbone"] < 0.65e9                     # "0.6B"
    assert 0.25e9 < params["encoder"] + params["decoder"] < 0.4e9   # DC-AE f32c32
    latent, caption, _ = sana.stage_inputs("backbone", cfg, 1024, 1024, sana.CAPTION_TOKENS, device="meta")
    assert tuple(latent.shape) == (1, 32, 32, 32) and tuple(caption.shape) == (1, 300, 2304)
    assert sana.DEFAULT.sana_high == (2176, 3840)


def test_4k_estimate_and_skip_reasons():
    base = {"build_s": 10.0, "median_s": 20.0, "rss_before_bytes": 1 << 30, "activation_peak_bytes": 1 << 30}
    est = sana.estimate_high(base, macs_base=100, macs_high=800, pixel_ratio=8.0)
    assert est == {"estimate_s": 170.0, "estimate_peak_rss_bytes": 9 << 30}
    assert "GiB" in sana.skip_reason(est, seconds_left=1e6, bytes_available=8 << 30)
    assert "budget" in sana.skip_reason(est, seconds_left=100, bytes_available=16 << 30)
    assert sana.skip_reason(est, seconds_left=200, bytes_available=16 << 30) is None


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sana")
    run_study("sana", tmp / "sana", quick=True, models_dir=tmp / "models", progress=None)
    return tmp / "sana", json.loads((tmp / "sana" / "sana.json").read_text())


def test_quick_sana_stages_timed_counted_and_measured(quick_report):
    _, d = quick_report
    s = d["sana"]
    assert s["available"] and s["configs"]["transformer"]["num_layers"] == 2    # the tiny CI variant
    for stage in STAGES:
        st = s["stages"][stage]
        assert st["params"] > 0 and 0 < st["macs"]["base"] < st["macs"]["high"]
        for key in ("base", "high"):   # quick sizes fit: every stage timed at both
            run = st[key]
            assert math.isfinite(run["median_s"]) and run["median_s"] > 0, run
            assert run["peak_rss_bytes"] >= run["rss_before_bytes"] > 0 and run["output_finite"]
        assert st["high"]["estimate_s"] > 0
    assert s["stages"]["decoder"]["base"]["output_shape"] == [1, 3, 64, 64]
    for kind in ("time", "macs"):
        for share in s["shares"][kind].values():
            assert 0 < share["decoder_share"] < 1 and share["largest_stage"] in STAGES


def test_quick_edge4k_side_and_report(quick_report):
    out, d = quick_report
    e = d["edge4k"]
    assert e["preset"] == "e4k-s-f16" and "safetensors" in e["weights"]      # the shipped checkpoint
    for key in ("base", "high"):
        lat = e["profile"][key]["latency_ms"]
        assert all(lat[stage]["median"] > 0 for stage in (*STAGES, "total"))
        assert e["profile"][key]["peak_rss_bytes"] > 0
        assert all(e["stages"][stage]["macs"][key] > 0 for stage in STAGES)
    assert e["tiles"]["high"] > e["tiles"]["base"]
    share = d["sana"]["shares"]["macs"]["high"]["decoder_share"]
    assert "bottleneck" in d["answer"] and f"{100 * share:.0f}%" in d["answer"]
    assert (out / "sana-stage-shares.png").stat().st_size > 0
    md = (out / "sana.md").read_text()
    assert "Decoder share" in md and "| encoder |" in md and "sana-stage-shares.png" in md
