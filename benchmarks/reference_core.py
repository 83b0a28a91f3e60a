"""A plain-Python reference of the stream core's logic: what `DedupWindow` + `DetectionEngine`
with `default_detectors` do to a stream of readings, one reading at a time.

Everything lives in dicts keyed by device (or (device, alert type)); no numpy, no numba, no
batching. It is the baseline of the benchmark's "x faster than pure Python" ratio and, in
`tests/test_bench_reference.py`, a check that the kernels implement the documented logic:

- dedup: the anti-replay window of `sensing.kernels.dedup` per device over (epoch, seq), as a
  set of the seqs admitted in the device's current epoch plus its highest seq (`top`);
- threshold rules (`DEFAULT_RULES`, semantics in `sensing.kernels.threshold`): levels with
  min_count and duration, reset levels (hysteresis), rate rules over spans;
- fault checks (`sensing.detect.fault`, `sensing.kernels.fault`): impossible values on every
  (kind, channel), stuck sensor and drift where they have defaults, with their hold logic;
- fall and inactivity on the wristband's accel_g and steps;
- grading (`DetectionEngine._apply`): one episode per (device, alert type), its grade the
  highest rank among its detectors' active levels; latching types clear only by hand;
- the engine's gates (`sensing.kernels.gate`): a reading older than its device's newest one
  reaches no detector; a threshold rule skips a value its channel's impossible-value check
  rejects, and every value of its channel while a fault check of that channel (impossible,
  stuck, drift) is raised on the device, as it stands after the reading's checks.

Detectors are numbered as in `default_detectors` (the rules, then the fault checks, then fall
and inactivity); a reading's level changes are graded in that order, as the engine sorts its
changes by (row, detector).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sensing.detect.fall import FallParams
from sensing.detect.fault import (
    DRIFT_DEFAULTS,
    PHYSICAL_LIMITS,
    STUCK_DEFAULTS,
    DriftParams,
    ImpossibleParams,
    StuckParams,
)
from sensing.detect.inactivity import InactivityParams
from sensing.detect.rules import BATTERY_CHANNEL, DEFAULT_RULES, Rule
from sensing.kernels.fault import STUCK_TICK_MS
from sensing.wire.kinds import KIND_CHANNELS
from sensing.wire.messages import GRADE_BY_RANK, Grade

WINDOW = 1024
"""the dedup window in seqs (`sensing.kernels.dedup.WINDOW_BITS`)"""
DAY_MS = 86_400_000
HOUR_MS = 3_600_000.0

Reading = tuple[int, str, int, int, int, list[tuple[str, float]], float]
"""(device, kind, epoch, seq, ts ms, [(channel, value), ...] in value order, battery or NaN)"""
Change = tuple[int, str, Grade | None, int, int, float]
"""(device, alert type, grade or None when cleared, episode onset, ts of the reading, signal)"""
Fired = tuple[int, int, float]
"""a detector's level change at one reading: (new level, onset, signal)"""


def ms(seconds: float) -> int:
    return round(seconds * 1000)


# -- dedup -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Window:
    epoch: int = 0
    top: int = -1
    seen: set[int] = field(default_factory=set)


class Dedup:
    """Admits a reading once per (device, epoch, seq): a later epoch starts afresh, an earlier
    one is too old; within the epoch a seq more than WINDOW - 1 below the highest admitted one
    is too old (it cannot be proven new), any other seq is admitted unless already seen."""

    def __init__(self) -> None:
        self.windows: dict[int, _Window] = {}

    def admit(self, device: int, epoch: int, seq: int) -> bool:
        w = self.windows.get(device)
        if w is None:
            w = self.windows[device] = _Window()
        if epoch < w.epoch:
            return False
        if epoch > w.epoch:
            w.epoch, w.top, w.seen = epoch, -1, set()
        if seq > w.top:
            w.top = seq
            if len(w.seen) > 2 * WINDOW:  # forget what slid out of the window
                w.seen = {s for s in w.seen if seq - s < WINDOW}
        elif w.top - seq >= WINDOW or seq in w.seen:
            return False
        w.seen.add(seq)
        return True


# -- the newest reading of a device -------------------------------------------------------------


