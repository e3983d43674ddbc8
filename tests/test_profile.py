"""runtime/profile.py on its own: the stage timer's summary, the RAPL power meter on a
fake powercap tree (counter wrap included), the schema check and the atomic writer.
Fast and model-free: `make mutation` runs this file against every mutant of profile.py."""
import copy
import json
import os
import platform
import statistics
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge4k.errors import Edge4KError
from edge4k.runtime import profile as prof
from edge4k.runtime.profile import PowerMeter, StageTimer, validate_profile, write_profile

# Floats are drawn without subnormals: a native library loaded earlier in the suite may set
# flush-to-zero in this process, where hypothesis cannot make subnormal floats.
STAGES = ("raw_preprocess", "global", "encoder", "backbone", "decoder", "postprocess")
SHA = "0" * 64


def valid_profile(**changes) -> dict:
    """A minimal profile that matches edge4k.profile/1 (every required field, no optional one)."""
    stat = {"median": 1.0, "min": 0.5, "max": 2.0}
    p = {
        "schema": "edge4k.profile/1", "created": "2026-01-01T00:00:00+00:00",
        "input": {"path": "in.dng", "sha256": SHA, "cfa": "RGGB", "width": 64, "height": 32},
        "resolution": {"width": 64, "height": 32},
        "tiling": {"enabled": False, "tile": None, "overlap": None, "tiles": 1, "batch": 1, "padded": [32, 64]},
        "latent_compression": 16,
        "timing": {"warmup": 0, "runs": 1, "clock": "test"},
        "latency_ms": {s: dict(stat) for s in (*STAGES, "total")},
        "memory": {"peak_rss_bytes": 1, "planned_arena_bytes": None, "weight_bytes": 0},
        "power": {"available": False, "reason": "no counter"},
        "device": {"name": "h", "os": "Linux", "soc": "x", "backend": "eager", "delegate": None, "threads": 1},
        "model": {"preset": "e4k-t-f16", "config_hash": "abc", "precision": "fp32", "weights": "seed:0"},
        "output": {"path": "o.png", "sha256": SHA, "width": 64, "height": 32, "bit_depth": 8},
        "versions": {"edge4k": "0.1.0"},
    }
    p.update(changes)
    return p


# ---- StageTimer ---------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 0.001  # small and non-zero: end - start differs from end + start or end % start

    def __call__(self):
        return self.now


