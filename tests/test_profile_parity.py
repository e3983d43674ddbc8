"""One profile, two writers: `edge4k run --profile` (runtime/pipeline.py) and the native runner
(runtime/native) fill edge4k.profile/1 for the same build and the same RAW. Compared here field by
field: the same keys (but for those only one of them can know), the same JSON types, and the same
values for everything that is not measured."""
import json
import os
import subprocess

import pytest
from conftest import edge4k_cli, make_test_dng

from edge4k.cli import main
from edge4k.kernels.raw import read_raw, write_bayer
from edge4k.runtime.profile import validate_profile

# Measured, or named after the implementation (its clock, its toolchain's versions): present in
# both with the same type, values free. Not descended into: power's fields depend on the method.
MEASURED = {"created", "latency_ms", "memory.peak_rss_bytes", "power", "output.sha256", "timing.clock", "versions"}
# What only the runner can say: the decoded Bayer buffer it reads instead of the RAW file, and the
# sysfs thermal zones it reads around the timed runs (a phone's throttling).
RUNNER_ONLY = {"input.buffer", "input.buffer_sha256", "thermal"}


def leaves(profile: dict, prefix: str = "") -> dict:
    """{dotted path: value} down to the leaves (lists are leaves), stopping at MEASURED and
    RUNNER_ONLY paths."""
    out = {}
    for key, value in profile.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in MEASURED | RUNNER_ONLY:
            out.update(leaves(value, path + "."))
        else:
            out[path] = value
    return out


def json_type(value) -> str:
    return "null" if value is None else type(value).__name__


@pytest.fixture(scope="module")
def profiles(native_build, tmp_path_factory):
    """(Python's profile, the runner's, the build) for one tiny android-xnnpack build and one
    250x378 RAW (not a multiple of the compression: padding and partial tiles), both writing
    out.png in a folder of their own so that the output path is the same string."""
    root = tmp_path_factory.mktemp("parity")
    dng = make_test_dng(root / "shot.dng", 250, 378)
    build = root / "build"
    assert main(["compile", "--target", "android-xnnpack", "--preset", "e4k-t-f16", "--resolution", "378x250",
                 "--tile", "128", "--overlap", "32", "--batch", "2", "--calib", "2", "--quant", "fp32",
                 "-o", str(build)]) == 0
    # threads given: the defaults come from two libraries (torch's core count, ExecuTorch's)
    runs = ["--runs", "2", "--warmup", "1", "--threads", "2"]
    (root / "py").mkdir()
    # In a process of its own, as the runner is: ExecuTorch keeps the thread pool of the first
    # build a process loads (device.threads), whatever the tests before asked for.
    done = edge4k_cli(["run", dng, "-o", "out.png", "--backend", "executorch", "--artifacts", str(build),
                       "--profile", "profile.json", *runs], env=os.environ, cwd=root / "py", timeout=300)
    assert done.returncode == 0, done.stderr
    frame = write_bayer(read_raw(dng), root / "frame" / "frame.json", source=dng)
    (root / "c").mkdir()
    done = subprocess.run([str(native_build / "edge4k_runner"), "--artifacts", str(build), "--input", str(frame),
                           "-o", "out.png", "--profile", "profile.json", "--idle-seconds", "0", *runs],
                          cwd=root / "c", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return (json.loads((root / "py" / "profile.json").read_text()),
            json.loads((root / "c" / "profile.json").read_text()), build)


def test_both_profiles_match_the_schema(profiles):
    python, runner, _ = profiles
    validate_profile(python)
    validate_profile(runner)


def test_both_write_the_same_fields(profiles):
    python, runner = (leaves(p) for p in profiles[:2])
    assert set(python) - set(runner) == set()
    assert set(runner) - set(python) == RUNNER_ONLY


def test_every_field_has_the_same_type_and_every_unmeasured_one_the_same_value(profiles):
    python, runner = (leaves(p) for p in profiles[:2])
    shared = sorted(set(python) & set(runner))
    assert {"model.preset", "tiling.padded", "memory.weight_bytes", "stages.encoder.accelerator", "input.wb_gains",
            "output.exposure_gain", "output.colour.highlights", "device.threads"} <= set(shared)
    types = [(k, json_type(python[k]), json_type(runner[k])) for k in shared if json_type(python[k]) != json_type(runner[k])]
    assert types == []
    values = [(k, python[k], runner[k]) for k in shared if k not in MEASURED and python[k] != runner[k]]
    assert values == []


def test_weight_bytes_is_the_programs_size(profiles):
    """XNNPACK manifests record the eager model's fp32_weight_bytes per stage, no weight_bytes: the
    runner summed the missing field to 0. Both report the .pte, weights included."""
    python, runner, build = profiles
    size = (build / "model.pte").stat().st_size
    assert python["memory"]["weight_bytes"] == runner["memory"]["weight_bytes"] == size
