"""The notification outbox: idempotent enqueue, states, attempts, bounds, shared transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.dispatch.directory import Contact
from sensing.dispatch.notification import (
    Notification,
    PayloadView,
    dispatch_payload,
    make_notification,
    notification_id,
    route_key,
)
from sensing.dispatch.outbox import MAX_ERROR, AttemptResult, Outbox, Outcome
from sensing.wire.messages import Alert, AlertState, Grade

OUTCOMES: tuple[Outcome, ...] = ("sent", "retry", "failed")
HOOK = Contact(channel="webhook", url="http://127.0.0.1:9/hook")


def alert(grade: Grade = Grade.CRITICAL, area: str = "c2-compound-1") -> Alert:
    return Alert(alert_id="a1", type="smoke.fire", grade=grade, state=AlertState.RAISED,
                 device="smoke-000123", gateway="gw-17", area=area, ts_event=1_000,
                 ts_raised=1_100, value=14.2, reason="obscuration 14.2 %/m")


def note(case: str = "case-1", step: int = 0, responder: str = "wang", grade: Grade =
         Grade.CRITICAL, contact: Contact = HOOK, round_: int = 0) -> Notification:
    payload = dispatch_payload(alert(grade), role="grid_worker", responder=responder,
                               case_id=case)
    return make_notification(case_id=case, step=step, responder=responder, role="grid_worker",
                             contact=contact, payload=payload, round_=round_)


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "alerts.db")


def test_the_id_is_the_same_for_the_same_step_and_differs_otherwise() -> None:
    assert note().notification_id == note().notification_id
    ids = {note().notification_id, note(step=1).notification_id,
           note(responder="li").notification_id, note(round_=1).notification_id,
           note(contact=Contact(channel="mqtt")).notification_id,
           note(case="case-2").notification_id}
    assert len(ids) == 6
    assert notification_id("c", 0, "r", HOOK) == notification_id("c", 0, "r", HOOK, 0)


def test_the_payload_is_the_contract_alert_with_who_it_is_for() -> None:
    doc = orjson.loads(dispatch_payload(alert(), role="grid_worker", responder="wang",
                                        case_id="case-1", resident="Zhang Lan"))
    assert doc["alert_id"] == "a1" and doc["type"] == "smoke.fire"
    assert doc["grade"] == "critical" and doc["area"] == "c2-compound-1"
    assert doc["tier"] == "grid_worker" and doc["role"] == "grid_worker"
    assert doc["responder"] == "wang" and doc["resident"] == "Zhang Lan"
    assert PayloadView.of(b"not json").rank == 0
    assert PayloadView.of(dispatch_payload(alert(Grade.INFO), role="x", responder="y",
                                           case_id="z")).rank == 1


def test_a_notification_is_bounded() -> None:
    with pytest.raises(ValueError, match="payload"):
        Notification("n", "c", "r", "grid_worker", HOOK, b"x" * 20_000)
    with pytest.raises(ValueError, match="case_id"):
        Notification("n", "", "r", "grid_worker", HOOK, b"{}")


def test_route_keys_name_origins_and_hide_apprise_secrets() -> None:
    assert route_key(HOOK) == "webhook:http://127.0.0.1:9"
    assert route_key(Contact(channel="mqtt")) == "mqtt"
    assert route_key(Contact(channel="apprise", url="json://127.0.0.1:8080/x")) == \
        "apprise:json://127.0.0.1:8080"
    secret = route_key(Contact(channel="apprise", url="tgram://123456:ABCDEF/987"))
    assert secret.startswith("apprise:tgram://#") and "ABCDEF" not in secret


def test_enqueue_is_idempotent_on_the_id(outbox: Outbox) -> None:
    first = outbox.enqueue([note(), note(step=1)], now_ms=1_000)
    again = outbox.enqueue([note(), note(step=1), note(step=2)], now_ms=2_000)
    assert (first.added, first.duplicates) == (2, 0)
    assert (again.added, again.duplicates) == (1, 2)
    assert outbox.counts()["queued"] == 3
    # a re-planned step after its notification went out is not queued again either
    outbox.record([AttemptResult(note().notification_id, 3_000, "sent")])
    assert outbox.enqueue([note()], now_ms=4_000).added == 0
    assert outbox.state_of(note().notification_id) == "sent"


def test_due_is_most_severe_first_then_longest_due_and_skips_excluded_routes(
        outbox: Outbox) -> None:
    info = note(case="info", grade=Grade.INFO)
    crit = note(case="crit", grade=Grade.CRITICAL)
    other = note(case="other", grade=Grade.CRITICAL,
                 contact=Contact(channel="webhook", url="http://127.0.0.2:9/h"))
    outbox.enqueue([info], 1_000)
    outbox.enqueue([crit], 2_000)
    outbox.enqueue([other], 3_000)
    got = [d.notification.case_id for d in outbox.due(5_000, "webhook", 10)]
    assert got == ["crit", "other", "info"]
    assert [d.notification.case_id for d in outbox.due(0, "webhook", 10)] == \
        ["crit", "other", "info"]  # never tried: due at once, whatever the clock
    assert outbox.due(5_000, "apprise", 10) == []
    assert [d.notification.case_id for d in
            outbox.due(5_000, "webhook", 10, exclude_keys={route_key(HOOK)})] == ["other"]
    assert len(outbox.due(5_000, "webhook", 1)) == 1
    back = outbox.due(5_000, "webhook", 10)[0].notification
    assert back == crit  # what went in comes out, contact and payload included


def test_outcomes_move_states_and_every_attempt_is_kept(outbox: Outbox) -> None:
    n = note()
    nid = n.notification_id
    outbox.enqueue([n], 1_000)
    outbox.record([AttemptResult(nid, 2_000, "retry", "HTTP 500", 12, next_attempt_ms=4_000)])
    assert outbox.state_of(nid) == "retrying"
    assert outbox.due(3_999, "webhook", 10) == []
    (due,) = outbox.due(4_000, "webhook", 10)
    assert due.attempts == 1 and due.created_ms == 1_000 and due.first_attempt_ms == 2_000
    outbox.record([AttemptResult(nid, 4_100, "sent", duration_ms=3)])
    # a late duplicate outcome (sent twice) changes nothing but is kept as an attempt
    assert outbox.record([AttemptResult(nid, 4_200, "sent")]) == 0
    (record,) = outbox.history("case-1")
    assert record.state == "sent" and record.attempts == 2
    assert [(t.outcome, t.error, t.duration_ms) for t in record.tries] == [
        ("retry", "HTTP 500", 12), ("sent", "", 3), ("sent", "", 0)]
    assert outbox.counts() == {"queued": 0, "retrying": 0, "sent": 1, "failed": 0,
                               "cancelled": 0}
    assert outbox.next_due_ms("webhook") is None


def test_errors_are_bounded_and_credentials_redacted(outbox: Outbox) -> None:
    n = note()
    outbox.enqueue([n], 1_000)
    outbox.record([AttemptResult(n.notification_id, 2_000, "failed",
                                 "refused by http://u:hunter2@h/x " + "y" * 5_000)])
    (record,) = outbox.history("case-1")
    assert record.state == "failed"
    assert len(record.last_error) == MAX_ERROR and "hunter2" not in record.last_error
    assert len(record.tries[0].error) == MAX_ERROR


def test_a_cancelled_case_stops_retrying_but_a_send_that_happened_is_recorded(
        outbox: Outbox) -> None:
    a, b = note(step=0), note(step=1)
    outbox.enqueue([a, b], 1_000)
    assert outbox.cancel_case("case-1", 2_000, "taken by wang") == 2
    outbox.record([AttemptResult(a.notification_id, 2_100, "retry", "HTTP 503"),
                   AttemptResult(b.notification_id, 2_100, "sent")])
    assert outbox.state_of(a.notification_id) == "cancelled"
    assert outbox.state_of(b.notification_id) == "sent"
    assert outbox.due(10_000, "webhook", 10) == []


def test_overflow_drops_the_lowest_graded_oldest_first_with_a_reason(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "a.db", max_pending=3)
    infos = [note(case=f"info-{i}", grade=Grade.INFO) for i in range(3)]
    for i, n in enumerate(infos):
        box.enqueue([n], 1_000 + i)
    crit = note(case="fire", grade=Grade.CRITICAL)
    result = box.enqueue([crit], 2_000)
    assert result.dropped == (infos[0].notification_id,)
    (dropped,) = box.history("info-0")
    assert dropped.state == "failed" and dropped.last_error.startswith("overflow")
    assert dropped.tries[0].outcome == "dropped"
    # full of more severe ones: a new info-grade notification is the one refused
    for i in range(2):
        box.enqueue([note(case=f"fire-{i}", grade=Grade.CRITICAL)], 3_000 + i)
    late = note(case="late-info", grade=Grade.INFO)
    assert late.notification_id in box.enqueue([late], 4_000).dropped
    assert box.counts("webhook")["queued"] == 3 == box.pending("webhook")
    assert box.state_of(crit.notification_id) == "queued"
    # other channels have their own bound
    assert box.enqueue([note(case="m", contact=Contact(channel="mqtt"))], 5_000).dropped == ()


def test_enqueue_commits_with_the_callers_transaction(tmp_path: Path) -> None:
    db = sqlite3.connect(str(tmp_path / "alerts.db"))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE escalation (case_id TEXT, step INTEGER)")
    box = Outbox(db)
    reader = Outbox(tmp_path / "alerts.db")
    db.execute("INSERT INTO escalation VALUES ('case-1', 0)")
    box.enqueue([note()], 1_000, commit=False)
    assert reader.counts()["queued"] == 0  # nothing visible before the step commits
    db.rollback()
    assert box.counts()["queued"] == 0  # a step that fails takes its notifications with it
    db.execute("INSERT INTO escalation VALUES ('case-1', 0)")
    box.enqueue([note()], 1_000, commit=False)
    db.commit()
    assert reader.counts()["queued"] == 1
    box.close()  # not its connection: still open
    assert db.execute("SELECT COUNT(*) FROM escalation").fetchone() == (1,)


def test_a_stored_row_the_contact_model_refuses_is_failed_not_returned(outbox: Outbox) -> None:
    outbox.enqueue([note()], 1_000)
    outbox.connection.execute("UPDATE notification SET url = 'ftp://elsewhere'")
    outbox.connection.commit()
    assert outbox.due(2_000, "webhook", 10) == []
    (record,) = outbox.history("case-1")
    assert record.state == "failed" and "invalid stored notification" in record.last_error


def test_prune_forgets_finished_notifications_only(outbox: Outbox) -> None:
    done, pending = note(step=0), note(step=1)
    outbox.enqueue([done, pending], 1_000)
    outbox.record([AttemptResult(done.notification_id, 2_000, "sent")])
    assert outbox.prune(before_ms=3_000) == 1
    assert [r.notification_id for r in outbox.history("case-1")] == [pending.notification_id]
    assert outbox.connection.execute(
        "SELECT COUNT(*) FROM notification_attempt").fetchone() == (0,)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(OUTCOMES)), max_size=30))
def test_any_sequence_of_outcomes_keeps_the_invariants(
        outcomes: list[tuple[int, Outcome]]) -> None:
    """Sent is final; each recorded outcome leaves one attempt row; attempts never exceed the
    outcomes recorded for a notification; nothing pending is lost from `due`."""
    box = Outbox(":memory:")
    notes = [note(step=i) for i in range(4)]
    box.enqueue(notes, 0)
    recorded = [0] * 4
    sent = [False] * 4
    for t, (i, outcome) in enumerate(outcomes, start=1):
        box.record([AttemptResult(notes[i].notification_id, t, outcome, next_attempt_ms=t)])
        recorded[i] += 1
        sent[i] = sent[i] or outcome == "sent"
    rows = {r.notification_id: r for r in box.history("case-1")}
    pending = {d.notification.notification_id for d in box.due(10**6, "webhook", 10)}
    for i, n in enumerate(notes):
        r = rows[n.notification_id]
        assert len(r.tries) == recorded[i]
        assert r.attempts <= recorded[i]
        if sent[i]:
            assert r.state == "sent"
        assert (n.notification_id in pending) == (r.state in ("queued", "retrying"))
    assert box.pending("webhook") == len(pending)
    box.prune(10**6)
    assert box.pending("webhook") == len(pending)
