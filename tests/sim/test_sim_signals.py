"""Quiet signals: deterministic from the seed, with nuisances that stay below alarm levels."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing_edge.drivers import SensorSample
from sensing_sim import Fleet, FleetSpec, ManholeSignal, SmokeSignal, WearableSignal, make_signal
from sensing_sim import signals as sig

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


QUIET_FLEET = FleetSpec(n_gateways=2, n_devices=60, interval_s=2.0, seed=3,
                        mix={"smoke": 1, "manhole": 1, "wearable": 1})


@pytest.fixture(scope="module")
def quiet_hour() -> dict[str, list[SensorSample]]:
    return by_device(run(Fleet(QUIET_FLEET), HOUR_MS))


def steamy(device_id: str) -> bool:
    fleet = Fleet(QUIET_FLEET)
    signal = fleet.signal(fleet.device(device_id))
    return isinstance(signal, SmokeSignal) and signal.steamy


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
        # a cooking bump lasts about a minute: never more than ~90 s (45 readings) above
        # 0.5 %/m; steam near a bathroom up to 8 minutes
        above = obscuration > 0.5
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, above.astype(int), 0])))[::2]
        assert all(r <= (241 if steamy(samples[0].device) else 46) for r in runs)
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


def test_steam_near_a_bathroom_bumps_obscuration_for_minutes_below_alarm() -> None:
    bumps: list[tuple[float, float, float]] = []  # (minutes above 0.5 %/m, peak, warmth)
    for i in range(12):
        signal = SmokeSignal(np.random.default_rng([21, i]))
        signal.steamy = True
        signal.COOKING_PER_S = 0.0  # type: ignore[misc]  # steam alone
        t = np.arange(0.0, 24 * 3600.0, 10.0)
        samples = [signal.sample(float(x))[0] for x in t]
        obscuration = np.array([v["obscuration"] for v in samples])
        temp = np.array([v["temp_c"] for v in samples])
        co = np.array([v["co_ppm"] for v in samples])
        assert obscuration.max() < 4.0 and co.max() <= sig.SMOKE_CO_MAX
        assert np.abs(np.diff(temp)).max() * 6 < 3.0, "°C/min: steam warms a room gently"
        above = np.r_[False, obscuration > 0.5, False]
        edges = np.flatnonzero(np.diff(above.astype(int)))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            bumps.append(((b - a) / 6, obscuration[a:b].max(),
                          temp[a:b].max() - np.median(temp[max(0, a - 30):a])))
    assert len(bumps) >= 12, "a day of 12 bathrooms has some showers"
    minutes = [m for m, _, _ in bumps]
    assert 2.0 <= np.median(minutes) <= 8.0 and max(minutes) <= 8.0
    assert max(p for _, p, _ in bumps) <= sig.SMOKE_OBSCURATION_QUIET_MAX + sig.SMOKE_STEAM_PEAK[1]
    assert np.median([w for _, _, w in bumps]) > 0.5, "steam is warm"


def test_only_some_detectors_see_steam() -> None:
    share = np.mean([SmokeSignal(np.random.default_rng([4, i])).steamy for i in range(400)])
    assert abs(share - sig.SMOKE_STEAM_SHARE) < 0.07


def test_wearers_sleep_at_night_slower_heart_no_steps_still() -> None:
    night_hr, day_hr, night_steps, turns = [], [], 0, 0
    for i in range(10):
        signal = WearableSignal(np.random.default_rng([31, i]), day_start_s=0.0)
        t = np.arange(0.0, 86_400.0, 30.0)
        samples = [signal.sample(float(x))[0] for x in t]
        hr = np.array([v["heart_rate"] for v in samples])
        steps = np.array([v["steps"] for v in samples])
        accel = np.array([v["accel_g"] for v in samples])
        hour = t / 3600
        deep = (hour >= 0.0) & (hour < 5.0)  # everybody is asleep
        assert hr.min() >= sig.WEARABLE_HR_SLEEP_MIN and hr[~deep].min() >= 45.0
        assert accel[deep].max() <= sig.WEARABLE_ACCEL_WALK_MAX
        still = deep & (steps == 0)
        assert still.mean() / deep.mean() > 0.9, "asleep: no steps but a trip to the bathroom"
        assert accel[still].max() <= sig.WEARABLE_ACCEL_TURN_MAX
        turns += int((accel[still] > 1.05).sum())
        assert (accel[still] <= 1.05).mean() > 0.95, "a sleeping wrist lies still"
        night_steps += int((steps[deep] > 0).sum())
        night_hr.append(np.median(hr[still]))
        day_hr.append(np.median(hr[(hour >= 9) & (hour < 20) & (steps == 0)]))
    assert all(n < d - 4 for n, d in zip(night_hr, day_hr, strict=True)), (night_hr, day_hr)
    assert turns >= 10, "sleepers turn over now and then"
    assert night_steps < 10 * 5 * 120 * 0.05


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), day_start_h=st.floats(0.0, 23.99),
       interval_s=st.sampled_from([0.5, 2.0, 10.0, 30.0, 60.0]))
def test_nuisances_never_leave_the_quiet_bounds(seed: int, day_start_h: float,
                                                interval_s: float) -> None:
    """Every kind, steam and sleep included, over 1,500 readings at any time of day."""
    rng = np.random.default_rng(seed)
    smoke = SmokeSignal(rng, day_start_h * 3600)
    smoke.steamy = True
    manhole = ManholeSignal(rng, day_start_h * 3600)
    wearable = WearableSignal(rng, day_start_h * 3600)
    t = np.arange(0.0, 1500 * interval_s, interval_s)
    prev_temp = None
    for x in t.tolist():
        v, battery = smoke.sample(x)
        assert 0.0 <= v["obscuration"] <= (sig.SMOKE_OBSCURATION_QUIET_MAX
                                           + max(sig.SMOKE_COOKING_PEAK[1],
                                                 sig.SMOKE_STEAM_PEAK[1]))
        assert sig.SMOKE_TEMP_RANGE[0] <= v["temp_c"] <= sig.SMOKE_TEMP_RANGE[1]
        assert 0.0 <= v["co_ppm"] <= sig.SMOKE_CO_MAX and battery >= sig.BATTERY_QUIET_MIN
        if prev_temp is not None:
            assert abs(v["temp_c"] - prev_temp) * 60 / interval_s < 6.0
        prev_temp = v["temp_c"]
        v, battery = manhole.sample(x)
        assert 0.0 <= v["tilt_deg"] <= sig.MANHOLE_TRAFFIC_TILT[1]
        assert sig.MANHOLE_WATER_RAIN_MIN <= v["water_m"] <= sig.MANHOLE_WATER_RANGE[1]
        assert 0.0 <= v["gas_lel"] <= sig.MANHOLE_GAS_MAX and battery >= sig.BATTERY_QUIET_MIN
        v, battery = wearable.sample(x)
        assert sig.WEARABLE_HR_SLEEP_MIN <= v["heart_rate"] <= sig.WEARABLE_HR_WALK_MAX
        assert sig.WEARABLE_SPO2_RANGE[0] <= v["spo2"] <= sig.WEARABLE_SPO2_RANGE[1]
        assert 1.0 <= v["accel_g"] <= sig.WEARABLE_ACCEL_WALK_MAX
        assert v["steps"] >= 0 and v["sos"] == 0.0 and battery >= sig.BATTERY_QUIET_MIN


def test_local_time_of_day_is_the_cores() -> None:
    midnight_utc = 1_795_478_400_000
    assert sig.local_time_of_day_s(midnight_utc) == 8 * 3600.0
    assert sig.local_time_of_day_s(midnight_utc + 16 * 3_600_000) == 0.0
    assert sig.local_time_of_day_s(midnight_utc, utc_offset_h=0.0) == 0.0


def test_some_gas_heads_and_co_cells_sit_at_their_resting_floor_for_tens_of_minutes() -> None:
    """Legitimately still channels a stuck check must not take for frozen sensors."""
    heads = [ManholeSignal(np.random.default_rng([31, i])) for i in range(40)]
    floor = [h for h in heads if h.deadband]
    assert 6 <= len(floor) <= 20
    for head in floor[:3]:
        gas = [head.sample(float(t))[0]["gas_lel"] for t in range(0, 4 * 3600, 10)]
        runs = np.diff(np.flatnonzero(np.r_[True, np.array(gas) != 0.0, True]))
        assert max(gas) >= sig.MANHOLE_GAS_DEADBAND_LEL or runs.max() > 1000
        assert runs.max() * 10 >= 30 * 60, "at 0.0 for half an hour and more"
    cells = [SmokeSignal(np.random.default_rng([32, i])) for i in range(40)]
    whole = [c for c in cells if c.whole_ppm]
    assert 6 <= len(whole) <= 20
    co = [whole[0].sample(float(t))[0]["co_ppm"] for t in range(0, 3600, 10)]
    assert all(v == int(v) for v in co) and co.count(0.0) > len(co) / 2
