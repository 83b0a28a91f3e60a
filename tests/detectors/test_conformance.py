"""One conformance suite for every detector (in the manner of river's `check_estimator`).

Each case builds a detector at a given capacity and says how to exercise it: a palette of
values and of time steps for random series (runs of one value at one step, several devices
interleaved, a few readings late), and a witness series that must raise it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensing.detect.base import Detector, LevelChanges
from sensing.detect.checks import CheckView
from sensing.detect.fall import FallDetector
from sensing.detect.fault import (
    DRIFT_DEFAULTS,
    PHYSICAL_LIMITS,
    STUCK_DEFAULTS,
    DriftDetector,
    ImpossibleValueDetector,
    StuckSensorDetector,
)
from sensing.detect.inactivity import InactivityDetector
from sensing.detect.rules import BATTERY_CHANNEL, DEFAULT_RULES, Rule
from sensing.detect.threshold import ThresholdDetector
from sensing.wire.kinds import KIND_CHANNELS, KINDS
from sensing.wire.messages import Grade

from .support import (
    HOUR_MS,
    MIN_MS,
    Change,
    Event,
    arrays,
    changes,
    cut_points,
    every,
    run,
    segmented,
)

CONTRACT_TYPES = frozenset({
    # the alert types of wire contract v1
    "smoke.fire", "smoke.co", "manhole.displaced", "manhole.overflow", "manhole.gas",
    "wearable.fall", "wearable.vitals", "wearable.sos", "wearable.inactivity",
    "device.offline", "gateway.offline", "device.fault", "device.battery",
})
S = 1_000


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[int], Detector]
    """a fresh detector with this capacity"""
    levels: int
    values: Sequence[float]
    steps_ms: Sequence[int]
    witness: list[Event]
    clear_is_fresh: bool = True
    """after clear(d), device d behaves exactly like a device never seen (but for readings
    older than its newest one, which stay late)"""

    def __str__(self) -> str:
        return self.name


def threshold_case(rule: Rule) -> Case:
    thr = [lv.threshold for lv in rule.levels]
    marks = thr + [lv.reset for lv in rule.levels]
    make = partial(lambda r, cap: ThresholdDetector(r, capacity=cap), rule)
    steps = [0, S, 5 * S, 20 * S, 2 * MIN_MS, 15 * MIN_MS]
    if rule.rate_window_s:
        # runs of one value with jumps between them: steep rates now and then
        return Case(rule.name, make, len(rule.levels), [20.0, 20.5, 30.0, 45.0, 80.0], steps,
                    every(10.0, [20.0 + 10.0 * i for i in range(30)]), clear_is_fresh=False)
    span = max(marks) - min(marks) or abs(marks[0]) or 1.0
    quiet = min(marks) - span if rule.above else max(marks) + span
    worst = max(thr) + span if rule.above else min(thr) - span
    return Case(rule.name, make, len(rule.levels), sorted({*marks, quiet, worst}), steps,
                every(10.0, [worst] * 720))


def impossible_case(kind: str, channel: str) -> Case:
    p = PHYSICAL_LIMITS[channel]
    high = p.high if np.isfinite(p.high) else 1e6
    bad = p.low - 1.0
    return Case(f"{kind}-{channel}-impossible",
                lambda cap: ImpossibleValueDetector(kind, channel, capacity=cap), 1,
                [bad, p.low, (p.low + high) / 2, high, high + 1.0, p.low + 0.5],
                [S, 30 * S, 5 * MIN_MS], every(1.0, [bad, bad]))


def stuck_case(kind: str, channel: str) -> Case:
    p = STUCK_DEFAULTS[(kind, channel)]
    n = max(p.min_count, int(p.min_duration_s / 600) + 1) + 1
    return Case(f"{kind}-{channel}-stuck",
                lambda cap: StuckSensorDetector(kind, channel, capacity=cap), 1,
                [70.0, 71.0], [10 * S, MIN_MS, 10 * MIN_MS],
                every(600.0, [70.0, 71.0] * 8 + [70.0] * n))  # noise, then frozen


def drift_case(kind: str, channel: str) -> Case:
    return Case(f"{kind}-{channel}-drift",
                lambda cap: DriftDetector(kind, channel, capacity=cap), 1,
                [90.0, 90.5, 96.0, 84.0], [10 * MIN_MS, HOUR_MS],
                every(3600.0, [90.0] * 48 + [98.0] * 48))


CASES: list[Case] = [
    *(threshold_case(rule) for rule in DEFAULT_RULES),
    *(impossible_case(kind, channel) for kind, chans in KIND_CHANNELS.items()
      for channel in chans),
    *(stuck_case(kind, channel) for kind, channel in STUCK_DEFAULTS),
    *(drift_case(kind, channel) for kind, channel in DRIFT_DEFAULTS),
    Case("wearable-fall", lambda cap: FallDetector(capacity=cap), 1,
         [0.5, 1.0, 1.05, 1.3, 3.0], [S // 2, S, 5 * S, 30 * S],
         every(1.0, [1.0, 3.0] + [1.0] * 15)),
    Case("wearable-inactivity", lambda cap: InactivityDetector(capacity=cap), 1,
         [0.0, 0.0, 0.0, 4.0], [MIN_MS, 10 * MIN_MS, HOUR_MS], every(600.0, [0.0] * 144)),
]

each_case = pytest.mark.parametrize("case", CASES, ids=str)
hypothesis_settings = settings(max_examples=20, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow])


def draw_events(data: st.DataObject, case: Case) -> list[Event]:
    return data.draw(segmented(case.values, case.steps_ms), label="events")


def test_the_suite_covers_every_detector_name_once() -> None:
    names = [case.make(1).spec.name for case in CASES]
    assert len(names) == len(set(names))
    assert [c.name for c in CASES] == names


@each_case
def test_spec(case: Case) -> None:
    spec = case.make(1).spec
    assert spec.type in CONTRACT_TYPES
    assert spec.kind in KINDS
    assert spec.channel in (*KIND_CHANNELS[spec.kind], BATTERY_CHANNEL)


@each_case
def test_grades_and_descriptions(case: Case) -> None:
    det = case.make(1)
    for level in range(1, case.levels + 1):
        assert isinstance(det.grade(level), Grade)
        text = det.describe(level, 1.5)
        assert isinstance(text, str) and text.strip()


@each_case
def test_an_empty_batch_changes_nothing(case: Case) -> None:
    out = case.make(4).process(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0))
    assert_well_typed(out, 0)
    assert out.row.size == 0


@each_case
def test_the_witness_raises(case: Case) -> None:
    got = run(case.make(1), case.witness)
    assert got and got[0][1] >= 1


def assert_well_typed(out: LevelChanges, n: int) -> None:
    assert out.row.dtype == np.int64 and out.level.dtype == np.int8
    assert out.onset.dtype == np.int64 and out.signal.dtype == np.float64
    assert out.row.shape == out.level.shape == out.onset.shape == out.signal.shape
    assert np.all(np.diff(out.row) > 0) and np.all((out.row >= 0) & (out.row < max(n, 1)))


@each_case
@hypothesis_settings
@given(data=st.data())
def test_changes_are_well_formed(case: Case, data: st.DataObject) -> None:
    """Rows in range and increasing, levels within range and never the current one again,
    onsets not after the device's newest reading, inputs untouched."""
    events = draw_events(data, case)
    cuts = data.draw(cut_points(len(events) + 1), label="cuts")
    det = case.make(4)
    current: dict[int, int] = {}
    newest: dict[int, int] = {}
    bounds = sorted({0, len(events), *(c for c in cuts if c < len(events))})
    for a, b in pairwise(bounds):
        dev, ts, val = arrays(events[a:b])
        copies = (dev.copy(), ts.copy(), val.copy())
        out = det.process(dev, ts, val)
        assert all(np.array_equal(x, y) for x, y in zip((dev, ts, val), copies, strict=True))
        assert_well_typed(out, b - a)
        for row, level, onset in zip(out.row.tolist(), out.level.tolist(), out.onset.tolist(),
                                     strict=True):
            d = int(dev[row])
            assert 0 <= level <= case.levels and level != current.get(d, 0)
            for k in range(a, a + row + 1):
                if events[k][0] == d:
                    newest[d] = max(newest.get(d, events[k][1]), events[k][1])
            assert onset <= newest[d]
            current[d] = level
            if level:
                assert isinstance(det.grade(level), Grade)


