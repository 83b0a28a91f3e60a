"""Fleet layout, the per-gateway driver's timing, and the demo incident schedule."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from sensing_sim import (
    DEMO_INCIDENT_TYPES,
    Fleet,
    FleetSpec,
    Incident,
    kind_counts,
)
from sensing_sim.fleet import DEMO_INCIDENTS
from sensing_sim.incidents import device_offline_needs_s


def test_devices_gateways_and_areas() -> None:
    fleet = Fleet(FleetSpec(n_gateways=4, n_devices=200, seed=2,
                            mix={"smoke": 0.5, "manhole": 0.25, "wearable": 0.25},
                            areas=("demo-a", "demo-b")))
    ids = [d.id for d in fleet.devices]
    assert len(set(ids)) == 200
    assert all(re.fullmatch(r"(smoke|manhole|wearable)-\d{6}", i) for i in ids)
    assert all(d.id.startswith(d.kind + "-") for d in fleet.devices)
    assert Counter(d.kind for d in fleet.devices) == {"smoke": 100, "manhole": 50, "wearable": 50}
    assert [(g.id, g.area) for g in fleet.gateways] == [
        ("gw-01", "demo-a"), ("gw-02", "demo-b"), ("gw-03", "demo-a"), ("gw-04", "demo-b")]
    per_gateway = Counter(d.gateway for d in fleet.devices)
    assert set(per_gateway.values()) == {50}
    for gw in fleet.gateways:
        assert {d.area for d in fleet.devices_of(gw.id)} == {gw.area}
        assert len({d.kind for d in fleet.devices_of(gw.id)}) == 3, "each gateway has a mix"
    phases = [d.phase_s for d in fleet.devices]
    assert all(0.0 <= p < 2.0 for p in phases) and len(set(phases)) == 200


def test_kind_counts_follow_the_mix() -> None:
    assert kind_counts(10, {"smoke": 1, "manhole": 1, "wearable": 1}) == {
        "smoke": 4, "manhole": 3, "wearable": 3}
    assert kind_counts(7, {"wearable": 2.0}) == {"wearable": 7}
    assert sum(kind_counts(999, {"smoke": 0.3, "manhole": 0.3, "wearable": 0.4}).values()) == 999


@pytest.mark.parametrize(
    "bad",
    [
        {"n_gateways": 0},
        {"n_devices": 1, "n_gateways": 2},
        {"mix": {"toaster": 1.0}},
        {"mix": {"smoke": 0.0}},
        {"areas": ("bad area",)},
        {"interval_s": 0.0},
        {"seed": -1},
    ],
)
def test_bad_specs_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FleetSpec(**bad)  # type: ignore[arg-type]


def test_driver_samples_each_device_once_per_interval_with_staggered_phases() -> None:
    fleet = Fleet(FleetSpec(n_gateways=1, n_devices=50, interval_s=2.0, seed=4))
    driver = fleet.driver("gw-01", start_ms=1_000_000)
    per_poll: list[int] = []
    seen: Counter[str] = Counter()
    for now in range(1_000_000, 1_060_000, 100):
        samples = driver.poll(now)
        assert all(s.ts == now for s in samples)
        per_poll.append(len(samples))
        seen.update(s.device for s in samples)
    assert len(seen) == 50 and set(seen.values()) <= {29, 30}  # polls stop at 59.9 s
    assert driver.samples_taken == seen.total()
    assert max(per_poll) <= 10, "phases are staggered, not all devices at once"


def test_a_late_poll_gives_one_sample_per_device_then_the_schedule_resumes() -> None:
    fleet = Fleet(FleetSpec(n_gateways=1, n_devices=10, interval_s=1.0, seed=4))
    driver = fleet.driver("gw-01")
    assert driver.poll(5_000) == [] or driver.start_ms == 5_000
    late = driver.poll(15_000)  # ten intervals late
    assert sorted(s.device for s in late) == sorted(d.id for d in driver.devices)
    assert len(driver.poll(15_000)) == 0
    assert len(driver.poll(16_000)) == 10


def test_demo_incidents_cover_the_types_on_distinct_devices() -> None:
    fleet = Fleet(FleetSpec(n_gateways=3, n_devices=60, seed=5))
    labels = fleet.schedule_demo_incidents(300.0)
    types = {i.type for i in labels}
    required = {"smoke.fire", "smoke.co", "manhole.displaced", "manhole.gas", "device.battery"}
    assert required <= types and types & {"wearable.vitals", "wearable.sos"}
    assert types == set(DEMO_INCIDENT_TYPES)
    assert {(i.type, i.variant or "") for i in labels} == {
        (t, v or "") for t, v in DEMO_INCIDENTS}
    assert {i.variant for i in labels if i.type == "wearable.vitals"} == {
        "spo2", "hr_high", "hr_low"}
    assert not types & {"device.offline", "gateway.offline", "wearable.inactivity"}
    assert all(i.device_kind == fleet.device(i.device).kind for i in labels)
    assert len({i.device for i in labels}) == len(labels)
    for inc in labels:
        device = fleet.device(inc.device)
        assert (inc.gateway, inc.area) == (device.gateway, device.area)
        assert inc.kind in (None, device.kind)
        assert 5.0 <= inc.start_s < inc.end_s <= 300.0
    starts = sorted(i.start_s for i in labels)
    assert starts[-1] - starts[0] > 100, "spread over the run"
    assert fleet.incidents == tuple(labels)
    again = Fleet(FleetSpec(n_gateways=3, n_devices=60, seed=5)).schedule_demo_incidents(300.0)
    assert again == labels, "deterministic from the seed"


def test_demo_incidents_fit_short_runs_and_skip_missing_kinds() -> None:
    fleet = Fleet(FleetSpec(n_gateways=1, n_devices=10, mix={"smoke": 1.0}, seed=5))
    labels = fleet.schedule_demo_incidents(5.0)
    assert {i.type for i in labels} == {"smoke.fire", "smoke.co", "device.battery",
                                        "device.fault"}
    assert all(0.0 < i.start_s < i.end_s <= 5.0 for i in labels)
    with pytest.raises(ValueError, match="too short"):
        fleet.schedule_demo_incidents(1.0)


def test_slow_incidents_are_scheduled_only_when_asked_for_and_the_run_is_long_enough() -> None:
    spec = FleetSpec(n_gateways=2, n_devices=30, interval_s=10.0, seed=5)
    short = Fleet(spec).schedule_demo_incidents(
        60.0, types=("device.offline", "wearable.inactivity", "smoke.co"))
    assert [i.type for i in short] == ["smoke.co"], "neither fits a minute"
    fleet = Fleet(spec)
    long = fleet.schedule_demo_incidents(
        600.0, types=("smoke.co", "device.offline", "gateway.offline"))
    assert [i.type for i in long] == ["device.offline", "smoke.co"], "the slowest first"
    offline = long[0]
    assert offline.end_s - offline.start_s >= device_offline_needs_s(10.0, offline.device_kind)
    assert offline.grade == {"manhole": "minor"}.get(offline.device_kind or "", "major")
    # a smoke detector's timeout: five of its kind's 60 s, and a batch's delay (310 s)
    assert fleet.length_needed_s("device.offline") == 360.0 > device_offline_needs_s(10.0)
    assert device_offline_needs_s(10.0) == device_offline_needs_s(10.0, "smoke") == 335.0
    assert device_offline_needs_s(10.0, "wearable") == 160.0 + 5 + 10 + 10
    slow = Fleet(FleetSpec(n_gateways=1, n_devices=3, interval_s=120.0))
    assert slow.length_needed_s("device.offline") == device_offline_needs_s(120.0) == 745.0
    assert fleet.length_needed_s("device.fault", "stuck", "wearable") == 45 * 60.0
    assert fleet.length_needed_s("device.fault", "stuck") == 6.5 * 3600.0
    day = Fleet(spec).schedule_demo_incidents(5 * 3600.0, types=("wearable.inactivity",))
    assert [(i.type, i.end_s - i.start_s) for i in day] == [("wearable.inactivity", 3.5 * 3600)]


def test_incidents_show_in_the_driver_output() -> None:
    fleet = Fleet(FleetSpec(n_gateways=1, n_devices=4, mix={"smoke": 1.0}, interval_s=1.0))
    target = fleet.devices[0]
    fleet.add_incident(Incident.of("smoke.co", target.id, target.gateway, target.area, 10.0,
                                   40.0, level=400.0))
    driver = fleet.driver("gw-01", start_ms=0)
    co = {
        now: s.values["co_ppm"]
        for now in range(0, 50_000, 100)
        for s in driver.poll(now)
        if s.device == target.id
    }
    assert max(v for t, v in co.items() if t < 10_000) <= 5.0
    assert max(co.values()) == 400.0
    assert max(v for t, v in co.items() if t >= 40_200) <= 5.0


def test_incidents_last_long_enough_for_several_readings_at_a_long_interval() -> None:
    quick = Fleet(FleetSpec(n_gateways=1, n_devices=10, interval_s=2.0))
    slow = Fleet(FleetSpec(n_gateways=1, n_devices=10, interval_s=60.0))
    assert quick.length_needed_s("wearable.sos") < 60
    assert slow.length_needed_s("wearable.sos") >= 5 * 60
    assert slow.length_needed_s("smoke.fire") >= 5 * 60
    assert slow.length_needed_s("gateway.offline") == quick.length_needed_s("gateway.offline")