class Newest:
    """One clock per device, moved by every admitted reading whatever it carries; a reading
    older than it (`late`) reaches no detector at all (the engine's gate; the check bank
    skips it on its own too, `sensing.kernels.checks`)."""

    def __init__(self) -> None:
        self.ts: dict[int, int] = {}
        self.late = False

    def reading(self, device: int, t: int) -> None:
        """An admitted reading of `device` at `t`, before any check sees its values."""
        self.late = t < self.ts.get(device, -1)
        if not self.late:
            self.ts[device] = t

    def accept(self, check: int, device: int, t: int) -> bool:
        """False if check `check` is to skip the reading at `t` as older than the newest."""
        return not self.late


# -- detectors ---------------------------------------------------------------------------------


class Check:
    """One detector: its place in the engine's order, the alert type it feeds and its grades."""

    index: int
    type: str
    kind: str
    channel: str
    latching: bool = False

    def grade(self, level: int) -> Grade:
        raise NotImplementedError

    def feed(self, device: int, t: int, v: float) -> Fired | None:
        raise NotImplementedError


@dataclass(slots=True)
class _RuleState:
    level: int = 0
    onset: int = -1
    runs: list[tuple[int, int] | None] = field(default_factory=lambda: [None, None, None])
    """per level: (start, readings) of the current run beyond its threshold, or None"""
    ref: tuple[int, float] | None = None
    """rate rules: the reference point (ts, value) the next span starts from"""


class RuleCheck(Check):
    def __init__(self, index: int, rule: Rule) -> None:
        self.index, self.rule = index, rule
        self.type, self.kind, self.channel = rule.type, rule.kind, rule.channel
        self.latching = rule.latching
        self.sign = 1.0 if rule.above else -1.0
        self.rate_ms = ms(rule.rate_window_s)
        self.levels = [(lv.threshold, lv.reset, lv.min_count, ms(lv.duration_s))
                       for lv in rule.levels]
        self.state: dict[int, _RuleState] = {}

    def grade(self, level: int) -> Grade:
        return self.rule.levels[level - 1].grade

    def feed(self, device: int, t: int, v: float) -> Fired | None:
        if math.isnan(v):
            return None  # no evidence either way
        s = self.state.get(device)
        if s is None:
            s = self.state[device] = _RuleState()
        if self.rate_ms:
            prev = s.ref
            if prev is not None and t - prev[0] < self.rate_ms:
                return None  # inside the span: skipped
            s.ref = (t, v)
            if prev is None:
                return None
            v = (v - prev[1]) * 60000.0 / (t - prev[0])
        sign = self.sign
        met = 0
        for k, (threshold, _, min_count, dur) in enumerate(self.levels):
            if sign * v >= sign * threshold:
                start, n = s.runs[k] or (t, 0)
                s.runs[k] = (start, n + 1)
                if n + 1 >= min_count and t - start >= dur:
                    met = k + 1
            else:
                s.runs[k] = None
        new = met
        for k in range(s.level, met, -1):  # falling: hold the highest level not yet reset
            if sign * v >= sign * self.levels[k - 1][1]:
                new = k
                break
        if new == s.level:
            return None
        if s.level == 0:
            s.onset = min([run[0] for run in s.runs if run] + [t])
        s.level = new
        return new, s.onset, v


@dataclass(slots=True)
class _Hold:
    """A fault check's level with its way down: cleared after `hold_count` inactive readings
    (ticks, for drift) spanning `hold_ms`."""

    level: int = 0
    onset: int = -1
    off_since: int = -1
    off_count: int = 0
    run_count: int = 0
    run_since: int = -1


class FaultCheck(Check):
    type = "device.fault"
    state: Mapping[int, _Hold]

    def raised(self, device: int) -> bool:
        h = self.state.get(device)
        return h is not None and h.level > 0

    def __init__(self, index: int, kind: str, channel: str, hold_s: float, hold_count: int,
                 newest: Newest) -> None:
        self.index, self.kind, self.channel = index, kind, channel
        self.hold_ms, self.hold_count = ms(hold_s), hold_count
        self.newest = newest

    def grade(self, level: int) -> Grade:
        return Grade.MINOR

    def count_run(self, h: _Hold, on: bool, t: int) -> None:
        if not on:
            h.run_count = 0
            return
        if h.run_count == 0:
            h.run_since = t
        h.run_count += 1

    def settle(self, h: _Hold, t: int, met: bool, active: bool, start: int, signal: float
               ) -> Fired | None:
        """Raise when met; clear once inactive long enough."""
        if h.level == 0:
            if not met:
                return None
            h.level, h.off_count, h.onset = 1, 0, start
            return 1, start, signal
        if active:
            h.off_count = 0
            return None
        if h.off_count == 0:
            h.off_since = t
        h.off_count += 1
        if h.off_count < self.hold_count or t - h.off_since < self.hold_ms:
            return None
        h.level, h.off_count = 0, 0
        return 0, h.onset, signal


