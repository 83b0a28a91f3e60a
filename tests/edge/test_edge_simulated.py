"""Simulated drivers: quiet plausible signals, one reading per device per interval."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict

import pytest

from sensing.wire import KIND_CHANNELS
from sensing_edge import SensorSample, SimulatedDriver, make_fleet

T0 = 1_795_478_400_000
RANGES = {
    "obscuration": (0.0, 0.3), "temp_c": (20.0, 24.0), "co_ppm": (0.0, 3.0),
    "tilt_deg": (0.0, 1.0), "water_m": (1.5, 3.0), "gas_lel": (0.0, 1.0),
    "heart_rate": (60.0, 90.0), "spo2": (95.0, 99.0), "accel_g": (0.9, 1.2),
    "steps": (0.0, 20.0), "sos": (0.0, 0.0),
}


def run(driver: SimulatedDriver, seconds: float, step_ms: int = 100) -> list[SensorSample]:
    out: list[SensorSample] = []
    for t in range(0, int(seconds * 1000) + 1, step_ms):
        out.extend(driver.poll(T0 + t))
    return out


def test_signals_stay_in_their_quiet_ranges() -> None:
    fleet = make_fleet(30, {"smoke": 1, "manhole": 1, "wearable": 1}, "gw-1")
    samples = run(SimulatedDriver(fleet, interval_s=1.0, seed=7), seconds=120)
    assert len(samples) >= 30 * 119
    kinds = dict(fleet)
    for s in samples:
        assert s.kind == kinds[s.device]
        assert set(s.values) == set(KIND_CHANNELS[s.kind])
        for channel, value in s.values.items():
            lo, hi = RANGES[channel]
            assert lo <= value <= hi, (channel, value)
        assert s.battery is not None and 0.8 <= s.battery <= 0.96
    spread = defaultdict(set)
    for s in samples:
        for channel, value in s.values.items():
            spread[channel].add(value)
    assert all(len(spread[c]) > 5 for c in RANGES if c != "sos")  # signals, not constants


def test_each_device_reports_once_per_interval_and_its_battery_drains() -> None:
    driver = SimulatedDriver([("w-1", "wearable"), ("s-1", "smoke")], interval_s=0.5, seed=1)
    samples = run(driver, seconds=10)
    per_device = Counter(s.device for s in samples)
    assert set(per_device.values()) <= {20, 21}
    w = [s for s in samples if s.device == "w-1"]
    gaps = {b.ts - a.ts for a, b in itertools.pairwise(w)}
    assert gaps == {500}
    batteries = [s.battery for s in w if s.battery is not None]
    assert len(batteries) == len(w)
    assert batteries == sorted(batteries, reverse=True) and batteries[0] != batteries[-1]


def test_a_late_poll_yields_one_reading_not_a_burst() -> None:
    driver = SimulatedDriver([("s-1", "smoke")], interval_s=1.0, seed=1)
    driver.poll(T0)
    assert len(driver.poll(T0 + 60_000)) == 1
    assert driver.poll(T0 + 60_000) == []


def test_the_seed_makes_runs_repeatable() -> None:
    fleet = make_fleet(10, {"smoke": 1, "wearable": 1}, "gw-1")
    a = run(SimulatedDriver(fleet, interval_s=0.5, seed=3), seconds=5)
    b = run(SimulatedDriver(fleet, interval_s=0.5, seed=3), seconds=5)
    c = run(SimulatedDriver(fleet, interval_s=0.5, seed=4), seconds=5)
    assert a == b
    assert a != c


def test_make_fleet_splits_by_weight_with_unique_ids() -> None:
    fleet = make_fleet(100, {"smoke": 0.5, "manhole": 0.2, "wearable": 0.3}, "gw-9")
    assert Counter(k for _, k in fleet) == {"smoke": 50, "manhole": 20, "wearable": 30}
    assert len({d for d, _ in fleet}) == 100
    assert fleet[0] == ("gw-9-smoke-00000", "smoke")
    odd = make_fleet(7, {"smoke": 1, "manhole": 1, "wearable": 1}, "g")
    assert sorted(Counter(k for _, k in odd).values()) == [2, 2, 3]
    assert make_fleet(0, {"smoke": 1}, "g") == []


@pytest.mark.parametrize(
    ("devices", "interval"),
    [([("a", "fire")], 1.0), ([("a", "smoke"), ("a", "smoke")], 1.0), ([("a", "smoke")], 0.0)],
)
def test_driver_rejects_bad_fleets(devices: list[tuple[str, str]], interval: float) -> None:
    with pytest.raises(ValueError):
        SimulatedDriver(devices, interval_s=interval, seed=0)


def test_make_fleet_rejects_bad_mixes() -> None:
    for mix in ({"fire": 1.0}, {"smoke": -1.0}, {"smoke": 0.0}):
        with pytest.raises(ValueError):
            make_fleet(3, mix, "g")
