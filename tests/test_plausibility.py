"""Calibrated verdicts: reference distributions, percentiles and flags, per-patch surprise, checkpoint round trip."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from worldsim import WorldModel
from worldsim.errors import CheckpointError
from worldsim.plausibility import META_KEY, Calibration, calibrate, hottest_patch, judge, surprise_z


def reference(tokens: int = 4, percentile: float = 90.0) -> Calibration:
    ramp = np.arange(100, dtype=np.float64)  # percentile of v is v + 1 for v in 0…99
    return Calibration(first=ramp + 1000, next=ramp, next_no_actions=ramp + 10,
                       token_mean=np.arange(tokens, dtype=float), token_std=np.full(tokens, 2.0),
                       percentile=percentile, source="test")


def test_judge_places_frames_in_their_reference() -> None:
    cal = reference()
    v = judge(np.array([1050.0, 5.0, 89.0, 95.0, 200.0]), cal, with_actions=True)
    np.testing.assert_allclose(v.percentile, [51, 6, 90, 96, 100])  # frame 0 against `first`, the rest `next`
    np.testing.assert_allclose(v.threshold_bits_per_dim, [1089.1, 89.1, 89.1, 89.1, 89.1])
    assert v.implausible.tolist() == [False, False, False, True, True]
    np.testing.assert_allclose(v.z_score[1], (5 - 49.5) / np.arange(100).std())
    free = judge(np.array([0.0, 95.0]), cal, with_actions=False)  # scored without actions: its own reference
    assert free.percentile[1] == 86 and not free.implausible[1]


def test_batched_verdicts_judge_each_clip_on_its_own() -> None:
    v = judge(np.array([[1000.0, 99.5], [1099.5, 0.0]]), reference(), with_actions=True)
    assert v.implausible.tolist() == [[False, True], [True, False]]


def test_surprise_is_standardised_per_token_position() -> None:
    token_log_prob = -np.array([[0.0, 1.0, 6.0, 3.0]])
    np.testing.assert_allclose(surprise_z(token_log_prob, reference()), [[0.0, 0.0, 2.0, 0.0]])
    np.testing.assert_allclose(surprise_z(token_log_prob, None), [[0.0, 1.0, 6.0, 3.0]])  # raw nats


def test_hottest_patch_is_the_centre_of_the_hottest_token() -> None:
    grid = np.zeros((4, 4))
    grid[1, 3] = 5.0
    assert hottest_patch(grid, 64, 64) == (55.5, 23.5)  # column 3 → x 48…63, row 1 → y 16…31


def test_calibration_round_trips_through_meta() -> None:
    cal = reference()
    back = Calibration.from_meta(cal.to_meta(), tokens=4)
    np.testing.assert_allclose(back.next, cal.next)
    np.testing.assert_allclose(back.token_std, cal.token_std)
    assert back.percentile == 90.0 and back.source == "test"


def test_a_malformed_calibration_is_a_named_error() -> None:
    meta = reference().to_meta()
    with pytest.raises(CheckpointError, match="'calibration' is malformed.*recalibrate"):
        Calibration.from_meta({k: v for k, v in meta.items() if k != "next"}, tokens=4)
    with pytest.raises(CheckpointError, match="does not fit this model.*4 tokens per frame"):
        Calibration.from_meta({**meta, "token_mean": [0.0] * 3}, tokens=4)
    with pytest.raises(CheckpointError, match="percentile 100.0"):
        Calibration.from_meta({**meta, "percentile": 100}, tokens=4)


@pytest.fixture(scope="module")
def calibrated(tiny: WorldModel, squares) -> tuple[WorldModel, Calibration]:
    clips, actions = squares
    cal = calibrate(tiny, list(clips), actions, percentile=95.0, source="squares", batch=4)
    wm = WorldModel(tiny.net, meta={**copy.deepcopy(tiny.meta), META_KEY: cal.to_meta()})
    return wm, cal


def test_calibrate_collects_every_real_frame(calibrated, squares) -> None:
    _, cal = calibrated
    clips, _ = squares
    n, t = clips.shape[:2]
    assert len(cal.first) == n and len(cal.next) == len(cal.next_no_actions) == n * (t - 1)
    assert np.all(np.diff(cal.next) >= 0) and cal.token_mean.shape == (16,) and np.all(cal.token_std > 0)


def test_score_gives_verdicts_and_surprise_maps_when_calibrated(calibrated, squares) -> None:
    wm, _ = calibrated
    cal = wm.calibration  # as stored in meta (rounded): clip 0 is in the reference, so ties matter
    clips, actions = squares
    r = wm.score(clips[0], actions=actions[0])
    assert r.verdict is not None and r.surprise_unit == "z" and r.surprise.shape == (6, 4, 4)
    np.testing.assert_allclose(r.verdict.percentile, judge(r.bits_per_dim, cal, True).percentile)
    np.testing.assert_allclose(r.surprise.reshape(6, 16), surprise_z(r.token_log_prob, cal), rtol=1e-6)
    batch = wm.score(clips[:2], actions=actions[:2])
    np.testing.assert_allclose(batch.verdict.z_score[0], r.verdict.z_score, rtol=1e-5)
    assert batch.surprise.shape == (2, 6, 4, 4)
    again = wm.score(clips[0], actions=actions[0])  # deterministic: the same clip, the same numbers
    np.testing.assert_array_equal(again.surprise, r.surprise)
    np.testing.assert_array_equal(again.verdict.percentile, r.verdict.percentile)


def test_an_uncalibrated_model_reports_raw_surprise_and_no_verdict(tiny: WorldModel, squares) -> None:
    clips, actions = squares
    r = tiny.score(clips[0], actions=actions[0])
    assert r.verdict is None and r.surprise_unit == "nats"
    np.testing.assert_allclose(r.surprise.reshape(6, 16), -r.token_log_prob)


def test_calibration_needs_real_clips(tiny: WorldModel, squares) -> None:
    clips, actions = squares
    with pytest.raises(ValueError, match="at least 2 real clips, got 1"):
        calibrate(tiny, list(clips[:1]), actions[:1])
