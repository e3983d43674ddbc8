"""Devices: the whole `edge4k profile --device android` flow against a fake adb
(tests/fake_adb.py) whose phone runs the host-built native runner; device
selection, a phone lost mid-run, dry runs, the Make targets, iOS elsewhere."""
import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PHONE_FLAGS, edge4k_cli, fake_phone

from edge4k.cli import main
from edge4k.compiler.request import CompileRequest
from edge4k.devices import flow
from edge4k.devices.adb import Adb
from edge4k.devices.android import RunOptions
from edge4k.devices.commands import Shell
from edge4k.devices.flow import ProfileRequest, profile
from edge4k.errors import DeviceNotFound, Edge4KError
from edge4k.kernels.raw import PHASE_PAD
from edge4k.kernels.tiling import plan_tiles
from edge4k.runtime.pipeline import TileOptions
from edge4k.runtime.profile import validate_profile

ROOT = Path(__file__).resolve().parents[1]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("edge4k: error:")]


def adb_log(root):
    path = Path(root) / "adb.log"
    return path.read_text().splitlines() if path.exists() else []


def test_profile_on_a_phone_end_to_end(phone_run):
    done, out = phone_run.done, phone_run.out
    assert done.returncode == 0, done.stderr
    profile = json.loads((out / "profile.json").read_text())
    validate_profile(profile)
    assert profile["device"]["backend"] == "executorch" and profile["device"]["delegate"] == "xnnpack"
    # The sample is 512x512, tiled as the frontend pads it (PHASE_PAD more each way) in 128/32 tiles.
    plan = plan_tiles(512 + PHASE_PAD, 512 + PHASE_PAD, compression=16, tile=128, overlap=32)
    assert profile["model"]["precision"] == "fp32" and profile["tiling"]["tiles"] == plan.num_tiles == 36
    assert profile["timing"] == {"warmup": 1, "runs": 2, "clock": "std::chrono::steady_clock"}
    assert all(profile["latency_ms"][s]["median"] > 0 for s in ("global", "encoder", "backbone", "decoder", "total"))
    assert profile["memory"]["peak_rss_bytes"] > 0 and profile["memory"]["planned_arena_bytes"] > 0
    # The fake phone is this host: no battery, and the profile says so instead of a number.
    assert profile["power"] == {"available": False, "reason": profile["power"]["reason"]} and "battery" in \
        profile["power"]["reason"]
    assert json.loads((out / "build" / "manifest.json").read_text())["target"] == "android-xnnpack"
    assert "decoder" in done.stdout and "wrote" in done.stdout and "Fake Phone 1" in done.stdout
    log = adb_log(phone_run.root)
    assert "-s emu1 push" in "\n".join(log) and any("pull" in l and "profile.json" in l for l in log)
    assert log[-1] == "-s emu1 shell rm -rf /data/local/tmp/edge4k"                     # cleaned up
    assert not (phone_run.root / "phone" / "data" / "local" / "tmp" / "edge4k").exists()
    assert not list(out.glob(".pull-*"))


def test_no_phone_still_compiles_then_exits_2_with_one_line(phone_run, on_fake_phone, capsys):
    root = on_fake_phone(devices="")
    out = root / "o"
    assert main(["profile", "--target", "android-xnnpack", "--device", "android", "-o", str(out), *PHONE_FLAGS]) == 2
    err = error_lines(capsys.readouterr().err)   # compiling may log first; the error is one line
    assert len(err) == 1 and "no Android phone connected" in err[0] and "ANDROID_SERIAL" in err[0]
    assert f"build is ready in {out / 'build'}" in err[0]
    assert json.loads((out / "build" / "manifest.json").read_text())["target"] == "android-xnnpack"
    assert not (out / "profile.json").exists()


def test_no_adb_exits_2(phone_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))   # nothing on PATH, so no adb
    monkeypatch.chdir(tmp_path)
    assert main(["profile", "--target", "android-xnnpack", "--device", "android",
                 "--artifacts", str(phone_run.out / "build")]) == 2
    assert "adb not found on PATH" in capsys.readouterr().err


