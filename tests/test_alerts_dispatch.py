"""Alert lifecycle and dispatch, without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensing.alerts import AlertBook, UnknownAlert
from sensing.dispatch import Dispatcher, DispatchPolicy
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


def test_escalation_through_the_tiers_until_acknowledged() -> None:
    book = AlertBook()
    policy = DispatchPolicy(escalate_after_s={Grade.CRITICAL: 10.0, Grade.MAJOR: None,
                                              Grade.MINOR: None, Grade.INFO: None})
    dispatch = Dispatcher(book, policy)
    alert = raise_fire(book, Grade.CRITICAL, T0)
    assert alert is not None
    assert [t for t, _ in dispatch.on_alert(alert, T0)] == ["grid"]
    assert dispatch.tick(T0 + 9_999) == []
    (tier, escalated), = dispatch.tick(T0 + 10_000)
    assert tier == "relatives" and escalated.state == AlertState.ESCALATED
    assert escalated.alert_id == alert.alert_id
    book.ack(Ack(alert_id=alert.alert_id, by="relative", action="ack"), T0 + 15_000)
    assert dispatch.tick(T0 + 60_000) == []  # acknowledged: no more escalation
    resolved = raise_fire(book, None, T0 + 70_000)
    assert resolved is not None
    assert [t for t, _ in dispatch.on_alert(resolved, T0 + 70_000)] == ["grid", "relatives"]


def test_minor_alerts_are_dispatched_but_never_escalated() -> None:
    book = AlertBook()
    dispatch = Dispatcher(book)
    alert = book.condition(device="smoke-9", alert_type="device.battery", grade=Grade.MINOR,
                           gateway="gw", area="a", ts_event=T0, value=0.1, reason="low", now=T0)
    assert alert is not None
    assert [t for t, _ in dispatch.on_alert(alert, T0)] == ["grid"]
    assert dispatch.tick(T0 + 10**9) == []