class ImpossibleCheck(FaultCheck):
    def __init__(self, index: int, kind: str, channel: str, p: ImpossibleParams,
                 newest: Newest) -> None:
        super().__init__(index, kind, channel, p.hold_s, p.hold_count, newest)
        self.p = p
        self.state: dict[int, _Hold] = {}

    def bad(self, v: float) -> bool:
        """Impossible: not finite, out of range, or not whole where it must be."""
        p = self.p
        return not (math.isfinite(v) and p.low <= v <= p.high) or (
            p.integral and v != math.floor(v))

    def feed(self, device: int, t: int, v: float) -> Fired | None:
        if not self.newest.accept(self.index, device, t):
            return None
        h = self.state.get(device)
        if h is None:
            h = self.state[device] = _Hold()
        p = self.p
        bad = self.bad(v)
        self.count_run(h, bad, t)
        return self.settle(h, t, h.run_count >= p.min_count, bad, h.run_since, v)


@dataclass(slots=True)
class _Stuck(_Hold):
    run_val: float = 0.0
    noise: float = 0.0
    """share of readings that differed from the one before (an average kept in float32)"""
    armed: bool = False


def f32(x: float) -> float:
    """`x` rounded to the nearest float32, as a state record's float32 field keeps it."""
    return float(np.float32(x))


class StuckTicks:
    """Which readings the stuck checks see: a device's first reading in each tick of its
    event time (`STUCK_TICK_MS`) that carries a channel a stuck check watches, decided at the
    first such value of the reading, and every such reading after one at which a stuck check
    of the device was raised."""

    def __init__(self, tick_ms: int = STUCK_TICK_MS) -> None:
        self.tick_ms = tick_ms
        self.next: dict[int, int] = {}
        self.decided: bool | None = None

    def reading(self) -> None:
        """A new reading: nothing decided yet."""
        self.decided = None

    def sees(self, device: int, t: int) -> bool:
        if self.decided is None:
            self.decided = t >= self.next.get(device, -1)
            if self.decided:
                self.next[device] = t - t % self.tick_ms + self.tick_ms if self.tick_ms else t
        return self.decided


class StuckCheck(FaultCheck):
    """Over the readings `ticks` lets through: a run of equal readings is stuck once long
    enough, if at its second reading the channel was showing noise as of its first (or the
    fault was raised) and it is not at the channel's resting value."""

    def __init__(self, index: int, kind: str, channel: str, p: StuckParams,
                 newest: Newest, ticks: StuckTicks) -> None:
        super().__init__(index, kind, channel, p.hold_s, p.hold_count, newest)
        self.p = p
        self.ticks = ticks
        self.min_ms = ms(p.min_duration_s)
        self.state: dict[int, _Stuck] = {}

    def feed(self, device: int, t: int, v: float) -> Fired | None:
        if not self.newest.accept(self.index, device, t) or not self.ticks.sees(device, t):
            return None
        h = self.state.get(device)
        if h is None:
            h = self.state[device] = _Stuck()
        fired = self.step(h, t, v)
        if h.level:
            self.ticks.next[device] = -1  # raised: it sees every reading until it clears
        return fired

    def step(self, h: _Stuck, t: int, v: float) -> Fired | None:
        if math.isnan(v):
            return None
        p = self.p
        if h.run_count > 0 and abs(v - h.run_val) <= p.epsilon:
            if h.run_count == 1:
                h.armed = ((h.noise >= p.min_noise or h.level == 1)
                           and not p.rest_low <= h.run_val <= p.rest_high)
            h.run_count += 1
            h.noise = f32(h.noise + (0.0 - h.noise) / p.noise_readings)
        else:
            if h.run_count > 0:
                h.noise = f32(h.noise + (1.0 - h.noise) / p.noise_readings)
            h.run_val, h.run_count, h.run_since = v, 1, t
        stuck = h.armed and h.run_count >= p.min_count and t - h.run_since >= self.min_ms
        return self.settle(h, t, stuck, stuck, h.run_since, v)


@dataclass(slots=True)
class _Drift(_Hold):
    first_ts: int = -1
    fast: float = 0.0
    base: float = 0.0
    var: float = 0.0
    cusum_hi: float = 0.0
    cusum_lo: float = 0.0
    tick_start: int = -1
    tick_sum: float = 0.0
    tick_count: int = 0


