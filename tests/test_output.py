"""What `edge4k run` writes: output colour spaces with their ICC profiles, the formats (PNG,
TIFF, JPEG), the half-size preview and the embedded thumbnail. The reference values come from
colour-science and LittleCMS (through Pillow's ImageCms), never from the code under test."""
import io

import numpy as np
import pytest
from PIL import Image, ImageCms

import edge4k
from edge4k.cli import main
from edge4k.kernels.colourspace import OUTPUT_SPACES, icc_profile

colour = pytest.importorskip("colour")

TINY = "e4k-t-f16"
# our space -> (colour-science's colourspace, its encoding curve as the file uses it: decoding x -> linear)
REFERENCE = {"srgb": ("sRGB", colour.models.eotf_sRGB),
             "display-p3": ("Display P3", colour.models.eotf_sRGB),
             "adobe-rgb": ("Adobe RGB (1998)", lambda x: x ** (563 / 256)),
             "prophoto": ("ProPhoto RGB", lambda x: x ** (461 / 256)),   # 1.8 as an ICC curv stores it
             "rec2020-linear": ("ITU-R BT.2020", lambda x: x)}
ICC_D50 = np.array([0.9642, 1.0, 0.8249])


def profile_of(data: bytes) -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(io.BytesIO(data))


@pytest.fixture(scope="module")
def renderer():
    with edge4k.Renderer(preset=TINY) as r:
        yield r


