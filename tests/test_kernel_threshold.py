"""The threshold bank kernel against a slow, obviously correct reference."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.detect.engine import DetectionEngine, Readings, threshold_bank
from sensing.detect.rules import BATTERY_CHANNEL, DEFAULT_RULES, Level, Rule
from sensing.detect.threshold import ThresholdBank, ThresholdDetector
from sensing.registry import Registry
from sensing.wire import BatchBuilder
from sensing.wire.kinds import KINDS
from sensing.wire.messages import Grade

pytestmark = pytest.mark.kernel

Event = tuple[int, int, float]  # device, ts, value
Change = tuple[int, int, int]  # row, new level, onset


def reference(rule: Rule, events: list[Event],
              levels_of: Callable[[int], tuple[Level, ...]] | None = None) -> list[Change]:
    """(row, new level, onset) for every level change of one rule, in plain Python; each
    device may have its own levels (its profile)."""
    out = []
    state: dict[int, dict[str, object]] = {}
    sign = 1.0 if rule.above else -1.0
    for row, (d, t, v) in enumerate(events):
        levels = levels_of(d) if levels_of else rule.levels
        s = state.setdefault(d, {"level": 0, "runs": [None] * len(levels), "prev": None,
                                 "onset": -1})
        if rule.rate_window_s:
            prev = s["prev"]
            if prev is None:
                s["prev"] = (t, v)
                continue
            if t - prev[0] < round(rule.rate_window_s * 1000):  # type: ignore[index]
                continue
            s["prev"] = (t, v)
            v = (v - prev[1]) * 60000.0 / (t - prev[0])  # type: ignore[index]
        runs: list = s["runs"]  # type: ignore[assignment]
        met = 0
        for k, lv in enumerate(levels):
            if sign * v >= sign * lv.threshold:
                start, n = runs[k] if runs[k] else (t, 0)
                runs[k] = (start, n + 1)
                if n + 1 >= lv.min_count and t - start >= round(lv.duration_s * 1000):
                    met = k + 1
            else:
                runs[k] = None
        cur = s["level"]
        new = met
        if met < cur:  # type: ignore[operator]
            # stay at the highest level between met and cur whose reset is not crossed
            for k in range(cur, met, -1):  # type: ignore[call-overload]
                if sign * v >= sign * levels[k - 1].reset:
                    new = k
                    break
        if new != cur:
            if cur == 0:
                s["onset"] = min([r[0] for r in runs if r] + [t])
            s["level"] = new
            out.append((row, new, s["onset"]))
    return out


def run_kernel(rule: Rule, events: list[Event], batch: int) -> list[Change]:
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


def value_range(rule: Rule) -> tuple[float, float]:
    lo = min(lv.threshold for lv in rule.levels)
    hi = max(lv.threshold for lv in rule.levels)
    span = max(hi - lo, abs(hi), 1.0)
    return lo - span, hi + span


def timeline(draw: st.DrawFn, lo: float, hi: float) -> list[Event]:
    n = draw(st.integers(0, 120))
    t = 1_700_000_000_000
    evs = []
    for _ in range(n):
        t += draw(st.integers(0, 20_000))
        evs.append((draw(st.integers(0, 3)), t, draw(st.floats(lo, hi))))
    return evs


@st.composite
def rule_and_events(draw: st.DrawFn) -> tuple[Rule, list[Event]]:
    rule = draw(st.sampled_from(DEFAULT_RULES))
    return rule, timeline(draw, *value_range(rule))


@settings(max_examples=300, deadline=None)
@given(rule_and_events(), st.integers(1, 40))
def test_one_rule_matches_reference_for_every_default_rule(
    case: tuple[Rule, list[Event]], batch: int
) -> None:
    rule, events = case
    assert run_kernel(rule, events, batch) == reference(rule, events)


# -- the whole bank: every rule of every kind in one pass, with per-device profiles --------

N_DEVICES = 6
CHANNEL_RANGE: dict[str, tuple[float, float]] = {}
for _rule in DEFAULT_RULES:
    _lo, _hi = value_range(_rule)
    _old = CHANNEL_RANGE.get(_rule.channel, (_lo, _hi))
    CHANNEL_RANGE[_rule.channel] = (min(_lo, _old[0]), max(_hi, _old[1]))
CHANNELS = sorted({r.channel for r in DEFAULT_RULES if r.channel != BATTERY_CHANNEL}
                  | {"unknown"})
CHANNEL_RANGE["unknown"] = (0.0, 1.0)

Reading = tuple[int, int, dict[str, float], float]  # device, ts, values, battery (NaN: none)


def kind_of(d: int) -> int:
    return d % len(KINDS)


@st.composite
def fleet_readings(draw: st.DrawFn) -> list[Reading]:
    t = 1_700_000_000_000
    out = []
    for _ in range(draw(st.integers(0, 80))):
        t += draw(st.integers(0, 15_000))
        d = draw(st.integers(0, N_DEVICES - 1))
        own = [c for c in CHANNELS if c == "unknown" or any(
            r.channel == c and r.kind == KINDS[kind_of(d)] for r in DEFAULT_RULES)]
        chans = draw(st.lists(st.sampled_from(own), unique=True, max_size=len(own)))
        values = {c: draw(st.floats(*CHANNEL_RANGE[c])) for c in chans}
        battery = draw(st.one_of(st.just(np.nan), st.floats(0.0, 0.5)))
        out.append((d, t, values, battery))
    return out


@st.composite
def profiles(draw: st.DrawFn) -> dict[tuple[int, int], tuple[Level, ...]]:
    """Other levels for some (rule, device) pairs: scaled thresholds and resets, other counts
    and durations."""
    out = {}
    for r, rule in enumerate(DEFAULT_RULES):
        for d in range(N_DEVICES):
            if KINDS[kind_of(d)] != rule.kind or not draw(st.booleans()):
                continue
            scale = draw(st.floats(0.5, 1.5))
            out[(r, d)] = tuple(
                replace(lv, threshold=lv.threshold * scale, reset=lv.reset * scale,
                        min_count=draw(st.integers(1, 4)),
                        duration_s=draw(st.sampled_from([0.0, 5.0, 20.0, 0.001 * lv.min_count])))
                for lv in rule.levels)
    return out


def bank_reference(readings: list[Reading],
                   prof: dict[tuple[int, int], tuple[Level, ...]]) -> list[tuple[int, ...]]:
    """Every rule on its own over the readings it watches, merged by (row, rule)."""
    out = []
    for r, rule in enumerate(DEFAULT_RULES):
        rows, events = [], []
        for row, (d, t, values, battery) in enumerate(readings):
            if KINDS[kind_of(d)] != rule.kind:
                continue
            v = battery if rule.channel == BATTERY_CHANNEL else values.get(rule.channel, np.nan)
            if not np.isnan(v):
                rows.append(row)
                events.append((d, t, v))
        for local, level, onset in reference(rule, events,
                                             lambda d, r=r, rule=rule: prof.get((r, d),
                                                                                rule.levels)):
            out.append((rows[local], r, level, onset))
    return sorted(out)


def run_bank(readings: list[Reading], prof: dict[tuple[int, int], tuple[Level, ...]],
             cuts: list[int]) -> list[tuple[int, ...]]:
    channel = {c: i for i, c in enumerate(CHANNELS)}
    bank = ThresholdBank(DEFAULT_RULES, KINDS, channel.__getitem__, capacity=1)
    out = []
    bounds = sorted({0, len(readings), *(c for c in cuts if c < len(readings))})
    for lo, hi in itertools.pairwise(bounds):
        chunk = readings[lo:hi]
        bank.ensure_capacity(max(d for d, *_ in chunk) + 1)  # grows between batches
        for (r, d), levels in prof.items():
            if d < bank.capacity:
                bank.set_profile(r, [d], bank.profile_index(r, levels))
        vr = [i for i, (_, _, values, _) in enumerate(chunk) for _ in values]
        vc = [channel[c] if c != "unknown" else len(CHANNELS) + 3
              for _, _, values, _ in chunk for c in values]
        vv = [v for _, _, values, _ in chunk for v in values.values()]
        res = bank.process(np.array([c[0] for c in chunk], dtype=np.int32),
                           np.array([c[1] for c in chunk], dtype=np.int64),
                           np.array([kind_of(c[0]) for c in chunk], dtype=np.int8),
                           np.array([c[3] for c in chunk]),
                           np.array(vr, dtype=np.int32), np.array(vc, dtype=np.int32),
                           np.array(vv, dtype=np.float64))
        out.extend((lo + int(row), int(r), int(lv), int(o)) for row, r, lv, o in
                   zip(res.row, res.rule, res.level, res.onset, strict=True))
    return sorted(out)


@settings(max_examples=150, deadline=None)
@given(fleet_readings(), profiles(), st.lists(st.integers(1, 80), max_size=4))
def test_bank_matches_each_rule_on_its_own(readings: list[Reading],
                                           prof: dict[tuple[int, int], tuple[Level, ...]],
                                           cuts: list[int]) -> None:
    assert run_bank(readings, prof, cuts) == bank_reference(readings, prof)


@settings(max_examples=40, deadline=None)
@given(fleet_readings())
def test_engine_runs_the_bank_like_separate_detectors(readings: list[Reading]) -> None:
    """The engine's fused path and its one-detector-at-a-time path give the same alerts."""
    def run(banked: bool) -> list[tuple[object, ...]]:
        reg = Registry()
        eng = DetectionEngine(reg, threshold_bank(reg, DEFAULT_RULES).views if banked
                              else [ThresholdDetector(r) for r in DEFAULT_RULES])
        b = BatchBuilder()
        for i, (d, t, values, battery) in enumerate(readings):
            b.add(f"d{d}", KINDS[kind_of(d)], 0, i, t, values,
                  None if np.isnan(battery) else battery)
        batch = b.build()
        dev, chan = reg.intern_batch(batch, "gw", "a")
        got = eng.process(Readings(dev, batch.ts, batch.battery, batch.value_row, chan,
                                   batch.value))
        return [(c.device, c.type, c.grade, c.ts_event, c.ts, c.value, c.reason) for c in got]

    assert run(True) == run(False)


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
    bank = ThresholdBank(DEFAULT_RULES, capacity=2)
    one = (np.array([0], np.int32), np.array([0]), np.array([0], np.int8), np.array([np.nan]))
    with pytest.raises(IndexError, match="value row"):
        bank.process(*one, np.array([1], np.int32), np.array([0], np.int32), np.array([1.0]))
    with pytest.raises(IndexError, match="kind"):
        bank.process(one[0], one[1], np.array([7], np.int8), one[3], np.zeros(0, np.int32),
                     np.zeros(0, np.int32), np.zeros(0))
    with pytest.raises(ValueError, match="levels"):
        bank.profile_index(0, DEFAULT_RULES[0].levels[:1])