class DriftCheck(FaultCheck):
    """The EWMAs run once per tick: the mean of a device's readings over at least the tick's
    length of event time (`DriftParams.tick_s`; 0: every reading is a tick). A tick is closed
    by the first reading at least that long after the previous tick (or the device's first
    reading), and includes it; min_count and hold_count count ticks."""

    def __init__(self, index: int, kind: str, channel: str, p: DriftParams,
                 newest: Newest) -> None:
        super().__init__(index, kind, channel, p.hold_s, p.hold_count, newest)
        self.p = p
        self.step_ms = ms(p.tick_s)
        self.fast_tau, self.base_tau = p.fast_tau_s * 1000, p.base_tau_s * 1000
        self.cusum_tau = p.cusum_tau_s * 1000
        self.warmup_ms, self.min_ms = ms(p.warmup_s), ms(p.min_duration_s)
        self.state: dict[int, _Drift] = {}

    @staticmethod
    def weight(dt: float, tau: float, elapsed: float) -> float:
        """EWMA weight of a step `dt` long; early on the time-weighted mean of all so far."""
        w = -math.expm1(-dt / tau)
        return max(w, dt / elapsed) if elapsed > 0.0 else w

    def feed(self, device: int, t: int, v: float) -> Fired | None:
        if math.isnan(v) or not self.newest.accept(self.index, device, t):
            return None
        h = self.state.get(device)
        if h is None:
            h = self.state[device] = _Drift()
        if h.first_ts < 0:
            h.first_ts = h.tick_start = t
            h.fast = h.base = v
            return None
        h.tick_sum += v
        h.tick_count += 1
        if t < h.tick_start + self.step_ms:
            return None  # the tick goes on
        v = h.tick_sum / h.tick_count
        dt = float(t - h.tick_start)
        h.tick_start, h.tick_sum, h.tick_count = t, 0.0, 0
        p = self.p
        elapsed = float(t - h.first_ts)
        h.fast += self.weight(dt, self.fast_tau, elapsed) * (v - h.fast)
        w = self.weight(dt, self.base_tau, elapsed)
        h.base += w * (v - h.base)
        gap = h.fast - h.base
        z = gap / max(math.sqrt(h.var), p.min_sigma)
        warm = elapsed >= self.warmup_ms
        if abs(z) < p.cusum_k or not warm:
            h.var += w * (gap * gap - h.var)
        drifting = False
        if warm:
            step = min(dt, self.fast_tau) / self.cusum_tau
            h.cusum_hi = min(p.cusum_h, max(0.0, h.cusum_hi + (z - p.cusum_k) * step))
            h.cusum_lo = min(p.cusum_h, max(0.0, h.cusum_lo + (-z - p.cusum_k) * step))
            drifting = (abs(z) >= p.z_alarm or h.cusum_hi >= p.cusum_h
                        or h.cusum_lo >= p.cusum_h)
        self.count_run(h, drifting, t)
        met = drifting and h.run_count >= p.min_count and t - h.run_since >= self.min_ms
        return self.settle(h, t, met, drifting, h.run_since, gap)


@dataclass(slots=True)
class _Fall:
    impact_ts: int = -1
    impact_val: float = 0.0
    still_since: int = -1
    move_since: int = -1
    steps: float = 0.0
    level: int = 0


