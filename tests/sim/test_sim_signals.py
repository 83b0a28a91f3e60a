"""Quiet signals: deterministic from the seed, with nuisances that stay below alarm levels."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from sensing_edge.drivers import SensorSample
from sensing_sim import Fleet, FleetSpec, ManholeSignal, SmokeSignal, make_signal

HOUR_MS = 3_600_000


def run(fleet: Fleet, duration_ms: int, step_ms: int = 1000) -> list[SensorSample]:
    drivers = [fleet.driver(gw.id, start_ms=0) for gw in fleet.gateways]
    out: list[SensorSample] = []
    for now in range(0, duration_ms + 1, step_ms):
        for driver in drivers:
            out += driver.poll(now)
    return out


def by_device(samples: list[SensorSample]) -> dict[str, list[SensorSample]]:
    series: dict[str, list[SensorSample]] = defaultdict(list)
    for s in samples:
        series[s.device].append(s)
    return series


def channel(samples: list[SensorSample], name: str) -> np.ndarray:
    return np.array([s.values[name] for s in samples])


def test_same_seed_gives_identical_samples_and_another_seed_does_not() -> None:
    spec = FleetSpec(n_gateways=3, n_devices=30, seed=7)
    a = run(Fleet(spec), 120_000, step_ms=100)
    b = run(Fleet(spec), 120_000, step_ms=100)
    c = run(Fleet(FleetSpec(n_gateways=3, n_devices=30, seed=8)), 120_000, step_ms=100)
    assert len(a) == 30 * 60
    assert a == b
    assert [s.values for s in a] != [s.values for s in c]


@pytest.fixture(scope="module")
def quiet_hour() -> dict[str, list[SensorSample]]:
    fleet = Fleet(FleetSpec(n_gateways=2, n_devices=60, interval_s=2.0, seed=3,
                            mix={"smoke": 1, "manhole": 1, "wearable": 1}))
    return by_device(run(fleet, HOUR_MS))


def of_kind(series: dict[str, list[SensorSample]], kind: str) -> list[list[SensorSample]]:
    found = [s for s in series.values() if s[0].kind == kind]
    assert len(found) == 20
    return found


def test_every_device_reports_every_interval(quiet_hour: dict[str, list[SensorSample]]) -> None:
    assert len(quiet_hour) == 60
    for samples in quiet_hour.values():
        assert len(samples) in (1799, 1800, 1801)
        assert {s.kind for s in samples} == {samples[0].kind}


def test_smoke_cooking_bumps_stay_below_alarm(quiet_hour: dict[str, list[SensorSample]]) -> None:
    peaks = []
    for samples in of_kind(quiet_hour, "smoke"):
        obscuration = channel(samples, "obscuration")
        assert obscuration.min() >= 0.0
        assert obscuration.max() < 4.0
        assert np.median(obscuration) <= 0.3
        assert channel(samples, "co_ppm").max() < 30.0
        temp = channel(samples, "temp_c")
        assert temp.min() >= 19.0 and temp.max() <= 25.0
        peaks.append(obscuration.max())
        # a bump lasts about a minute: never more than ~90 s (45 readings) above 0.5 %/m
        above = obscuration > 0.5
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, above.astype(int), 0])))[::2]
        assert all(r <= 46 for r in runs)
    cooked = [p for p in peaks if p > 1.0]
    assert len(cooked) >= 3, "an hour of 20 kitchens has some cooking smoke"


def test_manhole_traffic_bumps_last_one_reading(quiet_hour: dict[str, list[SensorSample]]) -> None:
    bumps = 0
    for samples in of_kind(quiet_hour, "manhole"):
        tilt = channel(samples, "tilt_deg")
        bumped = tilt > 1.0
        assert not (bumped[1:] & bumped[:-1]).any(), "a traffic bump lasts one reading"
        assert tilt[bumped].max(initial=3.0) <= 6.0 and tilt[bumped].min(initial=3.0) >= 3.0
        bumps += int(bumped.sum())
        water = channel(samples, "water_m")
        assert water.min() > 1.2 and water.max() <= 3.0
        assert channel(samples, "gas_lel").max() <= 2.0
    assert bumps >= 5, "an hour of 20 manholes sees some traffic"


def test_wearable_vitals_and_walks(quiet_hour: dict[str, list[SensorSample]]) -> None:
    walked = 0
    for samples in of_kind(quiet_hour, "wearable"):
        hr = channel(samples, "heart_rate")
        assert hr.min() >= 55.0 and hr.max() <= 110.0
        spo2 = channel(samples, "spo2")
        assert spo2.min() >= 94.0 and spo2.max() <= 99.0
        accel = channel(samples, "accel_g")
        assert accel.min() >= 1.0 and accel.max() <= 1.5
        assert (channel(samples, "sos") == 0).all()
        steps = channel(samples, "steps")
        assert steps.min() >= 0 and (steps == steps.round()).all()
        walking = accel > 1.12
        if walking.sum() >= 90:  # three minutes on foot
            walked += 1
            assert steps[walking].mean() >= 2.0, "walking takes steps"
            assert hr[walking].mean() > np.median(hr[~walking]) + 8, "walking raises heart rate"
    assert walked >= 3, "in the daytime some of 20 people go for a walk within an hour"


def test_batteries_drain_slowly_and_stay_above_low(
    quiet_hour: dict[str, list[SensorSample]],
) -> None:
    for samples in quiet_hour.values():
        battery = np.array([s.battery for s in samples], dtype=float)
        assert (np.diff(battery) <= 0).all()
        assert battery.min() >= 0.3 and battery.max() <= 1.0
        assert battery[0] - battery[-1] < 0.02


def test_wristbands_get_recharged() -> None:
    signal = make_signal("wearable", np.random.default_rng(2))
    battery = np.array([signal.sample(t)[1] for t in range(0, 10 * 86_400, 600)])
    assert battery.min() >= 0.3
    recharges = np.flatnonzero(np.diff(battery) > 0)
    assert len(recharges) >= 1 and (battery[recharges + 1] >= 0.99).all()


@pytest.mark.parametrize("interval_s", [0.5, 2.0, 10.0])
def test_quiet_room_temperature_never_rises_like_a_fire(interval_s: float) -> None:
    rates = []
    for i in range(10):
        signal = SmokeSignal(np.random.default_rng([9, i]))
        t = np.arange(0.0, 3600.0, interval_s)
        temp = np.array([signal.sample(float(x))[0]["temp_c"] for x in t])
        rates.append(np.abs(np.diff(temp)).max() * 60.0 / interval_s)
    assert max(rates) < 6.0, "°C/min between readings; rate-of-rise heat alarms are ~8 °C/min"


def test_rain_raises_manhole_water_but_not_to_the_cover() -> None:
    lowest = []
    for i in range(20):
        signal = ManholeSignal(np.random.default_rng([5, i]))
        water = np.array([signal.sample(t)[0]["water_m"] for t in range(0, 48 * 3600, 60)])
        assert water.min() > 1.2
        lowest.append(water.max() - water.min())
    assert max(lowest) > 0.2, "two days of 20 wells include a rain shower"


def test_smoke_temperature_follows_the_day() -> None:
    signal = SmokeSignal(np.random.default_rng(1), day_start_s=0.0)
    temp = np.array([signal.sample(t)[0]["temp_c"] for t in range(0, 86_400, 600)])
    assert temp.max() - temp.min() > 2.0
    assert np.argmax(temp) * 600 == pytest.approx(15 * 3600, abs=3 * 3600), "warmest mid-afternoon"


def test_make_signal_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        make_signal("toaster", np.random.default_rng(0))
