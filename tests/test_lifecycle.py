"""Hold times, flapping and fire confirmation between detector verdicts and the alert book."""

from __future__ import annotations

from sensing.alerts import AlertBook
from sensing.alerts.lifecycle import Lifecycle, LifecyclePolicy
from sensing.wire.messages import Alert, AlertState, Grade

T0 = 1_795_478_819_832
S = 1000


def verdict(life: Lifecycle, grade: Grade | None, ts: int, device: str = "smoke-1",
            alert_type: str = "smoke.co", gateway: str = "gw-1", area: str = "a") -> list[Alert]:
    return life.condition(device=device, alert_type=alert_type, grade=grade, gateway=gateway,
                          area=area, ts_event=ts, ts=ts, value=1.0, reason="r", now=ts)


def test_resolved_only_after_the_condition_stays_clear_for_the_hold_time() -> None:
    life = Lifecycle(AlertBook(), LifecyclePolicy(hold_s=30))
    (raised,) = verdict(life, Grade.MAJOR, T0)
    assert raised.state == AlertState.RAISED
    assert verdict(life, None, T0 + 10 * S) == []
    assert life.tick(lambda gw: T0 + 39 * S, T0) == []
    assert verdict(life, Grade.MAJOR, T0 + 41 * S) == []  # back before the hold ran out
    assert life.tick(lambda gw: T0 + 80 * S, T0) == []  # still in alarm: nothing to resolve
    assert verdict(life, None, T0 + 90 * S) == []
    (resolved,) = life.tick(lambda gw: T0 + 120 * S, T0)
    assert resolved.state == AlertState.RESOLVED and resolved.alert_id == raised.alert_id


def test_flapping_is_reported_once_and_holds_back_raises_and_clears() -> None:
    life = Lifecycle(AlertBook(), LifecyclePolicy(hold_s=5, flap_window_s=600, flap_high=6,
                                                  flap_low=2))
    out: list[Alert] = []
    t = T0
    for _ in range(3):  # raise and resolve three times: six toggles
        out += verdict(life, Grade.MAJOR, t)
        out += verdict(life, None, t + 20 * S)
        out += life.tick(lambda gw, t=t: t + 40 * S, t)
        t += 60 * S
    states = [a.state for a in out]
    assert states[:5] == [AlertState.RAISED, AlertState.RESOLVED, AlertState.RAISED,
                          AlertState.RESOLVED, AlertState.RAISED]
    flapping = [a for a in out if "flapping" in a.reason]
    assert len(flapping) == 1
    # while flapping: more toggles change nothing, the alert stays open
    for i in range(4):
        assert verdict(life, Grade.MAJOR if i % 2 == 0 else None, t + i * 30 * S) == []
    assert life.tick(lambda gw: t + 200 * S, t) == []
    # ten minutes later the window has emptied: flapping ends, the clear condition resolves
    calm = life.tick(lambda gw: t + 1200 * S, t)
    assert [a.state for a in calm] == [AlertState.UPDATED]
    assert "stopped flapping" in calm[0].reason
    (resolved,) = life.tick(lambda gw: t + 1210 * S, t)
    assert resolved.state == AlertState.RESOLVED


def test_one_smoke_detector_is_major_two_nearby_confirm_a_critical_fire() -> None:
    life = Lifecycle(AlertBook(), LifecyclePolicy(confirm_window_s=300))
    (first,) = verdict(life, Grade.CRITICAL, T0, "smoke-1", "smoke.fire")
    assert first.grade == Grade.MAJOR  # alone: never more than major
    # another detector in another area: no confirmation
    (far,) = verdict(life, Grade.MAJOR, T0 + 60 * S, "smoke-9", "smoke.fire", "gw-9", "b")
    assert far.grade == Grade.MAJOR
    # a second one under the same gateway within five minutes: both become critical
    out = verdict(life, Grade.MAJOR, T0 + 120 * S, "smoke-2", "smoke.fire")
    assert {(a.device, a.grade) for a in out} == {("smoke-2", Grade.CRITICAL),
                                                  ("smoke-1", Grade.CRITICAL)}
    assert all("confirmed: 2 smoke detectors" in a.reason for a in out)
    # too late to confirm: an hour later a third one alone stays major
    life2 = Lifecycle(AlertBook(), LifecyclePolicy(confirm_window_s=300))
    verdict(life2, Grade.MAJOR, T0, "smoke-1", "smoke.fire")
    (late,) = verdict(life2, Grade.MAJOR, T0 + 3600 * S, "smoke-3", "smoke.fire")
    assert late.grade == Grade.MAJOR


def test_latching_types_wait_for_a_person() -> None:
    life = Lifecycle(AlertBook(), LifecyclePolicy(hold_s=1), latching=frozenset({"wearable.sos"}))
    (raised,) = verdict(life, Grade.CRITICAL, T0, "w-1", "wearable.sos")
    verdict(life, None, T0 + S, "w-1", "wearable.sos")
    assert life.tick(lambda gw: T0 + 3600 * S, T0) == []
    assert life.book.open_for("w-1", "wearable.sos") is not None
    assert raised.grade == Grade.CRITICAL


def test_a_detected_alert_s_hold_runs_on_its_device_s_own_event_time() -> None:
    """A gateway's watermark far ahead of the device (its backlog delivered late, in order)
    does not resolve a fire between two of the device's readings: the hold waits for 30 s of
    the device's own readings."""
    life = Lifecycle(AlertBook(), LifecyclePolicy(hold_s=30))
    newest = {"smoke-1": T0}

    def seen(grade: Grade | None, ts: int) -> list[Alert]:
        newest["smoke-1"] = ts
        return life.condition(device="smoke-1", alert_type="smoke.fire", grade=grade,
                              gateway="gw-1", area="a", ts_event=ts, ts=ts, value=1.0,
                              reason="r", now=T0 + 3600 * S, own_clock=True)

    def tick() -> list[Alert]:
        return life.tick(lambda gw: T0 + 3600 * S, T0 + 3600 * S, newest.__getitem__)

    (raised,) = seen(Grade.MAJOR, T0)
    assert seen(None, T0 + 10 * S) == [] and tick() == []
    newest["smoke-1"] = T0 + 20 * S  # a clear reading 10 s later: not yet 30 s
    assert tick() == []
    assert seen(Grade.MAJOR, T0 + 30 * S) == []  # back in alarm: the same alert goes on
    assert seen(None, T0 + 40 * S) == [] and tick() == []
    newest["smoke-1"] = T0 + 70 * S
    (resolved,) = tick()
    assert resolved.state == AlertState.RESOLVED and resolved.alert_id == raised.alert_id
    assert resolved.ts_event == raised.ts_event
