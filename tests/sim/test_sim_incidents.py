"""Incidents override their device's signal inside their window, and only there."""

from __future__ import annotations

import numpy as np
import pytest

from sensing.wire import Grade
from sensing_edge.drivers import SensorSample
from sensing_sim import INCIDENT_TYPES, Fleet, FleetSpec, Incident
from sensing_sim.incidents import FORMS, VARIANTS, kinds_of

SPEC = FleetSpec(n_gateways=2, n_devices=30, interval_s=1.0, seed=11)
START_S, END_S, RUN_S = 20.0, 80.0, 120


def samples_of(fleet: Fleet, device: str) -> list[SensorSample]:
    driver = fleet.driver(fleet.device(device).gateway, start_ms=0)
    out: list[SensorSample] = []
    for now in range(0, RUN_S * 1000, 100):
        out += [s for s in driver.poll(now) if s.device == device]
    return out


def with_incident(type_: str, variant: str = "", kind: str | None = None, **kw: float
                  ) -> tuple[list[SensorSample], list[SensorSample]]:
    """(quiet samples, samples with the incident) of one device of the right kind."""
    kind = kind or INCIDENT_TYPES[type_][0] or "manhole"
    quiet_fleet, fleet = Fleet(SPEC), Fleet(SPEC)
    device = next(d for d in fleet.devices if d.kind == kind)
    fleet.add_incident(Incident.of(type_, device.id, device.gateway, device.area, START_S,
                                   kw.pop("end_s", END_S), variant=variant, **kw))
    return samples_of(quiet_fleet, device.id), samples_of(fleet, device.id)


FORMS_ON_A_DEVICE = sorted(
    (type_, variant, kind) for (type_, variant) in FORMS for kind in kinds_of(type_, variant)
    if type_ != "gateway.offline")
"""every (type, variant, kind of device) an incident comes in"""


def window(samples: list[SensorSample]) -> np.ndarray:
    """Which samples lie in [START_S, END_S) (ts is the poll time, within 0.1 s of the slot)."""
    t = np.array([s.ts / 1000.0 for s in samples])
    return (t >= START_S) & (t < END_S)


def ch(samples: list[SensorSample], name: str) -> np.ndarray:
    return np.array([s.values[name] for s in samples])


@pytest.mark.parametrize(("type_", "variant", "kind"), FORMS_ON_A_DEVICE,
                         ids=lambda x: str(x))
def test_incident_changes_its_window_only(type_: str, variant: str, kind: str) -> None:
    quiet, loud = with_incident(type_, variant, kind)
    if type_ == "device.offline":  # sends nothing in its window, the same outside it
        assert len(quiet) == RUN_S
        kept = {s.ts for s in loud}
        missing = [s for s in quiet if s.ts not in kept]
        assert all(START_S <= s.ts / 1000 < END_S + 0.1 for s in missing)
        assert len(missing) >= END_S - START_S - 1
        assert [s for s in quiet if s.ts in kept] == loud
        return
    assert len(quiet) == len(loud) == RUN_S
    inside = window(loud)
    if type_ == "wearable.inactivity":  # the walk to the chair comes before the stillness
        from sensing_sim.incidents import INACTIVITY_LEAD_S

        t = np.array([s.ts / 1000.0 for s in loud])
        inside = (t >= START_S - INACTIVITY_LEAD_S) & (t < END_S)
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
    # lying still can read like resting (falls, inactivity); a stuck or drifting value may
    # happen to equal the quiet one; these have their own tests
    if (type_, variant) not in {("wearable.fall", ""), ("wearable.inactivity", ""),
                                ("device.fault", "stuck"), ("device.fault", "drift")}:
        assert sum(changed) >= int(inside.sum()) - 2


def test_every_type_has_forms_and_only_known_variants() -> None:
    assert {t for t, _ in FORMS} == set(INCIDENT_TYPES)
    for (type_, variant) in FORMS:
        assert variant in VARIANTS.get(type_, ("",))
    for type_, variants in VARIANTS.items():
        assert {(type_, v) for v in variants} <= set(FORMS)


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


@pytest.mark.parametrize(("variant", "lo", "hi"), [("hr_high", 153.0, 172.0),
                                                   ("hr_low", 29.0, 34.0)])
