"""Untrusted input never deletes a folder, runs a command with a user's value as an option, or
prints a traceback (issue 27): compile -o's guard, data extract's argument checks, and the API's
one-line errors."""
import json

import pytest

from edge4k.cli import main
from edge4k.compiler.build import check_output_folder
from edge4k.errors import Edge4KError


def test_compile_refuses_a_folder_that_is_not_a_build(tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("years of work")
    (thesis / "data.csv").write_text("a,b\n")
    assert main(["compile", "--target", "host-xnnpack", "--preset", "e4k-t-f16", "-o", str(thesis)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without an Edge4K manifest.json" in err[0] and "--force" in err[0]
    assert sorted(p.name for p in thesis.iterdir()) == ["data.csv", "thesis.tex"]


def test_compile_output_folder_rules(tmp_path):
    check_output_folder(tmp_path / "new", force=False)   # absent: fine
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", force=False)
    old = tmp_path / "old-build"
    old.mkdir()
    (old / "model.pte").write_bytes(b"x")
    for schema in ("edge4k.manifest/2", "edge4k.manifest/1"):   # a build, or an older one, is replaced
        (old / "manifest.json").write_text(json.dumps({"schema": schema}))
        check_output_folder(old, force=False)
    (old / "manifest.json").write_text(json.dumps({"schema": "something else"}))
    with pytest.raises(Edge4KError, match="without an Edge4K manifest.json"):
        check_output_folder(old, force=False)
    check_output_folder(old, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(Edge4KError, match="is not a folder"):
        check_output_folder(tmp_path / "file", force=False)
    (tmp_path / "link").symlink_to(old)
    with pytest.raises(Edge4KError, match="is not a folder"):
        check_output_folder(tmp_path / "link", force=False)


# ---- the API: every failure is an Edge4KError ----------------------------------------------------

@pytest.fixture(scope="module")
def renderer():
    import edge4k
    with edge4k.Renderer(preset="e4k-t-f16") as r:
        yield r


@pytest.mark.parametrize("call", [
    lambda e, dng: e.Renderer(preset="e4k-t-f16", threads="2"),
    lambda e, dng: e.Renderer(preset="e4k-t-f16", tile=128.5),
    lambda e, dng: e.Renderer(preset="e4k-t-f16", batch=True),
    lambda e, dng: e.Renderer(preset=7),
    lambda e, dng: e.render(12345, preset="e4k-t-f16"),
    lambda e, dng: e.render(None, preset="e4k-t-f16"),
    lambda e, dng: e.render(dng, preset="e4k-t-f16", bits="8"),
    lambda e, dng: e.render(dng, preset="e4k-t-f16", look=["natural"]),
    lambda e, dng: e.render(dng, preset="e4k-t-f16", output=3.5),
    lambda e, dng: e.extract_thumb(3),
], ids=["threads str", "tile float", "batch bool", "preset int", "source int", "source None", "bits str",
        "look list", "output float", "thumb source int"])
def test_wrong_argument_types_are_one_line_errors(sample_dng, call):
    import edge4k
    with pytest.raises(Edge4KError) as e:
        call(edge4k, sample_dng)
    assert "\n" not in str(e.value)


def test_threads_runs_and_warmup_past_the_shared_limits_are_refused(renderer, sample_dng, tmp_path):
    """--threads 99999999999 was a ValueError traceback and --runs 99999999999 ran for ever; the
    ranges are runtime/limits.json's, which the native runner checks too."""
    import edge4k
    from edge4k.runtime.limits import limits
    top = limits()["runner"]
    with pytest.raises(Edge4KError, match=f"^threads must be at most {top['threads']['max']}, got 99999999999"):
        edge4k.Renderer(preset="e4k-t-f16", threads=99999999999)
    for name in ("runs", "warmup"):
        with pytest.raises(Edge4KError, match=f"^{name} must be at most {top[name]['max']}"):
            renderer.profile(sample_dng, tmp_path / "o.png", **{name: top[name]["max"] + 1})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("native", [False, True], ids=["tiled", "native"])
def test_a_frame_too_large_for_memory_is_refused_before_it_runs(sample_dng, monkeypatch, native):
    import edge4k
    monkeypatch.setenv("EDGE4K_MEMORY_LIMIT_MB", "1")   # the 512x512 sample needs ~10 MiB
    with edge4k.Renderer(preset="e4k-t-f16", native=native) as r:
        with pytest.raises(Edge4KError, match=r"needs about .* GiB but 0\.0 GiB is available"):
            r.render(sample_dng)


def test_memory_error_and_os_error_become_one_line(renderer, sample_dng, tmp_path, monkeypatch):
    import edge4k.runtime.pipeline as pipeline
    (tmp_path / "out.png").mkdir()   # a folder where the image should go: the rename fails
    with pytest.raises(Edge4KError) as e:
        renderer.render(sample_dng, output=tmp_path / "out.png")
    assert "\n" not in str(e.value) and "out.png" in str(e.value)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]   # no temporary left behind

    def out_of_memory(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(pipeline, "process", out_of_memory)
    with pytest.raises(Edge4KError, match="out of memory"):
        renderer.render(sample_dng)


@pytest.mark.parametrize("ext", ["tif", "png", "jpg"])
def test_exif_facts_from_a_hostile_raw_do_not_fail_the_write(tmp_path, ext):
    """A Make with a byte >= 0x80, a negative ExposureTime or ISO, infinities: the image is written,
    the text made ASCII, the impossible numbers left out (they crashed TIFF writing)."""
    import numpy as np
    import tifffile

    from edge4k.kernels.postprocess import write_image
    image = np.full((8, 8, 3), 7, np.uint16 if ext == "tif" else np.uint8)
    exif = {"make": "Caf\xe9 \u2603\0", "model": "X", "exposure_time": -0.01, "iso": float("inf")}
    write_image(tmp_path / f"o.{ext}", image, exif=exif)
    if ext == "tif":
        tags = tifffile.TiffFile(tmp_path / "o.tif").pages[0].tags
        assert tags["Make"].value == "Caf? ?" and "ExposureTime" not in tags and "ISOSpeedRatings" not in tags
    for exif in ({"exposure_time": float("nan"), "iso": -100}, {"exposure_time": "fast", "iso": "high"}):
        write_image(tmp_path / f"o.{ext}", image, exif=exif)


# ---- outputs published together, signals --------------------------------------------------------

def test_image_and_profile_are_published_together(renderer, sample_dng, tmp_path):
    """A profile that cannot be written leaves the old image (and no temporaries) in place."""
    out = tmp_path / "o.png"
    out.write_bytes(b"old image")
    (tmp_path / "p.json").mkdir()   # a folder where the profile should go: its rename fails
    with pytest.raises(Edge4KError):
        renderer.profile(sample_dng, out, profile_path=tmp_path / "p.json")
    assert out.read_bytes() == b"old image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png", "p.json"]
    renderer.profile(sample_dng, out, profile_path=tmp_path / "q.json")
    profile = json.loads((tmp_path / "q.json").read_text())
    from edge4k.files import sha256_file
    assert profile["output"]["sha256"] == sha256_file(out) and profile["output"]["path"] == str(out)


def catches(pid: int, signum: int) -> bool:
    """Whether process pid has a handler for signum (Linux: /proc/PID/status SigCgt)."""
    try:
        status = open(f"/proc/{pid}/status").read()
    except FileNotFoundError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) >> (signum - 1) & 1)


@pytest.mark.parametrize("sig, delay", [("SIGTERM", 3.0), ("SIGHUP", 4.0), ("SIGTERM", 5.0)])
def test_sigterm_and_sighup_are_handled_like_ctrl_c(sample_dng, tmp_path, sig, delay):
    """Killed at some point of a run: exit 128 + the signal (or 0 if it had finished), the old
    image and profile both intact or both replaced, and no hidden temporary files."""
    import os
    import signal
    import subprocess
    import sys
    import time
    out, prof = tmp_path / "o.png", tmp_path / "p.json"
    out.write_bytes(b"old image")
    prof.write_text("old profile")
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edge4k", "run", sample_dng, "-o", str(out), "--profile",
                             str(prof), "--preset", "e4k-t-f16", "--runs", "4", "--tile", "128"],
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    # Counted from when edge4k's handler is in place (a loaded machine can take seconds to get
    # there; a signal before it kills the interpreter while it starts, before any file exists).
    signum, deadline = getattr(signal, sig), time.monotonic() + 120
    while proc.poll() is None and not catches(proc.pid, signum) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay - 2.5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 128 + getattr(signal, sig)), err
    if proc.returncode:
        assert err.strip().splitlines()[-1] == "edge4k: interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png", "p.json"]
    replaced = out.read_bytes() != b"old image"
    assert replaced == (prof.read_text() != "old profile")
