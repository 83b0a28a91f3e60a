"""The dispatch engine without a broker: incidents, silences, who may act, clearing, reload,
and a replay's dispatch record."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from sensing.alerts.book import AlertBook
from sensing.dispatch.cases import Action, CaseState
from sensing.dispatch.directory import parse_directory
from sensing.dispatch.engine import ActionRefused, ActionRequest, DispatchEngine, DispatchOut
from sensing.dispatch.policy import routing_of
from sensing.dispatch.silences import Silence
from sensing.store.lineprotocol import LineFormatter
from sensing.wire.errors import Code
from sensing.wire.messages import Alert, Grade

T = 1_800_000_000_000


def directory() -> dict[str, Any]:
    return {
        "areas": [
            {"id": "city", "level": "city"},
            {"id": "s1", "level": "street", "parent": "city"},
            {"id": "c1", "level": "community", "parent": "s1"},
            {"id": "c2", "level": "community", "parent": "s1"},
        ],
        "responders": [
            {"id": "grid-1", "roles": ["grid_worker"], "areas": ["c1"]},
            {"id": "grid-2", "roles": ["grid_worker"], "areas": ["c2"]},
            {"id": "vol-1", "roles": ["volunteer"], "areas": ["c2"]},
            {"id": "duty-1", "roles": ["duty_officer"], "areas": ["c1"]},
            {"id": "street-1", "roles": ["street_command"], "areas": ["s1"]},
            {"id": "city-1", "roles": ["city_command"], "areas": ["city"]},
        ],
        "residents": [{"id": "res-1", "area": "c1", "devices": ["wearable-1", "smoke-1"],
                       "relatives": [{"id": "rel-1"}]}],
    }


def engine(doc: dict[str, Any] | None = None) -> DispatchEngine:
    return DispatchEngine(AlertBook(), routing_of(parse_directory(doc or directory())))


def alarm(eng: DispatchEngine, device: str, alert_type: str = "smoke.fire",
          grade: Grade | None = Grade.CRITICAL, ts: int = T, gateway: str = "gw-1",
          area: str = "c1") -> tuple[Alert, DispatchOut]:
    with eng.book.step():
        alert = eng.book.condition(device=device, alert_type=alert_type, grade=grade,
                                   gateway=gateway, area=area, ts_event=ts, value=1.0,
                                   reason="r", now=ts)
        assert alert is not None
        return alert, eng.on_alert(alert, ts)


def told(out: DispatchOut) -> list[tuple[str, str]]:
    """(tier, responder or "") of the dispatch messages."""
    return [(t.split("/")[3], str(orjson.loads(p).get("responder", "")))
            for t, p in out.announce if t.startswith("sensing/v1/dispatch/")]


def tick(eng: DispatchEngine, ts: int) -> DispatchOut:
    with eng.book.step():
        return eng.tick(ts)


def test_a_fire_under_one_gateway_is_one_incident_dispatched_once() -> None:
    eng = engine()
    first, out = alarm(eng, "smoke-7")
    assert told(out) == [("grid", "grid-1")]
    # every notification is recorded with its outcome, the MQTT ones too
    (record,) = eng.outbox.history(first.alert_id)
    assert (record.responder, record.channel, record.state) == ("grid-1", "mqtt", "sent")
    assert record.notification_id == orjson.loads(out.announce[1][1])["notification_id"]
    second, out = alarm(eng, "smoke-8", ts=T + 5_000)
    assert told(out) == []  # joined the open case: nobody is told twice
    case = eng.cases.of_alert(second.alert_id)
    assert case is not None and case.members == (first.alert_id, second.alert_id)
    _other, out = alarm(eng, "smoke-9", gateway="gw-2", ts=T + 6_000)
    assert told(out) == [("grid", "grid-1")]  # another gateway: another case


def test_one_residents_alarms_are_one_case() -> None:
    eng = engine()
    fall, _ = alarm(eng, "wearable-1", "wearable.fall")
    sos, out = alarm(eng, "wearable-1", "wearable.sos", ts=T + 1_000)
    assert told(out) == []  # the fall's case has told the grid worker already
    smoke, _ = alarm(eng, "smoke-1", "smoke.fire", gateway="gw-9", ts=T + 2_000)
    case = eng.cases.of_alert(sos.alert_id)
    assert case is not None and set(case.members) == {fall.alert_id, sos.alert_id,
                                                      smoke.alert_id}
    battery, _ = alarm(eng, "wearable-1", "device.battery", Grade.MINOR, ts=T + 3_000)
    assert eng.cases.of_alert(battery.alert_id) != case  # a flat battery is no emergency


def test_a_silence_holds_notifications_and_keeps_recording() -> None:
    eng = engine()
    with eng.book.step():
        eng.add_silence(Silence(area="c1", author="duty-1", reason="drill", starts_ms=T,
                                ends_ms=T + 90_000), T)
    alert, out = alarm(eng, "smoke-7")
    assert told(out) == []
    case = eng.cases.of_alert(alert.alert_id)
    assert case is not None and case.next_due_ms == T + 90_000
    assert [e.event for e in eng.cases.timeline(case.case_id)] == ["opened", "held"]
    assert told(tick(eng, T + 89_999)) == []
    # when it ends, the chain stands where its clock says: two steps are due at once (smoke-7
    # has no resident: the relatives' step reaches only its topic)
    assert told(tick(eng, T + 90_000)) == [("grid", "grid-1"), ("relatives", "")]


@pytest.mark.parametrize(("by", "code"), [
    ("mallory", Code.ACK_UNKNOWN_RESPONDER),
    ("grid-2", Code.ACK_NOT_AUTHORIZED),       # another community's grid worker
])
def test_strangers_may_not_act(by: str, code: Code) -> None:
    eng = engine()
    alert, _ = alarm(eng, "smoke-7")
    with pytest.raises(ActionRefused) as refused:
        eng.act(ActionRequest(Action.TAKE, by, alert.alert_id), T + 1)
    assert refused.value.code == code


def test_who_may_act_and_reassign() -> None:
    eng = engine()
    alert, _ = alarm(eng, "smoke-1")  # res-1's home: rel-1 is a relative
    eng.act(ActionRequest(Action.ACK, "rel-1", alert.alert_id), T + 1)
    eng.act(ActionRequest(Action.ACK, "street-1", alert.alert_id), T + 2)  # serves above
    with pytest.raises(ActionRefused) as refused:
        eng.act(ActionRequest(Action.REASSIGN, "grid-1", alert.alert_id, to="rel-1"), T + 3)
    assert refused.value.code == Code.ACK_NOT_AUTHORIZED  # grid workers do not reassign
    with pytest.raises(ActionRefused, match="nobody the directory knows"):
        eng.act(ActionRequest(Action.REASSIGN, "duty-1", alert.alert_id, to="ghost"), T + 4)
    case, out = eng.act(ActionRequest(Action.REASSIGN, "duty-1", alert.alert_id,
                                      to="grid-1"), T + 5)
    assert case.taken_by == "grid-1" and told(out) == [("grid", "grid-1")]
    assert [e.event for e in eng.cases.timeline(case.case_id)][-3:] == [
        "seen", "seen", "reassigned"]


def test_a_volunteer_who_was_told_may_act_outside_their_area() -> None:
    doc = directory()
    doc["responders"][2]["areas"] = ["c2"]
    eng = engine(doc)
    alert, _ = alarm(eng, "smoke-7")
    with pytest.raises(ActionRefused):
        eng.act(ActionRequest(Action.TAKE, "vol-1", alert.alert_id), T + 1)
    case = eng.cases.of_alert(alert.alert_id)
    assert case is not None
    with eng.book.step():  # as if the volunteers' step had reached vol-1
        eng.cases.save(replace(case, notified={**case.notified, (2, "vol-1"): 0}), None)
    taken, _ = eng.act(ActionRequest(Action.TAKE, "vol-1", alert.alert_id), T + 2)
    assert taken.state == CaseState.TAKEN


def test_a_case_whose_alerts_clear_stops_escalating_but_stays_to_be_disposed() -> None:
    eng = engine()
    alert, _ = alarm(eng, "smoke-7")
    _resolved, out = alarm(eng, "smoke-7", grade=None, ts=T + 30_000)
    assert sorted(told(out)) == [("grid", "")]  # those told hear it is over
    case = eng.cases.of_alert(alert.alert_id)
    assert case is not None and case.cleared and case.state == CaseState.OPEN
    assert told(tick(eng, T + 10**7)) == []
    done, _ = eng.act(ActionRequest(Action.DISPOSE, "grid-1", alert.alert_id,
                                    outcome="false_alarm", note="toast"), T + 60_000)
    assert done.state == CaseState.DISPOSED and done.outcome == "false_alarm"


def test_a_reload_keeps_open_cases_and_what_was_sent() -> None:
    eng = engine()
    alert, _ = alarm(eng, "smoke-7")
    doc = directory()
    doc["responders"].append({"id": "grid-1b", "roles": ["grid_worker"], "areas": ["c1"]})
    eng.reload(routing_of(parse_directory(doc)))
    # the new grid worker gets step 0 at the next tick; grid-1 is not told again
    assert told(tick(eng, T + 1_000)) == [("grid", "grid-1b")]
    case = eng.cases.of_alert(alert.alert_id)
    assert case is not None and case.chain == "life_safety"


def test_a_replay_gives_the_same_dispatch_record() -> None:
    def record() -> list[tuple[object, ...]]:
        eng = engine()
        alarm(eng, "smoke-7", ts=T)
        alarm(eng, "wearable-1", "wearable.fall", ts=T + 20_000)
        for ts in range(T, T + 900_000, 7_000):
            tick(eng, ts)
        out: list[tuple[object, ...]] = []
        for case in eng.cases.open_cases():
            out += [(case.type, e.ts - T, e.event, e.by, orjson.dumps(
                {k: v for k, v in e.detail.items() if k != "alert_id"}))
                for e in eng.cases.timeline(case.case_id)]
        return sorted(out)

    first = record()
    assert first == record()
    assert ("smoke.fire", 600_000 + 2_000, "notified", "core", b'{"step":4,"round":0,'
            b'"role":"street_command","responders":["street-1"]}') in first


def test_vitals_turning_critical_move_to_the_life_safety_chain() -> None:
    eng = engine()
    alert, out = alarm(eng, "wearable-1", "wearable.vitals", Grade.MAJOR)
    case = eng.cases.of_alert(alert.alert_id)
    assert case is not None and case.chain == "care" and told(out) == [("grid", "grid-1")]
    with eng.book.step():
        worse = eng.book.condition(device="wearable-1", alert_type="wearable.vitals",
                                   grade=Grade.CRITICAL, gateway="gw-1", area="c1",
                                   ts_event=T, value=1.0, reason="r", now=T + 200_000)
        assert worse is not None
        out = eng.on_alert(worse, T + 200_000)
    case = eng.cases.of_alert(alert.alert_id)
    assert case is not None and (case.chain, case.grade) == ("life_safety", "critical")
    events = [orjson.loads(p)["event"] for t, p in out.announce if "/cases/" in t]
    assert events[0] == "updated" and events.count("notified") == 4  # volunteers: topic only
    # each of them a sample of its own in the time-series store: same case, same time
    lines = {LineFormatter.case_event(orjson.loads(p)).rsplit(" ", 2)[0]
             for t, p in out.announce if "/cases/" in t}
    assert len(lines) == len(events)
    # the life-safety steps due 200 s after the opening go out at once, the grid worker's
    # again (a new notification, with its own id), then relatives, volunteers, duty officer
    assert [m for m in told(out) if m[1]] == [("grid", "grid-1"), ("relatives", "rel-1"),
                                               ("duty_officer", "duty-1")]
    records = eng.outbox.history(alert.alert_id)
    assert len({r.notification_id for r in records}) == len(records)
