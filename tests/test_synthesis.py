"""RAW synthesis (calibration.unprocess): the conditions it draws, and the physics it applies."""
import json

import numpy as np
import pytest
from conftest import smooth_image

from edge4k.datasets.unprocess import BLACK_LEVELS, EV_RANGE, ISO_RANGE, CaptureParams, draw_params, synthesize, unprocess
from edge4k.kernels.colour import HELD_OUT_CAMERAS, camera_matrix, camera_names, camera_neutral, xyz_white
from edge4k.kernels.raw import RawFrame, pack_linear


@pytest.fixture(scope="module")
def drawn():
    rng = np.random.default_rng(11)
    return [draw_params(rng) for _ in range(600)]


def test_training_draws_cover_real_cameras_light_exposure_and_iso(drawn):
    assert len(camera_names("train")) >= 40 and len(camera_names("held-out")) >= 10
    assert not {p.camera for p in drawn} & set(HELD_OUT_CAMERAS)        # held-out cameras never train
    assert len({p.camera for p in drawn}) >= 40
    gains = np.array([1 / np.asarray(p.as_shot_neutral) for p in drawn])
    # The spread real cameras show (issue 14): R about 1.1-3.2, B about 1.1-3.6, from physics.
    assert np.percentile(gains[:, 0], 3) < 1.3 and np.percentile(gains[:, 0], 97) > 2.8
    assert np.percentile(gains[:, 2], 3) < 1.3 and np.percentile(gains[:, 2], 97) > 3.0
    evs = np.array([p.ev for p in drawn])
    assert EV_RANGE[0] <= evs.min() < -2.5 and 1.2 < evs.max() <= EV_RANGE[1]
    isos = np.array([p.iso for p in drawn])
    assert ISO_RANGE[0] <= isos.min() < 80 and 8000 < isos.max() <= ISO_RANGE[1]
    assert abs(np.median(np.log(isos)) - np.mean(np.log(ISO_RANGE))) < 0.4   # log-uniform
    assert {p.bits for p in drawn} == {10, 12, 14}
    assert all(p.black_level in BLACK_LEVELS[p.bits] and p.white_level == (1 << p.bits) - 1 for p in drawn)
    assert max(p.black_level for p in drawn) == 2048
    kinds = {p.illuminant if p.cct is not None else "fluorescent" for p in drawn}
    assert kinds == {"daylight", "planckian", "fluorescent"}
    assert {p.cfa for p in drawn} == {"RGGB", "BGGR", "GRBG", "GBRG"}


def test_the_record_is_complete_and_replays_exactly(drawn):
    params = drawn[0]
    again = CaptureParams(**json.loads(json.dumps(params.to_dict())))
    img = smooth_image(32, 48)
    a = synthesize(img, params, np.random.default_rng(1))
    b = synthesize(img, again, np.random.default_rng(1))
    np.testing.assert_array_equal(a.mosaic, b.mosaic)
    assert a.params is params and a.camera == params.camera and a.cfa == params.cfa


def test_the_neutral_follows_from_camera_and_illuminant():
    m = camera_matrix("Canon EOS 5D Mark II")
    p = draw_params(np.random.default_rng(0), camera="Canon EOS 5D Mark II", illuminant=2856.0, jitter=False)
    n = m @ xyz_white(p.illuminant_xy)
    np.testing.assert_allclose(p.as_shot_neutral, n / n[1])
    tungsten, daylight = camera_neutral(m, p.illuminant_xy), camera_neutral(m, (0.3127, 0.3290))
    assert tungsten[0] > daylight[0] and tungsten[2] < daylight[2]     # warm light: more red, less blue


def test_a_white_field_is_white_and_neutral_after_white_balance():
    # Whatever the camera and light, a white surface white-balances to equal channels.
    for illuminant in (2500.0, "FL11", 9000.0):
        cap = unprocess(np.full((32, 32, 3), 0.7), iso=None, ev=0.0, illuminant=illuminant,
                        rng=np.random.default_rng(2))
        packed = pack_linear(RawFrame.from_capture(cap))
        means = [packed[c].mean() for c in range(4)]
        np.testing.assert_allclose(means, means[0], rtol=2e-3)


def test_highlights_clip_per_channel_before_white_balance_and_come_out_white():
    # A warm bright field 3 EV over: the red sensor channel clips first. Clipped pixels must read as
    # the white level in the mosaic, and the frontend (min gain 1, clip after the gains) turns a pixel
    # clipped in every channel into white, never a tint.
    img = np.full((32, 32, 3), [0.9, 0.7, 0.5])
    cap = unprocess(img, iso=None, ev=3.0, illuminant=2856.0, rng=np.random.default_rng(4))
    assert cap.clean.max() == 1.0 and (cap.mosaic == cap.white_level).any()
    assert np.all(cap.mosaic <= cap.white_level)
    over = unprocess(img, iso=None, ev=6.0, illuminant=2856.0, rng=np.random.default_rng(4))
    assert np.all(over.clean == 1.0)
    np.testing.assert_array_equal(pack_linear(RawFrame.from_capture(over)), 1.0)


def test_noise_follows_the_model_and_is_recorded():
    img = np.full((128, 128, 3), 0.6)
    params = draw_params(np.random.default_rng(5), iso=3200, ev=0.0, cfa="RGGB", bits=14, black_level=1024)
    noisy = synthesize(img, params, np.random.default_rng(6))
    clean = synthesize(img, draw_params(np.random.default_rng(5), iso=None, ev=0.0, cfa="RGGB", bits=14,
                                        black_level=1024), np.random.default_rng(6))
    span = params.white_level - params.black_level
    green = np.tile(np.array([[0, 1], [1, 0]], bool), (64, 64))
    x = (clean.mosaic[green].astype(np.float64) - params.black_level) / span
    y = (noisy.mosaic[green].astype(np.float64) - params.black_level) / span
    assert np.ptp(x) < 1e-3                                            # noise-free: flat
    expected = params.shot * x.mean() + params.read + params.row ** 2
    assert y.var() == pytest.approx(expected, rel=0.15)
    assert y.mean() == pytest.approx(x.mean(), abs=2e-3)
    assert params.iso == 3200 and params.shot > 0 and params.read > 0


@pytest.mark.parametrize("bits", [10, 12, 14])
def test_quantisation_and_black_level(bits):
    black = BLACK_LEVELS[bits][-1]
    cap = unprocess(smooth_image(32, 32), iso=6400, bits=bits, black_level=black, ev=-2.0,
                    rng=np.random.default_rng(bits))
    assert cap.black_level == black and cap.white_level == (1 << bits) - 1
    assert cap.mosaic.max() <= cap.white_level and cap.mosaic.min() < black + 50   # noise dips below black