def test_heart_rate_incidents_race_or_fail_and_stay_there(variant: str, lo: float,
                                                          hi: float) -> None:
    _, loud = with_incident("wearable.vitals", variant)
    hr = ch(loud, "heart_rate")[window(loud)]
    assert lo <= hr[6:].min() and hr[6:].max() <= hi, "reached within 5 s, then held"
    assert len(set(hr[6:].tolist())) >= 2, "a racing or failing heart is not flat"
    _, spo2 = with_incident("wearable.vitals", "spo2")
    assert ch(spo2, "heart_rate").max() < 120


@pytest.mark.parametrize(("kind", "channel", "value"), [
    ("smoke", "co_ppm", -50.0), ("manhole", "water_m", 99.9), ("wearable", "spo2", 127.0)])
def test_impossible_values_on_each_kind(kind: str, channel: str, value: float) -> None:
    quiet, loud = with_incident("device.fault", "impossible", kind)
    inside = window(loud)
    assert (ch(loud, channel)[inside][1:] == value).all()
    others = [c for c in loud[0].values if c != channel]
    for c in others:  # nothing else about the device changes
        assert (ch(loud, c) == ch(quiet, c)).all()


def test_a_stuck_sensor_repeats_one_value() -> None:
    quiet, loud = with_incident("device.fault", "stuck", "wearable", level=71.0)
    inside = window(loud)
    assert set(ch(loud, "heart_rate")[inside][1:].tolist()) == {71.0}
    assert len(set(ch(quiet, "heart_rate")[inside].tolist())) > 3
    _, smoke = with_incident("device.fault", "stuck", "smoke", level=21.5)
    assert set(ch(smoke, "temp_c")[window(smoke)][1:].tolist()) == {21.5}


def test_a_drifting_thermistor_walks_off_steadily_up_to_its_level() -> None:
    from sensing_sim.incidents import DRIFT_C_PER_H

    fleet = Fleet(FleetSpec(n_gateways=1, n_devices=1, mix={"smoke": 1.0}, interval_s=60.0))
    quiet = Fleet(fleet.spec)
    d = fleet.devices[0]
    inc = fleet.add_incident(Incident.of("device.fault", d.id, d.gateway, d.area, 3600.0,
                                         variant="drift", level=8.0))
    assert inc.end_s - inc.start_s >= 12 * 3600 and inc.channel == "temp_c"

    def temps(f: Fleet) -> np.ndarray:
        driver = f.driver(d.gateway, start_ms=0)
        return np.array([s.values["temp_c"] for now in range(0, 20 * 3_600_000, 60_000)
                         for s in driver.poll(now)])

    offset = temps(fleet) - temps(quiet)
    hours = np.arange(offset.size) / 60.0
    before, ramp, plateau = hours < 1.0, (hours > 1.1) & (hours < 8.9), hours > 9.1
    plateau &= hours < 16.9
    assert (offset[before] == 0).all() and (offset[hours > 17.1] == 0).all()
    expected = DRIFT_C_PER_H * (hours[ramp] - 1.0)
    assert np.abs(offset[ramp] - expected).max() < 0.1, "a steady walk of 1 °C per hour"
    assert np.abs(offset[plateau] - 8.0).max() < 0.02


def test_inactivity_walks_to_a_chair_then_stays_still() -> None:
    from sensing_sim.incidents import INACTIVITY_LEAD_S

    _, loud = with_incident("wearable.inactivity", end_s=END_S)
    t = np.array([s.ts / 1000.0 for s in loud])
    steps, accel = ch(loud, "steps"), ch(loud, "accel_g")
    lead = (t >= START_S - INACTIVITY_LEAD_S + 0.2) & (t < START_S)
    assert lead.any() and (steps[lead] >= 2).all() and (accel[lead] >= 1.2).all()
    still = (t >= START_S + 0.2) & (t < END_S)
    assert still.sum() >= 55
    assert (steps[still] == 0).all()
    assert ((accel[still] >= 1.0) & (accel[still] <= 1.02)).all()


def test_device_offline_silences_only_its_device_and_window() -> None:
    inc = Incident.of("device.offline", "smoke-000001", "gw-01", "demo-a", 10.0, 20.0)
    assert inc.silences(10.0) and inc.silences(19.99)
    assert not inc.silences(9.99) and not inc.silences(20.0)
    assert not Incident.of("wearable.sos", "wearable-000001", "gw-01", "demo-a",
                           10.0).silences(12.0)
    fleet = Fleet(SPEC)
    target = fleet.devices[0]
    fleet.add_incident(Incident.of("device.offline", target.id, target.gateway, target.area,
                                   START_S, END_S))
    driver = fleet.driver(target.gateway, start_ms=0)
    seen: dict[str, list[float]] = {}
    for now in range(0, RUN_S * 1000, 100):
        for sample in driver.poll(now):
            seen.setdefault(sample.device, []).append(sample.ts / 1000)
    assert len(seen[target.id]) in (RUN_S - (END_S - START_S), RUN_S - (END_S - START_S) - 1)
    assert not [t for t in seen[target.id] if START_S + 0.1 <= t < END_S]
    assert all(d.id == target.id or len(seen[d.id]) in (RUN_S - 1, RUN_S)
               for d in fleet.devices_of(target.gateway))
    assert driver.samples_taken == sum(len(v) for v in seen.values())


