"""The detection engine over columnar readings: standards-based defaults, no nuisance alerts."""

from __future__ import annotations

from sensing.detect.engine import DetectionEngine, Readings
from sensing.registry import Registry
from sensing.wire import BatchBuilder
from sensing.wire.messages import Grade

T0 = 1_795_478_819_832


def run(rows: list[tuple[str, str, int, dict[str, float], float | None]]) -> list[tuple]:
    reg = Registry()
    eng = DetectionEngine(reg)
    b = BatchBuilder()
    for i, (device, kind, ts, values, battery) in enumerate(rows):
        b.add(device, kind, 0, i, ts, values, battery)
    batch = b.build()
    dev, chan = reg.intern_batch(batch, "gw", "a")
    changes = eng.process(Readings(dev, batch.ts, batch.battery, batch.value_row, chan,
                                   batch.value))
    return [(reg.devices.names[c.device], c.type, c.grade, c.ts_event) for c in changes]


def smoke(ts_s: float, obscuration: float, temp: float = 21.0, co: float = 1.0):  # type: ignore[no-untyped-def]
    return ("smoke-1", "smoke", T0 + int(ts_s * 1000),
            {"obscuration": obscuration, "temp_c": temp, "co_ppm": co}, 0.9)


def test_cooking_smoke_below_alarm_level_raises_nothing() -> None:
    rows = [smoke(i * 5, 0.2 + (2.5 if 10 <= i < 22 else 0.0)) for i in range(60)]
    assert run(rows) == []


def test_one_detector_makes_a_fire_major_whether_smoke_heat_or_both() -> None:
    only_smoke = [smoke(i * 5, 12.0 if i >= 3 else 0.1) for i in range(8)]
    assert run(only_smoke) == [("smoke-1", "smoke.fire", Grade.MAJOR, T0 + 15_000)]
    only_heat = [smoke(i * 5, 0.1, 21.0 + max(0, i - 3) * 2.0) for i in range(12)]
    assert [g for _, t, g, _ in run(only_heat) if t == "smoke.fire"] == [Grade.MAJOR]
    fire = [smoke(i * 5, 12.0 if i >= 3 else 0.1, 21.0 + max(0, i - 3) * 2.0) for i in range(10)]
    assert [g for _, t, g, _ in run(fire) if t == "smoke.fire"] == [Grade.MAJOR]


def test_co_follows_en50291_times() -> None:
    # 150 ppm: major only after 10 minutes, not before
    rows = [smoke(i * 60, 0.1, co=150.0) for i in range(12)]
    got = run(rows)
    assert got == [("smoke-1", "smoke.co", Grade.MAJOR, T0)]
    assert len(run(rows[:10])) == 0


def test_traffic_bump_on_a_manhole_raises_nothing_but_a_lifted_cover_does() -> None:
    def mh(ts_s: float, tilt: float):  # type: ignore[no-untyped-def]
        return ("mh-1", "manhole", T0 + int(ts_s * 1000),
                {"tilt_deg": tilt, "water_m": 2.0, "gas_lel": 0.5}, 0.8)
    bumps = [mh(i * 2, 5.0 if i % 7 == 0 else 0.4) for i in range(40)]
    assert run(bumps) == []
    lifted = [mh(i * 2, 40.0 if i >= 5 else 0.4) for i in range(12)]
    assert run(lifted) == [("mh-1", "manhole.displaced", Grade.CRITICAL, T0 + 10_000)]


def test_walking_heart_rate_and_low_battery() -> None:
    walk = [("w-1", "wearable", T0 + i * 5000,
             {"heart_rate": 100.0 + (i % 3) * 5, "spo2": 96.0, "accel_g": 1.3, "steps": 8.0,
              "sos": 0.0}, 0.5) for i in range(40)]
    assert run(walk) == []
    low = [("w-1", "wearable", T0 + i * 5000, {"heart_rate": 70.0}, 0.08) for i in range(4)]
    assert run(low) == [("w-1", "device.battery", Grade.MAJOR, T0)]


def test_sos_latches_until_a_person_resolves_it() -> None:
    rows = [("w-1", "wearable", T0 + i * 1000, {"sos": 1.0 if 2 <= i < 4 else 0.0}, None)
            for i in range(10)]
    assert run(rows) == [("w-1", "wearable.sos", Grade.CRITICAL, T0 + 2000)]


def test_shower_steam_raises_nothing() -> None:
    # steam drifting into the hallway: obscuration up to 3.5 %/m for ten minutes and the
    # air warming by 4 °C over those ten minutes (0.4 °C/min), readings every 10 s
    rows = []
    for i in range(120):
        in_shower = 30 <= i < 90
        rows.append(smoke(i * 10, 0.2 + (3.3 if in_shower else 0.0),
                          22.0 + (min(i - 30, 60) * 4.0 / 60 if i >= 30 else 0.0)))
    assert run(rows) == []


def wristband(device: str, s: float, accel: float, steps: float) -> tuple:  # type: ignore[type-arg]
    return (device, "wearable", T0 + int(s * 1000),
            {"heart_rate": 72.0, "accel_g": accel, "steps": steps}, 0.8)


def test_a_wrist_bang_then_walking_is_no_fall_and_lying_still_is() -> None:
    # issue 13: a 3 g knock, 40 s of walking (steps and movement), then rest
    bang = [wristband("wb-1", 0, 3.0, 1.0)]
    bang += [wristband("wb-1", s, 1.3 + 0.05 * (s % 3), 2.0) for s in range(1, 41)]
    bang += [wristband("wb-1", s, 1.0, 0.0) for s in range(41, 120)]
    # the same knock, then lying still: a fall, 10 s into the stillness
    fall = [wristband("wb-2", 0, 3.0, 1.0)]
    fall += [wristband("wb-2", s, 1.0, 0.0) for s in range(1, 30)]
    got = run(bang + fall)
    assert got == [("wb-2", "wearable.fall", Grade.CRITICAL, T0)]


def test_a_frozen_manhole_sensor_is_a_fault_and_clean_air_is_not() -> None:
    def manhole(device: str, m: int, tilt: float, gas: float) -> tuple:  # type: ignore[type-arg]
        return (device, "manhole", T0 + m * 60_000,
                {"tilt_deg": tilt, "water_m": 2.0 + 0.001 * (m % 7), "gas_lel": gas}, 0.9)

    noisy = [0.3, 0.4, 0.2, 0.5, 0.35]
    rows = []
    for m in range(120):  # a reading a minute for 2 h
        wobble = noisy[m % 5]
        # m-1's tilt sensor freezes after 30 min; m-2's gas head reads clean air (0 % LEL)
        rows.append(manhole("m-1", m, 0.42 if m >= 30 else wobble, wobble))
        rows.append(manhole("m-2", m, wobble, 0.0 if m >= 30 else wobble))
    got = run(rows)
    assert got == [("m-1", "device.fault", Grade.MINOR, T0 + 30 * 60_000)]
