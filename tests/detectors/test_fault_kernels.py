"""The fault kernels against slow, obviously correct references, per device in plain Python."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.detect.checks import ms
from sensing.detect.fault import (
    DriftDetector,
    DriftParams,
    ImpossibleParams,
    ImpossibleValueDetector,
    StuckParams,
    StuckSensorDetector,
)

from .support import Change, Event, cut_points, in_time_order, run, segmented

pytestmark = pytest.mark.kernel

History = list[tuple[int, int, float]]


def with_hold(hist: History, met: Sequence[bool], active: Sequence[bool],
              start: Sequence[int], signal: Sequence[float], hold_s: float,
              hold_count: int) -> list[Change]:
    """Raise where met; clear where the trailing run of inactive readings is long enough."""
    out: list[Change] = []
    level, onset = 0, -1
    for j, (row, t, _) in enumerate(hist):
        if level == 0:
            if met[j]:
                level, onset = 1, start[j]
                out.append((row, 1, onset, signal[j]))
        elif not active[j]:
            k = j
            while not active[k - 1]:  # stops at the raising reading, which is active
                k -= 1
            if j - k + 1 >= hold_count and t - hist[k][1] >= ms(hold_s):
                level = 0
                out.append((row, 0, onset, signal[j]))
    return out


def trailing_run(flags: Sequence[bool], j: int) -> int:
    """Index where the run of true flags ending at j starts (j + 1 if flags[j] is false)."""
    k = j + 1
    while k > 0 and flags[k - 1]:
        k -= 1
    return k


def merged(per_device: list[list[Change]]) -> list[Change]:
    return sorted(c for changes in per_device for c in changes)


def impossible_reference(p: ImpossibleParams, events: Sequence[Event]) -> list[Change]:
    out = []
    for hist in in_time_order(events).values():
        bad = [not (math.isfinite(v) and p.low <= v <= p.high)
               or (p.integral and not v.is_integer()) for _, _, v in hist]
        starts = [trailing_run(bad, j) for j in range(len(hist))]
        met = [j + 1 - k >= p.min_count for j, k in enumerate(starts)]
        onset = [hist[min(k, j)][1] for j, k in enumerate(starts)]
        out.append(with_hold(hist, met, bad, onset, [v for _, _, v in hist], p.hold_s,
                             p.hold_count))
    return merged(out)


def f32(x: float) -> float:
    return float(np.float32(x))


def stuck_reference(p: StuckParams, events: Sequence[Event], tick_ms: int) -> list[Change]:
    """Over the first reading of each tick, and every reading after one at which the fault
    was raised: runs of readings within epsilon of the run's first; a run counts if, at its
    second reading, the share of changed readings as of its first (a float32 average over
    readings) was at least min_noise or the fault was raised, and its value is not at rest.
    NaN readings are left out (after taking their tick)."""
    out: list[Change] = []
    for readings in in_time_order(events).values():
        hist: list[tuple[int, int, float]] = []
        noise, armed, level, onset, anchor, off_from, next_t = 0.0, False, 0, -1, 0, -1, -1
        for row, t, v in readings:
            if t < next_t:
                continue
            next_t = t - t % tick_ms + tick_ms if tick_ms else t
            if math.isnan(v):
                next_t = -1 if level else next_t
                continue
            hist.append((row, t, v))
            j = len(hist) - 1
            if j > 0 and abs(v - hist[anchor][2]) <= p.epsilon:
                if j == anchor + 1:
                    armed = ((noise >= p.min_noise or level == 1)
                             and not p.rest_low <= hist[anchor][2] <= p.rest_high)
                noise = f32(noise + (0.0 - noise) / p.noise_readings)
            else:
                if j > 0:
                    noise = f32(noise + (1.0 - noise) / p.noise_readings)
                anchor = j
            start = hist[anchor][1]
            stuck = (j > anchor and armed and j - anchor + 1 >= p.min_count
                     and t - start >= ms(p.min_duration_s))
            if level == 0:
                if stuck:
                    level, onset, off_from = 1, start, -1
                    out.append((row, 1, onset, v))
            elif stuck:
                off_from = -1
            else:
                off_from = j if off_from < 0 else off_from
                if j - off_from + 1 >= p.hold_count and t - hist[off_from][1] >= ms(p.hold_s):
                    level, off_from = 0, -1
                    out.append((row, 0, onset, v))
            if level:
                next_t = -1
    return sorted(out)


def ticks(hist: History, tick_ms: int) -> History:
    """The first reading, then per tick its closing reading's row and time with the mean of
    the readings since the previous tick."""
    out = hist[:1]
    pending: list[float] = []
    for row, t, v in hist[1:]:
        pending.append(v)
        if t - out[-1][1] >= tick_ms:
            out.append((row, t, sum(pending) / len(pending)))
            pending = []
    return out


def drift_reference(p: DriftParams, events: Sequence[Event]) -> list[Change]:
    out = []
    for readings in in_time_order(events).values():
        hist = ticks([r for r in readings if not math.isnan(r[2])], ms(p.tick_s))
        if not hist:
            continue
        t0, fast, base, var, hi, lo = hist[0][1], hist[0][2], hist[0][2], 0.0, 0.0, 0.0
        drifting, deviation = [False], [0.0]

        def weight(dt: float, tau_s: float, elapsed: float) -> float:
            w = -math.expm1(-dt / (tau_s * 1000))
            return max(w, dt / elapsed) if elapsed > 0 else w

        for j in range(1, len(hist)):
            t, v = hist[j][1], hist[j][2]
            dt, elapsed = float(t - hist[j - 1][1]), float(t - t0)
            fast += weight(dt, p.fast_tau_s, elapsed) * (v - fast)
            w = weight(dt, p.base_tau_s, elapsed)
            base += w * (v - base)
            z = (fast - base) / max(math.sqrt(var), p.min_sigma)
            warm = elapsed >= ms(p.warmup_s)
            if not warm or abs(z) < p.cusum_k:
                var += w * ((fast - base) ** 2 - var)
            if warm:
                step = min(dt, p.fast_tau_s * 1000) / (p.cusum_tau_s * 1000)
                hi = min(p.cusum_h, max(0.0, hi + (z - p.cusum_k) * step))
                lo = min(p.cusum_h, max(0.0, lo + (-z - p.cusum_k) * step))
            drifting.append(warm and (abs(z) >= p.z_alarm or hi >= p.cusum_h
                                      or lo >= p.cusum_h))
            deviation.append(fast - base)
        starts = [trailing_run(drifting, j) for j in range(len(hist))]
        met = [drifting[j] and j + 1 - k >= p.min_count
               and hist[j][1] - hist[k][1] >= ms(p.min_duration_s)
               for j, k in enumerate(starts)]
        onset = [hist[min(k, j)][1] for j, k in enumerate(starts)]
        out.append(with_hold(hist, met, drifting, onset, deviation, p.hold_s, p.hold_count))
    return merged(out)


def assert_same(got: list[Change], want: list[Change]) -> None:
    assert [c[:3] for c in got] == [c[:3] for c in want]
    assert [c[3] for c in got] == pytest.approx([c[3] for c in want], rel=1e-9, abs=1e-12,
                                                nan_ok=True)


STEPS = [0, 1_000, 5_000, 20_000]
HOLDS = {"hold_s": st.sampled_from([0.0, 5.0, 30.0]), "hold_count": st.integers(1, 3)}


@settings(max_examples=150, deadline=None)
@given(st.builds(ImpossibleParams, low=st.sampled_from([0.0, 1.0]),
                 high=st.sampled_from([2.0, 100.0, math.inf]), integral=st.booleans(),
                 min_count=st.integers(1, 4), **HOLDS),
       segmented([-1.0, 0.0, 0.5, 1.0, 2.0, 2.5, 100.0, 101.0, math.inf, math.nan], STEPS,
                 max_repeat=8),
       cut_points())
def test_impossible_values_match_the_reference(p: ImpossibleParams, events: list[Event],
                                               cuts: list[int]) -> None:
    got = run(ImpossibleValueDetector("smoke", "co_ppm", p, capacity=4), events, cuts)
    assert_same(got, impossible_reference(p, events))


@settings(max_examples=200, deadline=None)
@given(st.builds(StuckParams, min_count=st.integers(2, 6),
                 min_duration_s=st.sampled_from([0.0, 4.0, 30.0]),
                 epsilon=st.sampled_from([0.0, 1e-9, 0.5]),
                 rest_low=st.sampled_from([math.inf, 0.0, 1.0]),
                 rest_high=st.sampled_from([-math.inf, 0.0, 1.0]),
                 min_noise=st.sampled_from([0.0, 0.3, 0.6]),
                 noise_readings=st.sampled_from([1, 2, 3, 32]), **HOLDS),
       segmented([0.0, 1.0, 1.0 + 1e-12, 1.3, 2.0, math.nan], STEPS, max_repeat=6,
                 max_segments=14),
       cut_points(), st.sampled_from([0, 0, 1_000, 3_000, 60_000]))
def test_stuck_values_match_the_reference(p: StuckParams, events: list[Event],
                                          cuts: list[int], tick_ms: int) -> None:
    got = run(StuckSensorDetector("wearable", "heart_rate", p, capacity=4, tick_ms=tick_ms),
              events, cuts)
    assert_same(got, stuck_reference(p, events, tick_ms))


@settings(max_examples=150, deadline=None)
@given(st.builds(DriftParams, min_sigma=st.sampled_from([0.1, 1.0]),
                 fast_tau_s=st.sampled_from([5.0, 60.0]),
                 base_tau_s=st.sampled_from([60.0, 600.0]),
                 warmup_s=st.sampled_from([0.0, 120.0]), z_alarm=st.sampled_from([1.0, 3.0]),
                 cusum_k=st.sampled_from([0.0, 1.0]), cusum_h=st.sampled_from([0.5, 3.0]),
                 cusum_tau_s=st.sampled_from([10.0, 60.0]),
                 tick_s=st.sampled_from([0.0, 1.0, 30.0, 600.0]), min_count=st.integers(1, 3),
                 min_duration_s=st.sampled_from([0.0, 20.0]),
                 hold_s=st.sampled_from([0.0, 30.0]), hold_count=st.integers(1, 3)),
       segmented([0.0, 0.2, -0.3, 1.0, 5.0, -5.0, math.nan], [*STEPS, 300_000],
                 max_repeat=30),
       cut_points())
def test_drift_matches_the_reference(p: DriftParams, events: list[Event],
                                     cuts: list[int]) -> None:
    got = run(DriftDetector("smoke", "temp_c", p, capacity=4), events, cuts)
    assert_same(got, drift_reference(p, events))