@pytest.mark.parametrize(("kind", "grade"), [("smoke", Grade.MAJOR), ("manhole", Grade.MINOR),
                                             ("wearable", Grade.MAJOR)])
def test_device_offline_is_graded_by_the_kind_of_device(kind: str, grade: Grade) -> None:
    assert Incident.of("device.offline", "x", "gw-01", "demo-a", 1.0, kind=kind).grade is grade
    fleet = Fleet(SPEC)
    d = next(d for d in fleet.devices if d.kind == kind)
    unknown = Incident.of("device.offline", d.id, d.gateway, d.area, 1.0)
    assert unknown.device_kind is None
    added = fleet.add_incident(unknown)
    assert added.grade is grade and added.device_kind == kind
    assert fleet.incidents_of(d.id) == [added]


def test_what_depends_on_the_kind_is_settled_when_added() -> None:
    fleet = Fleet(SPEC)
    smoke = next(d for d in fleet.devices if d.kind == "smoke")
    unknown = Incident.of("device.fault", smoke.id, smoke.gateway, smoke.area, 1.0)
    assert unknown.variant == "impossible" and np.isnan(unknown.level)
    with pytest.raises(ValueError, match="not known"):
        _ = unknown.channel
    added = fleet.add_incident(unknown)
    assert (added.channel, added.level, added.device_kind) == ("co_ppm", -50.0, "smoke")
    manhole = next(d for d in fleet.devices if d.kind == "manhole")
    for variant in ("stuck", "drift"):
        with pytest.raises(ValueError, match="cannot happen"):
            fleet.add_incident(Incident.of("device.fault", manhole.id, manhole.gateway,
                                           manhole.area, 1.0, variant=variant))
    with pytest.raises(ValueError, match="cannot happen"):
        Incident.of("device.fault", "x", "gw-01", "demo-a", 1.0, variant="drift",
                    kind="wearable")
    wearable = next(d for d in fleet.devices if d.kind == "wearable")
    with pytest.raises(ValueError, match="on a smoke device, not wearable"):
        fleet.add_incident(Incident.of("device.fault", wearable.id, wearable.gateway,
                                       wearable.area, 1.0, kind="smoke"))


def test_gateway_outages_are_on_gateways_and_change_no_reading() -> None:
    fleet = Fleet(SPEC)
    gw = fleet.gateways[1]
    outage = fleet.add_incident(Incident.of("gateway.offline", gw.id, gw.id, gw.area, 30.0))
    assert (outage.device, outage.gateway, outage.grade) == (gw.id, gw.id, Grade.MAJOR)
    assert fleet.gateway_outages(gw.id) == [outage] and fleet.gateway_outages("gw-01") == ()
    assert outage in fleet.incidents and outage.to_dict()["device"] == gw.id
    # given a device under the gateway (a scenario placing it "on gw-02"): the gateway's
    device = fleet.devices_of(gw.id)[0]
    moved = fleet.add_incident(Incident.of("gateway.offline", device.id, gw.id, gw.area, 300.0))
    assert moved.device == gw.id and len(fleet.gateway_outages(gw.id)) == 2
    with pytest.raises(ValueError, match="no gateway"):
        fleet.add_incident(Incident.of("gateway.offline", "gw-99", "gw-99", gw.area, 1.0))
    with pytest.raises(ValueError, match="must be its gateway"):
        fleet.add_incident(Incident.of("gateway.offline", "gw-01", gw.id, gw.area, 1.0))
    with pytest.raises(ValueError, match="is in"):
        fleet.add_incident(Incident.of("gateway.offline", gw.id, gw.id, "elsewhere", 1.0))
    quiet, loud = Fleet(SPEC), fleet
    for d in fleet.devices_of(gw.id)[:3]:
        assert samples_of(quiet, d.id) == samples_of(loud, d.id)


