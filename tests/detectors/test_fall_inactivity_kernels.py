"""The fall and inactivity kernels against slow, obviously correct references."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.detect.checks import CheckBank, ms
from sensing.detect.fall import Fall, FallDetector, FallParams
from sensing.detect.inactivity import InactivityDetector, InactivityParams

from .support import (
    DAY_MS,
    HOUR_MS,
    MIN_MS,
    T0,
    Change,
    Event,
    cut_points,
    in_time_order,
    run,
    segmented,
)

pytestmark = pytest.mark.kernel


Fed = tuple[int, int, str, float]
"""(row, ts, channel "accel_g" or "steps", value) of one device, in the order fed"""


def fall_of(p: FallParams, hist: Sequence[Fed]) -> Change | None:
    """The fall in one device's values: at the first still accel_g reading j that completes
    still_s of still readings since the latest impact a, their first no later than window_s
    after a, unless between a and j the impact was cancelled: by cancel_steps steps in
    readings later than a's, by a reading of movement lasting move_s (counted from the first
    of the movement's readings after a), a movement past the window, or a still spell that
    began past the window."""
    accel = [k for k, h in enumerate(hist) if h[2] == "accel_g"]
    still = {k: p.still_low_g <= hist[k][3] <= p.still_high_g for k in accel}
    window, move = ms(p.window_s), ms(p.move_s)
    for j in accel:
        row, t, _, v = hist[j]
        impacts = [a for a in accel if a < j and hist[a][3] >= p.impact_g]
        if v >= p.impact_g or not still[j] or not impacts:
            continue
        a = impacts[-1]
        ta = hist[a][1]
        after = [k for k in accel if a < k <= j]

        def spell_start(k: int, flag: bool, after: list[int] = after) -> int:
            """The first of the readings after a up to k with still == flag, all of them."""
            run = [m for m in after if m <= k]
            while len(run) > 1 and still[run[-2]] == flag:
                run.pop()
            return run[-1] if still[run[-1]] == flag else k

        s = spell_start(j, True)
        if hist[s][1] - ta > window or t - hist[s][1] < ms(p.still_s):
            continue
        steps, cancelled = 0.0, False
        for k in range(a + 1, j):
            tk, ch, vk = hist[k][1], hist[k][2], hist[k][3]
            if ch == "steps":
                if tk > ta and vk > 0:
                    steps += vk
                    cancelled |= steps >= p.cancel_steps
            elif not still[k]:
                cancelled |= tk - ta > window or tk - hist[spell_start(k, False)][1] >= move
            elif spell_start(k, True) == k:
                cancelled |= tk - ta > window
        if not cancelled:
            return (row, 1, ta, hist[a][3])
    return None


def fall_reference(p: FallParams, events: Sequence[Event]) -> list[Change]:
    """Accel_g readings alone (no steps)."""
    out = [fall_of(p, [(row, t, "accel_g", v) for row, t, v in hist])
           for hist in in_time_order(events).values()]
    return sorted(c for c in out if c is not None)


def inactivity_reference(p: InactivityParams, events: Sequence[Event]) -> list[Change]:
    """Idle time counted from the later of the last reading with steps (or the first reading)
    and today's daytime start (local time); raised past the limit in the daytime, cleared by
    the next steps."""
    out: list[Change] = []
    for hist in in_time_order(events).values():
        raised, onset = False, -1
        for j, (row, t, v) in enumerate(hist):
            if v > 0:
                if raised:
                    raised = False
                    out.append((row, 0, onset, v))
                continue
            if raised:
                continue
            moved = [k for k in range(j) if hist[k][2] > 0]
            spell_start = hist[moved[-1]][1] if moved else hist[0][1]
            local = t + ms(p.utc_offset_h * 3600)
            midnight_utc = t - local % DAY_MS
            day_start = midnight_utc + ms(p.day_start_h * 3600)
            day_end = midnight_utc + ms(p.day_end_h * 3600)
            if not day_start <= t < day_end:
                continue
            since = max(spell_start, day_start)
            if t - since > ms(p.limit_s):
                raised, onset = True, since
                out.append((row, 1, since, (t - since) / HOUR_MS))
    return sorted(out)


FALL_PARAMS = st.builds(FallParams, impact_g=st.sampled_from([2.0, 2.5]),
                       still_low_g=st.sampled_from([0.9, 1.0]),
                       still_high_g=st.sampled_from([1.1, 1.15]),
                       still_s=st.sampled_from([0.0, 3.0, 10.0]),
                       window_s=st.sampled_from([10.0, 20.0, 60.0]),
                       move_s=st.sampled_from([0.0, 2.0, 10.0, 1000.0]),
                       cancel_steps=st.sampled_from([1, 3]))


@settings(max_examples=200, deadline=None)
@given(FALL_PARAMS,
       segmented([0.5, 0.95, 1.0, 1.12, 1.3, 2.0, 2.5, 3.5], [0, 500, 1_000, 5_000, 30_000],
                 max_repeat=15),
       cut_points())
def test_fall_matches_the_reference(p: FallParams, events: list[Event], cuts: list[int]
                                    ) -> None:
    got = run(FallDetector(p, capacity=4), events, cuts)
    assert got == fall_reference(p, events)


@settings(max_examples=200, deadline=None)
@given(st.builds(InactivityParams, limit_s=st.sampled_from([600.0, 3 * 3600.0]),
                 day_start_h=st.sampled_from([0.0, 8.0]),
                 day_end_h=st.sampled_from([21.0, 24.0]),
                 utc_offset_h=st.sampled_from([-5.5, 0.0, 8.0])),
       segmented([0.0, 0.0, 0.0, 2.0, -1.0], [0, MIN_MS, 10 * MIN_MS, HOUR_MS],
                 max_repeat=30),
       cut_points())
def test_inactivity_matches_the_reference(p: InactivityParams, events: list[Event],
                                          cuts: list[int]) -> None:
    got = run(InactivityDetector(p, capacity=4), events, cuts)
    want = inactivity_reference(p, events)
    assert [c[:3] for c in got] == [c[:3] for c in want]
    assert [c[3] for c in got] == pytest.approx([c[3] for c in want])


Reading = tuple[int, int, list[tuple[str, float]]]
"""(device, ts, [(channel, value), ...] in value order)"""
CHANNELS = ("accel_g", "steps")


@st.composite
def wrist_readings(draw: st.DrawFn, devices: int = 2, max_len: int = 60) -> list[Reading]:
    """Wristbands' readings: accel_g and steps in either order, or one of them alone; a few
    arrive late."""
    out: list[Reading] = []
    clocks = [T0 + draw(st.integers(0, 5_000)) for _ in range(devices)]
    for _ in range(draw(st.integers(0, max_len))):
        d = draw(st.integers(0, devices - 1))
        clocks[d] += draw(st.sampled_from([0, 500, 1_000, 5_000, 20_000]))
        accel = draw(st.sampled_from([None, 0.5, 1.0, 1.0, 1.05, 1.3, 1.3, 3.0]))
        steps = draw(st.sampled_from([None, None, 0.0, 0.0, 1.0, 2.0, 5.0]))
        values = [(c, v) for c, v in (("accel_g", accel), ("steps", steps)) if v is not None]
        if draw(st.booleans()):
            values.reverse()
        out.append((d, clocks[d], values))
    for i in draw(st.lists(st.integers(0, max(0, len(out) - 2)), max_size=3)):
        if i + 1 < len(out):
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def run_bank(p: FallParams, readings: list[Reading], cuts: list[int]) -> list[Change]:
    bank = CheckBank([Fall(p)], kinds=("wearable",), capacity=4,
                     channel_index=CHANNELS.index)
    bounds = sorted({0, len(readings), *(c for c in cuts if 0 < c < len(readings))})
    got: list[Change] = []
    for a, b in pairwise(bounds):
        part = readings[a:b]
        rows = [r for r, (_, _, values) in enumerate(part) for _ in values]
        out = bank.process(
            np.array([d for d, _, _ in part], np.int32), np.array([t for _, t, _ in part],
                                                                  np.int64),
            np.zeros(len(part), np.int8), np.full(len(part), np.nan),
            np.array(rows, np.int32),
            np.array([CHANNELS.index(c) for _, _, vs in part for c, _ in vs], np.int32),
            np.array([v for _, _, vs in part for _, v in vs], np.float64))
        got += [(a + int(r), int(lv), int(o), float(s))
                for r, lv, o, s in zip(out.row, out.level, out.onset, out.signal, strict=True)]
    return got


def fall_reference_with_steps(p: FallParams, readings: list[Reading]) -> list[Change]:
    per_device: dict[int, list[Fed]] = {}
    newest: dict[int, int] = {}
    for row, (d, t, values) in enumerate(readings):
        if t < newest.get(d, -1):
            continue  # late: skipped
        newest[d] = t
        per_device.setdefault(d, []).extend((row, t, c, v) for c, v in values)
    out = [fall_of(p, hist) for hist in per_device.values()]
    return sorted(c for c in out if c is not None)


@settings(max_examples=150, deadline=None)
@given(FALL_PARAMS, wrist_readings(), cut_points(60))
def test_fall_with_steps_matches_the_reference(p: FallParams, readings: list[Reading],
                                               cuts: list[int]) -> None:
    assert run_bank(p, readings, cuts) == fall_reference_with_steps(p, readings)


def test_a_wrist_bang_then_walking_then_rest_is_no_fall() -> None:
    # a 3 g knock, 40 s of walking (steps and movement, a reading a second), then rest
    walk = [(1.35 + 0.1 * (i % 3), 2.0 if i % 2 else 1.0) for i in range(40)]
    rest = [(1.0, 0.0)] * 120
    series = [(1.3, 3.0), (3.0, 0.0), *walk, *rest]
    readings = [(0, T0 + i * 1_000, [("accel_g", a), ("steps", s)])
                for i, (a, s) in enumerate(series)]
    assert run_bank(FallParams(), readings, []) == []
    # steps alone cancel it (a knock, then walking with the wrist still at the side) ...
    calm = [(0, T0 + i * 1_000, [("steps", 0.0 if i < 3 else 2.0), ("accel_g", 1.0)])
            for i in range(1, 40)]
    assert run_bank(FallParams(), [(0, T0, [("accel_g", 3.0)]), *calm], []) == []
    # ... and movement alone (a band without a step counter)
    moving = [(0, T0 + i * 1_000, [("accel_g", 1.35)]) for i in range(1, 12)]
    still = [(0, T0 + i * 1_000, [("accel_g", 1.0)]) for i in range(12, 40)]
    assert run_bank(FallParams(), [(0, T0, [("accel_g", 3.0)]), *moving, *still], []) == []


def test_an_impact_then_stillness_within_the_window_is_a_fall() -> None:
    # the knock's own reading counts steps from before it; a short thrash, then lying still
    series = [(1.3, 2.0), (3.0, 4.0), (1.4, 0.0), (1.6, 1.0)] + [(1.0, 0.0)] * 15
    readings = [(0, T0 + i * 1_000, [("steps", s), ("accel_g", a)])
                for i, (a, s) in enumerate(series)]
    assert run_bank(FallParams(), readings, []) == [(14, 1, T0 + 1_000, 3.0)]
    # stillness from 50 s after the impact: still a fall, confirmed 60 s after it
    late_still = ([(0, T0, [("accel_g", 3.0)])]
                  + [(0, T0 + i * 5_000, [("accel_g", 1.3 if i % 2 else 0.95)])
                     for i in range(1, 10)]
                  + [(0, T0 + i * 5_000, [("accel_g", 1.0)]) for i in range(10, 14)])
    assert run_bank(FallParams(), late_still, []) == [(12, 1, T0, 3.0)]
