"""The array API for integrators: scores and intervals on a series they bring."""

from __future__ import annotations

import numpy as np
import pytest

from sensing.detect.api import Interval, evaluate
from sensing.wire.messages import Grade

T0 = 1_795_478_819_832


def test_co_series_gives_scores_and_the_alert_interval() -> None:
    ts = T0 + np.arange(0, 600) * 10_000  # every 10 s for 100 min
    co = np.full(600, 2.0)
    co[100:130] = 400.0  # five minutes of 400 ppm
    results = {r.detector: r for r in evaluate(ts, co, kind="smoke", channel="co_ppm")}
    # the CO rule, and the fault checks for impossible and stuck CO values (which stay quiet
    # here: a flat 2 ppm that never showed noise is no frozen sensor)
    assert set(results) == {"smoke-co", "smoke-co_ppm-impossible", "smoke-co_ppm-stuck"}
    assert results["smoke-co_ppm-impossible"].intervals == []
    assert results["smoke-co_ppm-stuck"].intervals == []
    result = results["smoke-co"]
    assert result.type == "smoke.co"
    # EN 50291: 300 ppm needs 30 s and two readings: raised at the 4th reading of the episode
    assert result.intervals == [Interval(int(ts[100]), int(ts[130]), Grade.CRITICAL)]
    assert result.levels[102] == 0 and result.levels[103] == 3 and result.levels[130] == 0
    assert result.scores.shape == co.shape
    assert ((result.scores >= 0) & (result.scores <= 1)).all()
    assert result.scores[110] == 1.0 and result.scores[0] == 0.0


def test_several_detectors_on_one_channel_and_an_open_interval() -> None:
    ts = T0 + np.arange(40) * 5000
    temp = np.concatenate([np.full(20, 21.0), 21.0 + np.arange(1, 21) * 3.0])  # 36 °C/min
    results = {r.detector: r for r in evaluate(ts, temp, kind="smoke", channel="temp_c")}
    assert set(results) >= {"smoke-heat-fixed", "smoke-heat-rate", "smoke-temp_c-stuck"}
    rate = results["smoke-heat-rate"].intervals
    assert len(rate) == 1 and rate[0].end is None and rate[0].grade == Grade.MAJOR
    (fixed,) = results["smoke-heat-fixed"].intervals
    assert fixed.start == int(ts[31])  # 21 + 12 x 3 = 57 °C at the 12th rising reading


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="same length"):
        evaluate([1, 2], [1.0], channel="co_ppm")
    with pytest.raises(ValueError, match="no detector watches 'nope'"):
        evaluate([1], [1.0], channel="nope")
    with pytest.raises(ValueError, match="unknown kind"):
        evaluate([1], [1.0], channel="co_ppm", kind="toaster")


def test_a_fall_on_a_recorded_accelerometer_series() -> None:
    ts = T0 + np.arange(60) * 2000
    accel = np.full(60, 1.3)  # walking
    accel[30] = 3.4  # impact
    accel[31:] = 1.0  # lying still afterwards
    (fall,) = evaluate(ts, accel, kind="wearable", channel="accel_g", detector="wearable-fall")
    assert fall.type == "wearable.fall"
    assert fall.intervals == [Interval(int(ts[30]), None, Grade.CRITICAL)]
    assert fall.scores.max() == 1.0
