"""Colour maths: illuminant chromaticities and adaptation against colour-science, the camera table
against the LibRaw it was read from, the sRGB curve."""
import json
from importlib import resources

import numpy as np
import pytest

from edge4k.datasets import cameras as cameras_module
from edge4k.kernels.colour import (
    D65_XY,
    FLUORESCENT_XY,
    HELD_OUT_CAMERAS,
    XYZ_FROM_SRGB,
    adaptation,
    cam_from_srgb,
    camera_names,
    camera_neutral,
    camera_table,
    daylight_xy,
    inverse_smoothstep,
    planckian_xy,
    smoothstep,
    srgb_decode,
    srgb_encode,
    srgb_from_cam,
    xyz_white,
)

colour = pytest.importorskip("colour")


@pytest.mark.parametrize("cct", [4000, 5003, 6504, 7000, 7500, 9000, 15000])
def test_daylight_locus_matches_colour_science(cct):
    np.testing.assert_allclose(daylight_xy(cct), colour.temperature.CCT_to_xy_CIE_D(cct), atol=2e-5)


@pytest.mark.parametrize("cct", [1800, 2500, 2856, 3200, 4000, 5500, 9000])
def test_planckian_locus_matches_colour_science(cct):
    np.testing.assert_allclose(planckian_xy(cct), colour.temperature.CCT_to_xy_Kang2002(cct), atol=2e-5)


def test_fluorescent_and_d65_chromaticities_match_colour_science():
    table = colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]
    for name, xy in FLUORESCENT_XY.items():
        np.testing.assert_allclose(xy, table[name], atol=1.5e-4)
    np.testing.assert_allclose(D65_XY, table["D65"], atol=1e-4)
    with pytest.raises(ValueError, match="4000-25000"):
        daylight_xy(3000)


def test_bradford_adaptation_matches_colour_science_and_maps_white_to_white():
    a = adaptation(D65_XY, planckian_xy(2856))
    expected = colour.adaptation.matrix_chromatic_adaptation_VonKries(
        xyz_white(D65_XY), xyz_white(planckian_xy(2856)), transform="Bradford")
    np.testing.assert_allclose(a, expected, atol=1e-6)
    np.testing.assert_allclose(a @ xyz_white(D65_XY), xyz_white(planckian_xy(2856)), atol=1e-12)


def test_camera_table_is_what_libraw_says():
    pytest.importorskip("rawpy")
    table = camera_table()
    assert len(table) >= 40 and any(c["phone"] for c in table.values())
    for make, model, _ in cameras_module.CAMERAS:
        np.testing.assert_allclose(cameras_module.libraw_matrix(make, model), table[f"{make} {model}"]["xyz_to_cam"],
                                   atol=1e-4)
    source = json.loads(resources.files("edge4k.kernels").joinpath("cameras.json").read_text())["source"]
    assert "LibRaw" in source


def test_white_balanced_camera_space_maps_white_to_white():
    for entry in list(camera_table().values())[:10]:
        m = np.array(entry["xyz_to_cam"])
        np.testing.assert_allclose(cam_from_srgb(m) @ np.ones(3), 1.0, atol=1e-12)
        np.testing.assert_allclose(srgb_from_cam(m) @ cam_from_srgb(m), np.eye(3), atol=1e-9)
    np.testing.assert_allclose(XYZ_FROM_SRGB @ np.ones(3), xyz_white(D65_XY), atol=2e-3)


def test_srgb_curve_matches_colour_science():
    x = np.concatenate([np.linspace(0, 0.05, 101), np.linspace(0, 1, 257)])   # both segments of each curve
    np.testing.assert_allclose(srgb_encode(x), colour.models.eotf_inverse_sRGB(x), atol=1e-12)
    np.testing.assert_allclose(srgb_decode(x), colour.models.eotf_sRGB(x), atol=1e-12)
    np.testing.assert_allclose(srgb_decode(srgb_encode(x)), x, atol=1e-12)


def test_camera_splits_partition_the_table():
    train, held_out, everything = camera_names("train"), camera_names("held-out"), camera_names("all")
    assert everything == sorted(camera_table()) and held_out == sorted(HELD_OUT_CAMERAS)
    assert set(held_out) <= set(everything) and not set(train) & set(held_out)
    assert sorted(train + held_out) == everything and len(train) > len(held_out) > 0
    with pytest.raises(ValueError, match="unknown camera split 'test'"):
        camera_names("test")


def test_camera_neutral_is_the_illuminant_white_in_camera_rgb():
    matrix = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]])
    x, y = D65_XY
    np.testing.assert_allclose(camera_neutral(matrix, D65_XY), [2 * x / y, 1.0, 0.5 * (1 - x - y) / y], rtol=1e-12)


def test_smoothstep_tone_curve_and_its_inverse():
    x = np.linspace(0, 1, 101)
    np.testing.assert_allclose(smoothstep(x), x * x * (3 - 2 * x), atol=1e-15)
    np.testing.assert_allclose(smoothstep([-0.5, 0.25, 1.5]), [0.0, 0.15625, 1.0])   # clipped to [0, 1]
    np.testing.assert_allclose(inverse_smoothstep(smoothstep(x)), x, atol=1e-9)
    np.testing.assert_allclose(inverse_smoothstep([0.15625, 0.5]), [0.25, 0.5], atol=1e-12)
