"""The measuring studies: decoder_share (per-stage split and HTP placement), tiling
(native vs tiled) and phone (workload, device cost model, roofline estimate), each run
end to end with --quick, plus the pieces whose logic the quick numbers cannot pin down."""
import json
import math

import pytest

from edge4k.devices import cost_model
from edge4k.models import NETWORK_STAGES, STAGES
from edge4k.models.checkpoint import load_for_preset
from edge4k.studies import phone, run_study, tiling


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The three studies in `edge4k study all` order, into one reports folder."""
    root = tmp_path_factory.mktemp("measure")
    out = {}
    for name in ("decoder_share", "tiling", "phone"):
        run_study(name, root / "reports" / name, quick=True, models_dir=root / "models", progress=None)
        out[name] = json.loads((root / "reports" / name / f"{name}.json").read_text())
    return root, out


def pngs_exist(root, name, data):
    assert data["figures"], name
    for fig in data["figures"]:
        assert (root / "reports" / name / fig).stat().st_size > 1000


def test_decoder_share_quick(reports):
    root, r = reports
    d = r["decoder_share"]
    pngs_exist(root, "decoder_share", d)
    measured = [c for c in d["configs"] if c["status"] == "measured"]
    skipped = [c for c in d["configs"] if c["status"] == "skipped"]
    assert {(c["mode"], c["precision"]) for c in measured} == {("tiled", "fp32"), ("native", "fp32")}
    assert all(c["precision"] == "int8" and "quick mode" in c["reason"] for c in skipped) and len(skipped) == 2
    for c in measured:
        lat = c["latency_ms"]
        assert all(math.isfinite(lat[s]) and lat[s] >= 0 for s in STAGES) and lat["total"] > 0
        assert lat["decoder"] > 0 and c["peak_rss_mib"] > 0 and c["build_psnr_db"] > 60
        network = sum(lat[s] for s in NETWORK_STAGES)     # the shares, from the latencies themselves
        for s in NETWORK_STAGES:
            assert c["share_of_network"][s] == pytest.approx(lat[s] / network, abs=1e-4)
        for s in STAGES:
            assert c["share_of_total"][s] == pytest.approx(lat[s] / lat["total"], abs=1e-4)
        assert sum(lat[s] for s in STAGES) <= lat["total"] * 1.001    # stages are parts of the total
    assert next(c for c in measured if c["mode"] == "native")["tiles"] == 1
    assert next(c for c in measured if c["mode"] == "tiled")["tiles"] > 1
    placement = d["htp_placement"]
    assert placement["status"] == "measured" and placement["emulated"]
    for stage in NETWORK_STAGES:
        p = placement["stages"][stage]
        assert p["nodes"] > 0 and p["htp"] + p["cpu"] == p["nodes"]
    summary = d["bottleneck_at_256"]
    assert set(summary) == {"tiled fp32", "native fp32"}
    largest = {f"{c['mode']} {c['precision']}": max(NETWORK_STAGES, key=c["latency_ms"].get) for c in measured}
    for name, row in summary.items():
        assert row["largest_stage"] == largest[name], (name, row)
    decoder_first = sum(stage == "decoder" for stage in largest.values())
    verdict = {0: "No", 1: "Partly", 2: "Yes"}[decoder_first]
    assert d["answer"].startswith(f"{verdict}: at 256 the decoder is the largest network stage in {decoder_first} "
                                  "of 2 measured configurations"), d["answer"]
    md = (root / "reports" / "decoder_share" / "decoder_share.md").read_text()
    assert "| 256 native fp32 |" in md and "skipped: quick mode" in md and "on the HTP" in md


def test_tiling_quick(reports):
    root, r = reports
    t = r["tiling"]
    pngs_exist(root, "tiling", t)
    assert t["native"]["status"] == "measured" and t["native"]["total_ms"] > 0
    (entry,) = t["tilings"]
    assert (entry["tile"], entry["overlap"], entry["status"]) == (128, 32, "measured")
    assert entry["tiles"] == 9 and entry["peak_rss_mib"] > 0
    assert all(entry["latency_ms"][s] >= 0 for s in STAGES)
    # overlapping tiles of a trained network: close to native but not bit-identical
    assert 25 < entry["psnr_vs_native_db"] < 120 and entry["max_error_vs_native_8bit"] > 0
    assert entry["seam_ratio"] > 0 and entry["native_seam_ratio"] > 0
    # acceptable = within 40 dB of native and a seam ratio at most 1.05 x native's (the study's stated rule)
    close = entry["identical_to_native"] or entry["psnr_vs_native_db"] >= 40.0
    assert entry["acceptable"] == (close and entry["seam_ratio"] <= 1.05 * entry["native_seam_ratio"])
    assert entry["estimated_working_set_mib"] < t["native"]["estimated_working_set_mib"]
    assert t["answer"].startswith(f"{int(entry['acceptable'])} of 1 tilings")


def test_tiling_choice_logic():
    def entry(tile, ms, mib, psnr, seam, native_seam=1.0):
        return {"tile": tile, "overlap": 32, "total_ms": ms, "peak_rss_mib": mib, "psnr_vs_native_db": psnr,
                "identical_to_native": False, "seam_ratio": seam, "native_seam_ratio": native_seam}
    blurry = entry(256, 100, 300, 35.0, 1.0)          # fast and small but not within the floor
    seamed = entry(512, 150, 400, 50.0, 1.3)          # close to native but with a seam
    good_fast = entry(1024, 200, 900, 45.0, 1.02)
    good_small = entry(512, 250, 500, 41.0, 1.0)
    rows = [blurry, seamed, good_fast, good_small]
    for r in rows:
        r["acceptable"] = tiling.acceptable(r)
    assert [r["acceptable"] for r in rows] == [False, False, True, True]
    picks = tiling.choose(rows)
    assert picks["fastest"] is good_fast and picks["smallest_memory"] is good_small
    assert tiling.choose(rows[:2]) == {"fastest": None, "smallest_memory": None}


def test_tiling_quality_sees_a_seam_that_psnr_forgives():
    import torch
    from conftest import smooth_image

    from edge4k.kernels.tiling import plan_tiles
    native = torch.from_numpy(smooth_image(256, 256)).permute(2, 0, 1).double()
    plan = plan_tiles(256, 256, compression=16, tile=128, overlap=32)
    assert tiling.quality(native.clone(), native, plan)["acceptable"]      # identical: no seam, no loss
    seamed = native.clone()
    seamed[:, 96:224, 96:224] += 0.01              # one tile 2.5 levels (8-bit) brighter: a visible edge
    q = tiling.quality(seamed, native, plan)
    assert q["psnr_vs_native_db"] > tiling.FIDELITY_FLOOR_DB     # PSNR alone would pass it ...
    assert q["seam_ratio"] > tiling.SEAM_TOLERANCE * q["native_seam_ratio"] and not q["acceptable"]   # ... the seam does not


def conv_and_attention_macs(model, tile):
    """MACs per network stage for one tile, counted independently of the flop counter: every
    Conv2d / Linear from its output size and kernel, plus LiteLA's three matrix products
    (V K^T, (V K^T) Q and mean(K)^T Q) from its token count."""
    import torch

    from edge4k.models.blocks import LiteLA
    cfg = model.cfg
    total = {}

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total["n"] += output.numel() * module.in_channels // module.groups * k
        elif isinstance(module, torch.nn.Linear):
            total["n"] += output.numel() * module.in_features
        elif isinstance(module, LiteLA):
            b, c, h, w = inputs[0].shape
            d = c // module.heads
            total["n"] += b * module.heads * (2 * d * d * h * w + d * h * w)

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, LiteLA))]
    ins = {"global": (torch.zeros(1, 4, cfg.thumb_size, cfg.thumb_size), torch.zeros(1, cfg.meta_dim)),
           "encoder": (torch.zeros(1, 4, tile // 2, tile // 2),)}
    out = {}
    try:
        with torch.inference_mode():
            for stage in NETWORK_STAGES:
                total["n"] = 0
                if stage == "global":
                    g = model.stage(stage)(*ins[stage])
                elif stage == "encoder":
                    z = model.stage(stage)(*ins[stage])
                elif stage == "backbone":
                    z = model.stage(stage)(z, g)
                else:
                    model.stage(stage)(z, *ins["encoder"])
                out[stage] = total["n"]
    finally:
        for h in hooks:
            h.remove()
    return out


def test_phone_quick(reports):
    root, r = reports
    p = r["phone"]
    pngs_exist(root, "phone", p)
    # the host numbers come from the sibling tiling report (same preset and frame size)
    assert {h["name"] for h in p["host"]} == {"eager fp32 native", "eager fp32 tiled"}
    assert all(h["source"].endswith("tiling.json") and h["network_gmac_per_s"] > 0 for h in p["host"])
    model, _ = load_for_preset(phone.PRESET, None)
    counted = conv_and_attention_macs(model, 128)
    for stage, w in p["workload"]["tiled"]["stages"].items():
        assert w["macs"] == pytest.approx(counted[stage], rel=0.02), stage
    native = p["workload"]["native"]["stages"]   # the whole 256x256 frame as one tile
    for stage in ("encoder", "backbone", "decoder"):
        assert native[stage]["macs"] == pytest.approx(conv_and_attention_macs(model, 256)[stage], rel=0.02), stage
    assert p["workload"]["tiled"]["tiles"] == 9 and p["workload"]["native"]["tiles"] == 1
    assert p["estimate"]["label"].startswith("ESTIMATE")
    complete = [e for e in p["estimate"]["rows"] if e["complete"]]
    assert {(e["soc"], e["mode"]) for e in complete} == {("SM8650", "native"), ("SM8650", "tiled")}
    for e in p["estimate"]["rows"]:
        assert e["network_s"] > 0 and e["total_s"] == pytest.approx(e["network_s"] + e["cpu_stages_s"])
        assert e["network_fused_s"] <= e["network_s"]
    assert p["answer"].startswith("ESTIMATE, not measured on a phone: yes")
    assert "make android-xnnpack INPUT=" in p["measure_on_phone"]["android_cpu_xnnpack"]["make"]
    assert "--target android-qnn --device android" in p["measure_on_phone"]["android_npu_qnn"]["edge4k"]
    md = (root / "reports" / "phone" / "phone.md").read_text()
    assert "**ESTIMATE**" in md and "make android-qnn SOC=SM8650" in md


def test_phone_measures_the_host_when_no_report_is_there(tmp_path):
    ctx = run_study("phone", tmp_path / "alone" / "phone", quick=True, models_dir=tmp_path / "models", progress=None)
    (host,) = ctx.data["host"]
    assert host["source"] == "measured by this study" and host["latency_ms"]["total"] > 0


def test_phone_takes_the_host_numbers_from_the_benchmark_when_it_is_there(tmp_path):
    stages = {"raw_preprocess": 30.0, "global": 1.0, "encoder": 40.0, "backbone": 50.0, "decoder": 60.0,
              "postprocess": 20.0}
    bench = {"preset": phone.PRESET, "resolution": [256, 256], "tile": 128, "overlap": 32,
             "results": [{"name": "xnnpack int8 tiled", "total_s": 0.201, "stages_ms": stages},
                         {"name": "xnnpack fp32 tiled python-cpu-stages", "total_s": 0.5,
                          "stages_ms": {**stages, "postprocess": 300.0}}]}
    (tmp_path / "reports" / "bench").mkdir(parents=True)
    (tmp_path / "reports" / "bench" / "bench.json").write_text(json.dumps(bench))
    ctx = run_study("phone", tmp_path / "reports" / "phone", quick=True, models_dir=tmp_path / "models", progress=None)
    host = ctx.data["host"]
    assert [h["name"] for h in host] == ["xnnpack int8 tiled", "xnnpack fp32 tiled python-cpu-stages"]
    assert host[0]["mode"] == "tiled" and host[0]["latency_ms"]["total"] == pytest.approx(201.0)
    # the CPU stages an estimate adds are the benchmark's smallest: 30 + 20 ms, not the Python 330
    assert ctx.data["assumptions"]["cpu_stages_s"]["tiled"] == pytest.approx(0.05)
    assert {a["name"] for a in ctx.data["anchors"]} == {"MicroISP", "PyNET-V2 Mobile"}
    assert "MicroISP 32, PyNET-V2 Mobile 24 MP/s" in ctx.data["answer"]


def test_every_device_figure_has_a_source():
    for soc in cost_model.SOCS.values():
        figures = [soc.cpu, *([soc.bandwidth] if soc.bandwidth else []), *(u.peak_tops for u in soc.units)]
        assert all(f.source.startswith("https://") and f.value > 0 for f in figures), soc.name
        assert soc.memory_source.startswith("https://")
        # a SoC without a compute peak or a bandwidth says why
        assert (soc.units and soc.bandwidth) or soc.missing, soc.name
    assert set(cost_model.SOCS) == {"SM8550", "SM8650", "SM8750", "A17 Pro"}


def test_roofline_takes_the_larger_term():
    soc = cost_model.SOCS["SM8650"]
    npu = soc.units[0]
    macs_per_s = cost_model.COMPUTE_UTILISATION * npu.peak_tops.value * 1e12 / 2
    bytes_per_s = cost_model.BANDWIDTH_UTILISATION * soc.bandwidth.value * 1e9
    compute_heavy = cost_model.roofline_seconds(macs_per_s, 1.0, npu, soc)
    assert compute_heavy["seconds"] == pytest.approx(1.0) and compute_heavy["bound"] == "compute"
    memory_heavy = cost_model.roofline_seconds(1.0, 2 * bytes_per_s, npu, soc)
    assert memory_heavy["seconds"] == pytest.approx(2.0) and memory_heavy["bound"] == "memory"
    assert memory_heavy["complete"]
    only_memory = cost_model.roofline_seconds(macs_per_s, bytes_per_s, None, soc)
    assert only_memory["compute_s"] is None and only_memory["seconds"] == pytest.approx(1.0)
    assert not only_memory["complete"]


def test_workload_counts_stage_io_and_unfused_traffic():
    model, _ = load_for_preset(phone.PRESET, None)
    cfg = model.cfg
    w = cost_model.workload(model, 256, 128)
    packed = 4 * 128 * 64
    latent = cfg.latent_channels * (256 // cfg.compression) * (128 // cfg.compression)
    assert w["decoder"]["io_elements"] == latent + packed + 3 * 256 * 128
    assert w["encoder"]["io_elements"] == packed + latent
    for stage, s in w.items():
        # every op reads and writes at least the stage's own input and output
        assert s["unfused_elements"] > s["io_elements"] > 0 and s["macs"] > 0, stage
        assert s["weight_elements"] == sum(p.numel() for p in model.stage(stage).parameters())
