"""wearable.inactivity: no steps for 3 h in the daytime raises; night-time stillness does not."""

from __future__ import annotations

from sensing.detect.inactivity import InactivityDetector, InactivityParams
from sensing.wire.messages import Grade

from .support import HOUR_MS, LOCAL_MIDNIGHT, MIN_MS, Event, levels, run, simulated

STEP_MS = 5 * MIN_MS


def day(start_h: float, end_h: float, steps_until_h: float | None = None,
        steps_from_h: float | None = None, day: int = 0) -> list[Event]:
    """Readings every 5 minutes between local hours `start_h` and `end_h` of T0's day (+ day),
    with steps only before `steps_until_h` and from `steps_from_h`."""
    out = []
    t = LOCAL_MIDNIGHT + day * 24 * HOUR_MS + int(start_h * HOUR_MS)
    while t < LOCAL_MIDNIGHT + day * 24 * HOUR_MS + end_h * HOUR_MS:
        h = (t - LOCAL_MIDNIGHT) / HOUR_MS - day * 24
        moving = (steps_until_h is not None and h < steps_until_h) or (
            steps_from_h is not None and h >= steps_from_h)
        out.append((0, t, 12.0 if moving else 0.0))
        t += STEP_MS
    return out


def local(h: float) -> int:
    return LOCAL_MIDNIGHT + int(h * HOUR_MS)


def test_a_still_afternoon_is_major_and_clears_with_steps() -> None:
    det = InactivityDetector()
    events = day(12, 17, steps_until_h=12.9, steps_from_h=16.5)
    got = run(det, events, cuts=[7, 40])
    # last steps at 12:50; idle for more than 3 h at 15:55; steps again at 16:30
    assert [(events[r][1], lvl) for r, lvl, _, _ in got] == [(local(15 + 55 / 60), 1),
                                                             (local(16.5), 0)]
    assert got[0][2] == local(12 + 50 / 60)
    assert abs(got[0][3] - (3 + 5 / 60)) < 1e-9
    assert det.grade(1) == Grade.MAJOR and det.spec.type == "wearable.inactivity"
    assert "3.1 h" in det.describe(1, got[0][3])


def test_night_time_stillness_raises_nothing() -> None:
    night = day(18.5, 24, steps_until_h=18.6) + day(0, 7.9, day=1)
    assert run(InactivityDetector(), night) == []
    evening_then_night = day(18.5, 24, steps_until_h=19) + day(0, 10.9, day=1,
                                                                steps_from_h=10.5)
    assert run(InactivityDetector(), evening_then_night) == []  # counted from 08:00


def test_sleeping_in_counts_from_the_start_of_the_day() -> None:
    events = day(22, 24) + day(0, 12, day=1)
    got = run(InactivityDetector(), events)
    assert len(got) == 1 and got[0][1] == 1
    assert got[0][2] == local(24 + 8)  # counted from 08:00, raised after 11:00
    assert events[got[0][0]][1] == local(24 + 11 + 5 / 60)


def test_a_raised_alert_stays_through_the_night_until_steps() -> None:
    events = day(17, 24, steps_until_h=17.3) + day(0, 9, day=1, steps_from_h=7)
    got = run(InactivityDetector(), events)
    assert [(events[r][1], lvl) for r, lvl, _, _ in got] == [(local(20 + 20 / 60), 1),
                                                             (local(24 + 7), 0)]


def test_the_day_follows_the_configured_utc_offset() -> None:
    events = day(0, 6)  # 00:00-06:00 in the pilot city is 16:00-22:00 UTC the day before
    assert run(InactivityDetector(), events) == []
    utc = InactivityDetector(InactivityParams(utc_offset_h=0.0))
    assert levels(run(utc, events))[:1] == [(37, 1)]  # 16:00 UTC + 3 h, and 5 minutes


def test_a_simulated_day_raises_nothing() -> None:
    values = simulated("wearable", "steps", 24, 5.0, seed=2, day_start_s=0.0)
    events = [(0, LOCAL_MIDNIGHT + i * 5_000, v) for i, v in enumerate(values)]
    assert run(InactivityDetector(), events) == []
