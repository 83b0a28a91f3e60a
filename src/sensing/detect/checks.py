"""Single-level checks over many devices: one bank of checks, one kernel call per batch.

A `Check` is what one check is (faults, fall, inactivity): the channel of the kind it
watches, its parameters, its grade and its wording. `CheckBank` owns the state of every
(check, device) in record arrays grown in place, and the tables the kernel routes readings
with (see `sensing.kernels.checks`). Each of its checks is also a `Detector` of its own
(`bank.views`), so the engine's episode logic and the offline tools see one detector per
check, while the engine runs the whole bank at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from sensing.arrays import next_capacity
from sensing.detect.bank import BankChanges, BankInput, ChangeBuffers
from sensing.detect.base import F64, I32, I64, DetectorSpec, LevelChanges
from sensing.kernels.checks import (
    DRIFT,
    FALL,
    FRESH,
    IMPOSSIBLE,
    INACTIVITY,
    PARAMS,
    PLAIN,
    STATE,
    STUCK,
    run_checks,
)
from sensing.kernels.fault import STUCK_TICK_MS
from sensing.wire.kinds import KINDS
from sensing.wire.messages import Grade

MINUTE_S = 60.0
HOUR_S = 3600.0
DAY_S = 86_400.0


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def span(seconds: float) -> str:
    """A duration for people: "45 s", "30 min", "6 h", "3 d"."""
    for unit, size in (("d", DAY_S), ("h", HOUR_S), ("min", MINUTE_S)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


P = TypeVar("P")


class Check(ABC, Generic[P]):
    """One check of one channel of one kind, with its default parameters (a frozen dataclass;
    overrides give devices other instances, see `CheckBank.profile_index`)."""

    code: ClassVar[int]
    """the kernel's type code (`sensing.kernels.checks`)"""
    grade: ClassVar[Grade]
    also: ClassVar[tuple[str, ...]] = ()
    """further channels of its kind the check is fed in a bank (the kernel tells its step
    function which: role 1, 2, ... in this order; role 0 is `spec.channel`)"""

    def __init__(self, spec: DetectorSpec, params: P) -> None:
        self.spec = spec
        self.params = params

    @abstractmethod
    def param_record(self, params: P) -> dict[str, Any]:
        """The kernel's parameter record by field (`sensing.kernels.checks.PARAMS`)."""

    @abstractmethod
    def describe(self, level: int, signal: float, params: P) -> str: ...


def _fresh_records(code: int, shape: tuple[int, int]) -> np.ndarray:
    arr = np.zeros(shape, dtype=STATE[code])
    for name, value in FRESH[code].items():
        arr[name] = value
    return arr


def _param_records(code: int, records: list[dict[str, Any]]) -> np.ndarray:
    arr = np.zeros(len(records), dtype=PARAMS[code])
    for i, record in enumerate(records):
        if set(record) != set(PARAMS[code].names or ()):
            raise ValueError(f"parameter fields {sorted(record)} are not the kernel's")
        for name, value in record.items():
            arr[name][i] = value
    return arr


@dataclass(slots=True)
class CheckState:
    """Everything a bank remembers per device (see `sensing.kernels.checks`)."""

    newest: npt.NDArray[np.int64]
    busy: npt.NDArray[np.uint16]
    stuck_next: npt.NDArray[np.int64]
    """the event time from which the device's next reading is in a new tick of the stuck
    checks"""
    records: list[np.ndarray]
    """per check type, [device, column]"""
    profiles: list[npt.NDArray[np.int16]]
    """per check type, [device, column]: the device's parameter profile (0: defaults)"""

    @property
    def capacity(self) -> int:
        return int(self.newest.shape[0])


