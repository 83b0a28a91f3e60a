"""The threshold kernel against a slow, obviously correct reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.detect.rules import DEFAULT_RULES, Level, Rule
from sensing.detect.threshold import ThresholdDetector
from sensing.wire.messages import Grade

pytestmark = pytest.mark.kernel


def reference(rule: Rule, events: list[tuple[int, int, float]]) -> list[tuple[int, int, int]]:
    """(row, new level, onset) for every level change, one device at a time, in plain Python."""
    out = []
    state: dict[int, dict[str, object]] = {}
    sign = 1.0 if rule.above else -1.0
    for row, (d, t, v) in enumerate(events):
        s = state.setdefault(d, {"level": 0, "runs": [None] * len(rule.levels), "prev": None,
                                 "onset": -1})
        if rule.rate_window_s:
            prev = s["prev"]
            if prev is None:
                s["prev"] = (t, v)
                continue
            if t - prev[0] < rule.rate_window_s * 1000:  # type: ignore[index]
                continue
            s["prev"] = (t, v)
            v = (v - prev[1]) * 60000.0 / (t - prev[0])  # type: ignore[index]
        runs: list = s["runs"]  # type: ignore[assignment]
        met = 0
        for k, lv in enumerate(rule.levels):
            if sign * v >= sign * lv.threshold:
                start, n = runs[k] if runs[k] else (t, 0)
                runs[k] = (start, n + 1)
                if n + 1 >= lv.min_count and t - start >= int(lv.duration_s * 1000):
                    met = k + 1
            else:
                runs[k] = None
        cur = s["level"]
        new = met
        if met < cur:  # type: ignore[operator]
            # stay at the highest level between met and cur whose reset is not crossed
            for k in range(cur, met, -1):  # type: ignore[call-overload]
                if sign * v >= sign * rule.levels[k - 1].reset:
                    new = k
                    break
        if new != cur:
            if cur == 0:
                s["onset"] = min([r[0] for r in runs if r] + [t])
            s["level"] = new
            out.append((row, new, s["onset"]))
    return out


def run_kernel(rule: Rule, events: list[tuple[int, int, float]], batch: int) -> list[tuple]:
    det = ThresholdDetector(rule, capacity=1)
    det.ensure_capacity(4)
    out = []
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        res = det.process(np.array([c[0] for c in chunk], dtype=np.int32),
                          np.array([c[1] for c in chunk], dtype=np.int64),
                          np.array([c[2] for c in chunk], dtype=np.float64))
        out.extend((i + int(r), int(lv), int(o))
                   for r, lv, o in zip(res.row, res.level, res.onset, strict=True))
    return out


def timeline(draw: st.DrawFn, lo: float, hi: float) -> list[tuple[int, int, float]]:
    n = draw(st.integers(0, 120))
    t = 1_700_000_000_000
    evs = []
    for _ in range(n):
        t += draw(st.integers(0, 20_000))
        evs.append((draw(st.integers(0, 3)), t, draw(st.floats(lo, hi))))
    return evs


@st.composite
def rule_and_events(draw: st.DrawFn) -> tuple[Rule, list[tuple[int, int, float]]]:
    rule = draw(st.sampled_from(DEFAULT_RULES))
    lo = min(lv.threshold for lv in rule.levels)
    hi = max(lv.threshold for lv in rule.levels)
    span = max(hi - lo, abs(hi), 1.0)
    return rule, timeline(draw, lo - span, hi + span)


@settings(max_examples=400, deadline=None)
@given(rule_and_events(), st.integers(1, 40))
def test_kernel_matches_reference_for_every_default_rule(
    case: tuple[Rule, list[tuple[int, int, float]]], batch: int
) -> None:
    rule, events = case
    assert run_kernel(rule, events, batch) == reference(rule, events)


def test_hysteresis_and_minimum_count() -> None:
    rule = Rule("t", "x", "smoke", "c", True, (
        Level(Grade.MAJOR, 10.0, 5.0, min_count=2),
        Level(Grade.CRITICAL, 20.0, 15.0),
    ))
    values = [11, 4, 11, 11, 8, 6, 25, 16, 14, 4.9]
    events = [(0, 1000 * i, float(v)) for i, v in enumerate(values)]
    got = [(row, lvl) for row, lvl, _ in run_kernel(rule, events, 3)]
    # one reading over 10 is not enough; 8 and 6 stay above the reset of 5; 25 is critical at
    # once; 16 stays critical (reset 15); 14 falls back to major; 4.9 clears
    assert got == [(3, 1), (6, 2), (8, 1), (9, 0)]


def test_rate_of_rise() -> None:
    rule = next(r for r in DEFAULT_RULES if r.name == "smoke-heat-rate")
    # one reading every 5 s; spans of 15 s are compared: 0, 15, 30, 45, 60, 75 s
    temps = [21.0, 21.3, 20.9, 21.0, 21.2, 21.0, 24.0, 26.0, 28.0, 30.0, 32.0, 34.0, 36.0,
             36.1, 36.0, 36.0, 36.1, 36.0]
    events = [(0, 5_000 * i, t) for i, t in enumerate(temps)]
    got = run_kernel(rule, events, 100)
    # noise of ±0.3 °C between readings never counts; 21.0 -> 24.0 (12 °C/min, row 6) and
    # 24.0 -> 30.0 (24 °C/min, row 9) are two spans in a row: raised at row 9; 36.0 -> 36.0
    # (row 12 -> row 15) clears
    assert [(r, lv) for r, lv, _ in got] == [(9, 1), (15, 0)]
    assert got[0][2] == 30_000  # the end of the first span that showed the rise


def test_wrapper_checks_its_input() -> None:
    det = ThresholdDetector(DEFAULT_RULES[0], capacity=2)
    with pytest.raises(IndexError):
        det.process(np.array([3], np.int32), np.array([0]), np.array([1.0]))
    with pytest.raises(ValueError):
        det.process(np.array([0, 1], np.int32), np.array([0]), np.array([1.0]))
