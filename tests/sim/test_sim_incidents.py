"""Incidents override their device's signal inside their window, and only there."""

from __future__ import annotations

import numpy as np
import pytest

from sensing.wire import Grade
from sensing_edge.drivers import SensorSample
from sensing_sim import INCIDENT_TYPES, Fleet, FleetSpec, Incident

SPEC = FleetSpec(n_gateways=2, n_devices=30, interval_s=1.0, seed=11)
START_S, END_S, RUN_S = 20.0, 80.0, 120


def samples_of(fleet: Fleet, device: str) -> list[SensorSample]:
    driver = fleet.driver(fleet.device(device).gateway, start_ms=0)
    out: list[SensorSample] = []
    for now in range(0, RUN_S * 1000, 100):
        out += [s for s in driver.poll(now) if s.device == device]
    return out


def with_incident(type_: str, **kw: float) -> tuple[list[SensorSample], list[SensorSample]]:
    """(quiet samples, samples with the incident) of one device of the right kind."""
    kind = INCIDENT_TYPES[type_][0] or "manhole"
    quiet_fleet, fleet = Fleet(SPEC), Fleet(SPEC)
    device = next(d for d in fleet.devices if d.kind == kind)
    fleet.add_incident(Incident.of(type_, device.id, device.gateway, device.area, START_S,
                                   kw.pop("end_s", END_S), **kw))
    return samples_of(quiet_fleet, device.id), samples_of(fleet, device.id)


def window(samples: list[SensorSample]) -> np.ndarray:
    """Which samples lie in [START_S, END_S) (ts is the poll time, within 0.1 s of the slot)."""
    t = np.array([s.ts / 1000.0 for s in samples])
    return (t >= START_S) & (t < END_S)


def ch(samples: list[SensorSample], name: str) -> np.ndarray:
    return np.array([s.values[name] for s in samples])


@pytest.mark.parametrize("type_", sorted(INCIDENT_TYPES))
def test_incident_changes_its_window_only(type_: str) -> None:
    quiet, loud = with_incident(type_)
    assert len(quiet) == len(loud) == RUN_S
    inside = window(loud)
    # the samples at the window's edges may fall either side (ts is up to 0.1 s after the slot)
    edge = np.zeros_like(inside)
    edge[np.flatnonzero(np.diff(inside.astype(int))) + 1] = True
    edge[np.flatnonzero(np.diff(inside.astype(int)))] = True
    for q, x, is_in, is_edge in zip(quiet, loud, inside, edge, strict=True):
        assert q.ts == x.ts and q.device == x.device
        if not is_in and not is_edge:
            assert (q.values, q.battery) == (x.values, x.battery)
    changed = [(q.values, q.battery) != (x.values, x.battery) for q, x in zip(quiet, loud,
                                                                              strict=True)]
    if type_ != "wearable.fall":  # lying still can read like resting (see its own test)
        assert sum(changed) >= int(inside.sum()) - 2


def test_a_fall_is_an_impact_then_lying_still() -> None:
    from sensing_sim.incidents import FALL_IMPACT_S

    _, loud = with_incident("wearable.fall", level=3.5)
    inside = window(loud)
    t = np.array([s.ts / 1000.0 for s in loud])[inside] - START_S
    accel, steps = ch(loud, "accel_g")[inside], ch(loud, "steps")[inside]
    impact = t < FALL_IMPACT_S - 0.2
    assert impact.any() and (accel[impact] == 3.5).all()
    still = t > FALL_IMPACT_S + 0.2
    assert still.sum() >= 10
    assert ((accel[still] >= 0.95) & (accel[still] <= 1.05)).all() and (steps[still] == 0).all()


def test_fire_ramps_obscuration_and_heats_fast() -> None:
    _, loud = with_incident("smoke.fire", level=20.0)
    inside = window(loud)
    obscuration, temp = ch(loud, "obscuration")[inside], ch(loud, "temp_c")[inside]
    assert obscuration[:3].max() < 5.0, "a fire's smoke builds up"
    assert obscuration[35:].min() > 15.0 and obscuration.max() < 25.0
    rise_per_min = (temp[40] - temp[0]) / (40 / 60)
    assert rise_per_min > 10.0


@pytest.mark.parametrize(
    ("type_", "channel", "lo", "hi"),
    [
        ("smoke.co", "co_ppm", 350.0, 500.0),
        ("manhole.displaced", "tilt_deg", 35.0, 60.0),
        ("manhole.gas", "gas_lel", 30.0, 40.0),
        ("manhole.overflow", "water_m", 0.1, 0.1),
        ("wearable.vitals", "spo2", 82.0, 84.0),
    ],
)
def test_incident_reaches_and_holds_its_level(type_: str, channel: str, lo: float,
                                              hi: float) -> None:
    _, loud = with_incident(type_)
    held = ch(loud, channel)[window(loud)][35:]
    assert len(held) > 20
    assert lo - 0.5 <= held.min() and held.max() <= hi + 0.5


def test_sos_is_pressed_for_ten_seconds() -> None:
    _, loud = with_incident("wearable.sos", end_s=START_S + 10)
    sos = ch(loud, "sos")
    assert sos.sum() == 10
    assert set(sos.tolist()) == {0.0, 1.0}


def test_battery_incident_drops_the_battery() -> None:
    quiet, loud = with_incident("device.battery")
    inside = window(loud)
    assert {s.battery for s, i in zip(loud, inside, strict=True) if i} == {0.03}
    assert min(s.battery or 1.0 for s in quiet) >= 0.3


def test_incident_labels() -> None:
    inc = Incident.of("smoke.fire", "smoke-000001", "gw-01", "demo-a", 5.0)
    assert inc.grade is Grade.MAJOR  # one detector alone; two nearby would be critical
    assert inc.end_s > inc.start_s and 15.0 <= inc.level <= 25.0
    assert inc.active(5.0) and not inc.active(inc.end_s) and not inc.active(4.999)
    d = inc.to_dict(run_start_ms=1_000_000)
    assert d["grade"] == "major" and d["type"] == "smoke.fire"
    assert d["ts_start"] == 1_005_000 and d["ts_end"] == 1_000_000 + round(inc.end_s * 1000)
    assert "ts_start" not in inc.to_dict()


def test_bad_incidents_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown incident type"):
        Incident.of("smoke.toast", "smoke-000001", "gw-01", "demo-a", 5.0)
    with pytest.raises(ValueError, match="empty"):
        Incident.of("smoke.fire", "smoke-000001", "gw-01", "demo-a", 5.0, end_s=5.0)
    fleet = Fleet(SPEC)
    manhole = next(d for d in fleet.devices if d.kind == "manhole")
    with pytest.raises(ValueError, match="cannot happen"):
        fleet.add_incident(Incident.of("smoke.fire", manhole.id, manhole.gateway, manhole.area, 1))
    with pytest.raises(ValueError, match="no device"):
        fleet.add_incident(Incident.of("smoke.fire", "smoke-999999", "gw-01", "demo-a", 1))
    with pytest.raises(ValueError, match="is on"):
        fleet.add_incident(Incident.of("device.battery", manhole.id, "gw-99", manhole.area, 1))
