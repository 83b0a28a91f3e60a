"""The core, fed offline, detects each kind of labelled incident at its grade and nothing else:
heart rate out of range, sensor faults (impossible, stuck, drifting), silent devices and
gateways, daytime inactivity; and a night of sleepers and steamy bathrooms raises nothing.

Small fleets over long simulated spans: a few devices sampling every 30-60 s.
"""

from __future__ import annotations

from collections.abc import Iterable

from sensing.wire import Grade
from sensing_sim.fleet import Device, Fleet, FleetSpec
from sensing_sim.incidents import (
    INACTIVITY_LIMIT_S,
    Incident,
    device_offline_needs_s,
    inactivity_raised_by_s,
)
from sensing_sim.offline import OfflineRun, run_offline
from sensing_sim.score import Alert, TypeScore, alerts_from_transitions, score
from sensing_sim.signals import SmokeSignal, WearableSignal, local_time_of_day_s

START = 1_795_478_400_000
"""2026-11-24 00:00 UTC: 08:00 in the core's local time (UTC+8), the start of its daytime"""
HOUR = 3600.0
HOUR_MS = 3_600_000


def spec(n: int, interval_s: float, start_ms: int = START, seed: int = 3, gateways: int = 1,
         mix: dict[str, float] | None = None) -> FleetSpec:
    """A fleet whose signals' time of day is the core's."""
    return FleetSpec(n_gateways=gateways, n_devices=n, interval_s=interval_s, seed=seed,
                     mix=mix or {"smoke": 1, "manhole": 1, "wearable": 1},
                     day_start_s=local_time_of_day_s(start_ms))


def devices(fleet: Fleet, kind: str, gateway: str | None = None) -> list[Device]:
    return [d for d in fleet.devices if d.kind == kind and gateway in (None, d.gateway)]


def on(device: Device, type_: str, start_s: float, end_s: float | None = None,
       variant: str = "") -> Incident:
    return Incident.of(type_, device.id, device.gateway, device.area, start_s, end_s,
                       variant=variant)


def scored(fleet: Fleet, duration_s: float, *, start_ms: int = START, poll_s: float = 1.0
           ) -> tuple[dict[str, TypeScore], list[Alert], OfflineRun]:
    run = run_offline(fleet, duration_s, start_ms=start_ms, poll_s=poll_s)
    alerts = alerts_from_transitions(run.alerts)
    labels = [i.to_dict(start_ms) for i in fleet.incidents]
    return {s.type: s for s in score(labels, alerts)}, alerts, run


def assert_each_detected_at_its_grade_and_nothing_else(
    fleet: Fleet, scores: dict[str, TypeScore], alerts: Iterable[Alert]
) -> None:
    assert set(scores) == {i.type for i in fleet.incidents}, "no other alert type"
    for s in scores.values():
        assert (s.recall, s.precision, s.duplicates) == (1.0, 1.0, 0), s
        assert s.grade_ok == s.detected, s
    top = {(a.device, a.type): a.grade for a in alerts}
    for inc in fleet.incidents:
        assert top[(inc.device, inc.type)] is inc.grade, inc  # exactly, not just at least


def latency_s(alerts: Iterable[Alert], inc: Incident, start_ms: int = START) -> float:
    first = min(a.ts_raised for a in alerts if (a.device, a.type) == (inc.device, inc.type))
    return (first - start_ms) / 1000 - inc.start_s


def test_heart_rate_impossible_values_silent_devices_and_a_gateway_outage() -> None:
    fleet = Fleet(spec(16, 2.0, gateways=2, mix={"smoke": 1, "manhole": 1, "wearable": 2}))
    w = devices(fleet, "wearable")
    quick = [on(w[2], "wearable.vitals", 20.0, variant="hr_high"),
             on(w[3], "wearable.vitals", 25.0, variant="hr_low")]
    quick += [on(devices(fleet, k)[0], "device.fault", 30.0) for k in
              ("smoke", "manhole", "wearable")]
    offline = [on(devices(fleet, k)[1], "device.offline", 40.0) for k in
               ("smoke", "manhole", "wearable")]
    assert len({i.device for i in quick + offline}) == 8, "each on its own device"
    gw = fleet.gateways[1]
    outage = Incident.of("gateway.offline", gw.id, gw.id, gw.area, 500.0)  # after the silences
    for inc in [*quick, *offline, outage]:
        fleet.add_incident(inc)
    scores, alerts, run = scored(fleet, 700.0)
    assert_each_detected_at_its_grade_and_nothing_else(fleet, scores, alerts)
    assert scores["device.fault"].detected == 3 and scores["device.offline"].detected == 3
    assert {i.grade for i in fleet.incidents if i.type == "device.offline"} == {
        Grade.MAJOR, Grade.MINOR}  # a silent manhole sensor is minor
    for inc in fleet.incidents:
        late = latency_s(alerts, inc)
        if inc.type == "device.offline":
            assert 60.0 <= late <= device_offline_needs_s(2.0, inc.device_kind), inc
        elif inc.type == "gateway.offline":
            assert 0.0 <= late <= 2.0
        else:
            assert 0.0 <= late <= 45.0, inc
    assert run.sent["readings_sent"] == run.sent["readings_sampled"]  # outage backlog sent


