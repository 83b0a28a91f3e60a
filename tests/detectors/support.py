"""Shared helpers for the detector tests: event series, batch runs, series generators."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise

import numpy as np
from hypothesis import strategies as st

from sensing.detect.base import Detector, LevelChanges

T0 = 1_795_478_819_832
"""2026-11-24 00:06:59.832 UTC (08:06 in the pilot city)"""
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000
LOCAL_MIDNIGHT = (T0 + 8 * HOUR_MS) // DAY_MS * DAY_MS - 8 * HOUR_MS
"""00:00 of T0's day in the pilot city (UTC+8)"""

Event = tuple[int, int, float]
"""(device, ts ms, value)"""
Change = tuple[int, int, int, float]
"""(row in the whole input, new level, onset, signal)"""


def arrays(events: Sequence[Event]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.array([e[0] for e in events], dtype=np.int32),
            np.array([e[1] for e in events], dtype=np.int64),
            np.array([e[2] for e in events], dtype=np.float64))


def changes(res: LevelChanges, offset: int = 0) -> list[Change]:
    return [(offset + int(r), int(lv), int(o), float(s))
            for r, lv, o, s in zip(res.row, res.level, res.onset, res.signal, strict=True)]


def run(det: Detector, events: Sequence[Event], cuts: Iterable[int] = ()) -> list[Change]:
    """Feed `events` in batches split at `cuts`; the changes with rows into `events`."""
    bounds = sorted({0, len(events), *(c for c in cuts if 0 < c < len(events))})
    out: list[Change] = []
    for a, b in pairwise(bounds):
        out += changes(det.process(*arrays(events[a:b])), a)
    return out


def series(ts_s: Sequence[float], values: Sequence[float], device: int = 0,
           start: int = T0) -> list[Event]:
    """One device's readings at `ts_s` seconds after `start`."""
    return [(device, start + round(t * 1000), float(v)) for t, v in zip(ts_s, values,
                                                                          strict=True)]


def every(step_s: float, values: Sequence[float], device: int = 0, start: int = T0,
          ) -> list[Event]:
    return series([i * step_s for i in range(len(values))], values, device, start)


def levels(got: Sequence[Change]) -> list[tuple[int, int]]:
    return [(row, lvl) for row, lvl, _, _ in got]


@st.composite
def segmented(draw: st.DrawFn, values: Sequence[float], steps_ms: Sequence[int],
              devices: int = 3, max_segments: int = 6, max_repeat: int = 40,
              late: bool = True) -> list[Event]:
    """Several devices' series, each a few runs of one value from `values` at one step from
    `steps_ms`, merged in time order; with `late`, a few readings arrive out of order."""
    merged: list[tuple[int, int, int, float]] = []
    for d in range(draw(st.integers(1, devices))):
        t = T0 + draw(st.integers(0, 60_000))
        for _ in range(draw(st.integers(0, max_segments))):
            v = draw(st.sampled_from(values))
            step = draw(st.sampled_from(steps_ms))
            for _ in range(draw(st.integers(1, max_repeat))):
                merged.append((t, d, len(merged), v))
                t += step
    merged.sort()
    events = [(d, t, v) for t, d, _, v in merged]
    if late and len(events) > 1:
        for i in draw(st.lists(st.integers(0, len(events) - 2), max_size=3)):
            events[i], events[i + 1] = events[i + 1], events[i]
    return events


@st.composite
def jittered(draw: st.DrawFn, low: float, high: float, max_step_ms: int, devices: int = 3,
             max_len: int = 120) -> list[Event]:
    """Readings of random devices with random values and steps (sometimes back in time)."""
    t = T0
    events: list[Event] = []
    for _ in range(draw(st.integers(0, max_len))):
        t = max(0, t + draw(st.integers(-max_step_ms // 4, max_step_ms)))
        events.append((draw(st.integers(0, devices - 1)), t,
                       draw(st.floats(low, high, allow_nan=False))))
    return events


def cut_points(n_max: int = 800) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(1, n_max), max_size=6)


def in_time_order(events: Sequence[Event]) -> dict[int, list[tuple[int, int, float]]]:
    """Per device, (row, ts, value) of the readings a detector acts on: those not older than
    the device's newest reading so far (late ones are skipped)."""
    out: dict[int, list[tuple[int, int, float]]] = {}
    newest: dict[int, int] = {}
    for row, (d, t, v) in enumerate(events):
        if t >= newest.get(d, -1):
            newest[d] = t
            out.setdefault(d, []).append((row, t, v))
    return out


def simulated(kind: str, channel: str, hours: float, step_s: float, seed: int = 0,
              day_start_s: float = 0.0) -> list[float]:
    """One quiet simulated device's channel (sensing_sim's signals, with their nuisances)."""
    from sensing_sim.signals import make_signal

    sig = make_signal(kind, np.random.default_rng(seed), day_start_s)
    n = int(hours * 3600 / step_s)
    return [sig.sample(i * step_s)[0][channel] for i in range(n)]
