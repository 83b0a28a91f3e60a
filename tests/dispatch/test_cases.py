"""The case state machine and its store in SQLite."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensing.dispatch.cases import OUTCOMES, Action, Case, CaseState, CaseStore, Refused


def _case(**kw: object) -> Case:
    base: dict[str, object] = dict(
        case_id="c1", type="smoke.fire", grade="critical", area="c-01", device="smoke-1",
        gateway="gw-1", opened_ms=1_000, chain="resident_emergency", members=("c1",),
        next_due_ms=1_000)
    base.update(kw)
    return Case(**base)  # type: ignore[arg-type]


def test_take_stops_escalation_and_a_second_taker_is_refused() -> None:
    case = _case().act(Action.TAKE, "grid-1")
    assert case.state == CaseState.TAKEN and case.taken_by == "grid-1"
    assert not case.escalating and case.next_due_ms is None
    assert case.act(Action.TAKE, "grid-1") == case  # the same taker again: no change
    with pytest.raises(Refused, match="taken by grid-1"):
        case.act(Action.TAKE, "volunteer-7")


def test_ack_records_who_saw_it_and_escalation_goes_on() -> None:
    case = _case().act(Action.ACK, "grid-1").act(Action.ACK, "grid-1")
    assert case.seen_by == ("grid-1",)
    assert case.state == CaseState.OPEN and case.escalating


def test_only_the_taker_arrives() -> None:
    with pytest.raises(Refused, match="only who took"):
        _case().act(Action.ARRIVED, "grid-1")
    taken = _case().act(Action.TAKE, "grid-1")
    with pytest.raises(Refused, match=r"\(grid-1\)"):
        taken.act(Action.ARRIVED, "relative-2")
    assert taken.act(Action.ARRIVED, "grid-1").state == CaseState.ARRIVED


def test_dispose_needs_a_known_outcome_and_closes_the_case() -> None:
    arrived = _case().act(Action.TAKE, "grid-1").act(Action.ARRIVED, "grid-1")
    with pytest.raises(Refused, match="outcome must be one of"):
        arrived.act(Action.DISPOSE, "grid-1", outcome="burnt toast")
    done = arrived.act(Action.DISPOSE, "grid-1", outcome="false_alarm", note="x" * 5000)
    assert done.state == CaseState.DISPOSED and done.outcome == "false_alarm"
    assert len(done.note) == 1000 and done.state.is_closed
    with pytest.raises(Refused, match="already disposed"):
        done.act(Action.ACK, "grid-1")


def test_dispose_from_open_takes_it_too() -> None:
    done = _case().act(Action.DISPOSE, "grid-1", outcome="resident_ok")
    assert done.taken_by == "grid-1" and done.state == CaseState.DISPOSED


def test_reassign_hands_the_case_over() -> None:
    case = _case().act(Action.TAKE, "grid-1").act(Action.REASSIGN, "duty-1", to="grid-2")
    assert case.taken_by == "grid-2" and case.state == CaseState.TAKEN
    with pytest.raises(Refused, match="needs `to`"):
        case.act(Action.REASSIGN, "duty-1")


@given(st.lists(st.tuples(st.sampled_from(list(Action)),
                          st.sampled_from(["grid-1", "grid-2", "duty-1"]),
                          st.sampled_from([*OUTCOMES, "nonsense"])), max_size=12))
def test_no_sequence_of_actions_reopens_a_closed_case(
        steps: list[tuple[Action, str, str]]) -> None:
    case = _case()
    closed = False
    for action, by, outcome in steps:
        try:
            case = case.act(action, by, outcome=outcome, to="grid-2")
        except Refused:
            continue
        if closed:
            raise AssertionError(f"{action} changed a closed case")
        closed = case.state.is_closed
        if case.state != CaseState.OPEN:
            assert case.taken_by or case.state == CaseState.RESOLVED
            assert case.next_due_ms is None and not case.escalating


def test_store_round_trip_timeline_and_due_order(tmp_path: object) -> None:
    db = sqlite3.connect(":memory:")
    store = CaseStore(db)
    a = _case(case_id="a", members=("a", "a2"), notified={(0, "grid-1"): 0, (1, ""): 2},
              next_due_ms=61_000, incident="gw-1/smoke")
    b = _case(case_id="b", members=("b",), next_due_ms=31_000)
    store.save(a, "opened", "core", 1_000, alert="a")
    store.save(b, "opened", "core", 1_000, alert="b")
    assert store.get("a") == a
    assert store.of_alert("a2") == a
    assert store.open_incident("gw-1/smoke") == a
    assert [c.case_id for c in store.due(60_999)] == ["b"]
    assert [c.case_id for c in store.due(61_000)] == ["b", "a"]
    taken = a.act(Action.TAKE, "grid-1")
    store.save(taken, "take", "grid-1", 5_000)
    assert [c.case_id for c in store.due(10**12)] == ["b"]
    assert [(e.event, e.by) for e in store.timeline("a")] == [("opened", "core"),
                                                              ("take", "grid-1")]
    assert store.counts() == {"open": 1, "taken": 1}
    done = taken.act(Action.DISPOSE, "grid-1", outcome="fire")
    store.save(done, "dispose", "grid-1", 9_000, outcome="fire")
    assert store.open_incident("gw-1/smoke") is None
    assert [c.case_id for c in store.open_cases()] == ["b"]