def test_inactivity_is_raised_three_daytime_hours_after_the_stillness_began() -> None:
    fleet = Fleet(spec(4, 30.0, mix={"smoke": 1, "wearable": 1}))
    wearer = devices(fleet, "wearable")[0]
    inc = fleet.add_incident(on(wearer, "wearable.inactivity", 0.5 * HOUR))
    scores, alerts, _ = scored(fleet, 4.5 * HOUR, poll_s=30.0)
    assert_each_detected_at_its_grade_and_nothing_else(fleet, scores, alerts)
    late = latency_s(alerts, inc)
    assert INACTIVITY_LIMIT_S - 30.0 <= late <= INACTIVITY_LIMIT_S + 60.0
    assert late + inc.start_s <= inactivity_raised_by_s(START, inc.start_s, 30.0)
    assert inc.grade is Grade.MAJOR


def test_stillness_from_before_the_cores_daytime_is_counted_from_its_morning() -> None:
    start_ms = START - 2 * HOUR_MS  # 06:00 local, the wearer still in bed or just up
    fleet = Fleet(spec(4, 30.0, start_ms=start_ms, mix={"smoke": 1, "wearable": 1}))
    wearer = devices(fleet, "wearable")[0]
    inc = fleet.add_incident(on(wearer, "wearable.inactivity", 120.0, 5.6 * HOUR))
    scores, alerts, _ = scored(fleet, 5.6 * HOUR, start_ms=start_ms, poll_s=30.0)
    assert_each_detected_at_its_grade_and_nothing_else(fleet, scores, alerts)
    raised = latency_s(alerts, inc, start_ms) + inc.start_s
    assert 5 * HOUR <= raised <= inactivity_raised_by_s(start_ms, inc.start_s, 30.0), (
        "not before 08:00 + 3 h")


def test_stuck_sensors_a_frozen_heart_rate_and_room_temperature() -> None:
    fleet = Fleet(spec(3, 30.0))
    hr = fleet.add_incident(on(devices(fleet, "wearable")[0], "device.fault", 600.0,
                               variant="stuck"))
    temp = fleet.add_incident(on(devices(fleet, "smoke")[0], "device.fault", 600.0,
                                 variant="stuck"))
    assert (hr.channel, temp.channel) == ("heart_rate", "temp_c")
    scores, alerts, _ = scored(fleet, 7.0 * HOUR, poll_s=30.0)
    assert_each_detected_at_its_grade_and_nothing_else(fleet, scores, alerts)
    from sensing.detect.fault import STUCK_DEFAULTS

    for inc, key in ((hr, ("wearable", "heart_rate")), (temp, ("smoke", "temp_c"))):
        p = STUCK_DEFAULTS[key]  # frozen from the start: raised after the check's duration
        least = max(p.min_duration_s, 30.0 * (p.min_count - 1))
        assert least <= latency_s(alerts, inc) <= least + 2 * 60, inc


def test_a_drifting_thermistor_is_found_against_a_days_baseline() -> None:
    fleet = Fleet(spec(2, 60.0, mix={"smoke": 1}))
    inc = fleet.add_incident(on(devices(fleet, "smoke")[0], "device.fault", 24 * HOUR,
                                variant="drift"))
    scores, alerts, _ = scored(fleet, 41 * HOUR, poll_s=60.0)
    assert_each_detected_at_its_grade_and_nothing_else(fleet, scores, alerts)
    assert 6 * HOUR <= latency_s(alerts, inc) <= inc.end_s - inc.start_s


def test_a_night_and_a_day_of_sleepers_and_steamy_bathrooms_raises_nothing() -> None:
    start_ms = START + 13 * HOUR_MS  # 21:00 local
    fleet = Fleet(spec(40, 60.0, start_ms=start_ms, seed=8, mix={"smoke": 1, "wearable": 1}))
    signals = [fleet.signal(d) for d in fleet.devices]
    assert sum(isinstance(s, SmokeSignal) and s.steamy for s in signals) >= 3
    sleepers = [s for s in signals if isinstance(s, WearableSignal)]
    assert all(s.asleep(5 * HOUR) and not s.asleep(14 * HOUR) for s in sleepers)  # 02:00, 11:00
    _, _, run = scored(fleet, 24 * HOUR, start_ms=start_ms, poll_s=60.0)
    assert run.readings == 40 * 24 * 60
    assert run.alerts == []
