"""device.fault: impossible values, stuck sensors and drift; what must and must not raise."""

from __future__ import annotations

import numpy as np
import pytest

from sensing.detect.fault import (
    PHYSICAL_LIMITS,
    DriftDetector,
    ImpossibleValueDetector,
    StuckParams,
    StuckSensorDetector,
    default_fault_detectors,
)
from sensing.wire.kinds import KIND_CHANNELS
from sensing.wire.messages import Grade
from sensing_sim.signals import SmokeSignal

from .support import T0, Change, every, levels, run, simulated

MIN = 60.0
HOUR = 3600.0


def test_two_impossible_readings_make_a_minor_fault_that_clears_after_the_hold() -> None:
    det = ImpossibleValueDetector("smoke", "obscuration")
    values = [0.1, -5.0, 0.1, 0.1, -5.0, 250.0] + [0.1] * 12
    got = run(det, every(MIN, values), cuts=[5])
    # one garbled reading (row 1) is nothing; rows 4-5 are; the fault clears once plausible
    # readings (from row 6) have lasted 10 minutes
    assert levels(got) == [(5, 1), (16, 0)]
    assert got[0][2] == T0 + 4 * 60_000 and got[0][3] == 250.0
    assert det.grade(1) == Grade.MINOR and det.spec.type == "device.fault"
    assert "obscuration 250" in det.describe(1, 250.0)


@pytest.mark.parametrize(("channel", "bad"), [
    ("sos", 0.5), ("steps", 2.5), ("steps", -1.0), ("spo2", 101.0), ("heart_rate", 0.0),
    ("temp_c", -60.0), ("accel_g", 40.0), ("tilt_deg", -3.0), ("water_m", -4.0),
    ("gas_lel", 130.0), ("co_ppm", 20_000.0), ("obscuration", np.inf),
])
def test_impossible_values_per_channel(channel: str, bad: float) -> None:
    kind = next(k for k, chans in KIND_CHANNELS.items() if channel in chans)
    det = ImpossibleValueDetector(kind, channel)
    assert levels(run(det, every(1.0, [bad, bad]))) == [(1, 1)]


def test_noisy_but_plausible_values_are_no_fault() -> None:
    rng = np.random.default_rng(7)
    for det in default_fault_detectors():
        if not isinstance(det, ImpossibleValueDetector):
            continue
        p = PHYSICAL_LIMITS[det.spec.channel]
        high = 500.0 if np.isinf(p.high) else p.high
        values = rng.uniform(p.low, high, 2_000)
        if p.integral:
            values = np.round(values)
        values[::50] = [p.low, high] * 20  # the limits themselves are possible
        assert run(det, every(1.0, values.tolist())) == [], det.spec.name


def test_a_frozen_heart_rate_is_a_stuck_sensor() -> None:
    det = StuckSensorDetector("wearable", "heart_rate")
    values = [70.0, 71.0, 72.0, 71.0, 69.0] * 24 + [73.0] * 210 + [70.0, 74.0, 71.0] * 40
    got = run(det, every(10.0, values), cuts=[100, 101, 250])
    # The check sees the first reading of each minute (T0 is 59.832 s into one). 73 from row
    # 120 (T0 + 1200 s, first seen at row 121); 30 minutes later, at row 301, it is stuck.
    # While raised it sees every reading: the first change (row 330) clears it.
    assert levels(got) == [(301, 1), (330, 0)]
    assert got[0][2] == T0 + 121 * 10_000 and got[0][3] == 73.0
    assert "stuck at 73" in det.describe(1, 73.0)


def test_every_reading_with_a_tick_of_zero() -> None:
    det = StuckSensorDetector("wearable", "heart_rate", tick_ms=0)
    values = [70.0, 71.0] * 15 + [72.0] * 210 + [70.0, 74.0, 71.0] * 40
    assert levels(run(det, every(10.0, values))) == [(210, 1), (240, 0)]  # 30 min after row 30


def test_stuck_needs_the_readings_as_well_as_the_time() -> None:
    det = StuckSensorDetector("wearable", "heart_rate")
    noisy = [70.0, 71.0] * 10
    got = run(det, every(120.0, noisy + [72.0] * 70))  # one reading every 2 minutes
    assert levels(got) == [(20 + 29, 1)]  # an hour, but 30 readings only at row 49


