"""device.fault: impossible values, stuck sensors and drift; what must and must not raise."""

from __future__ import annotations

import numpy as np
import pytest

from sensing.detect.fault import (
    PHYSICAL_LIMITS,
    DriftDetector,
    ImpossibleValueDetector,
    StuckSensorDetector,
    default_fault_detectors,
)
from sensing.wire.kinds import KIND_CHANNELS
from sensing.wire.messages import Grade
from sensing_sim.signals import SmokeSignal

from .support import T0, every, levels, run, simulated

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
    values = [70.0, 71.0] * 15 + [72.0] * 210 + [70.0, 74.0, 71.0] * 40
    got = run(det, every(10.0, values), cuts=[100, 101, 250])
    # 72 from row 30: 30 minutes (and over 60 readings) later, at row 210, it is stuck; the
    # first change at row 240 starts the 10-minute hold
    assert levels(got) == [(210, 1), (300, 0)]
    assert got[0][2] == T0 + 30 * 10_000 and got[0][3] == 72.0
    assert "stuck at 72" in det.describe(1, 72.0)


def test_stuck_needs_the_readings_as_well_as_the_time() -> None:
    det = StuckSensorDetector("wearable", "heart_rate")
    got = run(det, every(120.0, [72.0] * 70))  # one reading every 2 minutes
    assert levels(got) == [(59, 1)]  # 2 hours, but 60 readings only at row 59


def test_a_quiet_room_at_night_is_not_a_stuck_temperature() -> None:
    # The simulator clamps its coldest rooms at 19.0 °C near the daily minimum, for up to
    # about 50 minutes; a real quiet room can do the same at a 0.1 °C resolution.
    for seed in range(3):
        sig = SmokeSignal(np.random.default_rng(seed), day_start_s=0.0)
        sig._temp0 = 20.5  # the coldest room the simulator makes
        values = [sig.sample(i * 30.0)[0]["temp_c"] for i in range(3 * 24 * 120)]
        assert run(StuckSensorDetector("smoke", "temp_c"), every(30.0, values)) == []


def test_a_temperature_frozen_for_six_hours_is_stuck() -> None:
    values = simulated("smoke", "temp_c", 12, 60.0)
    values[120:] = [21.3] * (len(values) - 120)
    got = run(StuckSensorDetector("smoke", "temp_c"), every(60.0, values))
    assert levels(got) == [(120 + 360, 1)]


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