def test_a_value_that_is_not_a_number_neither_raises_nor_clears() -> None:
    rule = next(r for r in DEFAULT_RULES if r.name == "manhole-gas")
    events = [(0, 1000 * i, v) for i, v in enumerate([30.0, 30.0, np.nan, np.nan, 30.0, 0.0])]
    got = [(row, lvl) for row, lvl, _ in run_kernel(rule, events, 100)]
    # raised by the alarm values; the NaN readings change nothing; 0.0 clears it
    assert got[0][1] >= 1 and got[-1] == (5, 0)
    assert all(row not in (2, 3) for row, _ in got)


def test_a_bank_s_changes_are_its_own_after_the_next_batch() -> None:
    """The kernel writes into buffers the bank keeps; what a batch returns is a copy."""
    rule = next(r for r in DEFAULT_RULES if r.name == "manhole-gas")
    det = ThresholdDetector(rule, capacity=2)
    first = det.process(np.array([0, 1], np.int32), np.array([0, 0]), np.array([30.0, 30.0]))
    kept = [a.copy() for a in (first.row, first.level, first.onset, first.signal)]
    det.process(np.array([1, 0], np.int32), np.array([1000, 1000]), np.array([0.0, 0.0]))
    assert len(kept[0]) == 2
    for a, b in zip(kept, (first.row, first.level, first.onset, first.signal), strict=True):
        assert np.array_equal(a, b)


def test_a_rule_s_reason_quotes_the_levels_of_the_device_s_own_profile() -> None:
    """A rule's view words the part after the value once per profile and level: the same
    text as the rule's own `describe` with those levels, for every default rule."""
    bank = ThresholdBank(DEFAULT_RULES, capacity=2)
    for r, rule in enumerate(bank.rules):
        other = tuple(replace(lv, threshold=lv.threshold * 2 + 1, min_count=lv.min_count + 1)
                      for lv in rule.levels)
        bank.set_profile(r, [1], bank.profile_index(r, other))
        view = bank.views[r]
        for _ in range(2):  # worded, then from the view's cache
            for level, lv in enumerate(rule.levels, 1):
                assert view.describe(level, 3.25, 0) == rule.describe(3.25, lv.grade)
                assert view.describe(level, 7.5, 1) == rule.describe(7.5, lv.grade, other)
                assert view.describe(level, 0.5) == rule.describe(0.5, lv.grade)