def test_stage_timer_sums_repeated_stages_within_a_run_and_summarises_runs():
    clock = FakeClock()
    timer = StageTimer(clock=clock)
    with timer("encoder"):          # outside a run: not counted anywhere
        clock.now += 0.001
    for encoder_s in (0.010, 0.030, 0.020):
        timer.start_run()
        for _ in range(2):           # two tile batches: the stage is entered twice
            with timer("encoder"):
                clock.now += encoder_s / 2
        with timer("decoder"):
            clock.now += 0.001
        clock.now += 0.004           # time outside any stage still counts in the total
        timer.end_run()
    s = timer.summary_ms()
    assert set(s) == {*STAGES, "total"}
    assert s["encoder"] == {"median": 20.0, "min": 10.0, "max": 30.0}
    assert s["decoder"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    assert s["global"] == {"median": 0.0, "min": 0.0, "max": 0.0}
    assert s["total"] == {"median": 25.0, "min": 15.0, "max": 35.0}
    assert timer.current is None and len(timer.runs) == 3


def test_stage_timer_counts_a_stage_that_raises():
    clock = FakeClock()
    timer = StageTimer(clock=clock)
    timer.start_run()
    with pytest.raises(RuntimeError):
        with timer("backbone"):
            clock.now += 0.002
            raise RuntimeError("stage failed")
    timer.end_run()
    assert timer.summary_ms()["backbone"]["median"] == 2.0


run_times = st.lists(st.fixed_dictionaries({s: st.floats(0, 10, allow_nan=False, allow_subnormal=False)
                                             for s in (*STAGES, "total")}),
                     min_size=1, max_size=9)


@given(run_times)
def test_summary_is_the_median_min_and_max_in_milliseconds(runs):
    timer = StageTimer()
    timer.runs = runs
    s = timer.summary_ms()
    for stage in (*STAGES, "total"):
        ms = sorted(r[stage] * 1000 for r in runs)
        mid = len(ms) // 2
        median = ms[mid] if len(ms) % 2 else (ms[mid - 1] + ms[mid]) / 2
        assert s[stage]["min"] == pytest.approx(ms[0], abs=6e-4)
        assert s[stage]["max"] == pytest.approx(ms[-1], abs=6e-4)
        assert s[stage]["median"] == pytest.approx(median, abs=6e-4)
        assert s[stage]["min"] <= s[stage]["median"] <= s[stage]["max"]
        assert all(round(v, 3) == v for v in s[stage].values())


# ---- PowerMeter on a fake powercap tree ---------------------------------------------

def powercap(root, energy_uj, max_range_uj=262143328850):
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    return zone


def test_power_from_the_energy_counter(tmp_path):
    zone = powercap(tmp_path, 5_000_000)
    clock = FakeClock()
    meter = PowerMeter(tmp_path, clock=clock)
    meter.start()
    (zone / "energy_uj").write_text("35000000\n")    # 30 J ...
    clock.now += 2.0                                 # ... in 2 s, for 4 images
    assert meter.stop(4) == {"available": True,
                             "method": "RAPL package energy (whole CPU package, other processes included)",
                             "mean_watts": 15.0, "joules_per_image": 7.5}


def test_power_keeps_microjoule_precision(tmp_path):
    zone = powercap(tmp_path, 0)
    clock = FakeClock()
    meter = PowerMeter(tmp_path, clock=clock)
    meter.start()
    (zone / "energy_uj").write_text("4321987654\n")  # 4321.987654 J in 10 s, 1 image
    clock.now += 10.0
    assert meter.stop(1)["mean_watts"] == 432.199 and meter.stop(1)["joules_per_image"] == 4321.9877


def test_a_wrap_one_microjoule_short_of_the_start(tmp_path):
    zone = powercap(tmp_path, 500, max_range_uj=1_000_000_000)
    clock = FakeClock()
    meter = PowerMeter(tmp_path, clock=clock)
    meter.start()
    (zone / "energy_uj").write_text("499\n")           # all the way round, less 1 uJ
    clock.now += 1.0
    assert meter.stop(1)["mean_watts"] == 1000.0


def test_no_energy_used_is_zero_watts_not_a_wrap(tmp_path):
    powercap(tmp_path, 777, max_range_uj=1_000_000_000)
    clock = FakeClock()
    meter = PowerMeter(tmp_path, clock=clock)
    meter.start()
    clock.now += 1.0
    report = meter.stop(1)
    assert report["mean_watts"] == 0.0 and report["joules_per_image"] == 0.0


def test_power_across_a_counter_wrap(tmp_path):
    zone = powercap(tmp_path, 999_000_000, max_range_uj=1_000_000_000)
    clock = FakeClock()
    meter = PowerMeter(tmp_path, clock=clock)
    meter.start()
    (zone / "energy_uj").write_text("2000000\n")     # wrapped: 1 J to the top, then 2 J
    clock.now += 0.5
    report = meter.stop(3)
    assert report["available"] and report["mean_watts"] == 6.0 and report["joules_per_image"] == 1.0


def test_power_report_is_valid_in_a_profile(tmp_path):
    zone = powercap(tmp_path, 0)
    clock = FakeClock()
    meter = PowerMeter(tmp_path, clock=clock)
    meter.start()
    (zone / "energy_uj").write_text("1234567\n")
    clock.now += 0.25
    report = meter.stop(1)
    assert report["mean_watts"] == 4.938 and report["joules_per_image"] == 1.2346   # rounded, not truncated
    validate_profile(valid_profile(power=report))


@pytest.mark.parametrize("setup, needle", [
    (lambda root: None, "No such file"),
    (lambda root: powercap(root, 5).joinpath("max_energy_range_uj").unlink(), "No such file"),
    (lambda root: powercap(root, 5).joinpath("energy_uj").write_text("n/a\n"), "invalid literal"),
])
def test_power_unavailable_says_why(tmp_path, setup, needle):
    setup(tmp_path)
    meter = PowerMeter(tmp_path)
    meter.start()
    report = meter.stop(1)
    assert report["available"] is False
    assert report["reason"].startswith(f"RAPL energy counter not readable in {tmp_path / 'intel-rapl:0'} (")
    assert needle in report["reason"]
    validate_profile(valid_profile(power=report))


@pytest.mark.parametrize("elapsed", [0.0, -0.5])   # a clock that did not move, or went backwards
def test_power_without_elapsed_time_is_not_a_number(tmp_path, elapsed):
    powercap(tmp_path, 10)
    clock = FakeClock()
    meter = PowerMeter(tmp_path, clock=clock)
    meter.start()
    clock.now += elapsed
    assert meter.stop(1) == {"available": False, "reason": "no time elapsed between the power readings"}


def test_default_power_root_is_sysfs():
    assert PowerMeter().path == "/sys/class/powercap/intel-rapl:0/energy_uj"


# ---- schema check -------------------------------------------------------------------

def test_valid_profile_passes_and_the_schema_is_cached():
    validate_profile(valid_profile())
    assert prof.profile_schema() is prof.profile_schema()
    assert prof._validator() is prof._validator()     # the schema is checked and compiled once per process
    assert prof.profile_schema()["$id"] == prof.SCHEMA_ID == "edge4k.profile/1"


@pytest.mark.parametrize("key", sorted(valid_profile()))
def test_every_top_level_field_is_required(key):
    p = valid_profile()
    del p[key]
    with pytest.raises(Edge4KError, match=rf"profile does not match edge4k.profile/1 at \(root\): '{key}' is"):
        validate_profile(p)


@pytest.mark.parametrize("path, value, where", [
    (("latency_ms", "decoder", "median"), -1.0, "latency_ms/decoder/median"),
    (("power",), {"available": True, "method": "RAPL"}, "power"),
    (("power",), {"available": False, "reason": ""}, "power"),
    (("input", "cfa"), "XTRANS", "input/cfa"),
    (("output", "bit_depth"), 12, "output/bit_depth"),
    (("tiling", "padded"), [1], "tiling/padded"),
    (("schema",), "edge4k.profile/2", "schema"),
])
def test_bad_fields_are_refused_with_their_path(path, value, where):
    p = valid_profile()
    node = p
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    with pytest.raises(Edge4KError, match=rf"^profile does not match edge4k.profile/1 at {where}(/[a-z_]+)?: "):
        validate_profile(p)


stats = st.floats(0, 1e6, allow_nan=False, allow_subnormal=False).map(lambda v: {"median": v, "min": v, "max": v})


@given(st.fixed_dictionaries({s: stats for s in (*STAGES, "total")}),
       st.one_of(st.fixed_dictionaries({"available": st.just(False), "reason": st.text(min_size=1)}),
                 st.fixed_dictionaries({"available": st.just(True), "method": st.text(min_size=1),
                                        "mean_watts": st.floats(0, 1e4, allow_subnormal=False),
                                        "joules_per_image": st.floats(0, 1e4, allow_subnormal=False)})),
       st.sampled_from(["RGGB", "BGGR", "GRBG", "GBRG"]))
def test_any_well_formed_profile_validates(latency, power, cfa):
    p = valid_profile(latency_ms=latency, power=power)
    p["input"]["cfa"] = cfa
    validate_profile(p)


@given(st.sampled_from([*STAGES, "total"]), st.sampled_from(["median", "min", "max"]),
       st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False, allow_subnormal=False))
