"""The fall and inactivity kernels against slow, obviously correct references."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.detect.checks import ms
from sensing.detect.fall import FallDetector, FallParams
from sensing.detect.inactivity import InactivityDetector, InactivityParams

from .support import (
    DAY_MS,
    HOUR_MS,
    MIN_MS,
    Change,
    Event,
    cut_points,
    in_time_order,
    run,
    segmented,
)

pytestmark = pytest.mark.kernel


def fall_reference(p: FallParams, events: Sequence[Event]) -> list[Change]:
    """A fall at reading j: the latest impact before it is at most window_s old, and the
    still readings ending at j (none of them the impact) span still_s. Then it latches."""
    out: list[Change] = []
    for hist in in_time_order(events).values():
        still = [p.still_low_g <= v <= p.still_high_g for _, _, v in hist]
        for j, (row, t, _) in enumerate(hist):
            impacts = [a for a in range(j) if hist[a][2] >= p.impact_g]
            if not impacts or hist[j][2] >= p.impact_g or not still[j]:
                continue
            a = impacts[-1]
            if t - hist[a][1] > ms(p.window_s):
                continue
            s = j
            while s - 1 > a and still[s - 1]:
                s -= 1
            if t - hist[s][1] >= ms(p.still_s):
                out.append((row, 1, hist[a][1], hist[a][2]))
                break
    return sorted(out)


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


@settings(max_examples=200, deadline=None)
@given(st.builds(FallParams, impact_g=st.sampled_from([2.0, 2.5]),
                 still_low_g=st.sampled_from([0.9, 1.0]),
                 still_high_g=st.sampled_from([1.1, 1.15]),
                 still_s=st.sampled_from([0.0, 3.0, 10.0]),
                 window_s=st.sampled_from([10.0, 20.0, 60.0])),
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
