"""End to end through the CLI, the way a user runs it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge4k.cli import main
from edge4k.datasets.dng import XTRANS_PATTERN, write_dng
from edge4k.errors import Edge4KError
from edge4k.runtime.profile import validate_profile

STAGES = ("raw_preprocess", "global", "encoder", "backbone", "decoder", "postprocess", "total")


def test_run_writes_image_and_valid_profile(tmp_path, sample_dng, capsys):
    out, prof = tmp_path / "o.png", tmp_path / "o.json"
    rc = main(["run", sample_dng, "-o", str(out), "--profile", str(prof), "--preset", "e4k-t-f16",
               "--tile", "256", "--overlap", "32", "--runs", "2", "--warmup", "1", "--batch", "2"])
    assert rc == 0
    from PIL import Image
    img = np.asarray(Image.open(out))
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8 and img.std() > 10
    profile = json.loads(prof.read_text())
    validate_profile(profile)
    assert set(profile["latency_ms"]) == set(STAGES)
    assert all(profile["latency_ms"][s]["median"] > 0 for s in STAGES)
    assert profile["tiling"] == {"enabled": True, "tile": 256, "overlap": 32, "tiles": 9, "batch": 2,
                                 "padded": [528, 528]}   # 512 + the frontend's 6-pixel phase padding
    assert profile["timing"]["runs"] == 2 and profile["model"]["preset"] == "e4k-t-f16"
    power = profile["power"]    # this host's RAPL counter, or why there is none (tests/test_profile.py fakes one)
    if power["available"]:
        assert power["mean_watts"] > 0 and power["joules_per_image"] > 0
    else:
        assert power["reason"].startswith("RAPL energy counter not readable in /sys/class/powercap/intel-rapl:0")
    assert "decoder" in capsys.readouterr().out


def test_profile_validation_rejects_a_missing_stage(tmp_path, sample_dng):
    prof = tmp_path / "p.json"
    assert main(["run", sample_dng, "-o", str(tmp_path / "o.png"), "--profile", str(prof),
                 "--preset", "e4k-t-f16", "--native"]) == 0
    profile = json.loads(prof.read_text())
    assert profile["tiling"]["enabled"] is False and profile["memory"]["estimated_tile_bytes"] > 0
    del profile["latency_ms"]["decoder"]
    with pytest.raises(Edge4KError, match="decoder"):
        validate_profile(profile)


def test_sixteen_bit_tiff_output(tmp_path, sample_dng):
    import tifffile
    out = tmp_path / "o.tif"
    assert main(["run", sample_dng, "-o", str(out), "--preset", "e4k-t-f16", "--tile", "512", "--overlap", "0"]) == 0
    img = tifffile.imread(out)
    assert img.dtype == np.uint16 and img.shape == (512, 512, 3)


def test_sample_then_info_round_trip(tmp_path, capsys):
    from PIL import Image
    src = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)).save(src)
    dng = tmp_path / "s.dng"
    assert main(["sample", str(src), "-o", str(dng), "--cfa", "GBRG", "--iso", "800"]) == 0
    capsys.readouterr()
    assert main(["info", str(dng), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["width"], info["height"], info["cfa"]) == (96, 64, "GBRG")
    assert info["packed_shape"] == [4, 35, 51]      # (64 + 6) / 2 x (96 + 6) / 2: RGGB phase padding


def _bad_inputs(tmp_path, sample_dng):
    """(name, argv, env) for each bad input the CLI must refuse in one line."""
    truncated = tmp_path / "truncated.dng"
    truncated.write_bytes(open(sample_dng, "rb").read()[:20000])
    xtrans = write_dng(tmp_path / "xtrans.dng", np.full((48, 72), 3000, np.uint16), cfa_pattern=XTRANS_PATTERN)
    odd = write_dng(tmp_path / "odd.dng", np.full((47, 72), 3000, np.uint16))
    small = write_dng(tmp_path / "small.dng", np.full((64, 96), 3000, np.uint16))
    run = ["run", "-o"]
    return [
        ("missing", ["run", str(tmp_path / "nope.dng"), "-o"], "not found", {}),
        ("truncated", ["run", str(truncated), "-o"], "cannot read RAW", {}),
        ("non-bayer", ["run", str(xtrans), "-o"], "X-Trans", {}),
        ("odd", ["run", str(odd), "-o"], "odd frame size", {}),
        ("smaller-than-tile", ["run", str(small), "--tile", "128", "--overlap", "16", "-o"], "smaller than one", {}),
        ("overlap", [*run[:1], sample_dng, "--tile", "128", "--overlap", "128", "-o"], "smaller than the tile", {}),
        ("preset", [*run[:1], sample_dng, "--preset", "e4k-huge", "-o"], "unknown preset", {}),
        ("native-too-big", [*run[:1], sample_dng, "--native", "-o"], "GiB is available",
         {"EDGE4K_MEMORY_LIMIT_MB": "1"}),
        ("bad-format", [*run[:1], sample_dng, "-o"], "unsupported output format", {"suffix": ".webp"}),
    ]


def test_a_file_without_image_data_is_said_in_one_warning_line(tmp_path):
    """LibRaw reads a metadata-only file's missing pixels as zeros: `edge4k info` says so on stderr
    (read_raw's warnings are held while LibRaw's own messages are captured, then said)."""
    empty = write_dng(tmp_path / "empty.dng", np.zeros((48, 72), np.uint16))
    proc = subprocess.run([sys.executable, "-P", "-m", "edge4k", "info", str(empty)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "every pixel is 0" in line]
    assert said == [f"edge4k: warning: {empty}: every pixel is 0: a metadata-only or truncated file (no image "
                    "data), or a black frame; the render will be black"], proc.stderr


@pytest.mark.parametrize("case", range(9))
def test_bad_input_is_one_line_nonzero_and_leaves_no_file(tmp_path, sample_dng, case):
    name, argv, needle, env = _bad_inputs(tmp_path, sample_dng)[case]
    suffix = env.pop("suffix", ".png")
    out = tmp_path / f"out{suffix}"
    proc = subprocess.run([sys.executable, "-m", "edge4k", *argv, str(out), "--profile", str(tmp_path / "p.json")],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert proc.returncode != 0, name
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge4k: error:"), (name, proc.stderr)
    assert needle in lines[0], (name, lines[0])
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("out", "p.json", ".out"))) == [], name


def _imports(*argv) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`python -P -X importtime -m edge4k ARGV`: the process and the modules it imported."""
    proc = subprocess.run([sys.executable, "-P", "-X", "importtime", "-m", "edge4k", *argv], capture_output=True,
                          text=True, timeout=120)
    return proc, {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def test_help_and_version_load_no_torch():
    """The command modules (edge4k/cli/<module>.py) load the library, torch included, only once
    the command is known: `edge4k --help` and `edge4k --version` answer without it."""
    for flag, expected in (("--help", "train-teacher"), ("--version", "edge4k 0.1.0")):
        proc, modules = _imports(flag)
        assert proc.returncode == 0 and expected in proc.stdout, proc.stderr[-2000:]
        assert "edge4k.cli" in modules and "torch" not in modules and "numpy" not in modules, flag
    proc, modules = _imports("run", "--help")          # a command's help loads its module, and torch
    assert proc.returncode == 0 and "--output-space" in proc.stdout and "torch" in modules


def test_data_report_draws_training_scenes(tmp_path, capsys):
    assert main(["data", "report", "-o", str(tmp_path), "--samples", "12", "--seed", "3"]) == 0
    report = json.loads((tmp_path / "coverage.json").read_text())
    assert report["samples"] == len(report["rows"]) == 12 and report["seed"] == 3
    assert report["data"] == "bundled training photos" and (tmp_path / "coverage.png").stat().st_size > 0
    assert f"12 scenes, {report['summary']['cameras']} cameras" in capsys.readouterr().out


def test_outputs_get_ordinary_permissions(tmp_path, sample_dng):
    out = tmp_path / "o.png"
    assert main(["run", sample_dng, "-o", str(out), "--preset", "e4k-t-f16", "--tile", "512", "--overlap", "0"]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def _disk_full_after(nbytes, when):
    """A writer that writes nbytes of its data into the file, then finds the disk full."""
    import errno

    def write(path, data):
        if not when(os.path.basename(path)):
            return False
        with open(path, "wb") as f:
            f.write(data[:nbytes])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return write


@pytest.mark.parametrize("failing", ["image", "profile"])
def test_disk_full_mid_write_is_one_line_and_leaves_no_partial_file(tmp_path, sample_dng, capsys, monkeypatch,
                                                                     failing):
    import pathlib

    out, prof = tmp_path / "o.png", tmp_path / "p.json"
    if failing == "image":   # the PNG encoder's bytes go out through Path.write_bytes (kernels/postprocess.py)
        full = _disk_full_after(100, lambda name: ".o.png." in name)   # the image's temporary (or the one inside it)
        real_write_bytes = pathlib.Path.write_bytes
        monkeypatch.setattr(pathlib.Path, "write_bytes", lambda self, data: full(self, data)
                            or real_write_bytes(self, data))
    else:
        full = _disk_full_after(10, lambda name: ".p.json." in name)
        real_write = pathlib.Path.write_text
        monkeypatch.setattr(pathlib.Path, "write_text", lambda self, text, *a, **k: full(self, text.encode())
                            or real_write(self, text, *a, **k))
    rc = main(["run", sample_dng, "-o", str(out), "--profile", str(prof), "--preset", "e4k-t-f16",
               "--tile", "512", "--overlap", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith("edge4k: error: ") and "No space left on device" in err[0]
    assert err[0].endswith(str(out if failing == "image" else prof)), err   # the user's path, not the temporary file
    left = sorted(p.name for p in tmp_path.iterdir())
    # the temporary files existed (the writer got to write into them) and are gone
    # image and profile are published together (issue 27): neither, when either write fails
    assert left == [], left
