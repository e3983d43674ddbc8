"""The Python API (edge4k.render, Renderer, RawFrame): the same image as the CLI, byte for
byte; weights loaded once; in-memory frames; upright output for all 8 EXIF orientations as
LibRaw turns them; tagged PNG and TIFF; small frames; bad input as one clear error."""
import json
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smooth_image

import edge4k
from edge4k.cli import main
from edge4k.datasets.dng import write_dng
from edge4k.datasets.unprocess import unprocess
from edge4k.kernels.postprocess import orient
from edge4k.kernels.raw import write_bayer

TINY = "e4k-t-f16"
SHOT = {"exposure_time": 1 / 250, "iso": 400, "datetime": "2024:05:06 07:08:09"}


def capture(h=48, w=80, cfa="GRBG"):
    """A small capture whose picture is asymmetric (a red block top-left), so a wrong turn shows."""
    img = smooth_image(h, w)
    img[:h // 4, :w // 4] = [1.0, 0.1, 0.1]
    return unprocess(img, cfa=cfa, iso=None, ev=0.0, bits=14, black_level=512, rng=np.random.default_rng(1))


@pytest.fixture(scope="module")
def renderer():
    with edge4k.Renderer(preset=TINY) as r:
        yield r


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    """A 48x80 DNG taken 'sideways' (EXIF Orientation 6) with exposure, ISO and date."""
    return str(write_dng(tmp_path_factory.mktemp("shot") / "shot.dng", capture(), orientation=6, **SHOT))


def camera_model() -> str:
    """The DNG writer's Model tag for capture()'s camera."""
    return f"Synthetic {capture().camera}"


def png_pixels(path) -> np.ndarray:
    """Decode an RGB PNG's pixels by the PNG spec with nothing but zlib, every filter type
    (Pillow reads 16-bit RGB PNG as 8-bit); the chunks' CRCs are checked on the way."""
    data, pos, idat, header = open(path, "rb").read(), 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body, crc = data[pos + 8:pos + 8 + n], struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        assert zlib.crc32(kind + body) == crc, kind
        header = struct.unpack(">IIBB", body[:10]) if kind == b"IHDR" else header
        idat, pos = idat + (body if kind == b"IDAT" else b""), pos + 12 + n
    w, h, depth, colour = header
    assert colour == 2 and depth in (8, 16)
    bpp, stride = 3 * depth // 8, 3 * depth // 8 * w
    raw, prev, rows = zlib.decompress(idat), [0] * stride, []
    for y in range(h):
        kind, line, cur = raw[y * (stride + 1)], raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)], []
        for x in range(stride):
            a, b = cur[x - bpp] if x >= bpp else 0, prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c
            cur.append((line[x] + (0, a, b, (a + b) // 2, paeth)[kind]) & 0xFF)
        rows.append(cur)
        prev = cur
    out = np.array(rows, np.uint8)
    return (out.view(">u2").astype(np.uint16) if depth == 16 else out).reshape(h, w, 3)


# ---- the API and the CLI make the same files ---------------------------------------------

@pytest.mark.parametrize("suffix, bits", [(".png", None), (".tif", None), (".png", 16)])
def test_api_render_equals_the_cli_output_byte_for_byte(tmp_path, shot, renderer, suffix, bits):
    cli_out, api_out = tmp_path / f"cli{suffix}", tmp_path / f"api{suffix}"
    argv = ["run", shot, "-o", str(cli_out), "--preset", TINY, "--look", "neutral"]
    assert main(argv + (["--bits", str(bits)] if bits else [])) == 0
    pixels = renderer.render(shot, look="neutral", bits=bits, output=api_out)
    assert cli_out.read_bytes() == api_out.read_bytes()
    expect_bits = bits or (16 if suffix == ".tif" else 8)
    assert pixels.dtype == (np.uint16 if expect_bits == 16 else np.uint8) and pixels.shape == (80, 48, 3)
    if suffix == ".png":
        np.testing.assert_array_equal(png_pixels(api_out), pixels)
    else:
        import tifffile
        np.testing.assert_array_equal(tifffile.imread(api_out), pixels)
    # the array without a file is the same image, and so is the one-call form
    np.testing.assert_array_equal(renderer.render(shot, look="neutral", bits=expect_bits), pixels)


def test_profile_returns_the_profile_json(tmp_path, renderer, shot):
    prof_path = tmp_path / "p.json"
    profile = renderer.profile(shot, tmp_path / "o.png", runs=2, profile_path=prof_path)
    assert profile == json.loads(prof_path.read_text())
    assert profile["timing"]["runs"] == 2 and profile["model"]["preset"] == TINY
    assert (profile["output"]["width"], profile["output"]["height"]) == (48, 80)   # upright
    assert (profile["input"]["width"], profile["input"]["height"]) == (80, 48)     # the sensor's frame


def test_renderer_loads_the_weights_once_and_renders_the_same(monkeypatch, shot):
    import edge4k.api
    loads = []
    real = edge4k.api.load_for_preset
    monkeypatch.setattr(edge4k.api, "load_for_preset", lambda *a, **k: loads.append(a) or real(*a, **k))
    with edge4k.Renderer(preset=TINY) as r:
        first, second = r.render(shot), r.render(shot)
        results = []
        threads = [threading.Thread(target=lambda: results.append(r.render(shot))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(loads) == 1                              # one load for four renders
    for other in (second, *results):
        np.testing.assert_array_equal(first, other)
    np.testing.assert_array_equal(edge4k.render(shot, preset=TINY), first)
    assert len(loads) == 2                              # the one-call form loads every time
    with pytest.raises(edge4k.Edge4KError, match="closed"):
        r.render(shot)


def test_import_is_light_and_the_api_is_flat():
    code = ("import sys, edge4k; assert 'torch' not in sys.modules, 'torch imported';"
            "assert callable(edge4k.render) and edge4k.RawFrame.__name__ == 'RawFrame';"
            "assert {'render', 'Renderer', 'RawFrame', 'read_raw', 'Edge4KError'} <= set(dir(edge4k))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert issubclass(edge4k.RawInputError, edge4k.Edge4KError) and issubclass(edge4k.BuildMismatch,
                                                                               edge4k.Edge4KError)


# ---- in-memory frames ----------------------------------------------------------------------

def test_an_in_memory_mosaic_renders_like_the_dng_of_it(tmp_path, renderer):
    cap = capture(cfa="BGGR")
    dng = write_dng(tmp_path / "c.dng", cap, orientation=8)
    disk = edge4k.read_raw(dng)
    meta = dict(cfa="BGGR", black_level=disk.black_level, white_level=disk.white_level, wb_gains=disk.wb_gains,
                srgb_from_cam=disk.srgb_from_cam, orientation=8)
    expected = renderer.render(str(dng))
    for frame in (edge4k.RawFrame(bayer=cap.mosaic, **meta),                              # a 2-D array
                  edge4k.RawFrame(bayer=cap.mosaic.astype(np.int32), **meta),             # any integer type
                  edge4k.RawFrame.from_buffer(cap.mosaic.astype("<u2").tobytes(), 80, 48, **meta)):  # bytes
        np.testing.assert_array_equal(renderer.render(frame), expected)
    np.testing.assert_array_equal(renderer.render(dng.read_bytes()), expected)           # the file's bytes
    assert edge4k.read_raw(dng.read_bytes()).exif == disk.exif


def test_frame_facts_reach_the_runner_sidecar(tmp_path, shot):
    frame = edge4k.read_raw(shot)
    assert frame.orientation == 6
    assert frame.exif == {"make": "Edge4K", "model": camera_model(), "iso": 400.0, "exposure_time": pytest.approx(1 / 250),
                          "datetime": SHOT["datetime"]}
    sidecar = json.loads(write_bayer(frame, tmp_path / "frame.json").read_text())
    assert sidecar["orientation"] == 6 and sidecar["exif"] == frame.exif


# ---- upright, as LibRaw turns it -------------------------------------------------------

def test_every_exif_orientation_comes_out_as_libraw_turns_it(tmp_path, renderer):
    import rawpy
    cap = capture()
    upright = None
    for o in range(1, 9):
        path = str(write_dng(tmp_path / f"o{o}.dng", cap, orientation=o))
        assert edge4k.read_raw(path).orientation == o
        with rawpy.imread(path) as raw:                    # rawpy's default user_flip: the file's
            libraw = raw.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=8)
            sensor = raw.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=8, user_flip=0)
        def turn(a, o=o):
            return orient(torch.from_numpy(a).permute(2, 0, 1), o).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(turn(sensor), libraw)   # orient() is LibRaw's turn, exactly
        ours = renderer.render(path, look="neutral")
        upright = ours if o == 1 else upright
        np.testing.assert_array_equal(ours, turn(upright))
        assert ours.shape == libraw.shape
        luma = lambda a: a.astype(np.float64).mean(-1).ravel()  # noqa: E731
        assert np.corrcoef(luma(ours), luma(libraw))[0, 1] > 0.9, o
        # the picture is asymmetric enough that a half turn too many would fail the test above
        assert np.corrcoef(luma(ours), luma(libraw[::-1, ::-1]))[0, 1] < 0.5, o


# ---- tagged outputs ------------------------------------------------------------------------

@pytest.mark.parametrize("suffix, bits", [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16)])
def test_outputs_carry_the_srgb_profile_and_the_capture_exif(tmp_path, renderer, shot, suffix, bits):
    from PIL import Image, ImageCms
    from PIL.ExifTags import IFD, Base
    out = tmp_path / f"o{suffix}"
    pixels = renderer.render(shot, bits=bits, output=out)
    if suffix == ".png":
        with Image.open(out) as im:
            icc, exif = im.info["icc_profile"], im.getexif()
            sub = exif.get_ifd(IFD.Exif)
            assert im.size == (48, 80)
            np.testing.assert_array_equal(np.asarray(im), pixels if bits == 8 else (pixels >> 8).astype(np.uint8))
        tags = {name: exif[Base[name]] for name in ("Make", "Model", "Orientation", "DateTime")}
        tags |= {"ExposureTime": float(sub[Base.ExposureTime]), "ISOSpeedRatings": sub[Base.ISOSpeedRatings],
                 "DateTimeOriginal": sub[Base.DateTimeOriginal]}
        np.testing.assert_array_equal(png_pixels(out), pixels)
    else:
        import tifffile
        with tifffile.TiffFile(out) as tif:
            page = tif.pages.first
            icc = page.tags["InterColorProfile"].value
            tags = {t.name: t.value for t in page.tags.values()}
            np.testing.assert_array_equal(page.asarray(), pixels)
        tags["ExposureTime"] = tags["ExposureTime"][0] / tags["ExposureTime"][1]
    profile = ImageCms.ImageCmsProfile(__import__("io").BytesIO(icc))
    assert "sRGB" in ImageCms.getProfileDescription(profile)
    assert tags["Orientation"] == 1                      # the pixels are upright already
    assert (tags["Make"], tags["Model"]) == ("Edge4K", camera_model())
    assert tags["ExposureTime"] == pytest.approx(1 / 250) and tags["ISOSpeedRatings"] == 400
    assert tags["DateTime"] == tags["DateTimeOriginal"] == SHOT["datetime"]


# ---- defaults that just work ---------------------------------------------------------------

def test_a_frame_smaller_than_the_default_tile_renders(tmp_path, make_dng, capsys):
    small = make_dng(256, 256)
    prof = tmp_path / "p.json"
    assert main(["run", small, "-o", str(tmp_path / "o.png"), "--preset", TINY, "--profile", str(prof)]) == 0
    tiling = json.loads(prof.read_text())["tiling"]
    assert tiling["enabled"] is False and tiling["tiles"] == 1       # one tile for the whole frame
    narrow = edge4k.render(make_dng(64, 704), preset=TINY)              # short side below the tile
    assert narrow.shape == (64, 704, 3)
    r = edge4k.Renderer(preset=TINY)
    plan = r.tiling.plan(r.backend.cfg, 64, 704)
    assert not plan.native and plan.tile_height == 64 and plan.overlap == 32 and plan.num_tiles > 1


def test_compiling_for_a_small_resolution_fits_the_default_tiling_too():
    from edge4k.cli import parse_args
    from edge4k.cli.compile import compile_request_of
    from edge4k.models import get_preset
    argv = ["compile", "--target", "host-xnnpack", "--resolution", "256x256", "-o", "b", "--preset", TINY]
    spec = compile_request_of(parse_args(argv), "host-xnnpack", "fp32").spec()[2]
    assert spec.native                                                   # one tile, as `edge4k run` renders it
    spec = compile_request_of(parse_args([*argv, "--tile", "512"]), "host-xnnpack", "fp32").spec()[2]
    with pytest.raises(edge4k.Edge4KError, match="smaller than one 512x512 tile"):
        spec.plan(get_preset(TINY))


def test_a_build_refuses_a_frame_smaller_than_its_tile_saying_what_to_change():
    from edge4k.models import get_preset
    from edge4k.runtime.pipeline import TileOptions
    opts = TileOptions(tile=512, overlap=64, compiled=True)
    with pytest.raises(edge4k.BuildMismatch, match=r"smaller than this build's 512x512 tile.*--native --resolution"):
        opts.plan(get_preset(TINY), 256, 256)


# ---- bad input: one clear error, no file ---------------------------------------------------

GOOD = dict(cfa="RGGB", black_level=64, white_level=1023, wb_gains=(2.0, 1.0, 1.5), srgb_from_cam=np.eye(3))
BAD_FRAMES = [
    (lambda: edge4k.RawFrame.from_buffer(bytes(2 * 48 * 80), 80, 40, **GOOD), "holds 3840 samples"),
    (lambda: edge4k.RawFrame.from_buffer(bytes(7), 2, 2, **GOOD), "even number of bytes"),
    (lambda: edge4k.RawFrame(bayer=np.zeros((48, 80), np.uint16), **{**GOOD, "cfa": "RGBG"}), "unknown CFA"),
    (lambda: edge4k.RawFrame(bayer=np.zeros((47, 80), np.uint16), **GOOD), "odd frame size 80x47"),
    (lambda: edge4k.RawFrame(bayer=np.zeros((48, 80), np.uint16), **{**GOOD, "white_level": 64}), "not above black"),
    (lambda: edge4k.RawFrame(bayer=np.zeros((48, 80)), **GOOD), "integers in 0..65535"),
    (lambda: edge4k.RawFrame(bayer=np.full((48, 80), -1), **GOOD), "integers in 0..65535"),
    (lambda: edge4k.RawFrame(bayer=np.zeros(80, np.uint16), **GOOD), "2-D"),
    (lambda: edge4k.RawFrame(bayer=np.zeros((48, 80), np.uint16), **{**GOOD, "wb_gains": (1, 0, 1)}), "wb_gains"),
    (lambda: edge4k.RawFrame(bayer=np.zeros((48, 80), np.uint16), **{**GOOD, "orientation": 9}), "orientation"),
    (lambda: edge4k.RawFrame(bayer=np.zeros((48, 80), np.uint16), **{**GOOD, "exif": {"lens": "x"}}), "exif"),
]


@pytest.mark.parametrize("case", range(len(BAD_FRAMES)))
def test_inconsistent_frames_are_refused_in_one_line(case):
    make, needle = BAD_FRAMES[case]
    with pytest.raises(edge4k.RawInputError, match=needle) as e:
        make()
    assert "\n" not in str(e.value)


def test_bad_input_through_the_api_leaves_no_file(tmp_path, renderer, shot):
    from edge4k.runtime.manifest import MANIFEST
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "o.png"
    cases = [
        (lambda: renderer.render(b"not a raw file" * 50, output=out), edge4k.RawInputError, "cannot read RAW data"),
        (lambda: renderer.render(tmp_path / "nope.dng", output=out), edge4k.RawInputError, "not found"),
        (lambda: renderer.render(shot, output=tmp_path / "o.webp"), edge4k.Edge4KError, "unsupported output format"),
        (lambda: renderer.render(shot, bits=12), edge4k.Edge4KError, "bits must be 8, 16 or 32"),
        (lambda: renderer.render(shot, look="vivid", output=out), edge4k.Edge4KError, "unknown look"),
        (lambda: edge4k.Renderer(preset="e4k-huge"), edge4k.Edge4KError, "unknown preset"),
        (lambda: edge4k.Renderer(backend="tensorrt"), edge4k.Edge4KError, "unknown backend"),
        (lambda: edge4k.Renderer(tile=0), edge4k.Edge4KError, "tile must be >= 1"),
    ]
    build = tmp_path / "build"
    build.mkdir()
    seed = Path(__file__).parent / "fuzz" / "corpus" / "manifest" / "tiny-tiled-fp32.json"   # a valid manifest
    (build / MANIFEST).write_text(seed.read_text())
    cases.append((lambda: edge4k.Renderer(backend="executorch", artifacts=build, preset="e4k-s-f16"),
                  edge4k.BuildMismatch, "holds preset e4k-t-f16, not e4k-s-f16"))
    for make, kind, needle in cases:
        with pytest.raises(kind, match=needle) as e:
            make()
        assert "\n" not in str(e.value), needle
    assert not list((tmp_path / "out").iterdir()) and not (tmp_path / "o.webp").exists()


def test_every_default_tiling_is_the_pipelines():
    from edge4k import api
    from edge4k.backends.base import BuildSpec
    from edge4k.kernels.tiling import DEFAULT_OVERLAP, DEFAULT_TILE
    from edge4k.runtime.pipeline import TileOptions
    default = (TileOptions().tile, TileOptions().overlap)
    assert (DEFAULT_TILE, DEFAULT_OVERLAP) == default == (512, 32)
    opts = api.tile_options()
    assert (opts.tile, opts.overlap, opts.fit) == (*default, True)
    spec = BuildSpec(target="host-xnnpack", preset="e4k-s-f16", width=3840, height=2160)
    assert (spec.tile, spec.overlap) == default