class CheckBank:
    """Checks of any kinds and channels, run together by one kernel.

    `kinds` numbers the kinds as the callers' per-reading `kind` arrays do (the registry's
    numbering by default); `channel_index` gives the callers' index of a channel name (the
    registry's `channels.intern`; by default the bank numbers its checks' channels itself).
    The stuck checks see a device's first reading of each `stuck_tick_ms` of its event time
    that carries a channel they watch (0: every reading; see `sensing.kernels.checks`).
    """

    def __init__(self, checks: Sequence[Check[Any]], kinds: Sequence[str] = KINDS,
                 channel_index: Callable[[str], int] | None = None,
                 capacity: int = 1024, stuck_tick_ms: int = STUCK_TICK_MS) -> None:
        if stuck_tick_ms < 0:
            raise ValueError("stuck_tick_ms must be >= 0")
        self.stuck_tick_ms = stuck_tick_ms
        self.checks = tuple(checks)
        self.kinds = tuple(kinds)
        self.channel_index = channel_index
        own: dict[str, int] = {}
        channel_of = channel_index or (lambda name: own.setdefault(name, len(own)))
        names = [c.spec.name for c in self.checks]
        if len(set(names)) != len(names):
            raise ValueError("check names must be unique")
        for check in self.checks:
            if check.spec.kind not in self.kinds:
                raise ValueError(f"check {check.spec.name}: unknown kind {check.spec.kind!r}")
        # one state and one parameter array per check type (every type, so that the kernel is
        # compiled once), one state column per check of a kind
        n = len(self.checks)
        self._type = np.array([c.code for c in self.checks], dtype=np.int64)
        self._param = np.zeros(n, dtype=np.int64)
        self._slot = np.zeros(n, dtype=np.int64)
        params: dict[int, list[dict[str, Any]]] = {}
        columns: dict[tuple[int, str], int] = {}
        for q, check in enumerate(self.checks):
            records = params.setdefault(check.code, [])
            self._param[q] = len(records)
            records.append(check.param_record(check.params))
            key = (check.code, check.spec.kind)
            self._slot[q] = columns[key] = columns.get(key, -1) + 1
        self._n_slots = [1 + max((s for (c, _), s in columns.items() if c == code), default=-1)
                         for code in range(len(STATE))]
        self._kind_types = np.zeros(max(1, len(self.kinds)), dtype=np.int64)
        for check in self.checks:
            self._kind_types[self.kinds.index(check.spec.kind)] |= 1 << check.code
        if self._n_slots[IMPOSSIBLE] > 16:
            raise ValueError("at most 16 impossible-value checks per kind (the busy bits)")
        # per type [row, profile]; profile 0 holds the defaults
        self._params = [_param_records(code, params.get(code, [])).reshape(-1, 1)
                        for code in range(len(STATE))]
        self._profiles: list[dict[Any, int]] = [{c.params: 0} for c in self.checks]
        self._by_profile: list[list[Any]] = [[c.params] for c in self.checks]
        """per check, the parameters of each profile by its index"""
        # routing: key = kind * width + channel, one route per (check, channel it is fed)
        fed = [(q, role, channel_of(name)) for q, c in enumerate(self.checks)
               for role, name in enumerate((c.spec.channel, *c.also))]
        self.width = max((ch for _, _, ch in fed), default=-1) + 1
        routes = [(self.kinds.index(self.checks[q].spec.kind) * self.width + ch, q, role)
                  for q, role, ch in fed]
        routes.sort(key=lambda r: (r[0], self.checks[r[1]].code, r[1], r[2]))
        self._route_check = np.array([q for _, q, _ in routes], dtype=np.int32)
        self._route_role = np.array([role for _, _, role in routes], dtype=np.int8)
        n_keys = len(self.kinds) * self.width
        counts = np.bincount(np.array([key for key, _, _ in routes], dtype=np.int64),
                             minlength=n_keys)
        self._route_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._fanout = int(counts.max()) if n else 0
        self._members = [(q, key) for key, q, role in routes if role == 0]
        self._plain = self._plain_ranges(n_keys, self._members)
        self.state = self._alloc(max(1, capacity))
        self._out = ChangeBuffers()
        self.views: tuple[CheckView, ...] = tuple(CheckView(self, q) for q in range(n))

    def _plain_ranges(self, n_keys: int, members: list[tuple[int, int]]) -> np.ndarray:
        """Per key, what a value must be to pass every impossible-value check of the key in
        every profile (see `sensing.kernels.checks.PLAIN`), from (check, key) pairs."""
        plain = np.zeros(n_keys, dtype=PLAIN)
        plain["low"], plain["high"] = -np.inf, np.inf
        for q, key in members:
            if self._type[q] not in (IMPOSSIBLE, STUCK):
                continue
            rec = plain[key : key + 1]
            if self._type[q] == STUCK:
                rec["stuck"] += 1
                continue
            p = self._params[IMPOSSIBLE][self._param[q], : len(self._profiles[q])]
            rec["low"] = max(rec["low"][0], float(p["low"].max()))
            rec["high"] = min(rec["high"][0], float(p["high"].min()))
            rec["integral"] |= bool(p["integral"].any())
            rec["bits"] |= np.uint16(1 << int(self._slot[q]))
            rec["skip"] += 1
        return plain

    # -- state ----------------------------------------------------------------------------

    def _alloc(self, capacity: int) -> CheckState:
        return CheckState(np.full(capacity, -1, np.int64), np.zeros(capacity, np.uint16),
                          np.full(capacity, -1, np.int64),
                          [_fresh_records(code, (capacity, slots))
                           for code, slots in enumerate(self._n_slots)],
                          [np.zeros((capacity, slots), np.int16) for slots in self._n_slots])

    @property
    def capacity(self) -> int:
        return self.state.capacity

    def ensure_capacity(self, n_devices: int) -> None:
        cap = self.capacity
        if n_devices <= cap:
            return
        grown = self._alloc(next_capacity(cap, n_devices))
        grown.newest[:cap] = self.state.newest
        grown.busy[:cap] = self.state.busy
        grown.stuck_next[:cap] = self.state.stuck_next
        for fresh, prev in zip(grown.records + grown.profiles,
                               self.state.records + self.state.profiles, strict=True):
            fresh[:cap] = prev
        self.state = grown

    def clear(self, check: int, device: int) -> None:
        """Forget a device's episode under one check (a person resolved its alert)."""
        code, slot = self.checks[check].code, int(self._slot[check])
        self.state.records[code][device, slot] = _fresh_records(code, (1, 1))[0, 0]
        if code == IMPOSSIBLE:
            self.state.busy[device] &= np.uint16(~(1 << slot) & 0xFFFF)

    # -- profiles -------------------------------------------------------------------------

    def profile_index(self, check: int, params: Any) -> int:
        """The profile of `check` with these parameters (of its type), added once."""
        known = self._profiles[check]
        p = known.get(params)
        if p is not None:
            return p
        if type(params) is not type(self.checks[check].params):
            raise TypeError(f"check {self.checks[check].spec.name}: parameters must be "
                            f"{type(self.checks[check].params).__name__}")
        p = known[params] = len(known)
        if p >= np.iinfo(np.int16).max:
            raise ValueError(f"check {self.checks[check].spec.name}: too many profiles")
        self._by_profile[check].append(params)
        code, row = self.checks[check].code, int(self._param[check])
        table = self._params[code]
        if p >= table.shape[1]:  # double the profile axis, unused entries copy the defaults
            table = self._params[code] = np.concatenate(
                [table, np.repeat(table[:, :1], table.shape[1], axis=1)], axis=1)
        table[row, p] = _param_records(code, [self.checks[check].param_record(params)])[0]
        self._plain = self._plain_ranges(len(self._plain), self._members)
        return p

    def set_profile(self, check: int, devices: npt.ArrayLike, profile: int) -> None:
        """Devices (indices) follow `profile` of `check` from their next reading on."""
        code = self.checks[check].code
        self.state.profiles[code][np.asarray(devices, dtype=np.int64), self._slot[check]] = profile

    def params_of(self, check: int, device: int) -> Any:
        """The parameters `check` applies to `device` (its profile)."""
        code = self.checks[check].code
        return self._by_profile[check][self.state.profiles[code][device, self._slot[check]]]

    # -- processing -----------------------------------------------------------------------

    def _run(self, dev: np.ndarray, ts: np.ndarray, kind: np.ndarray, value_row: np.ndarray,
             value_channel: np.ndarray, value: np.ndarray, width: int, route_ptr: np.ndarray,
             route_check: np.ndarray, route_role: np.ndarray, plain: np.ndarray,
             state: CheckState, bound: int, score: np.ndarray, in_order: bool = False
             ) -> BankChanges:
        out = self._out
        out.ensure(bound)
        p, f, r = self._params, state.profiles, state.records
        k = run_checks(dev, ts, kind, value_row, value_channel, value, width, route_ptr,
                       route_check, route_role, plain, self._type, self._param, self._slot,
                       self._kind_types, state.newest, in_order, state.busy, state.stuck_next,
                       self.stuck_tick_ms, p[IMPOSSIBLE], f[IMPOSSIBLE], r[IMPOSSIBLE],
                       p[STUCK], f[STUCK], r[STUCK], p[DRIFT], f[DRIFT], r[DRIFT],
                       p[FALL], f[FALL], r[FALL], p[INACTIVITY], f[INACTIVITY], r[INACTIVITY],
                       out.row, out.rule, out.level, out.onset, out.signal, score)
        return out.changes(k)

    def process(self, dev: I32, ts: I64, kind: npt.NDArray[np.int8], battery: F64,
                value_row: I32, value_channel: I32, value: F64) -> BankChanges:
        """A batch in the registry's columns (see `BankInput`; the battery field feeds no
        check). Updates the state in place."""
        return self.run(BankInput.checked(dev, ts, kind, battery, value_row, value_channel,
                                          value))

    def run(self, batch: BankInput, in_order: bool = False) -> BankChanges:
        """With `in_order`, the caller has dropped every reading older than its device's
        newest one (the engine's gate) and keeps that clock: the bank's own (`newest`) is
        neither read nor moved."""
        batch.check_fits(self.capacity, len(self.kinds))
        b = batch
        return self._run(b.dev, b.ts, b.kind, b.value_row, b.value_channel, b.value,
                         self.width, self._route_ptr, self._route_check, self._route_role,
                         self._plain, self.state, self._fanout * b.value.shape[0], _NO_SCORES,
                         in_order)

    def process_check(self, check: int, dev: I32, ts: I64, val: F64,
                      state: CheckState | None = None, score: F64 | None = None
                      ) -> LevelChanges:
        """Readings of one check's channel only (`spec.channel`, of devices of its kind), in
        arrival order: the same kernel, routed to that check alone; on `state` instead of the
        bank's when given, with per-reading scores into `score` when given."""
        n = dev.shape[0]
        if not (ts.shape[0] == val.shape[0] == n):
            raise ValueError("dev, ts and val must have the same length")
        state = self.state if state is None else state
        if n and (int(dev.min()) < 0 or int(dev.max()) >= state.capacity):
            raise IndexError("device index outside the detector's capacity")
        # one kind (0) and one channel (0): key 0 routes to the check
        out = self._run(
            np.ascontiguousarray(dev, dtype=np.int32), np.ascontiguousarray(ts, dtype=np.int64),
            np.zeros(n, dtype=np.int8), np.arange(n, dtype=np.int32), np.zeros(n, np.int32),
            np.ascontiguousarray(val, dtype=np.float64), 1, np.array([0, 1], dtype=np.int64),
            np.array([check], dtype=np.int32), np.zeros(1, np.int8),
            self._plain_ranges(1, [(check, 0)]), state, n,
            np.zeros(0) if score is None else score)
        return LevelChanges(out.row, out.level, out.onset, out.signal)