class FallCheck(Check):
    """An impact, then still readings spanning still_s that began within window_s of it;
    movement lasting move_s, cancel_steps steps in later readings, or the window passing
    without stillness cancel the impact; latching."""

    type, kind, channel, latching = "wearable.fall", "wearable", "accel_g", True

    def __init__(self, index: int, p: FallParams, newest: Newest) -> None:
        self.index, self.p, self.newest = index, p, newest
        self.still_ms, self.window_ms = ms(p.still_s), ms(p.window_s)
        self.move_ms = ms(p.move_s)
        self.state: dict[int, _Fall] = {}

    def grade(self, level: int) -> Grade:
        return Grade.CRITICAL

    def fall(self, device: int) -> _Fall:
        s = self.state.get(device)
        if s is None:
            s = self.state[device] = _Fall()
        return s

    def feed(self, device: int, t: int, v: float) -> Fired | None:
        if not self.newest.accept(self.index, device, t):
            return None
        s, p = self.fall(device), self.p
        if s.level:
            return None  # until a person resolves it
        if v >= p.impact_g:
            s.impact_ts, s.impact_val, s.still_since, s.move_since, s.steps = t, v, -1, -1, 0.0
            return None
        if s.impact_ts < 0:
            return None
        late = t - s.impact_ts > self.window_ms
        if p.still_low_g <= v <= p.still_high_g:
            s.move_since = -1
            if s.still_since < 0:
                if late:
                    s.impact_ts = -1  # still only after the window
                    return None
                s.still_since = t
            if t - s.still_since >= self.still_ms:
                s.level = 1
                return 1, s.impact_ts, s.impact_val
            return None
        s.still_since = -1
        if s.move_since < 0:
            s.move_since = t
        if late or t - s.move_since >= self.move_ms:
            s.impact_ts, s.move_since = -1, -1  # moving on, or nothing within the window
        return None

    def feed_steps(self, device: int, t: int, v: float) -> None:
        """The wristband's steps since its previous reading: after the impact's reading they
        count towards cancel_steps."""
        if not self.newest.accept(self.index, device, t):
            return
        s = self.fall(device)
        if not s.level and s.impact_ts >= 0 and t > s.impact_ts and v > 0:
            s.steps += v
            if s.steps >= self.p.cancel_steps:
                s.impact_ts, s.still_since, s.move_since, s.steps = -1, -1, -1, 0.0


class FallSteps(Check):
    """The fall check's second channel, routed like a check that never fires."""

    kind, channel = "wearable", "steps"

    def __init__(self, fall: FallCheck) -> None:
        self.index, self.type, self.fall = fall.index, fall.type, fall

    def feed(self, device: int, t: int, v: float) -> Fired | None:
        self.fall.feed_steps(device, t, v)
        return None


@dataclass(slots=True)
class _Idle:
    still_since: int = -1
    level: int = 0
    onset: int = -1


class InactivityCheck(Check):
    """No steps for longer than limit_s, counted in the daytime only; cleared by steps."""

    type, kind, channel = "wearable.inactivity", "wearable", "steps"

    def __init__(self, index: int, p: InactivityParams, newest: Newest) -> None:
        self.index, self.newest = index, newest
        self.limit_ms = ms(p.limit_s)
        self.day_start, self.day_end = ms(p.day_start_h * 3600), ms(p.day_end_h * 3600)
        self.offset = ms(p.utc_offset_h * 3600)
        self.state: dict[int, _Idle] = {}

    def grade(self, level: int) -> Grade:
        return Grade.MAJOR

    def feed(self, device: int, t: int, v: float) -> Fired | None:
        if not self.newest.accept(self.index, device, t):
            return None
        s = self.state.get(device)
        if s is None:
            s = self.state[device] = _Idle()
        if v > 0:
            s.still_since = t
            if s.level:
                s.level = 0
                return 0, s.onset, v
            return None
        if s.still_since < 0:
            s.still_since = t
        if s.level:
            return None
        tod = (t + self.offset) % DAY_MS
        if not self.day_start <= tod < self.day_end:
            return None
        since = max(s.still_since, t - tod + self.day_start)
        if t - since > self.limit_ms:
            s.level, s.onset = 1, since
            return 1, since, (t - since) / HOUR_MS
        return None


def default_checks(newest: Newest, rules: Sequence[Rule] = DEFAULT_RULES,
                   ticks: StuckTicks | None = None) -> list[Check]:
    """Every default detector, in `default_detectors`' order."""
    checks: list[Check] = [RuleCheck(i, rule) for i, rule in enumerate(rules)]
    for kind, channels in KIND_CHANNELS.items():
        for channel in channels:
            checks.append(ImpossibleCheck(len(checks), kind, channel,
                                          PHYSICAL_LIMITS[channel], newest))
    for (kind, channel), sp in STUCK_DEFAULTS.items():
        checks.append(StuckCheck(len(checks), kind, channel, sp, newest,
                                 ticks if ticks is not None else StuckTicks()))
    for (kind, channel), dp in DRIFT_DEFAULTS.items():
        checks.append(DriftCheck(len(checks), kind, channel, dp, newest))
    checks.append(FallCheck(len(checks), FallParams(), newest))
    checks.append(InactivityCheck(len(checks), InactivityParams(), newest))
    return checks


# -- the core ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Episode:
    onset: int
    ranks: dict[int, int] = field(default_factory=dict)
    grade: Grade | None = None


