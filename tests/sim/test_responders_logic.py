"""The simulated responders as pure logic: who answers, when, and with what outcome."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sensing.dispatch.directory import Directory, parse_directory
from sensing_sim.responders import (
    DEFAULT_ROLES,
    Behaviour,
    CaseMessage,
    DispatchMessage,
    ResponderSim,
    RoleBehaviour,
    Truth,
    draw,
    expected_outcome,
    label_key,
    take_delay_s,
    unreachable,
)

T0 = 1_795_485_600_000
MQTT = [{"channel": "mqtt"}]


def person(pid: str, role: str, area: str) -> dict[str, Any]:
    return {"id": pid, "roles": [role], "areas": [area], "contacts": MQTT}


DIRECTORY: dict[str, Any] = {
    "areas": [
        {"id": "city", "level": "city"},
        {"id": "district-a", "level": "district", "parent": "city"},
        {"id": "street-a", "level": "street", "parent": "district-a"},
        {"id": "comm-1", "level": "community", "parent": "street-a"},
        {"id": "comm-2", "level": "community", "parent": "street-a"},
    ],
    "responders": [
        person("grid-1", "grid_worker", "comm-1"), person("duty-1", "duty_officer", "comm-1"),
        person("maint-1", "maintenance", "comm-1"), person("vol-1", "volunteer", "comm-1"),
        person("grid-2", "grid_worker", "comm-2"), person("duty-2", "duty_officer", "comm-2"),
        person("cc-street-a", "street_command", "street-a"),
        person("cc-district-a", "district_command", "district-a"),
        person("cc-city", "city_command", "city"),
    ],
    "residents": [{"id": "res-w1", "area": "comm-1", "devices": ["wearable-1", "smoke-1"],
                   "relatives": [{"id": "rel-a", "contacts": MQTT},
                                 {"id": "rel-b", "contacts": MQTT}]}],
}

CERTAIN = RoleBehaviour(1.0, (40, 40), (100, 100), (200, 200))
"""takes every time, after exactly 40 s; arrives 100 s later, disposes 200 s after that"""
NEVER = RoleBehaviour(0.0, (1, 1), (1, 1), (1, 1))


def behaviour(**roles: RoleBehaviour) -> Behaviour:
    return Behaviour(roles={**{r: NEVER for r in DEFAULT_ROLES}, **roles},
                     unanswered_share=0.0, first_unanswered=False)


def label(type_: str, device: str, start_s: float, end_s: float, gateway: str = "gw-1",
          **extra: Any) -> dict[str, Any]:
    return {"type": type_, "device": device, "gateway": gateway, "area": "comm-1",
            "grade": "critical", "variant": "", "start_s": start_s, "end_s": end_s,
            "ts_start": T0 + round(start_s * 1000), "ts_end": T0 + round(end_s * 1000), **extra}


@pytest.fixture(scope="module")
def directory() -> Directory:
    return parse_directory(DIRECTORY)


def dispatch(case_id: str, who: str, role: str, step: int = 0, round_: int = 0,
             type_: str = "smoke.fire", device: str = "smoke-1", at_ms: int = T0,
             area: str = "comm-1") -> DispatchMessage:
    return DispatchMessage(case_id=case_id, alert_id=case_id, responder=who, role=role,
                           step=step, round=round_, type=type_, grade="critical", area=area,
                           device=device, ts_event=at_ms, ts_raised=at_ms,
                           notification_id=f"{case_id}/{step}/{round_}/{who}")


def case_msg(case_id: str, event: str, at_ms: int, type_: str = "smoke.fire",
             device: str = "smoke-1", **extra: Any) -> CaseMessage:
    state = {"taken": "taken", "reassigned": "taken", "arrived": "arrived",
             "disposed": "disposed", "resolved": "resolved"}.get(event, "open")
    return CaseMessage(case_id=case_id, event=event, ts=at_ms, type=type_, area="comm-1",
                       device=device, state=extra.pop("state", state), **extra)


# -- who answers, when -----------------------------------------------------------------------

ROLES = sorted(DEFAULT_ROLES)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), incident=st.text(max_size=40),
       who=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), role=st.sampled_from(ROLES),
       step=st.integers(0, 20), round_=st.integers(0, 50), unanswered=st.booleans(),
       scale=st.sampled_from([0.1, 1.0, 3.0]))
def test_a_take_comes_within_the_roles_range_and_the_same_every_time(
        seed: int, incident: str, who: str, role: str, step: int, round_: int,
        unanswered: bool, scale: float) -> None:
    b = Behaviour(time_scale=scale)
    delay = take_delay_s(b, seed, incident, who, role, step, round_, unanswered)
    assert delay == take_delay_s(b, seed, incident, who, role, step, round_, unanswered)
    r = DEFAULT_ROLES[role]
    if delay is not None:
        assert r.take_s[0] * scale <= delay <= r.take_s[1] * scale
        assert not (unanswered and r.local)
        assert not unreachable(b, seed, who, role)
    elif r.unreachable_share == 0 and r.take_p == 1 and not (unanswered and r.local):
        pytest.fail(f"a {role} always answers")


def test_the_shares_of_the_roles_hold_over_many_people() -> None:
    b = Behaviour()
    people = [f"p{i}" for i in range(4000)]
    for role in ("grid_worker", "relative", "volunteer"):
        share = sum(unreachable(b, 1, p, role) for p in people) / len(people)
        assert abs(share - DEFAULT_ROLES[role].unreachable_share) < 0.03, role
        reachable = [p for p in people if not unreachable(b, 1, p, role)]
        took = sum(take_delay_s(b, 1, "inc", p, role, 0, 0, False) is not None
                   for p in reachable) / len(reachable)
        assert abs(took - DEFAULT_ROLES[role].take_p) < 0.04, role
    for role in ("duty_officer", "street_command", "maintenance"):
        assert all(take_delay_s(b, 1, "inc", p, role, 0, 0, False) for p in people[:200])
    # nobody local answers an unanswered case; command centres still do
    assert all(take_delay_s(b, 1, "inc", p, "duty_officer", 0, 0, True) is None
               for p in people[:200])
    assert all(take_delay_s(b, 1, "inc", p, "street_command", 0, 0, True)
               for p in people[:200])


def test_draws_are_uniform_and_fixed_by_their_parts() -> None:
    xs = [draw(7, "x", i) for i in range(10_000)]
    assert all(0 <= x < 1 for x in xs)
    assert abs(sum(xs) / len(xs) - 0.5) < 0.01
    assert draw(7, "x", 1) == draw(7, "x", 1) != draw(8, "x", 1)


# -- the ground truth ------------------------------------------------------------------------


@pytest.mark.parametrize(("type_", "outcome"), [
    ("smoke.fire", "fire"), ("smoke.co", "other"), ("manhole.displaced", "other"),
    ("manhole.gas", "other"), ("device.fault", "device_fault"),
    ("device.battery", "device_fault"), ("device.offline", "device_fault"),
    ("gateway.offline", "device_fault")])
def test_each_incident_calls_for_its_outcome(type_: str, outcome: str) -> None:
    assert expected_outcome(label(type_, "d", 10, 20)) == outcome


def test_a_residents_incident_ends_fine_or_not_by_its_label_alone() -> None:
    falls = [label("wearable.fall", f"wearable-{i}", i, i + 60) for i in range(400)]
    outcomes = [expected_outcome(lb) for lb in falls]
    assert set(outcomes) == {"resident_ok", "other"}
    assert 0.4 < outcomes.count("resident_ok") / len(outcomes) < 0.6
    assert outcomes == [expected_outcome(dict(lb)) for lb in falls]
    assert expected_outcome(None) == "false_alarm"


def test_truth_matches_alerts_to_incidents() -> None:
    fire = label("smoke.fire", "smoke-1", 300, 600, gateway="gw-12")
    partner = label("smoke.fire", "smoke-2", 303, 600, gateway="gw-12")
    fault = label("device.fault", "smoke-3", 1000, 1100, variant="impossible")
    sos = label("wearable.sos", "wearable-1", 1080, 1100)
    truth = Truth([sos, fault, partner, fire])
    # two detectors of one fire are one incident
    assert truth.incident_key(partner) == truth.incident_key(fire) == label_key(fire)
    assert truth.label_of("smoke-2", "smoke.fire", T0 + 310_000) == partner
    # a broken sensor's fire alarm is its fault
    assert expected_outcome(truth.label_of("smoke-3", "smoke.fire", T0 + 1_001_000)) \
        == "device_fault"
    # an alert no incident explains, or long after one, is a false alarm ...
    assert truth.label_of("smoke-9", "smoke.fire", T0 + 310_000) is None
    assert truth.label_of("smoke-1", "smoke.co", T0 + 5_000_000) is None
    # ... unless only the clocks differ (a replay's labels): same device and type
    assert truth.label_of("smoke-1", "smoke.fire", T0 + 5_000_000) == fire
    # the first SOS or fall is the case nobody local answers, before an earlier fire
    assert truth.first_life_safety == label_key(sos)
    assert Truth([fire, fault]).first_life_safety == label_key(fire)


# -- a case from told to disposed ------------------------------------------------------------


def test_a_case_is_taken_reached_and_disposed_with_the_truths_outcome(
        directory: Directory) -> None:
    truth = Truth([label("smoke.fire", "smoke-1", 0, 300)])
    sim = ResponderSim(directory, truth, behaviour(grid_worker=CERTAIN), seed=1)
    sim.on_case(case_msg("c1", "opened", T0 + 10_000), T0 + 10_000)
    sim.on_dispatch(dispatch("c1", "grid-1", "grid_worker", at_ms=T0 + 10_000), T0 + 10_000)
    assert sim.next_due_ms() == T0 + 50_000
    assert sim.due(T0 + 49_999) == []
    [take] = sim.due(T0 + 50_000)
    topic, payload = take.message()
    assert topic == "sensing/v1/ack/grid-1"
    assert orjson.loads(payload) == {"alert_id": "c1", "by": "grid-1", "action": "take"}
    sim.on_case(case_msg("c1", "taken", T0 + 50_100, taken_by="grid-1", by="grid-1"),
                T0 + 50_100)
    [arrived] = sim.due(T0 + 150_100)
    assert (arrived.action, arrived.responder) == ("arrived", "grid-1")
    sim.on_case(case_msg("c1", "arrived", T0 + 150_200, taken_by="grid-1", by="grid-1"),
                T0 + 150_200)
    [dispose] = sim.due(T0 + 350_200)
    doc = orjson.loads(dispose.message()[1])
    assert doc["action"] == "dispose" and doc["outcome"] == "fire" and doc["note"]
    sim.on_case(case_msg("c1", "disposed", T0 + 350_300, outcome="fire"), T0 + 350_300)
    assert sim.open_cases() == 0 and sim.pending() == 0
    report = sim.report()
    assert report["sent"] == {"take": 1, "arrived": 1, "dispose": 1}
    assert report["outcomes"] == {"fire": 1}
    assert report["case_records"][0]["expected"] == "fire"


def test_once_someone_took_it_the_others_stand_down(directory: Directory) -> None:
    sim = ResponderSim(directory, Truth([]), behaviour(grid_worker=CERTAIN, relative=replace(
        CERTAIN, take_s=(60, 60))), seed=1)
    sim.on_dispatch(dispatch("c1", "grid-1", "grid_worker"), T0)
    sim.on_dispatch(dispatch("c1", "rel-a", "relative", step=1), T0 + 1000)
    sim.on_dispatch(dispatch("c1", "rel-b", "relative", step=1), T0 + 1000)
    sim.on_case(case_msg("c1", "taken", T0 + 30_000, taken_by="duty-1"), T0 + 30_000)
    assert sim.pending() == 2  # duty-1's arrival and the case's sweep
    [arrived] = sim.due(T0 + 200_000)
    assert (arrived.action, arrived.responder) == ("arrived", "duty-1")
    # a take sent before the taken arrived is refused by the core: counted, nothing else
    sim.on_refusal("ack_refused")
    assert sim.report()["refused"] == {"ack_refused": 1}


def test_a_cleared_case_nobody_took_is_disposed_by_the_grid_worker_told(
        directory: Directory) -> None:
    sim = ResponderSim(directory, Truth([]), behaviour(relative=replace(CERTAIN,
                                                                        take_s=(500, 500))))
    sim.on_dispatch(dispatch("c1", "rel-a", "relative", step=1), T0)
    sim.on_dispatch(dispatch("c1", "grid-1", "grid_worker"), T0)
    sim.on_case(case_msg("c1", "cleared", T0 + 100_000), T0 + 100_000)
    [dispose] = sim.due(T0 + 400_000)
    assert (dispose.action, dispose.responder, dispose.outcome) == (
        "dispose", "grid-1", "false_alarm")
    assert T0 + 100_000 + 30_000 <= dispose.due_ms <= T0 + 100_000 + 180_000
    assert sim.due(T0 + 10**8) == []  # rel-a's take is dropped


def test_the_runs_own_gateway_outages_are_disposed_at_once(directory: Directory) -> None:
    sim = ResponderSim(directory, Truth([]), behaviour())
    sim.shutdown_from(T0)
    sim.on_case(case_msg("g1", "opened", T0 + 2000, type_="gateway.offline", device="gw-1"),
                T0 + 2000)
    [dispose] = sim.due(T0 + 32_000)
    assert (dispose.responder, dispose.outcome) == ("duty-1", "other")
    sim.on_case(case_msg("g0", "opened", T0 - 5000, type_="gateway.offline", device="gw-1"),
                T0 - 5000)
    assert sim.cases["g0"].shutdown is False


def test_a_case_left_open_is_taken_on_by_the_areas_duty_officer(directory: Directory) -> None:
    sim = ResponderSim(directory, Truth([]), replace(behaviour(), sweep_s=600))
    sim.on_case(case_msg("c1", "opened", T0), T0)
    sim.on_dispatch(dispatch("c1", "grid-1", "grid_worker"), T0)
    assert sim.due(T0 + 599_999) == []
    [take] = sim.due(T0 + 600_000)
    assert (take.action, take.responder) == ("take", "duty-1")
    # refused or ignored: another sweep later
    assert sim.next_due_ms() == T0 + 1_200_000


def test_nobody_local_answers_the_first_sos_the_command_centre_takes(
        directory: Directory) -> None:
    sos = label("wearable.sos", "wearable-1", 100, 110)
    sim = ResponderSim(directory, Truth([sos]), Behaviour(), seed=3)
    assert sim.behaviour.first_unanswered
    for n, (who, role) in enumerate([("grid-1", "grid_worker"), ("rel-a", "relative"),
                                     ("rel-b", "relative"), ("vol-1", "volunteer"),
                                     ("duty-1", "duty_officer")]):
        for round_ in range(3):
            sim.on_dispatch(dispatch("s1", who, role, n, round_, "wearable.sos", "wearable-1",
                                     T0 + 100_000), T0 + 100_000 + round_ * 60_000)
    assert sim.cases["s1"].unanswered and sim.pending() == 1  # the sweep only
    sim.on_dispatch(dispatch("s1", "cc-street-a", "street_command", 5, 0, "wearable.sos",
                             "wearable-1"), T0 + 700_000)
    [take] = sim.due(T0 + 770_000)
    assert take.responder == "cc-street-a"
    assert sim.report()["silent"] == {"grid_worker": 3, "relative": 6, "volunteer": 3,
                                      "duty_officer": 3}


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(list(range(6))), copies=st.lists(st.integers(0, 5), max_size=4))
def test_what_they_do_does_not_depend_on_the_order_messages_arrive(
        directory: Directory, order: list[int], copies: list[int]) -> None:
    told = [("grid-1", "grid_worker", 0), ("rel-a", "relative", 1), ("rel-b", "relative", 1),
            ("vol-1", "volunteer", 2), ("duty-1", "duty_officer", 3),
            ("cc-street-a", "street_command", 4)]
    truth = Truth([label("smoke.fire", "smoke-1", 0, 300)])

    def plans(sequence: list[int]) -> set[tuple[str, str, int]]:
        sim = ResponderSim(directory, truth, Behaviour(unanswered_share=0.5), seed=11)
        for i in sequence:
            who, role, step = told[i]
            sim.on_dispatch(dispatch("c1", who, role, step), T0)
        return {(p.responder, p.action, p.due_ms) for p in sim.due(T0 + 10**7)}

    assert plans(order + copies) == plans(list(range(6)))


def test_updates_to_those_told_and_the_steps_names_are_understood(
        directory: Directory) -> None:
    sim = ResponderSim(directory, Truth([]), behaviour(relative=CERTAIN))
    update = dispatch("c1", "grid-1", "grid_worker").model_dump() | {
        "responder": None, "step": -1, "state": "resolved"}
    sim.on_dispatch(DispatchMessage.model_validate(update), T0)
    assert sim.report()["unaddressed"] == 1
    # a notified event names the step's whom ("relatives"); the role is "relative"
    sim.on_case(case_msg("c1", "notified", T0, role="relatives", responders=("rel-a",)), T0)
    assert sim.cases["c1"].told == {"rel-a": "relative"}
    reassigned = dispatch("c1", "rel-a", "relative", step=-1, round_=T0)
    sim.on_dispatch(DispatchMessage.model_validate(reassigned.model_dump()), T0)


def test_messages_are_checked_at_the_boundary() -> None:
    doc = dispatch("c1", "grid-1", "grid_worker").model_dump()
    DispatchMessage.model_validate({**doc, "members": ["c1"], "new_field": 1})
    for bad in ({"responder": "grid/1"}, {"responder": "x" * 65}, {"round": -1},
                {"step": -2}, {"case_id": ""}, {"case_id": "c" * 129}):
        with pytest.raises(ValidationError):
            DispatchMessage.model_validate({**doc, **bad})
    with pytest.raises(ValidationError):
        CaseMessage.model_validate({"case_id": "c1", "event": "opened"})  # no ts
    with pytest.raises(ValidationError):
        CaseMessage.model_validate({"case_id": "c1", "event": "notified", "ts": 1,
                                    "responders": ["a"] * 2000})