@each_case
@hypothesis_settings
@given(data=st.data())
def test_batch_splits_do_not_matter(case: Case, data: st.DataObject) -> None:
    events = draw_events(data, case)
    cuts = data.draw(cut_points(len(events) + 1), label="cuts")
    assert run(case.make(4), events, cuts) == run(case.make(4), events)


def by_device(events: list[Event]) -> dict[int, list[int]]:
    rows: dict[int, list[int]] = {}
    for i, (d, _, _) in enumerate(events):
        rows.setdefault(d, []).append(i)
    return rows


@each_case
@hypothesis_settings
@given(data=st.data())
def test_devices_are_independent(case: Case, data: st.DataObject) -> None:
    events = draw_events(data, case)
    alone: list[Change] = []
    for rows in by_device(events).values():
        for r, lvl, onset, sig in run(case.make(4), [events[i] for i in rows]):
            alone.append((rows[r], lvl, onset, sig))
    assert run(case.make(4), events) == sorted(alone)


@each_case
@hypothesis_settings
@given(data=st.data())
def test_state_survives_growth(case: Case, data: st.DataObject) -> None:
    events = draw_events(data, case)
    cuts = data.draw(cut_points(len(events) + 1), label="cuts")
    small = case.make(1)
    bounds = sorted({0, len(events), *(c for c in cuts if c < len(events))})
    got: list[Change] = []
    for a, b in pairwise(bounds):
        batch = events[a:b]
        small.ensure_capacity(max(d for d, _, _ in batch) + 1)
        small.ensure_capacity(1)  # never shrinks
        got += changes(small.process(*arrays(batch)), a)
    assert got == run(case.make(8), events, cuts)


