"""wearable.fall: an impact followed by lying still raises; walking and recoveries do not."""

from __future__ import annotations

import numpy as np

from sensing.detect.fall import FallDetector
from sensing.wire.messages import Grade

from .support import T0, every, levels, run, simulated

WALK = [1.25, 1.4, 1.55, 1.3, 1.6, 1.2]
LYING = [1.0, 1.02, 0.98, 1.01]


def test_impact_then_lying_still_is_a_critical_fall_that_latches() -> None:
    det = FallDetector()
    values = WALK * 5 + [3.4] + LYING * 10 + WALK * 5
    got = run(det, every(1.0, values), cuts=[31, 35])
    # impact at row 30, still from row 31: 10 s later, at row 41, it is a fall; getting up
    # afterwards does not clear it (a person resolves it)
    assert got == [(41, 1, T0 + 30_000, 3.4)]
    assert det.spec.latching and det.spec.type == "wearable.fall"
    assert det.grade(1) == Grade.CRITICAL
    assert "3.4 g" in det.describe(1, 3.4)
    det.clear(0)
    again = every(1.0, [2.9] + LYING * 4, start=T0 + 600_000)
    assert levels(run(det, again)) == [(11, 1)]


def test_sparse_readings_still_see_the_fall() -> None:
    values = [1.3, 2.8, 1.0, 1.0, 1.0, 1.0]  # one reading every 5 s
    assert levels(run(FallDetector(), every(5.0, values))) == [(4, 1)]


def test_walking_bumps_and_recoveries_raise_nothing() -> None:
    rng = np.random.default_rng(3)
    walking = rng.uniform(1.2, 1.6, 600).round(2).tolist()
    sat_down_hard_then_walked = WALK * 3 + [2.7] + WALK * 20
    stumbled = WALK * 3 + [3.1] + LYING + [1.0] + WALK * 10  # still 5 s, then walks on
    moved_while_down = [3.0] + (LYING * 2 + [1.4]) * 8  # never 10 s still in a row
    still_too_late = [3.0] + WALK * 10 + LYING * 5  # still only after the 60-s window
    for values in (walking, sat_down_hard_then_walked, stumbled, moved_while_down,
                   still_too_late):
        assert run(FallDetector(), every(1.0, values)) == []


def test_a_simulated_day_of_walks_and_rest_raises_nothing() -> None:
    values = simulated("wearable", "accel_g", 24, 5.0, seed=1, day_start_s=0.0)
    assert run(FallDetector(), every(5.0, values)) == []
