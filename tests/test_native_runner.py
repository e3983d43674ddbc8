"""The native runner on this host: its image against the Python executorch backend
on the same build, its profile against the schema, power and thermal read from a
sysfs tree, and its one-line errors."""
import json
import shutil
import subprocess

import numpy as np
import pytest
import tifffile
from PIL import Image

from edge4k.cli import main
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
        out = tmp_path / "o.jpg"
    else:
        (build / "manifest.json").unlink()
    done = runner(phone_run, "--artifacts", build, "--input", sidecar, "-o", out, check=False)
    assert done.returncode == 1
    errors = [l for l in done.stderr.splitlines() if l.startswith("edge4k_runner:")]
    assert len(errors) == 1 and needle in errors[0], done.stderr
    assert not out.exists()


def test_runner_usage_errors_exit_2(phone_run):
    done = runner(phone_run, "--runs", "0", check=False)
    assert done.returncode == 2 and "--runs must be an integer >= 1" in done.stderr


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


def test_bits_and_format_mismatch_is_one_line(phone_run, frame, tmp_path):
    done = runner(phone_run, "--artifacts", phone_run.out / "build", "--input", frame, "-o", tmp_path / "o.ppm",
                  "--bits", "8", check=False)
    assert done.returncode == 1 and done.stderr.strip() == \
        "edge4k_runner: error: .ppm output is 16-bit; use .png for 8 bits"
    assert not (tmp_path / "o.ppm").exists()