def test_any_negative_latency_is_refused(stage, field, value):
    p = valid_profile()
    p["latency_ms"][stage][field] = value
    with pytest.raises(Edge4KError, match=f"latency_ms/{stage}/{field}"):
        validate_profile(p)


# ---- writer -------------------------------------------------------------------------

@settings(max_examples=20)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4))
def test_written_profile_reads_back_equal(tmp_path_factory, versions):
    path = tmp_path_factory.mktemp("w") / "sub" / "p.json"
    p = valid_profile(versions=versions)
    write_profile(path, p)
    text = path.read_text()
    assert json.loads(text) == p and text.endswith("}\n") and text.startswith("{\n  \"schema\"")
    assert sorted(os.listdir(path.parent)) == ["p.json"]


def test_invalid_profile_writes_nothing_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("old")
    bad = valid_profile()
    del bad["power"]
    with pytest.raises(Edge4KError, match="'power' is a required property"):
        write_profile(path, bad)
    assert path.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["p.json"]


def test_a_profile_that_cannot_be_serialised_leaves_no_temp_file(tmp_path):
    path = tmp_path / "p.json"
    with pytest.raises(Edge4KError):
        write_profile(path, valid_profile(versions={"x": object()}))
    weird = copy.deepcopy(valid_profile())
    weird["model"]["extra"] = {1, 2}        # valid for the schema, not JSON
    with pytest.raises(TypeError):
        write_profile(path, weird)
    assert os.listdir(tmp_path) == []