def test_a_build_the_phone_runner_cannot_run_is_refused_before_any_push(phone_run, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(phone_run.out / "build", build)
    manifest = json.loads((build / "manifest.json").read_text())
    manifest.update(target="android-litert", backend="litert")
    (build / "manifest.json").write_text(json.dumps(manifest))
    done = edge4k_cli(["profile", "--target", "android-litert", "--device", "android", "-o", str(tmp_path / "o"),
                       "--artifacts", str(build), "--runner", str(phone_run.runner)], fake_phone(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "the phone runner runs ExecuTorch (android-xnnpack) and QNN (android-qnn) builds" in done.stderr
    assert not any(" push " in line for line in adb_log(tmp_path))


@pytest.mark.parametrize("devices, serial, expect", [
    ("emu1,emu2", None, "2 phones connected"),
    ("emu1,emu2", "emu2", "emu2"),
    ("emu1", "emu9", "no phone with serial emu9"),
    ("emu1:unauthorized", None, "accept the USB debugging prompt"),
    ("emu1:offline", None, "is offline"),
])
def test_phone_selection(on_fake_phone, devices, serial, expect):
    on_fake_phone(devices=devices)
    adb = Adb(Shell(), serial=serial)
    if expect.startswith("emu"):
        assert adb.select() == expect
    else:
        with pytest.raises(Edge4KError, match=expect) as e:
            adb.select()
        assert isinstance(e.value, DeviceNotFound) == (expect != "2 phones connected")


def test_phone_lost_mid_run_leaves_host_files_intact(phone_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(phone_run.out, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    env = fake_phone(tmp_path, FAKE_ADB_DISCONNECT_ON="pull")
    done = edge4k_cli(["profile", "--target", "android-xnnpack", "--device", "android", "-o", str(out),
                       "--artifacts", str(out / "build"), "--runner", str(phone_run.runner), "--runs", "1",
                       "--warmup", "0", "--idle-seconds", "0"], env, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("edge4k: error: phone emu1 disconnected during 'pull profile.json'")
    assert done.stderr.count("\n") == 1
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "input" not in p.parts}
    assert after == {p: b for p, b in before.items() if "input" not in p.parts}   # profile, image, build untouched
    assert not list(out.glob(".pull-*"))


def test_runner_failure_on_the_phone_is_one_line(phone_run, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(phone_run.out / "build", build)
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["versions"]["executorch"] = "0.9.0"
    (build / "manifest.json").write_text(json.dumps(manifest))
    done = edge4k_cli(["profile", "--target", "android-xnnpack", "--device", "android", "-o", str(tmp_path / "o"),
                       "--artifacts", str(build), "--runner", str(phone_run.runner), "--runs", "1",
                       "--idle-seconds", "0"], fake_phone(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "the runner failed on emu1" in done.stderr and "built with executorch 0.9.0" in done.stderr
    assert not (tmp_path / "o" / "profile.json").exists()


def test_dry_run_prints_the_plan_and_touches_no_phone(phone_run, on_fake_phone, capsys):
    root = on_fake_phone(devices="")   # no phone: a dry run does not need one
    assert main(["profile", "--target", "android-xnnpack", "--device", "android", "--dry-run",
                 "-o", str(root / "o"), "--artifacts", str(phone_run.out / "build")]) == 0
    plan = capsys.readouterr().out
    for needle in ("$ adb devices", "$ cmake -S", "push", "model.pte",
                   "./edge4k_runner --artifacts build --input input/frame.json", "pull /data/local/tmp/edge4k/out/profile.json",
                   "shell 'rm -rf /data/local/tmp/edge4k'"):
        assert needle in plan, needle
    assert adb_log(root) == [] and not (root / "o").exists()


def test_profile_passes_the_finishing_flags_to_the_runner(phone_run, on_fake_phone, capsys):
    root = on_fake_phone(devices="")
    assert main(["profile", "--target", "android-xnnpack", "--device", "android", "--dry-run", "-o", str(root / "o"),
                 "--artifacts", str(phone_run.out / "build"), "--exposure", "0.5", "--highlights", "reconstruct",
                 "--output-space", "prophoto"]) == 0
    runner_line = next(line for line in capsys.readouterr().out.splitlines() if "./edge4k_runner" in line)
    for needle in ("--exposure 0.5", "--highlights reconstruct", "--output-space prophoto", "--bits 16"):
        assert needle in runner_line, (needle, runner_line)
    with pytest.raises(SystemExit) as usage:
        main(["profile", "--target", "android-xnnpack", "--device", "android", "--dry-run",
              "--artifacts", str(phone_run.out / "build"), "--highlights", "blend"])
    assert usage.value.code == 2 and "invalid choice: 'blend'" in capsys.readouterr().err


def test_profile_on_the_host_uses_the_python_runtime(phone_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["profile", "--target", "android-xnnpack", "--device", "host", "-o", str(tmp_path / "o"),
                 "--artifacts", str(phone_run.out / "build"), "--runs", "1", "--warmup", "0"]) == 0
    profile = json.loads((tmp_path / "o" / "profile.json").read_text())
    assert profile["timing"]["clock"] == "time.perf_counter" and profile["device"]["backend"] == "executorch"
    assert (tmp_path / "o" / "output.png").is_file() and "decoder" in capsys.readouterr().out


def test_a_build_for_another_target_is_refused(phone_run, tmp_path, capsys):
    assert main(["profile", "--target", "host-xnnpack", "--device", "host", "-o", str(tmp_path / "o"),
                 "--artifacts", str(phone_run.out / "build")]) == 1
    assert "was compiled for target android-xnnpack, not host-xnnpack" in capsys.readouterr().err


def test_dry_run_still_compiles_after_printing(tmp_path, sample_dng, monkeypatch):
    lines, compiled = [], []
    request = CompileRequest(target="android-xnnpack", preset="e4k-t-f16", width=512, height=512, soc="SM8650",
                             tiling=TileOptions(tile=256, overlap=16))
    monkeypatch.setattr(flow, "compile_request", lambda *a, **k: compiled.append((a, len(lines))) or {})
    monkeypatch.setattr(flow, "format_manifest", lambda manifest: "the build's table")
    req = ProfileRequest(target="android-xnnpack", device="android", raw_input=sample_dng, out_dir=tmp_path / "o",
                         compile=request, run=RunOptions(), dry_run=True, runner=str(tmp_path / "runner"))
    assert profile(req, echo=lines.append) is None
    assert compiled == [((request, tmp_path / "o" / "build"), len(lines) - 2)]   # after the whole plan
    assert lines[-2:] == ["the build's table", f"wrote {tmp_path / 'o' / 'build'}"]
    # the plan shows the `edge4k compile` command that makes the same build
    assert f"$ edge4k compile --target android-xnnpack --preset e4k-t-f16 --seed 0 --resolution 512x512 --tile 256 " \
           f"--overlap 16 --soc SM8650 -o {tmp_path / 'o' / 'build'}" in lines


def make(args, env, timeout=300):
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args,
                           f"EDGE4K={sys.executable} -m edge4k", "DEPS="],
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_android_qnn_without_a_phone_compiles_then_exits_2(tmp_path):
    pytest.importorskip("onnxruntime_qnn")
    env = fake_phone(tmp_path, devices="")
    done = make(["android-qnn", f"OUT={tmp_path}", "PRESET=e4k-t-f16", "TILE=128", "OVERLAP=32", "SOC=SM8550"], env)
    assert done.returncode == 2, done.stderr
    assert error_lines(done.stderr)[0].startswith("edge4k: error: no Android phone connected")
    manifest = json.loads((tmp_path / "android-qnn" / "build" / "manifest.json").read_text())
    assert manifest["target"] == "android-qnn" and manifest["qnn"]["soc"] == "SM8550"
    assert not (tmp_path / "android-qnn" / "profile.json").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_dry_run_shows_the_full_plan(tmp_path):
    # An unknown preset makes the compile that follows the plan fail at once, so this
    # stays quick whichever QNN toolchain is installed.
    env = fake_phone(tmp_path, devices="")
    done = make(["android-qnn", "DRY_RUN=1", "PRESET=no-such-preset", f"OUT={tmp_path}"], env)
    plan = done.stdout
    assert "--soc SM8650" in plan and "edge4k compile --target android-qnn" in plan
    assert "./edge4k_runner" in plan and "pull /data/local/tmp/edge4k/out/profile.json" in plan
    assert "edge4k: error:" in done.stderr and adb_log(tmp_path) == []


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS the ios device is real")
def test_ios_elsewhere_says_what_is_needed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    pytest.importorskip("coremltools")
    assert main(["profile", "--target", "ios-coreml", "--device", "ios", "--preset", "e4k-t-f16", "--tile", "128",
                 "--overlap", "32", "--calib", "2"]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "needs macOS with Xcode" in err[0] and "build is ready in" in err[0]
    assert (tmp_path / "out" / "ios-coreml" / "build" / "manifest.json").is_file()
    assert not (tmp_path / "out" / "ios-coreml" / "profile.json").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_android_xnnpack_on_the_fake_phone(phone_run, tmp_path):
    env = fake_phone(tmp_path)
    done = make(["android-xnnpack", f"OUT={tmp_path}", f"ARTIFACTS={phone_run.out / 'build'}",
                 f"RUNNER={phone_run.runner}", "RUNS=1", "WARMUP=0"], env)
    assert done.returncode == 0, done.stderr
    validate_profile(json.loads((tmp_path / "android-xnnpack" / "profile.json").read_text()))
    assert "decoder" in done.stdout and (tmp_path / "android-xnnpack" / "output.png").is_file()


# ---- the phone flow's checks, with stand-in runners (no native build needed) ----------

def _phone_job(root):
    """A build folder, a decoded-frame sidecar and an output folder for profile_on_phone."""
    build = root / "build"
    build.mkdir(exist_ok=True)
    (build / "manifest.json").write_text(json.dumps({"stages": {"global": {"file": "model.pte"}}}))
    (build / "model.pte").write_bytes(b"pte")
    (root / "frame.json").write_text("{}")
    (root / "frame.u16").write_bytes(b"\0\0")
    return dict(artifacts=build, sidecar=root / "frame.json", out_dir=root / "out",
                opts=RunOptions(runs=1, warmup=0, idle_seconds=0), echo=lambda line: None)


def _script_runner(root, body):
    runner = root / "runner.sh"
    runner.write_text("#!/bin/bash\nmkdir -p out\n" + body + "\n")
    runner.chmod(0o755)
    return runner


def _phone_is_clean(root):
    log = adb_log(root)
    return log[-1] == "-s emu1 shell rm -rf /data/local/tmp/edge4k" and \
        not (root / "phone" / "data" / "local" / "tmp" / "edge4k").exists()


def test_a_runner_for_another_abi_is_refused_before_any_push(on_fake_phone):
    from edge4k.devices.android import profile_on_phone
    root = on_fake_phone()
    arm64 = root / "edge4k_runner"
    arm64.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + (183).to_bytes(2, "little") + bytes(44))   # e_machine AArch64
    with pytest.raises(Edge4KError, match=r"edge4k_runner is a arm64-v8a binary but the phone runs x86_64; build the "
                                          r"runner for the phone"):
        profile_on_phone(Adb(Shell()), runner=arm64, **_phone_job(root))
    script = _script_runner(root, "exit 0")
    with pytest.raises(Edge4KError, match="runner.sh is a non-ELF binary but the phone runs x86_64"):
        profile_on_phone(Adb(Shell()), runner=script, **_phone_job(root))
    assert not any(" push " in line or line.startswith("-s emu1 shell rm") for line in adb_log(root))
    assert not (root / "out").exists()


@pytest.fixture
def runner_is_for_the_phone(monkeypatch):
    from edge4k.devices import android
    monkeypatch.setattr(android, "elf_abi", lambda path: "x86_64")   # a script stands in for the runner binary


def _profile_script(image: bytes, sha256: str):
    from test_profile import valid_profile
    profile = valid_profile(output={"path": "out/output.png", "sha256": sha256, "width": 64, "height": 32,
                                    "bit_depth": 8})
    return (f"printf '%s' '{json.dumps(profile)}' > out/profile.json\n"
            f"echo {base64.b64encode(image).decode()} | base64 -d > out/output.png")


def test_pulled_results_land_when_the_image_matches_its_sha256(on_fake_phone, runner_is_for_the_phone):
    import hashlib

    from edge4k.devices.android import profile_on_phone
    root = on_fake_phone()
    image = b"\x89PNG fake image"
    job = _phone_job(root)
    runner = _script_runner(root, _profile_script(image, hashlib.sha256(image).hexdigest()))
    profile = profile_on_phone(Adb(Shell()), runner=runner, **job)
    assert profile["output"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert (job["out_dir"] / "output.png").read_bytes() == image
    assert sorted(p.name for p in job["out_dir"].iterdir()) == ["output.png", "profile.json"]
    assert _phone_is_clean(root)


def test_a_pulled_image_that_does_not_match_its_sha256_is_refused(on_fake_phone, runner_is_for_the_phone):
    from edge4k.devices.android import profile_on_phone
    root = on_fake_phone()
    job = _phone_job(root)
    job["out_dir"].mkdir()
    (job["out_dir"] / "output.png").write_bytes(b"the previous run's image")
    runner = _script_runner(root, _profile_script(b"\x89PNG truncated", "0" * 64))
    with pytest.raises(Edge4KError, match="the image pulled from the phone does not match the sha256 in its profile"):
        profile_on_phone(Adb(Shell()), runner=runner, **job)
    # nothing of the bad run on the host: the previous image is untouched, no profile, no staging folder
    assert sorted(p.name for p in job["out_dir"].iterdir()) == ["output.png"]
    assert (job["out_dir"] / "output.png").read_bytes() == b"the previous run's image"
    assert _phone_is_clean(root)


@pytest.mark.parametrize("write_profile", [
    r"printf '\377\376{\200' > out/profile.json",                       # not UTF-8
    "head -c 100000 /dev/zero | tr '\\0' '[' > out/profile.json",       # nested past Python's stack
    "echo '[1, 2]' > out/profile.json",                                 # JSON, not a profile
])
def test_a_pulled_profile_that_is_not_a_profile_is_one_line(on_fake_phone, runner_is_for_the_phone, write_profile):
    from edge4k.devices.android import profile_on_phone
    root = on_fake_phone()
    job = _phone_job(root)
    runner = _script_runner(root, write_profile + "\necho png > out/output.png")
    with pytest.raises(Edge4KError) as e:
        profile_on_phone(Adb(Shell()), runner=runner, **job)
    assert "\n" not in str(e.value) and "profile" in str(e.value) and len(str(e.value)) < 500
    assert not (job["out_dir"] / "profile.json").exists() and not (job["out_dir"] / "output.png").exists()
    assert _phone_is_clean(root)


def test_a_failing_runner_is_one_line_and_the_phone_is_cleaned(on_fake_phone, runner_is_for_the_phone):
    from edge4k.devices.android import profile_on_phone
    root = on_fake_phone()
    job = _phone_job(root)
    runner = _script_runner(root, "echo 'edge4k_runner: error: cannot open build/model.pte' >&2\nexit 3")
    with pytest.raises(Edge4KError, match=r"^the runner failed on emu1: edge4k_runner: error: cannot open "
                                          r"build/model.pte$"):
        profile_on_phone(Adb(Shell()), runner=runner, **job)
    assert _phone_is_clean(root) and not job["out_dir"].exists()
    assert any("pushed" not in l and " push " in l and l.endswith("/data/local/tmp/edge4k/edge4k_runner")
               for l in adb_log(root))
