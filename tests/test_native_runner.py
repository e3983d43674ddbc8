"""The native runner on this host: its image against the Python executorch backend
on the same build, its profile against the schema, power and thermal read from a
sysfs tree, and its one-line errors."""
import json
import shutil
import subprocess

import numpy as np
import pytest
import tifffile
from conftest import build_with_latent_channels_4, smooth_image
from PIL import Image

from edge4k.cli import main
from edge4k.errors import Edge4KError
from edge4k.kernels.raw import read_raw, write_bayer
from edge4k.runtime.profile import validate_profile

MIN_PSNR_DB = 60.0


def psnr(a, b, peak):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(peak ** 2 / mse)


def read_ppm16(path):
    data = path.read_bytes()
    magic, size, maxval, pixels = data.split(b"\n", 3)
    w, h = map(int, size.split())
    assert magic == b"P6" and maxval == b"65535"
    return np.frombuffer(pixels, ">u2").reshape(h, w, 3)


@pytest.fixture(scope="module")
def frame(tmp_path_factory, sample_dng):
    return write_bayer(read_raw(sample_dng), tmp_path_factory.mktemp("frame") / "frame.json", source=sample_dng)


def runner(phone_run, *args, check=True):
    done = subprocess.run([str(phone_run.runner), *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_runner_links_the_xnnpack_delegate(phone_run):
    about = json.loads(runner(phone_run, "--about").stdout)
    assert about["engines"] == ["executorch", "onnxruntime"] and "XnnpackBackend" in about["backends"]
    assert about["executorch"].startswith("1.5")


def test_runner_matches_the_python_executorch_backend(phone_run, frame, sample_dng, tmp_path):
    build = phone_run.out / "build"
    assert main(["run", sample_dng, "-o", str(tmp_path / "py.tif"), "--backend", "executorch", "--artifacts",
                 str(build)]) == 0
    assert main(["run", sample_dng, "-o", str(tmp_path / "py.png"), "--backend", "executorch", "--artifacts",
                 str(build)]) == 0
    runner(phone_run, "--artifacts", build, "--input", frame, "-o", tmp_path / "c.ppm")
    ours16, theirs16 = read_ppm16(tmp_path / "c.ppm"), tifffile.imread(tmp_path / "py.tif")
    assert ours16.shape == theirs16.shape == (512, 512, 3)
    assert psnr(ours16, theirs16, 65535) >= MIN_PSNR_DB
    # The 8-bit image that came back from the (fake) phone, against Python's.
    ours8 = np.asarray(Image.open(phone_run.out / "output.png"))
    assert psnr(ours8, np.asarray(Image.open(tmp_path / "py.png")), 255) >= MIN_PSNR_DB


def test_runner_adds_the_classical_base_only_where_the_config_has_raw_skip(phone_run, frame, sample_dng, tmp_path):
    """The decoder stage of a raw_skip build returns its residual and both runtimes add the base;
    with raw_skip false (the noskip ablation) its output is the image and neither adds anything."""
    build = tmp_path / "build"
    shutil.copytree(phone_run.out / "build", build)
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["config"]["raw_skip"]
    manifest["config"]["raw_skip"] = False
    (build / "manifest.json").write_text(json.dumps(manifest))
    assert main(["run", sample_dng, "-o", str(tmp_path / "py.tif"), "--backend", "executorch", "--artifacts",
                 str(build)]) == 0
    runner(phone_run, "--artifacts", build, "--input", frame, "-o", tmp_path / "c.ppm")
    runner(phone_run, "--artifacts", phone_run.out / "build", "--input", frame, "-o", tmp_path / "with-base.ppm")
    ours = read_ppm16(tmp_path / "c.ppm")
    assert psnr(ours, tifffile.imread(tmp_path / "py.tif"), 65535) >= MIN_PSNR_DB
    assert psnr(ours, read_ppm16(tmp_path / "with-base.ppm"), 65535) < 30   # the base is left out


def test_runner_neutral_look_and_orientation_match_python(phone_run, frame, sample_dng, tmp_path):
    build = phone_run.out / "build"
    assert main(["run", sample_dng, "-o", str(tmp_path / "py.tif"), "--look", "neutral", "--backend", "executorch",
                 "--artifacts", str(build)]) == 0
    runner(phone_run, "--artifacts", build, "--input", frame, "-o", tmp_path / "c.ppm", "--look", "neutral")
    neutral = read_ppm16(tmp_path / "c.ppm")
    assert psnr(neutral, tifffile.imread(tmp_path / "py.tif"), 65535) >= MIN_PSNR_DB
    # EXIF Orientation 6 (the camera held turned right): the image comes out turned a quarter clockwise.
    sidecar = json.loads(frame.read_text())
    sidecar.update(orientation=6, data=str(frame.with_suffix(".u16")))
    (tmp_path / "turned.json").write_text(json.dumps(sidecar))
    runner(phone_run, "--artifacts", build, "--input", tmp_path / "turned.json", "-o", tmp_path / "t.ppm",
           "--look", "neutral")
    np.testing.assert_array_equal(read_ppm16(tmp_path / "t.ppm"), np.rot90(neutral, k=-1))


def test_runner_meters_a_bright_scene_like_python(phone_run, tmp_path):
    """The natural look's highlight-aware metering (kernels/rawcolour.py) in the runner too: a
    bright scene, where it differs from the mean-to-mid-grey rule the network is conditioned on."""
    from edge4k.datasets.dng import write_dng
    from edge4k.datasets.unprocess import unprocess
    from edge4k.kernels.raw import exposure_gain, prepare
    from edge4k.kernels.rawcolour import metered_gain
    snow = 0.75 + 0.2 * smooth_image(512, 512, seed=4)
    cap = unprocess(snow, cfa="RGGB", iso=None, ev=-1.0, bits=14, black_level=512, rng=np.random.default_rng(2))
    dng = write_dng(tmp_path / "snow.dng", cap)
    frame = read_raw(dng)
    prep = prepare(frame, 64)
    assert metered_gain(prep.thumb, frame.srgb_from_cam) > 1.2 * exposure_gain(prep.thumb, frame.srgb_from_cam)
    build = phone_run.out / "build"
    assert main(["run", str(dng), "-o", str(tmp_path / "py.tif"), "--backend", "executorch", "--artifacts",
                 str(build)]) == 0
    runner(phone_run, "--artifacts", build, "--input", write_bayer(frame, tmp_path / "snow.json", source=dng),
           "-o", tmp_path / "c.ppm")
    assert psnr(read_ppm16(tmp_path / "c.ppm"), tifffile.imread(tmp_path / "py.tif"), 65535) >= MIN_PSNR_DB


@pytest.fixture(scope="module")
def clipped_dng(tmp_path_factory):
    """A capture whose bright sky clips in some channels but not all: what --highlights reconstruct rebuilds."""
    from edge4k.datasets.dng import write_dng
    from edge4k.datasets.unprocess import unprocess
    scene = np.clip(0.5 + 0.9 * smooth_image(256, 256, seed=7), 0, 1)
    cap = unprocess(scene, cfa="RGGB", iso=None, ev=2.0, bits=14, black_level=512, rng=np.random.default_rng(3))
    return write_dng(tmp_path_factory.mktemp("clipped") / "clipped.dng", cap)


@pytest.mark.parametrize("options", [
    ["--exposure", "1"], ["--look", "neutral", "--exposure", "-0.5"], ["--highlights", "reconstruct"],
    ["--look", "neutral", "--highlights", "reconstruct", "--exposure", "0.5"],
    ["--output-space", "display-p3"], ["--output-space", "adobe-rgb"], ["--look", "neutral", "--output-space", "prophoto"],
    ["--output-space", "rec2020-linear", "--exposure", "-1"],
])
def test_runner_finishing_options_match_python(phone_run, sample_dng, clipped_dng, tmp_path, options):
    """--exposure, --highlights and --output-space: the runner's image, its ICC profile and its
    profile's record against `edge4k run` on the same build."""
    from edge4k.kernels.colourspace import icc_profile
    raw = clipped_dng if "--highlights" in options else sample_dng
    build = phone_run.out / "build"
    assert main(["run", str(raw), "-o", str(tmp_path / "py.tif"), "--backend", "executorch", "--artifacts", str(build),
                 "--profile", str(tmp_path / "py.json"), *options]) == 0
    sidecar = write_bayer(read_raw(raw), tmp_path / "frame.json", source=raw)
    runner(phone_run, "--artifacts", build, "--input", sidecar, "-o", tmp_path / "c.tif", "--profile",
           tmp_path / "c.json", *options)
    ours, theirs = tifffile.imread(tmp_path / "c.tif"), tifffile.imread(tmp_path / "py.tif")
    assert psnr(ours, theirs, 65535) >= MIN_PSNR_DB
    if "--highlights" in options:   # the reconstruction did something on this frame
        runner(phone_run, "--artifacts", build, "--input", sidecar, "-o", tmp_path / "clip.tif",
               *[o for o in options if o not in ("--highlights", "reconstruct")])
        assert psnr(tifffile.imread(tmp_path / "clip.tif"), ours, 65535) < 50
    space = options[options.index("--output-space") + 1] if "--output-space" in options else "srgb"
    if space != "srgb":   # the same ICC profile as Python's, in the TIFF and in a 16-bit PNG
        with tifffile.TiffFile(tmp_path / "c.tif") as tif:
            assert tif.pages[0].tags[34675].value == icc_profile(space)
        runner(phone_run, "--artifacts", build, "--input", sidecar, "-o", tmp_path / "c.png", "--bits", "16", *options)
        assert Image.open(tmp_path / "c.png").info["icc_profile"] == icc_profile(space)
    ours_p, theirs_p = json.loads((tmp_path / "c.json").read_text()), json.loads((tmp_path / "py.json").read_text())
    validate_profile(ours_p)
    for key in ("output_space", "look"):
        assert ours_p["output"][key] == theirs_p["output"][key]
    assert ours_p["output"]["colour"] == theirs_p["output"]["colour"]
    assert ours_p["output"]["exposure_gain"] == pytest.approx(theirs_p["output"]["exposure_gain"], rel=1e-4)


def test_runner_refuses_a_wide_space_at_8_bits_in_one_line(phone_run, frame, tmp_path):
    done = runner(phone_run, "--artifacts", phone_run.out / "build", "--input", frame, "-o", tmp_path / "o.png",
                  "--output-space", "prophoto", check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge4k_runner:")]
    assert done.returncode == 1 and len(errors) == 1, done.stderr
    assert "output space prophoto needs a 16-bit image" in errors[0] and not (tmp_path / "o.png").exists()


def test_the_phone_flow_passes_the_finishing_to_the_runner(phone_run, frame, on_fake_phone):
    """devices/android.py: RunOptions' exposure, highlights and output space reach the runner on the
    (fake) phone; prophoto comes back as a 16-bit PNG with its ICC profile."""
    from edge4k.devices.adb import Adb
    from edge4k.devices.android import RunOptions, profile_on_phone
    from edge4k.devices.commands import Shell
    from edge4k.kernels.colourspace import icc_profile
    root = on_fake_phone()
    opts = RunOptions(runs=1, warmup=0, idle_seconds=0, exposure=0.5, highlights="reconstruct", output_space="prophoto")
    profile = profile_on_phone(Adb(Shell()), runner=phone_run.runner, artifacts=phone_run.out / "build", sidecar=frame,
                               out_dir=root / "out", opts=opts, echo=lambda line: None)
    output = profile["output"]
    assert output["output_space"] == "prophoto" and output["bit_depth"] == 16
    assert output["colour"]["exposure_ev"] == 0.5 and output["colour"]["highlights"] == "reconstruct"
    image = Image.open(root / "out" / "output.png")
    assert image.info["icc_profile"] == icc_profile("prophoto")
    with pytest.raises(Edge4KError, match="unknown output space 'p3'"):
        RunOptions(output_space="p3")


def test_runner_profile_records_the_hosts_colour_choices(phone_run, sample_dng, tmp_path):
    """The white balance the host applied before handing the frame over, recorded as `edge4k run` records it."""
    from edge4k.kernels.rawcolour import ColourOptions
    colour = ColourOptions(wb=(2.0, 1.0, 1.5))
    sidecar = write_bayer(colour.apply(read_raw(sample_dng)), tmp_path / "frame.json", colour=colour.record())
    runner(phone_run, "--artifacts", phone_run.out / "build", "--input", sidecar, "-o", tmp_path / "o.png",
           "--profile", tmp_path / "p.json", "--exposure", "0.25")
    profile = json.loads((tmp_path / "p.json").read_text())
    validate_profile(profile)
    assert profile["output"]["colour"] == {**colour.record(), "exposure_ev": 0.25}


def test_runner_png_says_srgb(phone_run, frame, tmp_path):
    """The default sRGB image carries PNG's sRGB chunk (Python embeds LittleCMS's sRGB profile)."""
    runner(phone_run, "--artifacts", phone_run.out / "build", "--input", frame, "-o", tmp_path / "o.png")
    data = (tmp_path / "o.png").read_bytes()
    assert b"sRGB\0" in data[:64] and b"iCCP" not in data


def fake_sysfs(root, status="Discharging"):
    files = {"class/power_supply/AC/type": "Mains", "class/power_supply/battery/type": "Battery",
             "class/power_supply/battery/status": status, "class/power_supply/battery/current_now": "-350000",
             "class/power_supply/battery/voltage_now": "3900000", "class/thermal/thermal_zone0/type": "cpu-big",
             "class/thermal/thermal_zone0/temp": "41500", "class/thermal/cooling_device0/type": "thermal-cpufreq-4",
             "class/thermal/cooling_device0/cur_state": "0", "devices/system/cpu/cpu4/cpufreq/scaling_cur_freq": "1800000",
             "devices/system/cpu/cpu4/cpufreq/scaling_max_freq": "2000000",
             "devices/system/cpu/cpu4/cpufreq/cpuinfo_max_freq": "3000000"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    return root


@pytest.mark.parametrize("status, idle, expect", [
    ("Discharging", "0", "available"),          # no baseline: the gross draw, 0.35 A x 3.9 V
    ("Discharging", "0.2", "not above the idle baseline"),   # a constant draw is all baseline
    ("Charging", "0", "Charging"),
])
def test_power_and_thermal_from_sysfs(phone_run, frame, tmp_path, status, idle, expect):
    sysfs = fake_sysfs(tmp_path / "sys", status)
    prof = tmp_path / "p.json"
    runner(phone_run, "--artifacts", phone_run.out / "build", "--input", frame, "-o", tmp_path / "o.png",
           "--profile", prof, "--sysfs-root", sysfs, "--idle-seconds", idle, "--runs", 2)
    profile = json.loads(prof.read_text())
    validate_profile(profile)
    power = profile["power"]
    if expect == "available":
        assert power["available"] and power["mean_watts"] == pytest.approx(0.35 * 3.9) and power["samples"] >= 1
        total_s = profile["latency_ms"]["total"]["median"] / 1e3
        assert power["joules_per_image"] == pytest.approx(0.35 * 3.9 * total_s, rel=0.5)
    else:
        assert not power["available"] and expect in power["reason"]
    thermal = profile["thermal"]
    assert thermal["available"] and thermal["after"]["zones_c"] == {"cpu-big": 41.5}
    assert thermal["throttled"] and thermal["evidence"] == ["cpu4 capped at 2000000 of 3000000 kHz"]


@pytest.mark.parametrize("change, needle", [
    ("backend", "is a build for backend 'onnxruntime' (target android-xnnpack), which this edge4k_runner cannot run"),
    ("delegate", "needs ExecuTorch's QnnBackend (delegate qnn), which is not linked into this runner"),
    ("truncate", "holds 1000 bytes; a 512x512 uint16 frame needs 524288"),
    ("output", "unsupported output format for"),
    ("nobuild", "cannot read"),
])
def test_runner_errors_are_one_line(phone_run, frame, tmp_path, change, needle):
    build = tmp_path / "build"
    shutil.copytree(phone_run.out / "build", build)
    manifest = json.loads((build / "manifest.json").read_text())
    sidecar, out = frame, tmp_path / "o.png"
    if change in ("backend", "delegate"):
        manifest.update({"backend": "onnxruntime"} if change == "backend" else {"delegate": "qnn"})
        (build / "manifest.json").write_text(json.dumps(manifest))
    elif change == "truncate":
        sidecar = tmp_path / "f.json"
        (tmp_path / "f.u16").write_bytes(b"\0" * 1000)
        sidecar.write_text(frame.read_text().replace('"frame.u16"', '"f.u16"'))
    elif change == "output":
        out = tmp_path / "o.bmp"
    else:
        (build / "manifest.json").unlink()
    done = runner(phone_run, "--artifacts", build, "--input", sidecar, "-o", out, check=False)
    assert done.returncode == 1
    errors = [l for l in done.stderr.splitlines() if l.startswith("edge4k_runner:")]
    assert len(errors) == 1 and needle in errors[0], done.stderr
    assert not out.exists()


@pytest.mark.parametrize("schema, words", [
    ("edge4k.manifest/1", "manifest.json: built before the decoder returned its residual (edge4k.manifest/1); "
                          "recompile it"),   # its decoder adds the base itself: the runner would add it twice
    ("edge4k.manifest/3", "manifest.json is not an edge4k.manifest/2 build manifest"),
])
def test_runner_refuses_a_build_of_another_manifest_schema_in_one_line(native_build, frame, tmp_path, schema, words):
    build = tmp_path / "build"
    build.mkdir()
    (build / "manifest.json").write_text(json.dumps({"schema": schema, "config": {"raw_skip": True}}))
    done = subprocess.run([str(native_build / "edge4k_runner"), "--artifacts", str(build), "--input", str(frame),
                           "-o", str(tmp_path / "o.png")], capture_output=True, text=True, timeout=60)
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge4k_runner:")]
    assert done.returncode == 1 and len(errors) == 1 and errors[0].endswith(f"{build}/{words}"), done.stderr
    assert not (tmp_path / "o.png").exists()


def test_runner_usage_errors_exit_2(phone_run):
    done = runner(phone_run, "--runs", "0", check=False)
    assert done.returncode == 2 and "--runs: runner.runs is 0, outside 1..100000" in done.stderr


@pytest.mark.parametrize("flag, value, words", [
    ("--runs", "99999999999", "runner.runs is 99999999999, outside 1..100000"),   # was truncated to an int
    ("--threads", "4294967297", "runner.threads is 4294967297, outside 1..1024"),
    ("--threads", "2.5", "--threads must be an integer, got '2.5'"),
    ("--idle-seconds", "nan", "--idle-seconds must be a number, got 'nan'"),
    ("--warmup", "-1", "runner.warmup is -1, outside 0..100000"),
    ("--exposure", "11", "exposure must be within -10..+10 EV, got 11"),
    ("--exposure", "one", "--exposure must be a number, got 'one'"),
    ("--highlights", "blend", "unknown highlight mode 'blend'; valid: clip, reconstruct"),
    ("--output-space", "p3", "unknown output space 'p3'; valid: srgb, display-p3, adobe-rgb, prophoto, rec2020-linear"),
])
def test_runner_options_out_of_range_are_one_line(phone_run, frame, tmp_path, flag, value, words):
    done = runner(phone_run, "--artifacts", phone_run.out / "build", "--input", frame, "-o", tmp_path / "o.png",
                  flag, value, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge4k_runner:")]
    assert done.returncode == 2 and len(errors) == 1 and words in errors[0], done.stderr


def limit(group, key):
    from edge4k.runtime.limits import limits
    rule = limits()[group][key]
    return f"{rule['min']}..{rule['max']}"


def _tile(m):
    m["tiling"]["tile"] = 64


# Issue 27's crashes (SIGSEGV, garbage with exit 0, SIGFPE, SIGBUS), each now one line naming the
# field, the two values and the file; the ranges come from runtime/limits.json, as on the host.
MANIFEST_CRASHES = [
    (_tile, "model.pte: encoder input 0 is [2,4,64,64] in the program, but [2,4,32,32] from tiling.tile / 2"),
    (lambda m: m["config"].update(thumb_size=16),
     "model.pte: global input 0 is [1,4,32,32] in the program, but [1,4,16,16] from config.thumb_size"),
    (lambda m: m["config"].update(compression=0), "manifest.json: config.compression is 0, expected one of [8,16,32]"),
    (lambda m: m["config"].update(thumb_size=0),
     f"manifest.json: config.thumb_size is 0, outside {limit('config', 'thumb_size')}"),
    (lambda m: m["tiling"].update(batch=1), "encoder input 0 is [2,4,64,64] in the program, but [1,4,64,64] from tiling.batch"),
    (lambda m: m["config"].update(latent_channels=4), "encoder output is [2,8,8,8] in the program, but [2,4,8,8] from "
                                                      "config.latent_channels"),
    (lambda m: m["tiling"].update(padded=[1e300, 16]), "manifest.json: tiling.padded is 1e+300, outside"),
    (lambda m: m["stages"]["encoder"]["inputs"][0].update(shape=[2, 4, 32, 32]),
     "encoder input 0 is [2,4,64,64] in the program, but [2,4,32,32] in manifest.json (stages.encoder.inputs)"),
    (lambda m: m["stages"]["global"].update(file="../build/model.pte"), "is not a file name inside the build"),
]


@pytest.mark.parametrize("change, words", MANIFEST_CRASHES, ids=[w.split(": ")[-1][:40] for _, w in MANIFEST_CRASHES])
def test_runner_refuses_a_build_whose_fields_disagree(phone_run, frame, tmp_path, change, words):
    build = tmp_path / "build"
    shutil.copytree(phone_run.out / "build", build)
    manifest = json.loads((build / "manifest.json").read_text())
    change(manifest)
    (build / "manifest.json").write_text(json.dumps(manifest))
    done = runner(phone_run, "--artifacts", build, "--input", frame, "-o", tmp_path / "o.png", check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge4k_runner:")]
    assert done.returncode == 1 and len(errors) == 1 and words in errors[0], done.stderr
    assert str(build) in errors[0] and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("change, words", [
    (lambda s: s.update(data=""), "data is empty"),
    (lambda s: s.update(width=2**31), "frame.width is 2147483648, outside"),   # was width -2147483648
    (lambda s: s.update(width=1e300), "frame.width is 1e+300, outside"),
    (lambda s: s.update(wb_gains=[1, 1]), "wb_gains 3"),
    (lambda s: s.update(srgb_from_cam=[1, 2, 3]), "srgb_from_cam 3 rows of 3"),
    (lambda s: s.update(orientation=9), "frame.orientation is 9, outside 1..8"),
])
def test_runner_refuses_a_malformed_sidecar(phone_run, frame, tmp_path, change, words):
    sidecar = json.loads(frame.read_text())
    sidecar["data"] = str(frame.with_suffix(".u16"))
    change(sidecar)
    (tmp_path / "f.json").write_text(json.dumps(sidecar))
    done = runner(phone_run, "--artifacts", phone_run.out / "build", "--input", tmp_path / "f.json",
                  "-o", tmp_path / "o.png", check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge4k_runner:")]
    assert done.returncode == 1 and len(errors) == 1 and words in errors[0], done.stderr


@pytest.mark.parametrize("digest", ["recorded", "refreshed"])
def test_runner_refuses_a_damaged_program(phone_run, frame, sample_dng, tmp_path, capsys, digest):
    """A .pte damaged after the build: the manifest's digest refuses it; with a matching digest
    (a build made of a damaged file), ExecuTorch's full verification does, where the minimal one
    crashed in Program::method_meta."""
    import hashlib
    build = tmp_path / "build"
    shutil.copytree(phone_run.out / "build", build)
    program = build / "model.pte"
    data = bytearray(program.read_bytes())
    data[:] = data[: len(data) // 2]
    program.write_bytes(data)
    if digest == "refreshed":
        manifest = json.loads((build / "manifest.json").read_text())
        for entry in manifest["stages"].values():
            entry["file_sha256"] = hashlib.sha256(data).hexdigest()
        (build / "manifest.json").write_text(json.dumps(manifest))
    done = runner(phone_run, "--artifacts", build, "--input", frame, "-o", tmp_path / "o.png", check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge4k_runner:")]
    words = "is not the" if digest == "recorded" else "not a valid .pte program"
    assert done.returncode == 1 and len(errors) == 1 and words in errors[0], done.stderr
    # The host refuses it too, in one line.
    capsys.readouterr()
    assert main(["run", sample_dng, "-o", str(tmp_path / "py.png"), "--backend", "executorch",
                 "--artifacts", str(build)]) == 1
    host_errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("edge4k: error:")]
    assert len(host_errors) == 1 and not (tmp_path / "py.png").exists()


def read_png(path):
    """A PNG decoder independent of Pillow (which reads 16-bit RGB as 8-bit): chunk
    CRCs, zlib, the five row filters; returns (pixels, IDAT bytes)."""
    import zlib
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        n, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) == int.from_bytes(data[pos + 8 + n:pos + 12 + n], "big"), kind
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + n
    w, h, bits, colour = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big"), header[8], header[9]
    assert colour == 2   # RGB
    bpp, row = 3 * bits // 8, w * 3 * bits // 8
    raw = zlib.decompress(idat)
    out, prev = np.zeros((h, row), np.uint8), np.zeros(row, np.int64)
    for y in range(h):
        kind, line = raw[y * (row + 1)], np.frombuffer(raw, np.uint8, row, y * (row + 1) + 1).astype(np.int64)
        if kind in (0, 2):
            cur = (line + (prev if kind == 2 else 0)) & 255
        else:
            cur = np.zeros(row, np.int64)
            for i in range(row):
                a = cur[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                if kind == 1:
                    pred = a
                elif kind == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                cur[i] = (line[i] + pred) & 255
        out[y], prev = cur, cur
    pixels = out.reshape(h, w, 3) if bits == 8 else out.view(">u2").reshape(h, w, 3)
    return pixels, len(idat)


def test_png_and_tiff_at_8_and_16_bits_decode_to_the_same_pixels_and_are_compressed(phone_run, frame, tmp_path):
    outputs = {"c.ppm": [], "c16.png": ["--bits", "16"], "c8.png": [], "c.tif": [], "c8.tif": ["--bits", "8"]}
    for name, extra in outputs.items():
        runner(phone_run, "--artifacts", phone_run.out / "build", "--input", frame, "-o", tmp_path / name, *extra)
    reference16 = read_ppm16(tmp_path / "c.ppm")
    png16, idat16 = read_png(tmp_path / "c16.png")
    png8, idat8 = read_png(tmp_path / "c8.png")
    np.testing.assert_array_equal(png16, reference16)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "c.tif"), reference16)
    np.testing.assert_array_equal(png8, np.asarray(Image.open(tmp_path / "c8.png")))   # Pillow agrees at 8 bits
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "c8.tif"), png8)
    # 8 bits is 16 bits rounded: the same render at two depths.
    assert np.abs(png8.astype(np.int64) * 257 - reference16).max() <= 128
    # Real deflate, not stored blocks (which are larger than the samples themselves). The low
    # byte of a 16-bit sample is mostly sensor noise, so 16 bits compress far less than 8.
    assert idat8 < png8.nbytes * 0.8 and idat16 < reference16.nbytes * 0.95
    with tifffile.TiffFile(tmp_path / "c.tif") as tif:
        page = tif.pages[0]
        assert page.compression == 8 and page.predictor == 2 and page.bitspersample == 16   # deflate, differencing


# Every EXIF fact the host writes (the sample DNG has make and model only); one character not ASCII.
FACTS = {"make": "Acmé Optics", "model": "X1", "exposure_time": 1 / 125, "iso": 400, "datetime": "2024:01:02 03:04:05"}


def with_exif(frame, path, exif):
    """The frame's sidecar at path, its EXIF facts replaced."""
    sidecar = json.loads(frame.read_text())
    sidecar.update(exif=exif, data=str(frame.with_suffix(".u16")))
    path.write_text(json.dumps(sidecar))
    return path


def test_runner_jpeg_is_its_png_compressed_as_libjpeg_would_with_the_hosts_icc_and_exif(phone_run, frame, tmp_path):
    """-o .jpg (the runner's own encoder, src/jpeg.cc): close to the PNG of the same render, 95 by
    default, and as good and as small as the host's libjpeg (Pillow, the same quality, chroma and
    optimised tables) at 4:4:4 (quality 95) and 4:2:0 (50); tagged as the host tags its JPEG
    (kernels/postprocess.py: write_image)."""
    from PIL.JpegImagePlugin import get_sampling

    from edge4k.kernels.colourspace import icc_profile
    from edge4k.kernels.postprocess import srgb_icc_profile, write_image
    sidecar = with_exif(frame, tmp_path / "frame.json", FACTS)
    common = ["--artifacts", phone_run.out / "build", "--input", sidecar, "--output-space", "display-p3"]
    runner(phone_run, *common, "-o", tmp_path / "c.png")
    runner(phone_run, *common, "-o", tmp_path / "default.jpg")
    runner(phone_run, *common, "-o", tmp_path / "q95.jpg", "--quality", "95")
    runner(phone_run, *common, "-o", tmp_path / "q50.jpg", "--quality", "50", "--profile", tmp_path / "p.json")
    png = np.asarray(Image.open(tmp_path / "c.png"))
    ours = Image.open(tmp_path / "q95.jpg")
    assert ours.format == "JPEG" and ours.mode == "RGB" and ours.size == (png.shape[1], png.shape[0])
    assert psnr(np.asarray(ours), png, 255) >= 38
    assert (tmp_path / "default.jpg").read_bytes() == (tmp_path / "q95.jpg").read_bytes()
    for quality in (95, 50):
        write_image(tmp_path / f"host{quality}.jpg", png, exif=FACTS, icc=icc_profile("display-p3"), quality=quality)
        mine, theirs = tmp_path / f"q{quality}.jpg", tmp_path / f"host{quality}.jpg"
        assert get_sampling(Image.open(mine)) == get_sampling(Image.open(theirs)) == (0 if quality >= 90 else 2)
        assert psnr(np.asarray(Image.open(mine)), png, 255) >= psnr(np.asarray(Image.open(theirs)), png, 255) - 0.05
        assert mine.stat().st_size <= 1.02 * theirs.stat().st_size
    assert (tmp_path / "q50.jpg").stat().st_size < 0.5 * (tmp_path / "q95.jpg").stat().st_size
    # The same ICC profile and EXIF block as the host's, and pixels that decode alike.
    host = Image.open(tmp_path / "host95.jpg")
    assert ours.info["icc_profile"] == host.info["icc_profile"] == icc_profile("display-p3")
    assert ours.info["exif"] == host.info["exif"]
    exif = ours.getexif()
    assert (exif[271], exif[272], exif[274], exif[306]) == ("Acm? Optics", "X1", 1, "2024:01:02 03:04:05")
    assert dict(exif.get_ifd(0x8769)) == {33434: 1 / 125, 34855: 400, 36867: "2024:01:02 03:04:05"}
    assert psnr(np.asarray(ours), np.asarray(host), 255) >= 50
    # sRGB, which JPEG has no tag for: the host's sRGB profile.
    runner(phone_run, "--artifacts", phone_run.out / "build", "--input", sidecar, "-o", tmp_path / "srgb.jpg")
    assert Image.open(tmp_path / "srgb.jpg").info["icc_profile"] == srgb_icc_profile()
    profile = json.loads((tmp_path / "p.json").read_text())
    validate_profile(profile)
    assert profile["output"]["quality"] == 50 and profile["output"]["bit_depth"] == 8


def test_runner_png_and_tiff_carry_the_hosts_exif(phone_run, frame, tmp_path):
    """PNG in eXIf, byte for byte the host's; TIFF as TIFF/EP tags in IFD0, the host's values."""
    from edge4k.kernels.postprocess import write_image
    sidecar = with_exif(frame, tmp_path / "frame.json", FACTS)
    for name in ("c.png", "c.tif"):
        runner(phone_run, "--artifacts", phone_run.out / "build", "--input", sidecar, "-o", tmp_path / name)
        pixels = np.asarray(Image.open(tmp_path / name)) if name.endswith(".png") else tifffile.imread(tmp_path / name)
        write_image(tmp_path / f"host{name[1:]}", pixels, exif=FACTS)
    ours_png, host_png = Image.open(tmp_path / "c.png"), Image.open(tmp_path / "host.png")
    ours_png.load(), host_png.load()
    assert ours_png.info["exif"] == host_png.info["exif"]
    tags = (271, 272, 274, 306, 33434, 34855, 36867)
    ours_tif, host_tif = Image.open(tmp_path / "c.tif").getexif(), Image.open(tmp_path / "host.tif").getexif()
    assert {t: ours_tif.get(t) for t in tags} == {t: host_tif.get(t) for t in tags}
    assert ours_tif[33434] == 1 / 125 and ours_tif[34855] == 400
    # sRGB: the PNG says so in its sRGB chunk (test_runner_png_says_srgb), the TIFF embeds the host's profile.
    assert Image.open(tmp_path / "c.tif").info["icc_profile"] == Image.open(tmp_path / "host.tif").info["icc_profile"]


@pytest.mark.parametrize("exif", [
    {"make": "Ünï\0cödé 😀 " + "x" * 300, "model": "", "exposure_time": 1e-300, "iso": 1e300, "datetime": "2024"},
    {"exposure_time": 0.1234567891234, "iso": 99.5, "model": "M"},   # a continued fraction; ISO half to even
    {"exposure_time": 3e6, "iso": 100.5},                            # capped at 1e6 s; half to even again
    {"exposure_time": 26092.899989810656, "iso": 65535.5},           # a numerator past 32 bits, as Pillow limits it
    {"exposure_time": 5.1e-7, "iso": 0.4},                           # 1/1000000; ISO at least 1
    {"exposure_time": 4.9e-7, "iso": -3, "make": "\0"},              # nearer 0: left out, as the rest
    {},
], ids=["long-unicode", "fraction", "huge", "32-bit", "tiny", "dropped", "none"])
def test_runner_exif_from_an_untrusted_sidecar_is_the_hosts(phone_run, frame, tmp_path, exif):
    """The sidecar's facts, whatever they hold, made into EXIF by the host's rules, byte for byte."""
    from edge4k.kernels.postprocess import write_image
    runner(phone_run, "--artifacts", phone_run.out / "build", "--input", with_exif(frame, tmp_path / "f.json", exif),
           "-o", tmp_path / "c.png")
    write_image(tmp_path / "host.png", np.zeros((2, 2, 3), np.uint8), exif=exif)
    ours, host = Image.open(tmp_path / "c.png"), Image.open(tmp_path / "host.png")
    ours.load(), host.load()
    assert ours.info["exif"] == host.info["exif"]


def test_runner_exif_of_the_wrong_type_is_left_out(phone_run, frame, tmp_path):
    """Text that is not a string and numbers that are not numbers (the host's own sidecar never has
    them): the render goes on, without those facts."""
    from edge4k.kernels.postprocess import write_image
    for i, exif in enumerate([{"make": ["x"], "model": 7, "iso": "400", "exposure_time": None}, "not an object"]):
        runner(phone_run, "--artifacts", phone_run.out / "build", "--input",
               with_exif(frame, tmp_path / f"f{i}.json", exif), "-o", tmp_path / f"c{i}.png")
        write_image(tmp_path / "host.png", np.zeros((2, 2, 3), np.uint8), exif={})
        ours, host = Image.open(tmp_path / f"c{i}.png"), Image.open(tmp_path / "host.png")
        ours.load(), host.load()
        assert ours.info["exif"] == host.info["exif"]


@pytest.mark.parametrize("options", [[], ["--output-space", "rec2020-linear", "--look", "neutral"]])
def test_runner_float_tiff_matches_python(phone_run, frame, sample_dng, tmp_path, options):
    """--bits 32: float32 TIFF (SampleFormat 3), deflated without a predictor as the host's, its
    values the host's within 1e-4 and the runner's 16-bit image unrounded."""
    build = phone_run.out / "build"
    assert main(["run", sample_dng, "-o", str(tmp_path / "py.tif"), "--bits", "32", "--backend", "executorch",
                 "--artifacts", str(build), *options]) == 0
    runner(phone_run, "--artifacts", build, "--input", frame, "-o", tmp_path / "c.tif", "--bits", "32", *options)
    runner(phone_run, "--artifacts", build, "--input", frame, "-o", tmp_path / "c16.tif", *options)
    ours, theirs = tifffile.imread(tmp_path / "c.tif"), tifffile.imread(tmp_path / "py.tif")
    assert ours.dtype == theirs.dtype == np.float32 and ours.shape == theirs.shape == (512, 512, 3)
    assert ours.std() > 0.01 and np.abs(ours - theirs).max() <= 1e-4
    assert np.abs(np.round(ours * np.float32(65535)) - tifffile.imread(tmp_path / "c16.tif")).max() <= 1
    with tifffile.TiffFile(tmp_path / "c.tif") as tif:
        page = tif.pages[0]
        assert (page.compression, page.predictor, page.sampleformat, page.bitspersample) == (8, 1, 3, 32)
    assert (tmp_path / "c.tif").stat().st_size < ours.nbytes   # deflated


@pytest.mark.parametrize("out, flags, code, words", [
    ("o.jpg", ["--quality", "0"], 2, "--quality must be 1-100, got 0"),
    ("o.jpg", ["--quality", "101"], 2, "--quality must be 1-100, got 101"),
    ("o.jpg", ["--quality", "high"], 2, "--quality must be an integer, got 'high'"),
    ("o.png", ["--quality", "90"], 1, "--quality is for JPEG output (.jpg), not"),
    ("o.jpg", ["--bits", "16"], 1, ".jpg output is 8-bit; use .tif or .png for 16 bits"),
    ("o.png", ["--bits", "32"], 1, "float (--bits 32) output is TIFF only; use .tif"),
    ("o.jpg", ["--output-space", "prophoto"], 1, "output space prophoto needs a 16-bit image"),
])
def test_runner_bad_jpeg_and_float_options_are_one_line(phone_run, frame, tmp_path, out, flags, code, words):
    done = runner(phone_run, "--artifacts", phone_run.out / "build", "--input", frame, "-o", tmp_path / out,
                  *flags, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge4k_runner:")]
    assert done.returncode == code and len(errors) == 1 and words in errors[0], done.stderr
    assert not (tmp_path / out).exists()


def test_bits_and_format_mismatch_is_one_line(phone_run, frame, tmp_path):
    done = runner(phone_run, "--artifacts", phone_run.out / "build", "--input", frame, "-o", tmp_path / "o.ppm",
                  "--bits", "8", check=False)
    assert done.returncode == 1 and done.stderr.strip() == \
        "edge4k_runner: error: .ppm output is 16-bit; use .png for 8 bits"
    assert not (tmp_path / "o.ppm").exists()


def test_runner_output_replaces_a_symlink_without_following_it(phone_run, frame, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "o.png"
    out.symlink_to(victim)
    runner(phone_run, "--artifacts", phone_run.out / "build", "--input", frame, "-o", out)
    assert victim.read_text() == "keep me" and not out.is_symlink() and out.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png", "victim.txt"]   # no temporaries left


def test_runner_publishes_image_and_profile_together(phone_run, frame, tmp_path):
    """A profile that cannot be written leaves the old image as it was, and no temporaries."""
    out = tmp_path / "o.png"
    out.write_bytes(b"old image")
    (tmp_path / "p.json").mkdir()   # a folder where the profile should go: its rename fails
    done = runner(phone_run, "--artifacts", phone_run.out / "build", "--input", frame, "-o", out,
                  "--profile", tmp_path / "p.json", "--idle-seconds", 0, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge4k_runner:")]
    assert done.returncode == 1 and len(errors) == 1 and "p.json" in errors[0], done.stderr
    assert out.read_bytes() == b"old image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png", "p.json"]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_runner_signals_leave_no_temporaries(phone_run, frame, tmp_path, sig):
    import signal
    import time
    out = tmp_path / "o.png"
    out.write_bytes(b"old image")
    proc = subprocess.Popen([str(phone_run.runner), "--artifacts", str(phone_run.out / "build"), "--input",
                             str(frame), "-o", str(out), "--runs", "50"], stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    proc.send_signal(getattr(signal, sig))
    assert proc.wait(timeout=60) == -getattr(signal, sig)
    assert out.read_bytes() == b"old image" and [p.name for p in tmp_path.iterdir()] == ["o.png"]


@pytest.mark.parametrize("what", ["sidecar", "manifest"])
def test_runner_refuses_json_nested_past_its_limit(phone_run, frame, tmp_path, what):
    """5,000 nested lists overflowed the stack of the JSON printer in an error message (AddressSanitizer:
    stack-overflow in the long fuzz run); they are refused while parsing."""
    deep = '"deep": ' + "[" * 5000 + "]" * 5000 + ", "
    build, sidecar = phone_run.out / "build", frame
    if what == "sidecar":
        sidecar = tmp_path / "f.json"
        sidecar.write_text(frame.read_text().replace('"schema"', deep + '"schema"', 1))
    else:
        build = tmp_path / "build"
        shutil.copytree(phone_run.out / "build", build)
        text = (build / "manifest.json").read_text()
        (build / "manifest.json").write_text(text.replace('"schema"', deep + '"schema"', 1))
    done = runner(phone_run, "--artifacts", build, "--input", sidecar, "-o", tmp_path / "o.png", check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge4k_runner:")]
    assert done.returncode == 1 and len(errors) == 1 and "nests deeper than 64 levels" in errors[0], done.stderr


def test_both_runtimes_refuse_a_manifest_that_agrees_with_itself_but_not_with_the_program(phone_run, frame,
                                                                                          tmp_path):
    """latent_channels 4 and every stage input to match: the manifest is consistent, the program's
    latent has 8 channels. The host's ExecuTorch backend and the runner both read the program's own
    shapes and refuse it in one line."""
    from edge4k.backends.registry import open_build
    from edge4k.errors import Edge4KError
    build = build_with_latent_channels_4(phone_run.out / "build", tmp_path / "build")
    with pytest.raises(Edge4KError, match=r"model.pte: encoder returns \[2, 8, 8, 8\] in the program, but "
                                          r"\[2, 4, 8, 8\] from manifest.json's config and tiling"):
        open_build(build)
    done = runner(phone_run, "--artifacts", build, "--input", frame, "-o", tmp_path / "o.png", check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("edge4k_runner:")]
    assert done.returncode == 1 and len(errors) == 1, done.stderr
    assert "model.pte: encoder output is [2,8,8,8] in the program, but [2,4,8,8] from config.latent_channels" in errors[0]