class ReferenceCore:
    """Dedup, every default detector and grading, one reading at a time."""

    def __init__(self) -> None:
        self.dedup = Dedup()
        self.newest = Newest()
        self.ticks = StuckTicks()
        self.checks = default_checks(self.newest, ticks=self.ticks)
        self.route: dict[tuple[str, str], list[Check]] = {}
        self.rules: dict[tuple[str, str], list[Check]] = {}
        self.faults: dict[tuple[str, str], list[FaultCheck]] = {}
        for check in self.checks:
            rule = isinstance(check, RuleCheck)
            (self.rules if rule else self.route).setdefault(
                (check.kind, check.channel), []).append(check)
            if isinstance(check, FaultCheck):
                self.faults.setdefault((check.kind, check.channel), []).append(check)
            if isinstance(check, FallCheck):
                steps = FallSteps(check)
                self.route.setdefault((steps.kind, steps.channel), []).append(steps)
        self.episodes: dict[tuple[int, str], _Episode] = {}

    def gated(self, d: int, kind: str, channel: str, v: float) -> bool:
        """Whether the threshold rules of (kind, channel) must not see `v` of device `d`: it
        is impossible there, or a fault check of that channel is raised on the device."""
        return any((isinstance(check, ImpossibleCheck) and check.bad(v)) or check.raised(d)
                   for check in self.faults.get((kind, channel), ()))

    def process(self, readings: Iterable[Reading]) -> list[Change]:
        out: list[Change] = []
        route = self.route
        for d, kind, epoch, seq, ts, values, battery in readings:
            if not self.dedup.admit(d, epoch, seq):
                continue
            self.newest.reading(d, ts)
            self.ticks.reading()
            if self.newest.late:
                continue  # stored, but no detector sees it
            fired: list[tuple[int, int, int, float]] = []
            for channel, v in values:  # the checks first: their faults gate the rules
                for check in route.get((kind, channel), ()):
                    f = check.feed(d, ts, v)
                    if f is not None:
                        fired.append((check.index, *f))
            for channel, v in values:
                if self.gated(d, kind, channel, v):
                    continue
                for check in self.rules.get((kind, channel), ()):
                    f = check.feed(d, ts, v)
                    if f is not None:
                        fired.append((check.index, *f))
            if not math.isnan(battery):
                for check in self.rules.get((kind, BATTERY_CHANNEL), ()):
                    f = check.feed(d, ts, battery)
                    if f is not None:
                        fired.append((check.index, *f))
            if len(fired) > 1:
                fired.sort(key=lambda x: x[0])  # stable: the engine sorts by (row, detector)
            for i, level, onset, signal in fired:
                change = self.grade(d, ts, self.checks[i], level, onset, signal)
                if change is not None:
                    out.append(change)
        return out

    def grade(self, d: int, ts: int, check: Check, level: int, onset: int, signal: float
              ) -> Change | None:
        """The episode of (device, type): its grade is the top rank of its active levels."""
        key = (d, check.type)
        ep = self.episodes.get(key)
        if level == 0 and (ep is None or check.latching):
            return None
        if ep is None:
            ep = self.episodes[key] = _Episode(onset)
        if level:
            ep.ranks[check.index] = check.grade(level).rank
        else:
            ep.ranks.pop(check.index, None)
        if not ep.ranks:
            del self.episodes[key]
            return d, check.type, None, ep.onset, ts, signal
        grade = GRADE_BY_RANK[max(ep.ranks.values())]
        if grade == ep.grade:
            return None
        ep.grade = grade
        return d, check.type, grade, ep.onset, ts, signal


def rows_from_columns(c: dict[str, Any], kinds: Sequence[str], channels: Sequence[str],
                      device_kind: Sequence[int]) -> list[Reading]:
    """The benchmark's columns (dev, epoch, seq, ts, battery; value_row, value_channel, value)
    as readings for `ReferenceCore`: kinds by name from the device's kind index, channels by
    name."""
    dev = c["dev"].tolist()
    values: list[list[tuple[str, float]]] = [[] for _ in dev]
    for row, ch, v in zip(c["value_row"].tolist(), c["value_channel"].tolist(),
                          c["value"].tolist(), strict=True):
        values[row].append((channels[ch], v))
    return list(zip(dev, [kinds[device_kind[d]] for d in dev], c["epoch"].tolist(),
                    c["seq"].tolist(), c["ts"].tolist(), values, c["battery"].tolist(),
                    strict=True))
