"""Threshold rules over many devices: one bank of rules, one kernel call per batch.

`ThresholdBank` owns the state of every (rule, device) in preallocated arrays, grown in place,
and the small tables the kernel looks rules up in (see `sensing.kernels.threshold`). Each of its
rules is also a `Detector` of its own (`bank.views`), so the engine's episode logic, overrides
and offline tools see one detector per rule. `ThresholdDetector` is a bank of one rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensing.arrays import next_capacity
from sensing.detect.bank import BankChanges, BankInput, ChangeBuffers
from sensing.detect.base import DetectorSpec, LevelChanges
from sensing.detect.rules import BATTERY_CHANNEL, Level, Rule
from sensing.kernels.checks import PLAIN
from sensing.kernels.fault import IMPOSSIBLE_PARAMS
from sensing.kernels.threshold import CALM, MAX_LEVELS, threshold_bank
from sensing.wire.kinds import KINDS
from sensing.wire.messages import Grade

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RuleGate:
    """What keeps values from a bank's rules (`sensing.kernels.gate`), keyed like the bank's
    routing: the devices' fault bits and their count (updated in place with the changes
    `ev_*`), the fault bits per key, and the impossible-value checks per key."""

    fault_bits: npt.NDArray[np.uint32]
    mask: npt.NDArray[np.uint32]
    n_open: I64
    ev_row: I64
    ev_bit: I64
    ev_level: I64
    plain: np.ndarray
    imp_ptr: I64
    imp_row: I64
    imp_slot: I64
    imp_p: np.ndarray
    imp_prof: npt.NDArray[np.int16]
    on: bool = True


_NO_GATE = RuleGate(np.zeros(1, np.uint32), np.zeros(1, np.uint32), np.zeros(1, np.int64),
                    np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                    np.zeros(1, dtype=PLAIN), np.zeros(2, np.int64), np.zeros(0, np.int64),
                    np.zeros(0, np.int64), np.zeros((0, 1), dtype=IMPOSSIBLE_PARAMS),
                    np.zeros((0, 1), np.int16), on=False)
"""no gate: every value reaches the rules"""


def _params(levels: Sequence[Level]) -> tuple[list[float], list[float], list[int], list[int]]:
    pad = MAX_LEVELS - len(levels)
    return ([lv.threshold for lv in levels] + [np.nan] * pad,
            [lv.reset for lv in levels] + [np.nan] * pad,
            [round(lv.duration_s * 1000) for lv in levels] + [0] * pad,
            [lv.min_count for lv in levels] + [1] * pad)


class ThresholdBank:
    """Threshold rules of any kinds and channels, run together by one kernel.

    `kinds` numbers the kinds as the callers' per-reading `kind` arrays do (the registry's
    numbering by default); `channel_index` gives the callers' index of a channel name (the
    registry's `channels.intern`; by default the bank numbers its rules' channels itself).
    """

    def __init__(self, rules: Sequence[Rule], kinds: Sequence[str] = KINDS,
                 channel_index: Callable[[str], int] | None = None,
                 capacity: int = 1024) -> None:
        self.rules = tuple(rules)
        self.kinds = tuple(kinds)
        self.channel_index = channel_index
        own: dict[str, int] = {}
        channel_of = channel_index or (lambda name: own.setdefault(name, len(own)))
        for rule in self.rules:
            if not 1 <= len(rule.levels) <= MAX_LEVELS:
                raise ValueError(f"rule {rule.name}: 1 to {MAX_LEVELS} levels")
            if rule.kind not in self.kinds:
                raise ValueError(f"rule {rule.name}: unknown kind {rule.kind!r}")
        n = len(self.rules)
        slots: dict[str, int] = {}
        self._slot = np.zeros(n, dtype=np.int64)
        for r, rule in enumerate(self.rules):
            self._slot[r] = slots[rule.kind] = slots.get(rule.kind, -1) + 1
        self.n_slots = max(slots.values(), default=-1) + 1
        rate = [r for r, rule in enumerate(self.rules) if rule.rate_window_s > 0]
        self._rate_slot = np.zeros(n, dtype=np.int64)
        self._rate_slot[rate] = np.arange(len(rate))
        self.n_rate_slots = max(1, len(rate))
        self._sign = np.array([1.0 if rule.above else -1.0 for rule in self.rules])
        self._rate_ms = np.array([round(rule.rate_window_s * 1000) for rule in self.rules],
                                 dtype=np.int64)
        self._n_levels = np.array([len(rule.levels) for rule in self.rules], dtype=np.int64)
        # routing: key = kind * (width + 1) + channel + 1, or kind * (width + 1) for battery
        channel = [-1 if rule.channel == BATTERY_CHANNEL else channel_of(rule.channel)
                   for rule in self.rules]
        self.width = max(channel, default=-1) + 1
        keys = [self.kinds.index(rule.kind) * (self.width + 1) + c + 1
                for rule, c in zip(self.rules, channel, strict=True)]
        self._keys = keys
        order = sorted(range(n), key=lambda r: (keys[r], self._rate_ms[r] > 0, r))
        self._route_rule = np.array(order, dtype=np.int32)
        counts = np.bincount(np.array(keys, dtype=np.int64),
                             minlength=len(self.kinds) * (self.width + 1))
        self._route_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._fanout = int(counts.max()) if n else 0
        # parameters per (rule, profile, level); profile 0 holds each rule's defaults
        self._profiles: list[dict[tuple[Level, ...], int]] = [
            {rule.levels: 0} for rule in self.rules]
        self._levels: list[list[tuple[Level, ...]]] = [[rule.levels] for rule in self.rules]
        """per rule, the levels of each profile by its index"""
        self._slots = self._slot.tolist()
        self._thr = np.full((n, 1, MAX_LEVELS), np.nan)
        self._reset = np.full((n, 1, MAX_LEVELS), np.nan)
        self._dur = np.zeros((n, 1, MAX_LEVELS), dtype=np.int64)
        self._min_count = np.ones((n, 1, MAX_LEVELS), dtype=np.int32)
        self._quiet = np.zeros((n, 1))
        if self.n_slots > 32:
            raise ValueError("at most 32 rules per kind (the busy bits)")
        for r, rule in enumerate(self.rules):
            self._set_params(r, 0, rule.levels)
        self._alloc(capacity)
        self._out = ChangeBuffers()
        self.views: tuple[RuleView, ...] = tuple(RuleView(self, r) for r in range(n))
        self._single: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}

    # -- state ----------------------------------------------------------------------------

    def _alloc(self, capacity: int) -> None:
        shape = (capacity, self.n_slots)
        self.profile = np.zeros(shape, dtype=np.int16)
        self.level = np.zeros(shape, dtype=np.int8)
        self.runs = np.zeros(shape, dtype=np.uint8)
        self.onset = np.full(shape, -1, dtype=np.int64)
        self.since = np.full((*shape, MAX_LEVELS), -1, dtype=np.int64)
        self.count = np.zeros((*shape, MAX_LEVELS), dtype=np.int32)
        self.prev_ts = np.full((capacity, self.n_rate_slots), -1, dtype=np.int64)
        self.prev_val = np.zeros((capacity, self.n_rate_slots), dtype=np.float64)
        self.busy = np.zeros(capacity, dtype=np.uint32)

    def _state(self) -> tuple[np.ndarray, ...]:
        return (self.profile, self.level, self.runs, self.onset, self.since, self.count,
                self.prev_ts, self.prev_val, self.busy)

    @property
    def capacity(self) -> int:
        return int(self.level.shape[0])

    def ensure_capacity(self, n_devices: int) -> None:
        if n_devices <= self.capacity:
            return
        old = self._state()
        self._alloc(next_capacity(self.capacity, n_devices))
        for fresh, prev in zip(self._state(), old, strict=True):
            fresh[: prev.shape[0]] = prev

    def clear(self, rule: int, device: int) -> None:
        """Forget a device's episode under one rule (a person resolved its alert)."""
        s = self._slot[rule]
        self.level[device, s] = 0
        self.runs[device, s] = 0
        self.busy[device] &= np.uint32(~(1 << int(s)) & 0xFFFFFFFF)

    # -- profiles -------------------------------------------------------------------------

    def _set_params(self, rule: int, p: int, levels: tuple[Level, ...]) -> None:
        thr, reset, dur, count = _params(levels)
        self._thr[rule, p] = thr
        self._reset[rule, p] = reset
        self._dur[rule, p] = dur
        self._min_count[rule, p] = count
        self._quiet[rule, p] = min(self._sign[rule] * lv.threshold for lv in levels)
        self._calm = self._calm_ranges(len(self.kinds) * (self.width + 1),
                                       list(enumerate(self._keys)))

    def _calm_ranges(self, n_keys: int, members: list[tuple[int, int]]) -> np.ndarray:
        """Per key, the values short of every threshold of its rules that are not rate rules,
        in every profile (see `sensing.kernels.threshold.CALM`), from (rule, key) pairs."""
        calm = np.zeros(n_keys, dtype=CALM)
        calm["low"], calm["high"] = -np.inf, np.inf
        for r, key in members:
            if self._rate_ms[r] > 0:
                continue
            profiles = range(len(self._profiles[r]))
            thr = self._thr[r, profiles, : self._n_levels[r]]
            rec = calm[key : key + 1]
            if self._sign[r] > 0:
                rec["high"] = min(rec["high"][0], float(thr.min()))
            else:
                rec["low"] = max(rec["low"][0], float(thr.max()))
            rec["bits"] |= np.uint32(1 << int(self._slot[r]))
            rec["skip"] += 1
        return calm

    def profile_index(self, rule: int, levels: tuple[Level, ...]) -> int:
        """The profile of `rule` with these levels (same grades, other numbers), added once."""
        known = self._profiles[rule]
        p = known.get(levels)
        if p is not None:
            return p
        if [lv.grade for lv in levels] != [lv.grade for lv in self.rules[rule].levels]:
            raise ValueError(f"rule {self.rules[rule].name}: a profile keeps the rule's levels")
        p = known[levels] = len(known)
        if p >= np.iinfo(np.int16).max:
            raise ValueError(f"rule {self.rules[rule].name}: too many distinct profiles")
        self._levels[rule].append(levels)
        if p >= self._thr.shape[1]:  # double the profile axis
            self._thr = np.concatenate([self._thr, np.full_like(self._thr, np.nan)], axis=1)
            self._reset = np.concatenate([self._reset, np.full_like(self._reset, np.nan)], axis=1)
            self._dur = np.concatenate([self._dur, np.zeros_like(self._dur)], axis=1)
            self._min_count = np.concatenate([self._min_count, np.ones_like(self._min_count)],
                                             axis=1)
            self._quiet = np.concatenate([self._quiet, np.zeros_like(self._quiet)], axis=1)
        self._set_params(rule, p, levels)
        return p

    def set_profile(self, rule: int, devices: npt.ArrayLike, profile: int) -> None:
        """Devices (indices) follow `profile` of `rule` from their next reading on."""
        self.profile[np.asarray(devices, dtype=np.int64), self._slot[rule]] = profile

    def profile_of(self, rule: int, device: int) -> int:
        """The index of the profile `rule` applies to `device`."""
        return int(self.profile[device, self._slots[rule]])

    def levels_of(self, rule: int, device: int) -> tuple[Level, ...]:
        """The levels `rule` applies to `device` (its profile)."""
        return self._levels[rule][self.profile_of(rule, device)]

    # -- processing -----------------------------------------------------------------------

    def _run(self, dev: np.ndarray, ts: np.ndarray, kind: np.ndarray, battery: np.ndarray,
             value_row: np.ndarray, value_channel: np.ndarray, value: np.ndarray,
             width: int, route_ptr: np.ndarray, route_rule: np.ndarray, calm: np.ndarray,
             bound: int, gate: RuleGate | None = None) -> BankChanges:
        out = self._out
        out.ensure(bound)
        g = _NO_GATE if gate is None else gate
        k = threshold_bank(
            dev, ts, kind, battery, value_row, value_channel, value,
            width, route_ptr, route_rule, calm,
            self._slot, self._sign, self._rate_ms, self._rate_slot, self._n_levels,
            self._thr, self._reset, self._dur, self._min_count, self._quiet,
            self.profile, self.level, self.runs, self.onset, self.since, self.count,
            self.prev_ts, self.prev_val, self.busy,
            g.on, g.fault_bits, g.mask, g.n_open, g.ev_row, g.ev_bit, g.ev_level, g.plain,
            g.imp_ptr, g.imp_row, g.imp_slot, g.imp_p, g.imp_prof,
            out.row, out.rule, out.level, out.onset, out.signal,
        )
        return out.changes(k)

    def process(self, dev: I32, ts: I64, kind: npt.NDArray[np.int8], battery: F64,
                value_row: I32, value_channel: I32, value: F64) -> BankChanges:
        """A batch in the registry's columns (see `BankInput`). Updates the state in place."""
        return self.run(BankInput.checked(dev, ts, kind, battery, value_row, value_channel,
                                          value))

    def run(self, batch: BankInput, gate: RuleGate | None = None) -> BankChanges:
        """`gate`, when given, keeps values from the rules (see `RuleGate`)."""
        batch.check_fits(self.capacity, len(self.kinds))
        b = batch
        return self._run(b.dev, b.ts, b.kind, b.battery, b.value_row, b.value_channel, b.value,
                         self.width, self._route_ptr, self._route_rule, self._calm,
                         self._fanout * (b.value.shape[0] + b.dev.shape[0]), gate)

    def process_rule(self, rule: int, dev: I32, ts: I64, val: F64) -> LevelChanges:
        """Readings of one rule's signal only (its channel, of devices of its kind), in
        arrival order: the same kernel, routed to that rule alone."""
        n = dev.shape[0]
        if not (ts.shape[0] == val.shape[0] == n):
            raise ValueError("dev, ts and val must have the same length")
        if n and (int(dev.min()) < 0 or int(dev.max()) >= self.capacity):
            raise IndexError("device index outside the detector's capacity")
        if rule not in self._single:
            on_battery = self.rules[rule].channel == BATTERY_CHANNEL
            # one kind (0) and one channel (0): key 0 is the battery, key 1 the channel
            ptr = np.array([0, int(on_battery), 1], dtype=np.int64)
            self._single[rule] = (1, ptr, np.array([rule], dtype=np.int32))
        width, ptr, route = self._single[rule]
        val = np.ascontiguousarray(val, dtype=np.float64)
        on_battery = bool(ptr[1])
        rows = np.arange(n, dtype=np.int32)
        out = self._run(
            np.ascontiguousarray(dev, dtype=np.int32), np.ascontiguousarray(ts, dtype=np.int64),
            np.zeros(n, dtype=np.int8), val if on_battery else np.full(n, np.nan),
            rows[:0] if on_battery else rows,
            np.zeros(0 if on_battery else n, dtype=np.int32),
            val[:0] if on_battery else val,
            width, ptr, route, self._calm_ranges(2, [(rule, 1 - int(on_battery))]), n)
        return LevelChanges(out.row, out.level, out.onset, out.signal)