class CheckView:
    """One check of a bank as a `Detector`; its state lives in the bank."""

    def __init__(self, bank: CheckBank, index: int) -> None:
        self.bank = bank
        self.index = index
        self.check = bank.checks[index]
        self.spec = self.check.spec

    @property
    def params(self) -> Any:
        """The check's default parameters."""
        return self.check.params

    def grade(self, level: int) -> Grade:
        if level != 1:
            raise ValueError(f"{self.spec.name} has one level, not {level}")
        return self.check.grade

    def describe(self, level: int, signal: float, device: int | None = None) -> str:
        params = self.params if device is None else self.bank.params_of(self.index, device)
        return self.check.describe(level, signal, params)

    def ensure_capacity(self, n_devices: int) -> None:
        self.bank.ensure_capacity(n_devices)

    def clear(self, device: int) -> None:
        self.bank.clear(self.index, device)

    def process(self, dev: I32, ts: I64, val: F64) -> LevelChanges:
        return self.bank.process_check(self.index, dev, ts, val)

    def score(self, ts: I64, val: F64) -> F64:
        """How close each reading brings the series (one device, fresh state) to the
        condition, in [0, 1]; 1 where the condition holds."""
        n = val.shape[0]
        if ts.shape[0] != n:
            raise ValueError("ts and val must have the same length")
        score = np.zeros(n)
        if n:
            self.bank.process_check(self.index, np.zeros(n, np.int32), ts, val,
                                    state=self.bank._alloc(1), score=score)
        return score


def bank_of_one(check: Check[Any], capacity: int = 1024,
                stuck_tick_ms: int = STUCK_TICK_MS) -> CheckBank:
    """A bank of `check` alone: its state for a detector of its own (the bank's one view)."""
    return CheckBank([check], kinds=(check.spec.kind,), capacity=capacity,
                     stuck_tick_ms=stuck_tick_ms)


_NO_SCORES = np.zeros(0)