def test_a_quiet_room_at_night_is_not_a_stuck_temperature() -> None:
    # The simulator clamps its coldest rooms at 19.0 °C near the daily minimum, for up to
    # about 50 minutes; a real quiet room can do the same at a 0.1 °C resolution.
    for seed in range(3):
        sig = SmokeSignal(np.random.default_rng(seed), day_start_s=0.0)
        sig._temp0 = 20.5  # the coldest room the simulator makes
        values = [sig.sample(i * 30.0)[0]["temp_c"] for i in range(3 * 24 * 120)]
        assert run(StuckSensorDetector("smoke", "temp_c"), every(30.0, values)) == []


def test_a_temperature_frozen_for_two_hours_is_stuck() -> None:
    values = simulated("smoke", "temp_c", 12, 60.0)
    values[120:] = [21.3] * (len(values) - 120)
    got = run(StuckSensorDetector("smoke", "temp_c"), every(60.0, values))
    assert levels(got) == [(120 + 120, 1)]


STUCK_CHANNELS = [("manhole", "tilt_deg", 30), ("manhole", "water_m", 30),
                  ("manhole", "gas_lel", 30), ("smoke", "obscuration", 30),
                  ("smoke", "co_ppm", 30), ("smoke", "temp_c", 120),
                  ("wearable", "heart_rate", 30), ("wearable", "spo2", 30)]
"""(kind, channel, minutes frozen before it is stuck)"""


NOISE = {"tilt_deg": (0.4, 0.1, 0.01), "water_m": (2.2, 0.005, 0.001),
         "gas_lel": (1.5, 0.3, 0.01), "obscuration": (0.08, 0.03, 0.01),
         "co_ppm": (2.0, 0.4, 0.1), "temp_c": (21.0, 0.2, 0.01), "heart_rate": (70.0, 1.5, 1.0),
         "spo2": (97.0, 0.6, 1.0)}
"""level, noise (sd) and resolution of a sensor that shows noise"""


def raised_after_s(got: list[Change], start_row: int, step_s: float) -> float:
    assert [lvl for _, lvl, _, _ in got][:1] == [1]
    return (got[0][0] - start_row) * step_s


@pytest.mark.parametrize(("kind", "channel", "minutes"), STUCK_CHANNELS)
def test_every_channel_that_shows_noise_is_stuck_when_it_freezes(kind: str, channel: str,
                                                                 minutes: int) -> None:
    base, sd, resolution = NOISE[channel]
    rng = np.random.default_rng(5)
    quiet = (np.round((base + sd * rng.standard_normal(4 * 360)) / resolution)
             * resolution).round(6).tolist()
    frozen_at = 360  # an hour of noise, then one value for good
    values = quiet[:frozen_at] + [quiet[frozen_at - 1]] * (len(quiet) - frozen_at)
    got = run(StuckSensorDetector(kind, channel), every(10.0, values))
    assert len(got) == 1, channel
    # within a minute of the span, counted from the first reading of a minute that saw the
    # value (one of the last few noisy ones may have had it already)
    assert minutes * 60 - 240 <= raised_after_s(got, frozen_at, 10.0) <= minutes * 60 + 60
    # and it clears at the first reading that differs once the sensor shows noise again
    again = run(StuckSensorDetector(kind, channel), every(10.0, values + quiet[:120]))
    assert [lvl for _, lvl, _, _ in again] == [1, 0]
    assert 0 <= (again[1][0] - len(values)) * 10.0 <= 30


@pytest.mark.parametrize(("kind", "channel", "_"), STUCK_CHANNELS)
def test_a_simulated_day_and_night_of_each_channel_is_not_stuck(kind: str, channel: str,
                                                                _: int) -> None:
    for step in (10.0, 60.0):
        values = simulated(kind, channel, 26 if step > 10 else 8, step, seed=2,
                           day_start_s=0.0)
        assert run(StuckSensorDetector(kind, channel), every(step, values)) == [], step


@pytest.mark.parametrize(("kind", "channel", "rest"), [
    ("manhole", "gas_lel", 0.0), ("smoke", "co_ppm", 0.0), ("smoke", "obscuration", 0.0),
    ("wearable", "spo2", 100.0)])
def test_a_channel_at_its_resting_value_is_not_stuck(kind: str, channel: str,
                                                     rest: float) -> None:
    # noisy for an hour (a whiff of gas, a little CO, some dust), then clean air for a day
    noisy = [rest + 0.1 * (i % 7) if rest == 0 else rest - (i % 3) for i in range(360)]
    values = noisy + [rest] * (24 * 360)
    assert run(StuckSensorDetector(kind, channel), every(10.0, values)) == []