def test_inactivity_is_raised_limit_after_its_start_in_the_cores_daytime() -> None:
    from sensing_sim.incidents import INACTIVITY_LIMIT_S, inactivity_raised_by_s

    midnight_utc = 1_795_478_400_000  # 08:00 at UTC+8
    hour = 3600.0
    assert inactivity_raised_by_s(midnight_utc, 0.0) == INACTIVITY_LIMIT_S
    assert inactivity_raised_by_s(midnight_utc, 2 * hour, 30.0) == 5 * hour + 30.0
    # at 06:00 local: counted from 08:00
    assert inactivity_raised_by_s(midnight_utc - 2 * 3_600_000, 0.0) == 5 * hour
    # at 19:00 local: too late today, counted from 08:00 tomorrow
    assert inactivity_raised_by_s(midnight_utc, 11 * hour) == 24 * hour + INACTIVITY_LIMIT_S
    assert inactivity_raised_by_s(midnight_utc, 14 * hour) == 24 * hour + INACTIVITY_LIMIT_S


def test_incident_labels() -> None:
    inc = Incident.of("smoke.fire", "smoke-000001", "gw-01", "demo-a", 5.0)
    assert inc.grade is Grade.MAJOR  # one detector alone; two nearby would be critical
    assert inc.end_s > inc.start_s and 15.0 <= inc.level <= 25.0
    assert inc.active(5.0) and not inc.active(inc.end_s) and not inc.active(4.999)
    d = inc.to_dict(run_start_ms=1_000_000)
    assert d["grade"] == "major" and d["type"] == "smoke.fire"
    assert d["ts_start"] == 1_005_000 and d["ts_end"] == 1_000_000 + round(inc.end_s * 1000)
    assert "ts_start" not in inc.to_dict()
    assert d["variant"] == "" and d["device_kind"] == "smoke"
    hr = Incident.of("wearable.vitals", "wearable-000001", "gw-01", "demo-a", 5.0,
                     variant="hr_low")
    assert hr.to_dict()["variant"] == "hr_low" and hr.channel == "heart_rate"
    assert hr.grade is Grade.CRITICAL and hr.label == "wearable.vitals (hr_low)"
    default = Incident.of("wearable.vitals", "wearable-000001", "gw-01", "demo-a", 5.0)
    assert default.variant == "spo2" and default.channel == "spo2"
    fault = Incident.of("device.fault", "smoke-000001", "gw-01", "demo-a", 5.0,
                        variant="stuck", kind="smoke")
    assert fault.grade is Grade.MINOR and fault.to_dict()["variant"] == "stuck"


def test_bad_incidents_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown incident type"):
        Incident.of("smoke.toast", "smoke-000001", "gw-01", "demo-a", 5.0)
    with pytest.raises(ValueError, match="empty"):
        Incident.of("smoke.fire", "smoke-000001", "gw-01", "demo-a", 5.0, end_s=5.0)
    with pytest.raises(ValueError, match="no variant"):
        Incident.of("wearable.vitals", "wearable-000001", "gw-01", "demo-a", 5.0,
                    variant="hr_sideways")
    with pytest.raises(ValueError, match="no variant"):
        Incident.of("smoke.fire", "smoke-000001", "gw-01", "demo-a", 5.0, variant="spo2")
    fleet = Fleet(SPEC)
    manhole = next(d for d in fleet.devices if d.kind == "manhole")
    with pytest.raises(ValueError, match="cannot happen"):
        fleet.add_incident(Incident.of("smoke.fire", manhole.id, manhole.gateway, manhole.area, 1))
    with pytest.raises(ValueError, match="no device"):
        fleet.add_incident(Incident.of("smoke.fire", "smoke-999999", "gw-01", "demo-a", 1))
    with pytest.raises(ValueError, match="is on"):
        fleet.add_incident(Incident.of("device.battery", manhole.id, "gw-99", manhole.area, 1))


def test_a_fall_shows_its_impact_in_the_first_reading_after_it_however_long_the_interval(
) -> None:
    fall = Incident.of("wearable.fall", "w-1", "gw-01", "a", 100.0, 400.0, 4.0)
    quiet = {"heart_rate": 70.0, "spo2": 97.0, "accel_g": 1.0, "steps": 0.0, "sos": 0.0}
    # a wristband reading every 60 s: its reading 45 s after the fall carries the impact
    values, _ = fall.apply(145.0, quiet, 0.9, since_s=85.0)
    assert values["accel_g"] == 4.0
    values, _ = fall.apply(205.0, quiet, 0.9, since_s=145.0)
    assert values["accel_g"] < 1.1 and values["steps"] == 0.0