class RuleView:
    """One rule of a bank as a `Detector`; its state lives in the bank."""

    def __init__(self, bank: ThresholdBank, index: int) -> None:
        self.bank = bank
        self.index = index
        self.rule = rule = bank.rules[index]
        self.spec = DetectorSpec(rule.name, rule.type, rule.kind, rule.channel, rule.latching)
        self._conditions: dict[tuple[int, int], str] = {}
        """per (profile, level), what `describe` says after the value"""

    def grade(self, level: int) -> Grade:
        return self.rule.levels[level - 1].grade

    def describe(self, level: int, signal: float, device: int | None = None) -> str:
        p = 0 if device is None else self.bank.profile_of(self.index, device)
        condition = self._conditions.get((p, level))
        if condition is None:  # a profile's levels never change: worded once
            condition = self._conditions[(p, level)] = self.rule.condition(
                self.grade(level), self.bank._levels[self.index][p])
        return self.rule.describe_with(signal, condition)

    def ensure_capacity(self, n_devices: int) -> None:
        self.bank.ensure_capacity(n_devices)

    def clear(self, device: int) -> None:
        self.bank.clear(self.index, device)

    def process(self, dev: I32, ts: I64, val: F64) -> LevelChanges:
        return self.bank.process_rule(self.index, dev, ts, val)

    def score(self, ts: I64, val: F64) -> F64:
        """0 at the reset level of the least severe level, 1 at the most severe threshold,
        linear in between, on the value or (rate rules) on the rate over the rule's spans."""
        rule = self.rule
        sign = 1.0 if rule.above else -1.0
        signal = np.asarray(val, dtype=np.float64)
        if rule.rate_window_s:
            signal = _span_rates(np.asarray(ts, np.int64), signal,
                                 round(rule.rate_window_s * 1000))
        low = sign * rule.levels[0].reset
        high = sign * rule.levels[-1].threshold
        x = sign * signal
        if high <= low:  # reset at the threshold (a switch such as SOS): 0 or 1
            return np.where(x >= high, 1.0, 0.0)
        return np.nan_to_num(np.clip((x - low) / (high - low), 0.0, 1.0), nan=0.0)


class ThresholdDetector(RuleView):
    """A single threshold rule with its own state: a bank of one rule."""

    def __init__(self, rule: Rule, capacity: int = 1024) -> None:
        super().__init__(ThresholdBank([rule], kinds=(rule.kind,), capacity=capacity), 0)


def _span_rates(ts: I64, val: F64, window_ms: int) -> F64:
    """Rate per minute at each reading that closes a span of at least `window_ms` (NaN at the
    readings in between), exactly as the kernel sees it."""
    out = np.full(val.shape[0], np.nan)
    ref = -1
    for i in range(val.shape[0]):
        if ref < 0:
            ref = i
        elif ts[i] - ts[ref] >= window_ms:
            out[i] = (val[i] - val[ref]) * 60000.0 / (ts[i] - ts[ref])
            ref = i
    return out