@pytest.mark.parametrize("name", list(OUTPUT_SPACES))
def test_each_spaces_icc_profile_has_its_primaries_and_curve(name):
    space, decode = REFERENCE[name]
    ref = colour.RGB_COLOURSPACES[space]
    p = profile_of(icc_profile(name))
    assert p.profile.is_matrix_shaper and p.profile.connection_space.strip() == "XYZ"
    # the colorants are the primaries adapted to D50 (Bradford): undo that, compare chromaticities
    back = colour.adaptation.matrix_chromatic_adaptation_VonKries(ICC_D50, colour.xy_to_XYZ(ref.whitepoint),
                                                                   "Bradford")
    for i, attr in enumerate(("red_colorant", "green_colorant", "blue_colorant")):
        xyz = back @ np.array(getattr(p.profile, attr)[0])
        np.testing.assert_allclose(colour.XYZ_to_xy(xyz), ref.primaries[i], atol=5e-4, err_msg=attr)
    # LittleCMS converts through the embedded profile to D50 Lab (colours inside 8-bit Lab's a, b range)
    lab = ImageCms.createProfile("LAB", 5000)
    transform = ImageCms.buildTransform(p, lab, "RGB", "LAB", renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    for rgb in ((150, 40, 40), (40, 150, 60), (128, 128, 128), (40, 90, 200), (255, 255, 255)):
        got = np.array(ImageCms.applyTransform(Image.new("RGB", (1, 1), rgb), transform).getpixel((0, 0)), float)
        got = np.array([got[0] * 100 / 255, got[1] - 128, got[2] - 128])
        linear = decode(np.array(rgb) / 255)
        xyz = colour.chromatic_adaptation(colour.RGB_to_XYZ(linear, ref, None), colour.xy_to_XYZ(ref.whitepoint),
                                          ICC_D50, method="Von Kries", transform="Bradford")
        want = colour.XYZ_to_Lab(xyz, colour.XYZ_to_xy(ICC_D50))
        np.testing.assert_allclose(got, want, atol=1.6, err_msg=f"{name} {rgb}")   # 8-bit Lab steps


@pytest.mark.parametrize("name, bits", [("display-p3", 16), ("adobe-rgb", 16), ("prophoto", 16),
                                        ("rec2020-linear", 32)])
def test_pixels_are_the_srgb_colours_in_the_spaces_primaries_and_curve(tmp_path, renderer, make_dng, name, bits):
    space, decode = REFERENCE[name]
    dng = make_dng(64, 96)
    srgb = renderer.render(dng, look="neutral", bits=16, half_size=True) / 65535.0
    out = tmp_path / f"o.{'png' if bits == 16 else 'tif'}"
    pixels = renderer.render(dng, look="neutral", bits=bits, half_size=True, output=out, output_space=name)
    target = pixels / (65535.0 if bits == 16 else 1.0)
    linear = colour.models.eotf_sRGB(srgb)
    want = colour.RGB_to_RGB(linear, colour.RGB_COLOURSPACES["sRGB"], colour.RGB_COLOURSPACES[space],
                             chromatic_adaptation_transform="Bradford")
    inside = np.all((linear > 0.02) & (linear < 0.98), axis=-1) & np.all((want > 0.02) & (want < 0.98), axis=-1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(decode(target[inside]), want[inside], atol=2e-3)
    if out.suffix == ".png":   # the file says which space it is in, and names it in its iCCP chunk
        with Image.open(out) as im:
            embedded = im.info["icc_profile"]
        data = out.read_bytes()
        at = data.index(b"iCCP") + 4
        assert data[at:data.index(b"\0", at)].decode("latin-1") == OUTPUT_SPACES[name].description
    else:
        import tifffile
        with tifffile.TiffFile(out) as tif:
            embedded = tif.pages.first.tags["InterColorProfile"].value
    assert embedded == icc_profile(name)


def test_the_wide_space_keeps_colours_srgb_clips(tmp_path, renderer):
    """A saturated green beyond sRGB: clipped in sRGB, inside Display P3 (a camera whose RGB is P3's)."""
    srgb_from_p3 = colour.matrix_RGB_to_RGB(colour.RGB_COLOURSPACES["Display P3"], colour.RGB_COLOURSPACES["sRGB"])
    assert (srgb_from_p3 @ [0.05, 0.8, 0.05]).min() < -0.05          # out of sRGB's gamut
    bayer = np.zeros((32, 32), np.uint16)
    bayer[0::2, 0::2], bayer[0::2, 1::2], bayer[1::2, 0::2], bayer[1::2, 1::2] = 500, 8000, 8000, 500
    frame = edge4k.RawFrame(bayer=bayer, cfa="RGGB", black_level=0, white_level=10000, wb_gains=(1, 1, 1),
                            srgb_from_cam=srgb_from_p3)
    srgb = renderer.render(frame, look="neutral", bits=16, half_size=True) / 65535
    p3 = renderer.render(frame, look="neutral", bits=16, half_size=True, output_space="display-p3") / 65535
    assert srgb[..., 0].max() == 0                                     # sRGB clipped the red channel
    np.testing.assert_allclose(colour.models.eotf_sRGB(p3), np.broadcast_to([0.05, 0.8, 0.05], p3.shape), atol=2e-3)


def test_formats_carry_icc_and_exif_and_refuse_what_they_cannot_hold(tmp_path, renderer, make_dng, capsys):
    import tifffile
    dng = make_dng(64, 96, exposure_time=1 / 100, iso=800)
    small, big = tmp_path / "q20.jpg", tmp_path / "q95.jpg"
    pixels = renderer.render(dng, output=big, output_space="adobe-rgb")
    renderer.render(dng, output=small, quality=20, output_space="adobe-rgb")
    assert small.stat().st_size < big.stat().st_size
    with Image.open(big) as im:
        assert im.format == "JPEG" and im.info["icc_profile"] == icc_profile("adobe-rgb")
        exif = im.getexif()
        from PIL.ExifTags import IFD, Base
        assert exif[Base.Orientation] == 1 and exif[Base.Make] == "Edge4K"
        assert exif.get_ifd(IFD.Exif)[Base.ISOSpeedRatings] == 800
        assert np.abs(np.asarray(im).astype(int) - pixels).mean() < 3          # JPEG is lossy, not wrong
        assert im.layer[0][1:3] == im.layer[1][1:3] == (1, 1)                   # 4:4:4 at quality 95
    out = tmp_path / "f.tif"
    renderer.render(dng, output=out, bits=32, output_space="rec2020-linear")
    with tifffile.TiffFile(out) as tif:
        page = tif.pages.first
        assert page.dtype == np.float32 and page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert page.tags["InterColorProfile"].value == icc_profile("rec2020-linear")
    for argv, needle in (
            (["-o", str(tmp_path / "x.jpg"), "--output-space", "rec2020-linear"], "needs a 16-bit or float"),
            (["-o", str(tmp_path / "x.png"), "--output-space", "prophoto"], "needs a 16-bit or float"),
            (["-o", str(tmp_path / "x.png"), "--quality", "80"], "--quality is for JPEG"),
            (["-o", str(tmp_path / "x.jpg"), "--quality", "0"], "1-100"),
            (["-o", str(tmp_path / "x.jpg"), "--bits", "16"], ".jpg holds 8-bit"),
            (["-o", str(tmp_path / "x.png"), "--bits", "32"], ".png holds 8 or 16-bit")):
        capsys.readouterr()
        assert main(["run", dng, "--preset", TINY, *argv]) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (argv, err)
    assert not list(tmp_path.glob("x.*"))


def test_half_size_is_each_cell_one_pixel_like_librawss_half_size(renderer, make_dng):
    import rawpy
    dng = make_dng(128, 192)
    ours = renderer.render(dng, look="neutral", half_size=True)
    with rawpy.imread(dng) as raw:
        libraw = raw.postprocess(half_size=True, use_camera_wb=True, no_auto_bright=True, output_bps=8,
                                 gamma=(2.4, 12.92), output_color=rawpy.ColorSpace.sRGB)
    assert ours.shape == libraw.shape == (64, 96, 3)
    diff = np.abs(ours.astype(int) - libraw.astype(int))
    assert diff.mean() < 2.0 and np.percentile(diff, 99) <= 6, (diff.mean(), np.percentile(diff, 99))
    natural = renderer.render(dng, half_size=True)   # the natural look's tone curve applies too
    assert np.abs(natural.astype(int) - ours).mean() > 2


@pytest.mark.parametrize("scale", [(3, 2), (1, 2)])
def test_non_square_pixels_come_out_square_as_librawss(renderer, make_dng, tmp_path, scale):
    """A DNG whose DefaultScale makes its pixels 3:2 (or 1:2): the half-size preview and the full
    render are stretched to LibRaw's sizes, the preview's pixels are LibRaw's, and the profile
    records the aspect."""
    import rawpy

    from edge4k.datasets.dng import _RATIONAL, _rationals
    dng = make_dng(64, 96, extra_tags=((50718, _RATIONAL, 2, _rationals(list(scale), 1000, False), True),))
    ours = renderer.render(dng, look="neutral", half_size=True)
    with rawpy.imread(dng) as raw:
        libraw = raw.postprocess(half_size=True, use_camera_wb=True, no_auto_bright=True, output_bps=8,
                                 gamma=(2.4, 12.92), output_color=rawpy.ColorSpace.sRGB)
        full_size = raw.postprocess().shape
    assert ours.shape == libraw.shape == {(3, 2): (32, 72, 3), (1, 2): (64, 48, 3)}[scale]
    # LibRaw samples its stretch a fraction of a pixel off ours (kernels.postprocess.stretch): about
    # 2.4 levels apart for 3:2, 1.5 for 1:2; our image shifted by one pixel is 4 to 8 levels off
    diff = np.abs(ours.astype(int) - libraw.astype(int))
    assert diff.mean() < 3.0, diff.mean()
    assert renderer.render(dng).shape == full_size
    profile = renderer.profile(dng, tmp_path / "o.png", profile_path=tmp_path / "o.json")
    assert profile["input"]["pixel_aspect"] == scale[0] / scale[1]
    assert (profile["output"]["height"], profile["output"]["width"], 3) == full_size


def test_thumb_extracts_the_embedded_preview_or_says_there_is_none(tmp_path, sample_dng, capsys):
    import shutil

    import tifffile
    dng = tmp_path / "with_preview.dng"
    shutil.copy(sample_dng, dng)
    preview = np.zeros((60, 80, 3), np.uint8)
    preview[:, :40] = (200, 30, 10)
    tifffile.imwrite(dng, preview, append=True, photometric="rgb", subfiletype=1)   # a DNG's preview IFD
    out = tmp_path / "thumb.jpg"
    assert main(["thumb", str(dng), "-o", str(out)]) == 0
    with Image.open(out) as im:
        got = np.asarray(im.convert("RGB")).astype(int)
    assert got.shape == (60, 80, 3) and np.abs(got[:, :30] - (200, 30, 10)).max() < 12 and got[:, 50:].max() < 12
    assert main(["thumb", str(dng), "-o", str(tmp_path / "t.png")]) == 0
    capsys.readouterr()
    assert main(["thumb", sample_dng, "-o", str(tmp_path / "none.jpg")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edge4k: error: {sample_dng}: the file has no embedded preview"]
    assert not (tmp_path / "none.jpg").exists()
