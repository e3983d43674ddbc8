"""Folders of files (`edge4k run IN... -o DIR`, Renderer.render_many) and the hygiene a user
notices: --version, py.typed, documented parameters, errors that name the user's path."""
import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_test_dng

import edge4k
from edge4k.cli import main

TINY = "e4k-t-f16"


@pytest.fixture
def shoot(tmp_path):
    """A folder of three small DNGs with a corrupt one in the middle, and a JPEG that is no RAW."""
    folder = tmp_path / "shoot"
    folder.mkdir()
    make_test_dng(folder / "a.dng", 64, 96)
    (folder / "b_corrupt.dng").write_bytes(b"II*\0" + bytes(4000))
    make_test_dng(folder / "c.dng", 48, 64)
    make_test_dng(folder / "d.DNG", 64, 64, cfa="BGGR")
    (folder / "notes.jpg").write_bytes(b"not a raw")
    return folder


def test_a_folder_with_a_corrupt_file_in_the_middle(tmp_path, shoot, capsys, monkeypatch):
    import edge4k.api
    loads, real = [], edge4k.api.load_for_preset
    monkeypatch.setattr(edge4k.api, "load_for_preset", lambda *a, **k: loads.append(a) or real(*a, **k))
    out = tmp_path / "out"
    rc = main(["run", str(shoot), "-o", str(out), "--preset", TINY, "--format", "png", "--mkdir"])
    captured = capsys.readouterr()
    assert rc == 1 and len(loads) == 1                       # a failure is the exit status; one model load
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "d.png"]
    failed = [line for line in captured.err.splitlines() if "failed" in line]
    assert failed == [f"edge4k: failed: cannot read RAW file {shoot / 'b_corrupt.dng'}: unsupported or corrupt RAW file"]
    # not a terminal: one progress line per file, in order
    progress = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in progress] == ["[1/4]", "[3/4]", "[4/4]"]
    assert captured.out.strip().splitlines()[-1].startswith("3 rendered, 0 skipped, 1 failed of 4 in ")
    # the same pictures as one file at a time
    one = tmp_path / "one.png"
    assert main(["run", str(shoot / "c.dng"), "-o", str(one), "--preset", TINY]) == 0
    assert one.read_bytes() == (out / "c.png").read_bytes()
    # --skip-existing leaves what is there
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(["run", str(shoot / "*.dng"), str(shoot / "d.DNG"), "-o", str(out), "--preset", TINY,
                 "--format", "png", "--skip-existing"]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("0 rendered, 3 skipped, 1 failed of 4")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_render_many_yields_a_result_per_file_in_order_with_or_without_workers(tmp_path, shoot):
    with edge4k.Renderer(preset=TINY) as renderer:
        runs = {}
        for workers in (0, 2):
            out = tmp_path / f"w{workers}"
            runs[workers] = list(renderer.render_many([shoot], out, format="tif", workers=workers, mkdir=True))
    for results in runs.values():
        assert [r.source.name for r in results] == ["a.dng", "b_corrupt.dng", "c.dng", "d.DNG"]
        assert [r.ok for r in results] == [True, False, True, True], [r.error for r in results]
        assert "unsupported or corrupt RAW file" in results[1].error
    for a, b in zip(runs[0], runs[2]):
        assert a.ok == b.ok and (not a.ok or a.output.read_bytes() == b.output.read_bytes())


def test_what_a_batch_can_know_up_front_is_refused_before_rendering(tmp_path, shoot, monkeypatch):
    import edge4k.api
    from edge4k.batch import expand_inputs, plan_outputs
    loads = []
    monkeypatch.setattr(edge4k.api, "load_for_preset", lambda *a, **k: loads.append(a))
    for kwargs, needle in (({}, "does not exist; create it or pass --mkdir"),
                           ({"format": "jpg", "output_space": "prophoto"}, "needs a 16-bit or float"),
                           ({"format": "png", "quality": 80}, "--quality is for JPEG")):
        with pytest.raises(edge4k.Edge4KError, match=needle):
            next(edge4k.render_many([shoot], tmp_path / "missing", preset=TINY, **kwargs))
    assert main(["run", str(shoot), "-o", str(tmp_path / "missing"), "--preset", TINY]) == 1
    assert main(["run", str(shoot), "-o", str(tmp_path / "o"), "--mkdir", "--format", "png", "--quality", "5"]) == 1
    assert loads == []                                     # refused before the model loaded
    other = tmp_path / "other"
    other.mkdir()
    make_test_dng(other / "a.dng", 48, 64)
    with pytest.raises(edge4k.Edge4KError, match="would both be written to"):
        plan_outputs(expand_inputs([shoot, other]), tmp_path, ".jpg")
    with pytest.raises(edge4k.Edge4KError, match="no file matches"):
        expand_inputs([str(shoot / "*.CR2")])
    with pytest.raises(edge4k.Edge4KError, match="input not found"):
        expand_inputs([str(shoot / "zzz.dng")])
    assert [p.name for p in expand_inputs([shoot / "c.dng", str(shoot / "[ac].dng")])] == ["c.dng", "a.dng"]


def test_the_model_loads_only_once_a_file_needs_the_network(tmp_path, shoot, capsys, monkeypatch):
    import edge4k.api
    loads, real = [], edge4k.api.load_for_preset
    monkeypatch.setattr(edge4k.api, "load_for_preset", lambda *a, **k: loads.append(a) or real(*a, **k))
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a", "c", "d"):
        (out / f"{name}.png").write_bytes(b"rendered before")
    good = [str(shoot / "a.dng"), str(shoot / "c.dng"), str(shoot / "d.DNG")]
    run = ["-o", str(out), "--preset", TINY, "--format", "png"]
    # every output there, or every file unreadable, or previews only: no model load
    assert main(["run", *good, *run, "--skip-existing"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("0 rendered, 3 skipped, 0 failed of 3")
    assert main(["run", str(shoot / "b_corrupt.dng"), str(shoot / "notes.jpg"), *run]) == 1
    assert list(edge4k.render_many(good, tmp_path / "half", format="png", preset=TINY, half_size=True, mkdir=True))
    assert loads == [] and len(list((tmp_path / "half").iterdir())) == 3
    # two files to render (one skipped): one load, for the first of them
    (out / "a.png").unlink()
    (out / "c.png").unlink()
    assert main(["run", *good, *run, "--skip-existing"]) == 0
    assert len(loads) == 1 and (out / "a.png").stat().st_size > 1000 and (out / "d.png").read_bytes() == b"rendered before"
    # a model that cannot load ends the batch with its own error, once, not as every file's failure
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights")
    capsys.readouterr()
    assert main(["run", *good, *run, "--checkpoint", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"edge4k: error: checkpoint {bad} is corrupt"), err


# ---- hygiene ---------------------------------------------------------------------------------

def test_version_and_py_typed():
    done = subprocess.run([sys.executable, "-m", "edge4k", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"edge4k {edge4k.__version__}"
    import edge4k as package
    assert (Path(package.__file__).parent / "py.typed").is_file()
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^"edge4k" = \[[^\]]*"py.typed"', pyproject, re.M)


def _public_functions():
    from edge4k import api
    yield edge4k.render
    yield edge4k.read_raw
    yield api.render_many
    yield api.extract_thumb
    yield edge4k.RawFrame.from_buffer
    for name, member in inspect.getmembers(edge4k.Renderer, inspect.isfunction):
        if not name.startswith("_") or name == "__init__":
            yield member


@pytest.mark.parametrize("function", list(_public_functions()), ids=lambda f: f.__qualname__)
def test_every_public_parameter_is_documented(function):
    doc = inspect.getdoc(function) or ""
    params = [p for p in inspect.signature(function).parameters if p not in ("self", "cls")]
    missing = [p for p in params if not re.search(rf"\b{p}\b", doc)]
    assert not missing, f"{function.__qualname__} does not document {missing}"


def test_inputs_that_are_not_raw_files_say_what_they_are(tmp_path, shoot):
    with pytest.raises(edge4k.RawInputError, match=r"a numpy array is not a RAW file: wrap .*edge4k.RawFrame"):
        edge4k.render(np.zeros((64, 64), np.uint16), preset=TINY)
    with pytest.raises(edge4k.RawInputError, match=f"{re.escape(str(shoot))} is a folder, not a RAW file"):
        edge4k.read_raw(shoot)
    with pytest.raises(edge4k.RawInputError, match="unsupported or corrupt RAW file"):
        edge4k.read_raw(shoot / "b_corrupt.dng")


def test_output_location_is_checked_before_the_render_and_folders_made_only_when_asked(tmp_path, shoot, capsys,
                                                                                         monkeypatch):
    import edge4k.api
    loads = []
    monkeypatch.setattr(edge4k.api, "load_for_preset", lambda *a, **k: loads.append(a))
    from edge4k.files import check_output
    deep = tmp_path / "new" / "deeper" / "o.png"
    for argv, needle in ((["-o", str(deep)], "does not exist; create it or pass --mkdir"),
                         (["-o", str(shoot / "a.dng" / "o.png")], "is not a folder"),
                         (["-o", str(tmp_path / "o.png"), "--output-space", "rec2020-linear"], "16-bit or float")):
        assert main(["run", str(shoot / "a.dng"), "--preset", TINY, *argv]) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert loads == [] and not (tmp_path / "new").exists()   # refused before any model was loaded
    (tmp_path / "o.png").mkdir()
    with pytest.raises(edge4k.Edge4KError, match="is a folder; give a file name"):
        check_output(tmp_path / "o.png")
    monkeypatch.undo()
    assert main(["run", str(shoot / "a.dng"), "--preset", TINY, "-o", str(deep), "--mkdir", "--half-size"]) == 0
    assert deep.is_file()


def test_power_reason_is_said_once_per_process():
    from edge4k.runtime import pipeline
    stat = {"median": 1.0, "min": 1.0, "max": 1.0}
    profile = {"latency_ms": {"total": stat}, "timing": {}, "memory": {"peak_rss_bytes": 2**20},
               "power": {"available": False, "reason": "RAPL energy counter not readable in /nowhere (test)"}}
    pipeline._POWER_REASONS_SAID.discard(profile["power"]["reason"])
    first, second = pipeline.format_table(profile), pipeline.format_table(profile)
    assert "not readable in /nowhere" in first and "not readable" not in second and "said above" in second


def test_every_libraw_error_has_words():
    import rawpy

    from edge4k.kernels.raw import LIBRAW_WORDS, libraw_words
    names = {n for n in dir(rawpy) if n.startswith("LibRaw") and n.endswith("Error")}
    generic = {"LibRawError", "LibRawFatalError", "LibRawNonFatalError", "LibRawUnspecifiedError",
               "LibRawOutOfOrderCallError"}
    assert names - generic <= set(LIBRAW_WORDS)
    assert libraw_words(rawpy.LibRawFileUnsupportedError()) == "unsupported or corrupt RAW file"
    assert "Error" not in "".join(LIBRAW_WORDS.values())