@each_case
@hypothesis_settings
@given(data=st.data())
def test_clear_forgets_one_device(case: Case, data: st.DataObject) -> None:
    events = draw_events(data, case)
    cut = data.draw(st.integers(0, len(events)), label="cut")
    victim = data.draw(st.integers(0, 2), label="device")
    det = case.make(4)
    before = run(det, events[:cut])
    det.clear(victim)
    after = [(r + cut, lvl, o, s) for r, lvl, o, s in run(det, events[cut:])]
    plain = run(case.make(4), events)
    others = [c for c in before + after if events[c[0]][0] != victim]
    assert others == [c for c in plain if events[c[0]][0] != victim]
    mine = [c for c in after if events[c[0]][0] == victim]
    if mine:
        assert mine[0][1] != 0  # the device starts again from "no condition"
    if case.clear_is_fresh:
        # a fresh start of the episode, not of the device's clock: for the checks, which skip
        # late readings, readings older than its newest before the cut stay late
        newest = max((t for d, t, _ in events[:cut] if d == victim and isinstance(det, CheckView)),
                     default=-1)
        rows = [i for i in range(cut, len(events))
                if events[i][0] == victim and events[i][1] >= newest]
        fresh = run(case.make(4), [events[i] for i in rows])
        assert mine == [(rows[r], lvl, o, s) for r, lvl, o, s in fresh]


@each_case
@hypothesis_settings
@given(data=st.data())
def test_score_is_a_stateless_anomaly_score(case: Case, data: st.DataObject) -> None:
    events = draw_events(data, case)
    one = [e for e in events if e[0] == 0]
    _, ts, val = arrays(one)
    copies = (ts.copy(), val.copy())
    det = case.make(4)
    half = len(events) // 2
    first = run(det, events[:half])
    score = det.score(ts, val)
    assert score.shape == (len(one),) and score.dtype == np.float64
    assert np.all((score >= 0.0) & (score <= 1.0))
    assert np.array_equal(ts, copies[0]) and np.array_equal(val, copies[1])
    assert np.array_equal(det.score(ts, val), score)
    rest = [(r + half, lvl, o, s) for r, lvl, o, s in run(det, events[half:])]
    assert first + rest == run(case.make(4), events)
