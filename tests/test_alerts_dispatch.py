"""Alert lifecycle and dispatch, without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensing.alerts import AlertBook, UnknownAlert
from sensing.dispatch.cases import Action
from sensing.dispatch.engine import ActionRequest, DispatchEngine, DispatchOut
from sensing.wire.messages import Ack, AlertState, Grade

T0 = 1_795_478_819_832


def raise_fire(book: AlertBook, grade: Grade | None, now: int, device: str = "smoke-1"):  # type: ignore[no-untyped-def]
    return book.condition(device=device, alert_type="smoke.fire", grade=grade, gateway="gw-1",
                          area="a", ts_event=T0, value=12.0, reason="r", now=now)


def test_one_open_alert_per_device_and_type(tmp_path: Path) -> None:
    book = AlertBook(tmp_path / "alerts.sqlite")
    raised = raise_fire(book, Grade.MAJOR, T0 + 10)
    assert raised is not None and raised.state == AlertState.RAISED
    assert raise_fire(book, Grade.MAJOR, T0 + 20) is None  # same grade: nothing new
    updated = raise_fire(book, Grade.CRITICAL, T0 + 30)
    assert updated is not None and updated.state == AlertState.UPDATED
    assert updated.alert_id == raised.alert_id and updated.ts_event == T0
    other = raise_fire(book, Grade.MAJOR, T0 + 40, device="smoke-2")
    assert other is not None and other.alert_id != raised.alert_id
    resolved = raise_fire(book, None, T0 + 50)
    assert resolved is not None and resolved.state == AlertState.RESOLVED
    again = raise_fire(book, Grade.MAJOR, T0 + 60)
    assert again is not None and again.alert_id != raised.alert_id
    book.close()
    # open alerts survive a restart of the core
    reopened = AlertBook(tmp_path / "alerts.sqlite")
    assert {a.alert_id for a in reopened.open_alerts} == {again.alert_id, other.alert_id}
    assert reopened.get(raised.alert_id).state == AlertState.RESOLVED


def test_acks_and_unknown_alerts() -> None:
    book = AlertBook()
    alert = raise_fire(book, Grade.MAJOR, T0)
    assert alert is not None
    acked = book.ack(Ack(alert_id=alert.alert_id, by="op", action="ack"), T0 + 1)
    assert acked.state == AlertState.ACKNOWLEDGED and acked.by == "op"
    done = book.ack(Ack(alert_id=alert.alert_id, by="op", action="resolve"), T0 + 2)
    assert done.state == AlertState.RESOLVED
    with pytest.raises(UnknownAlert):
        book.ack(Ack(alert_id=alert.alert_id, by="op", action="ack"), T0 + 3)
    with pytest.raises(UnknownAlert):
        book.ack(Ack(alert_id="nope", by="op", action="ack"), T0 + 3)


def _roles(out: DispatchOut) -> list[str]:
    return [t.split("/")[3] for t, _ in out.announce if t.startswith("sensing/v1/dispatch/")]


def test_escalation_through_the_tiers_until_someone_takes_the_case() -> None:
    """Without a directory: the shipped chain for a fire, on the contract's tier topics."""
    book = AlertBook()
    dispatch = DispatchEngine(book)
    alert = raise_fire(book, Grade.CRITICAL, T0)
    assert alert is not None
    assert _roles(dispatch.on_alert(alert, T0)) == ["grid"]
    assert _roles(dispatch.tick(T0 + 59_999)) == []
    out = dispatch.tick(T0 + 60_000)
    assert _roles(out) == ["relatives"]
    (escalated,) = out.alerts
    assert escalated.state == AlertState.ESCALATED and escalated.alert_id == alert.alert_id
    # an ack says who has seen it; the escalation goes on until somebody takes the case
    dispatch.act(ActionRequest(Action.ACK, "relative-1", alert.alert_id), T0 + 61_000)
    assert _roles(dispatch.tick(T0 + 120_000)) == ["volunteers"]
    dispatch.act(ActionRequest(Action.TAKE, "volunteer-1", alert.alert_id), T0 + 130_000)
    assert _roles(dispatch.tick(T0 + 10**8)) == []
    resolved = raise_fire(book, None, T0 + 200_000)
    assert resolved is not None
    told = _roles(dispatch.on_alert(resolved, T0 + 200_000))
    assert sorted(told) == ["grid", "relatives", "volunteers"]  # everyone told hears the end


def test_maintenance_alerts_reach_the_maintenance_tier_once_a_day() -> None:
    book = AlertBook()
    dispatch = DispatchEngine(book)
    alert = book.condition(device="smoke-9", alert_type="device.battery", grade=Grade.MINOR,
                           gateway="gw", area="a", ts_event=T0, value=0.1, reason="low", now=T0)
    assert alert is not None
    assert _roles(dispatch.on_alert(alert, T0)) == ["maintenance"]
    assert _roles(dispatch.tick(T0 + 10**9)) == []  # nobody named: the topic hears it once