def test_a_coarse_sensor_that_never_showed_noise_is_not_stuck() -> None:
    # a gas head reading in whole % LEL, at 1 % with a 2 now and then: it repeats itself
    # because its resolution is coarser than its noise, not because it froze
    values = [2.0 if i % 50 == 0 else 1.0 for i in range(3 * 24 * 360)]
    assert run(StuckSensorDetector("manhole", "gas_lel"), every(10.0, values)) == []


def test_a_sensor_that_froze_again_after_one_glitch_is_stuck_again_with_a_hold() -> None:
    # with a 10-minute hold (the default clears at the first reading that differs)
    det = StuckSensorDetector("manhole", "tilt_deg", StuckParams(hold_s=600, hold_count=3))
    noisy = [0.3, 0.5, 0.2, 0.6, 0.35, 0.45, 0.25] * 30  # sampled once a minute: all differ
    values = noisy + [0.4] * 210 + [0.7] * 6 + [0.4] * 400
    got = run(det, every(10.0, values))
    # 0.4 from row 210 (first seen at row 211): stuck at row 391; the glitch (rows 420-425)
    # starts the hold, which clears the fault 10 minutes later (row 480: raised, the check
    # sees every reading); the run from row 426 counts though the frozen channel showed no
    # noise since, the fault being raised when it began: stuck again 30 min later, at the
    # first reading of a minute by then, row 607
    assert levels(got) == [(391, 1), (480, 0), (607, 1)]


def shifted(values: list[float], start_h: float, ramp_h: float, by: float,
            step_s: float) -> list[float]:
    """`values` with an offset growing linearly from 0 to `by` over `ramp_h` from `start_h`."""
    out = []
    for i, v in enumerate(values):
        h = i * step_s / HOUR
        out.append(v + by * min(1.0, max(0.0, (h - start_h) / ramp_h)))
    return out


def test_a_drifting_smoke_detector_thermistor_is_a_fault() -> None:
    quiet = simulated("smoke", "temp_c", 5 * 24, 60.0)
    got = run(DriftDetector("smoke", "temp_c"), every(60.0, shifted(quiet, 48, 6, 6.0, 60.0)))
    assert [lvl for _, lvl, _, _ in got][:1] == [1]
    row, _, onset, signal = got[0]
    assert 54 * HOUR < row * 60.0 < 66 * HOUR  # within 12 h of the end of the 6-h ramp
    assert onset > T0 + 48 * HOUR * 1000 and 3.0 < signal < 6.0


def test_a_drifting_oximeter_is_a_fault() -> None:
    quiet = simulated("wearable", "spo2", 5 * 24, 60.0)
    got = run(DriftDetector("wearable", "spo2"), every(60.0, shifted(quiet, 48, 12, -5.0, 60.0)))
    assert got and got[0][1] == 1 and got[0][3] < -3.0
    assert 48 * HOUR < got[0][0] * 60.0 < 84 * HOUR


def test_daily_cycles_and_household_nuisances_are_no_drift() -> None:
    step = 60.0
    for seed in range(2):
        quiet = simulated("smoke", "temp_c", 7 * 24, step, seed)
        window = [v - (6.0 if (i * step) % 86_400 < 3 * HOUR else 0.0)  # aired every morning
                  for i, v in enumerate(quiet)]
        cooking = [v + (5.0 if (i * step) % (5 * HOUR) < 2 * MIN else 0.0)
                   for i, v in enumerate(quiet)]
        heating = shifted(quiet, 72, 1, 3.0, step)  # heating season starts: +3 °C for good
        for values in (quiet, window, cooking, heating):
            assert run(DriftDetector("smoke", "temp_c"), every(step, values)) == []
        spo2 = simulated("wearable", "spo2", 7 * 24, step, seed)
        night_dip = [v - (2.0 if (i * step) % 86_400 >= 14 * HOUR else 0.0)
                     for i, v in enumerate(spo2)]
        desaturation = [v if (i * step) % 86_400 > 40 else 83.0 for i, v in enumerate(spo2)]
        for values in (spo2, night_dip, desaturation):
            assert run(DriftDetector("wearable", "spo2"), every(step, values)) == []


def test_no_drift_verdict_during_the_warm_up() -> None:
    values = [21.0] * 60 + [40.0] * (23 * 60)  # one reading a minute, all on the first day
    assert run(DriftDetector("smoke", "temp_c"), every(60.0, values)) == []