# ---- what a profile says about the host ---------------------------------------------

def test_host_device_and_versions():
    d = prof.host_device("executorch", "xnnpack", 3)
    assert d["backend"] == "executorch" and d["delegate"] == "xnnpack" and d["threads"] == 3
    assert d["os"] == f"{platform.system()} {platform.release()}" and d["name"] == (platform.node() or "host")
    names = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")] \
        if os.path.exists("/proc/cpuinfo") else []
    assert d["soc"] == (names[0] if names else platform.processor() or platform.machine())
    v = prof.versions()
    import numpy
    import torch
    assert v == {"edge4k": "0.1.0", "python": platform.python_version(), "torch": torch.__version__,
                 "numpy": numpy.__version__}


def test_host_device_reads_the_cpu_model_name(monkeypatch):
    import io
    real_open = open
    cpuinfo = "processor\t: 0\nvendor_id\t: X\nmodel name\t: Edge: Test CPU @ 2.0GHz\nmodel name\t: second\n"
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: io.StringIO(cpuinfo) if path == "/proc/cpuinfo"
                        else real_open(path, *a, **k))
    assert prof.host_device("eager", None, 1)["soc"] == "Edge: Test CPU @ 2.0GHz"


def test_host_device_without_cpuinfo(monkeypatch):
    real_open = open

    def no_cpuinfo(path, *a, **k):
        if path == "/proc/cpuinfo":
            raise FileNotFoundError(path)
        return real_open(path, *a, **k)
    monkeypatch.setattr("builtins.open", no_cpuinfo)
    assert prof.host_device("eager", None, 1)["soc"] == (platform.processor() or platform.machine())


def test_now_iso_is_utc_to_the_second():
    stamp = prof.now_iso()
    when = datetime.fromisoformat(stamp)
    assert stamp.endswith("+00:00") and when.microsecond == 0
    assert abs(datetime.now(timezone.utc) - when) < timedelta(seconds=5)


def test_median_matches_statistics_for_an_even_count():
    timer = StageTimer()
    timer.runs = [{s: v for s in (*STAGES, "total")} for v in (0.001, 0.002, 0.004, 0.010)]
    assert timer.summary_ms()["total"]["median"] == statistics.median([1, 2, 4, 10]) == 3.0
