"""Runs every rule over a batch of admitted readings and reports changes of alert conditions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from sensing.arrays import grown, next_capacity
from sensing.detect.bank import BankChanges, BankInput
from sensing.detect.base import Detector
from sensing.detect.catalog import default_checks
from sensing.detect.checks import Check, CheckBank, CheckView
from sensing.detect.overrides import Overrides
from sensing.detect.rules import BATTERY_CHANNEL, DEFAULT_RULES, Rule
from sensing.detect.threshold import RuleGate, RuleView, ThresholdBank
from sensing.kernels.checks import IMPOSSIBLE, PLAIN
from sensing.kernels.fault import IMPOSSIBLE_PARAMS
from sensing.kernels.gate import (
    GATED,
    NEGATIVE_CHANNEL,
    ROW_OUTSIDE,
    UNKNOWN_DEVICE,
    fault_gate,
    gate_batch,
)
from sensing.registry import Registry
from sensing.wire.batch import kept_values
from sensing.wire.messages import GRADE_BY_RANK, Grade

Signal = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(rows into the step's readings, device indices, values) of one detector's channel"""

FAULT = "device.fault"
"""the alert type of the fault checks whose raised faults gate their channel's threshold rules"""


@dataclass(frozen=True, slots=True)
class Readings:
    """Admitted readings of one processing step, columnar, with global indices."""

    dev: npt.NDArray[np.int32]
    ts: npt.NDArray[np.int64]
    battery: npt.NDArray[np.float64]
    value_row: npt.NDArray[np.int32]
    value_channel: npt.NDArray[np.int32]
    value: npt.NDArray[np.float64]

    @classmethod
    def kept(cls, keep: npt.NDArray[np.bool_], dev: npt.NDArray[np.int32],
             ts: npt.NDArray[np.int64], battery: npt.NDArray[np.float64],
             value_row: npt.NDArray[np.int32], value_channel: npt.NDArray[np.int32],
             value: npt.NDArray[np.float64]) -> Readings:
        """The readings where `keep` is true, with their values (rows renumbered)."""
        if keep.all():  # the usual case: nothing to copy
            return cls(dev, ts, battery, value_row, value_channel, value)
        value_keep, kept_rows = kept_values(keep, value_row)
        return cls(dev[keep], ts[keep], battery[keep], kept_rows, value_channel[value_keep],
                   value[value_keep])


@dataclass(frozen=True, slots=True)
class ConditionChange:
    device: int
    type: str
    grade: Grade | None
    """None when the condition cleared"""
    ts_event: int
    ts: int
    value: float
    reason: str


@dataclass(slots=True)
class _Episode:
    ts_event: int
    ranks: dict[int, int] = field(default_factory=dict)
    grade: Grade | None = None


class DetectionEngine:
    def __init__(self, registry: Registry, detectors: Sequence[Detector] | None = None,
                 overrides: Overrides | None = None) -> None:
        """`detectors` defaults to every default detector (`default_detectors`). Views of a
        bank built for this registry (`threshold_bank`, `check_bank`) run together in one
        kernel call per bank; every other detector is fed its channel on its own.

        Two gates stand in front of the detectors (`sensing.kernels.gate`): a reading older
        than its device's newest one reaches none of them, and a threshold rule (`RuleView`)
        sees no value its channel's impossible-value check rejects for the device, nor any
        value of a channel while a `device.fault` check of that channel is raised on the
        device. The checks run first, so that their changes gate the rules' values at the
        same reading."""
        self.registry = registry
        self.detectors: list[Detector] = (
            list(detectors) if detectors is not None
            else default_detectors(registry))
        self.overrides = overrides
        self._episodes: dict[tuple[int, str], _Episode] = {}
        banks: dict[int, tuple[ThresholdBank | CheckBank, np.ndarray]] = {}
        self._alone: list[int] = []
        for i, det in enumerate(self.detectors):
            if (isinstance(det, RuleView | CheckView)
                    and det.bank.channel_index == registry.channels.intern):
                bank = det.bank
                _, index = banks.setdefault(id(bank), (bank, np.full(len(bank.views), -1)))
                index[det.index] = i
            else:
                self._alone.append(i)
        self._banks = list(banks.values())
        """(bank, the engine's detector index of each of its rules or -1)"""
        # the checks (and every detector that is not a threshold rule) run before the rules
        self._check_runs = [(b, i) for b, i in self._banks if isinstance(b, CheckBank)]
        self._rule_runs = [b for b in self._banks if isinstance(b[0], ThresholdBank)]
        self._check_banks = [b for b, _ in self._banks if isinstance(b, CheckBank)]
        self._alone_checks = [i for i in self._alone
                              if not isinstance(self.detectors[i], RuleView)]
        self._alone_rules = [i for i in self._alone if isinstance(self.detectors[i], RuleView)]
        self._known = 0
        self._newest = np.full(0, -1, dtype=np.int64)
        """per device, the event time of its newest reading (-1: none): the one clock the
        detectors, and the lifecycle's holds on their alerts, run on"""
        self._fault_bits = np.zeros(0, dtype=np.uint32)
        """per device, a bit per fault check of its kind whose fault is raised"""
        self._n_open = np.zeros(1, dtype=np.int64)
        self._kind_buf = np.empty(0, dtype=np.int8)
        self._late_buf = np.empty(0, dtype=np.bool_)
        """per reading of the batch at hand, its kind and whether it is late (`_gate`)"""
        self._fault_bit, self._fault_keys = self._fault_tables()
        self._rule_tables = [self._gate_tables(bank.width + 1, 1, bank.width)
                             for bank, _ in self._rule_runs if isinstance(bank, ThresholdBank)]
        width = 1 + max([c for _, c, _ in self._fault_keys]
                        + [b.width - 1 for b in self._check_banks[:1]], default=-1)
        self._alone_tables = (width, self._gate_tables(width, 0, width))
        self._plain: tuple[np.ndarray | None, list[np.ndarray]] = (None, [])
        """the check bank's `plain` records, and keyed like each table above"""

    def _fault_tables(self) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """Per detector, its bit among its kind's fault checks (0: not a fault check), and
        (kind, channel, bit) of each."""
        reg = self.registry
        bit = np.zeros(len(self.detectors), dtype=np.int64)
        used: dict[str, int] = {}
        keys: list[tuple[int, int, int]] = []
        for i, det in enumerate(self.detectors):
            spec = det.spec
            if (spec.type != FAULT or spec.channel == BATTERY_CHANNEL
                    or spec.kind not in reg.kind_index):
                continue
            b = used[spec.kind] = used.get(spec.kind, -1) + 1
            if b >= 32:
                raise ValueError(f"at most 32 fault checks per kind ({spec.kind})")
            bit[i] = 1 << b
            keys.append((reg.kind_index[spec.kind], reg.channels.intern(spec.channel),
                         1 << b))
        return bit, keys

    def _gate_tables(self, stride: int, offset: int, width: int) -> _GateTables:
        """The gate's tables in a key space `kind * stride + channel + offset` (channels up to
        `width`): fault bits per key, where each key's record of the check bank's `plain`
        is (-1: none), and each key's impossible-value checks of the first check bank
        (their parameter rows and state columns), CSR."""
        reg = self.registry
        n_keys = len(reg.kind_index) * stride
        mask = np.zeros(max(1, n_keys), dtype=np.uint32)
        for k, c, b in self._fault_keys:
            if c < width:
                mask[k * stride + c + offset] |= np.uint32(b)
        to_check = np.full(max(1, n_keys), -1, dtype=np.int64)
        checks: list[list[tuple[int, int]]] = [[] for _ in range(n_keys)]
        bank = self._check_banks[0] if self._check_banks else None
        if bank is not None:
            for k in range(len(reg.kind_index)):
                for c in range(min(width, bank.width)):
                    to_check[k * stride + c + offset] = k * bank.width + c
            for q, check in enumerate(bank.checks):
                c = reg.channels.intern(check.spec.channel)
                if check.code == IMPOSSIBLE and c < width:
                    key = reg.kind_index[check.spec.kind] * stride + c + offset
                    checks[key].append((int(bank._param[q]), int(bank._slot[q])))
        ptr = np.zeros(n_keys + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(x) for x in checks])
        flat = [x for key in checks for x in key]
        return (mask, to_check, ptr, np.array([r for r, _ in flat], dtype=np.int64),
                np.array([s for _, s in flat], dtype=np.int64))

    def ensure_capacity(self, n: int) -> None:
        if n <= self._known:
            return
        for d in self.detectors:
            d.ensure_capacity(n)
        self._newest = grown(self._newest, n, -1)
        self._fault_bits = grown(self._fault_bits, n, 0)
        self.devices_added(self._known, n)

    def event_time(self, device: str) -> int:
        """The event time of the newest reading of `device` (by name) the detectors were
        given, or -1: the clock the lifecycle's holds on its detected alerts run on."""
        d = self.registry.devices.index.get(device)
        return -1 if d is None or d >= self._newest.shape[0] else int(self._newest[d])

    def devices_added(self, first: int, stop: int) -> None:
        """Devices `first..stop-1` were seen for the first time (the registry knows their kind
        and area): give them their parameters. Called by `ensure_capacity`."""
        self._known = max(self._known, stop)
        if self.overrides:
            for bank, _ in self._banks:
                self.overrides.assign(bank, self.registry, first, stop)

    def forget(self, device: int, alert_type: str) -> None:
        """A person resolved the alert: start the next episode from scratch."""
        self._episodes.pop((device, alert_type), None)
        for det in self.detectors:
            if det.spec.type == alert_type:
                det.clear(device)
        if alert_type == FAULT and device < self._fault_bits.shape[0]:
            self._n_open[0] -= int(self._fault_bits[device]).bit_count()
            self._fault_bits[device] = 0

    def _signals(self, r: Readings) -> Callable[[Detector], Signal]:
        """Each detector's readings (rows, devices, values) in arrival order. The values are
        grouped by (kind, channel) with one stable sort per batch, and detectors watching the
        same channel share one selection."""
        reg = self.registry
        v_dev = r.dev[r.value_row]
        width = len(reg.channels) + 1
        key = reg.device_kind[v_dev].astype(np.int64) * width + r.value_channel
        if len(reg.kind_index) * width < 2**15:
            key = key.astype(np.int16)  # numpy sorts 16-bit keys stably by radix: fast
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        cache: dict[tuple[str, str], Signal] = {}

        def select(det: Detector) -> Signal:
            spec = det.spec
            found = cache.get((spec.kind, spec.channel))
            if found is not None:
                return found
            kind = reg.kind_index[spec.kind]
            if spec.channel == BATTERY_CHANNEL:
                rows = np.flatnonzero(~np.isnan(r.battery) & (reg.device_kind[r.dev] == kind))
                found = (rows, r.dev[rows], r.battery[rows])
            else:
                # not interned here: a channel no reading has carried has no values, and a
                # new index could reach past `width` into the next kind's keys
                c = reg.channels.index.get(spec.channel)
                k = -1 if c is None else kind * width + c
                lo, hi = np.searchsorted(sorted_key, [k, k + 1]) if k >= 0 else (0, 0)
                picked = order[lo:hi]
                found = (r.value_row[picked].astype(np.int64), v_dev[picked], r.value[picked])
            cache[(spec.kind, spec.channel)] = found
            return found

        return select

    def process(self, r: Readings) -> list[ConditionChange]:
        self.ensure_capacity(len(self.registry.devices))
        n = r.dev.shape[0]
        if not n:
            return []
        gated = self._gate(r)
        if gated is None:
            return []
        batch, r = gated
        # row, detector, level, onset, signal
        changes: list[tuple[int, int, int, int, float]] = []
        self._run_banks(self._check_runs, batch, changes)
        self._run_alone(self._alone_checks, r, changes)
        if self._rule_runs or self._alone_rules:
            self._run_rules(batch, r, changes)
        if not changes:
            return []
        changes.sort(key=lambda c: (c[0], c[1]))
        rows = [c[0] for c in changes]
        result: list[ConditionChange] = []
        for (_, i, lvl, onset, sig), device, ts in zip(
                changes, r.dev[rows].tolist(), r.ts[rows].tolist(), strict=True):
            change = self._apply(device, ts, i, lvl, onset, sig)
            if change is not None:
                result.append(change)
        return result

    def _gate(self, r: Readings) -> tuple[BankInput, Readings] | None:
        """The batch for the banks, with the readings the detectors see: every index checked,
        each reading's kind looked up and the late ones dropped (`gate_batch`), in one pass
        into arrays the engine keeps; None when every reading is late."""
        n = r.dev.shape[0]
        if n > self._kind_buf.shape[0]:
            self._kind_buf = np.empty(next_capacity(self._kind_buf.shape[0], n), np.int8)
            self._late_buf = np.empty(self._kind_buf.shape[0], np.bool_)
        kind, late = self._kind_buf[:n], self._late_buf[:n]
        dev = np.ascontiguousarray(r.dev, np.int32)
        ts = np.ascontiguousarray(r.ts, np.int64)
        value_row = np.ascontiguousarray(r.value_row, np.int32)
        value_channel = np.ascontiguousarray(r.value_channel, np.int32)
        battery = np.ascontiguousarray(r.battery, np.float64)
        value = np.ascontiguousarray(r.value, np.float64)
        if not (ts.shape[0] == battery.shape[0] == n
                and value_row.shape[0] == value_channel.shape[0] == value.shape[0]):
            raise ValueError("the readings' columns differ in length")
        status, n_late, dev_hi, kind_hi = gate_batch(
            dev, ts, value_row, value_channel, self.registry.device_kind, self._newest, kind,
            late)
        if status != GATED:
            raise IndexError(_REFUSED[status])
        if n_late:
            keep = ~late  # stored, but seen by no detector
            r = Readings.kept(keep, dev, ts, battery, value_row, value_channel, value)
            if not r.dev.shape[0]:
                return None
            return BankInput.checked(r.dev, r.ts, kind[keep], r.battery, r.value_row,
                                     r.value_channel, r.value), r
        return BankInput(dev, ts, kind, battery, value_row, value_channel, value, dev_hi + 1,
                         kind_hi + 1), r

    def _run_banks(self, banks: list[tuple[CheckBank, np.ndarray]], batch: BankInput,
                   changes: list[tuple[int, int, int, int, float]]) -> None:
        for bank, index in banks:  # in order: the gate dropped the late readings
            self._collect(bank.run(batch, in_order=True), index, changes)

    @staticmethod
    def _collect(fired: BankChanges, index: np.ndarray,
                 changes: list[tuple[int, int, int, int, float]]) -> None:
        """A bank's changes, numbered as the engine's detectors (`index`), into `changes`."""
        if fired.row.shape[0]:
            rule = index[fired.rule]
            ok = rule >= 0
            changes.extend(zip(fired.row[ok].tolist(), rule[ok].tolist(),
                               fired.level[ok].tolist(), fired.onset[ok].tolist(),
                               fired.signal[ok].tolist(), strict=True))

    def _run_alone(self, alone: list[int], r: Readings,
                   changes: list[tuple[int, int, int, int, float]]) -> None:
        signal_of = self._signals(r) if alone else None
        for i in alone:
            det = self.detectors[i]
            assert signal_of is not None
            rows, dev, val = signal_of(det)
            if rows.size == 0:
                continue
            out = det.process(dev, r.ts[rows], val)
            for row, lvl, onset, sig in zip(
                rows[out.row].tolist(), out.level.tolist(), out.onset.tolist(),
                out.signal.tolist(), strict=True,
            ):
                changes.append((row, i, lvl, onset, sig))

    def _run_rules(self, batch: BankInput, r: Readings,
                   changes: list[tuple[int, int, int, int, float]]) -> None:
        """The threshold rules, behind the gate (`sensing.kernels.gate`) with the fault
        checks' `changes` of this batch; each run of rules starts from the fault bits before
        the batch and the last one leaves them after it."""
        bits = self._fault_bit
        events = sorted((row, int(bits[i]), lvl) for row, i, lvl, _, _ in changes if bits[i])
        ev_row, ev_bit, ev_level = (np.array([e[x] for e in events], dtype=np.int64)
                                    for x in range(3)) if events else (_NONE, _NONE, _NONE)
        bank = self._check_banks[0] if self._check_banks else None
        plain = _OPEN if bank is None else bank._plain
        if plain is not self._plain[0]:  # new profiles: the check bank made a new one
            self._plain = (plain, [np.concatenate([plain, _OPEN])[t[1]]
                                   for t in (*self._rule_tables, self._alone_tables[1])])
        imp_p = _NO_PARAMS if bank is None else bank._params[IMPOSSIBLE]
        imp_prof = _NO_PROFILES if bank is None else bank.state.profiles[IMPOSSIBLE]
        runs = len(self._rule_runs) + bool(self._alone_rules)

        def state(run: int) -> tuple[np.ndarray, np.ndarray]:
            if run == runs - 1:
                return self._fault_bits, self._n_open
            return self._fault_bits.copy(), self._n_open.copy()

        keyed = self._plain[1]
        for run, ((rules, index), tables) in enumerate(
                zip(self._rule_runs, self._rule_tables, strict=True)):
            mask, _, ptr, row, slot = tables
            fault_bits, n_open = state(run)
            gate = RuleGate(fault_bits, mask, n_open, ev_row, ev_bit, ev_level, keyed[run],
                            ptr, row, slot, imp_p, imp_prof)
            assert isinstance(rules, ThresholdBank)
            fired = rules.run(batch, gate)
            self._collect(fired, index, changes)
        if self._alone_rules:  # rules run one by one: the values of the batch gated at once
            width, (mask, _, ptr, row, slot) = self._alone_tables
            fault_bits, n_open = state(runs - 1)
            out = np.empty(batch.value.shape[0], dtype=np.bool_)
            if fault_gate(batch.dev, batch.kind, batch.value_row, batch.value_channel,
                          batch.value, width, fault_bits, mask, n_open, ev_row, ev_bit,
                          ev_level, keyed[-1], ptr, row, slot, imp_p, imp_prof, out):
                r = replace(r, value=np.where(out, np.nan, r.value))  # NaN: no evidence
            self._run_alone(self._alone_rules, r, changes)

    def _apply(
        self, device: int, ts: int, rule_i: int, level: int, onset: int, signal: float
    ) -> ConditionChange | None:
        det = self.detectors[rule_i]
        spec = det.spec
        key = (device, spec.type)
        episode = self._episodes.get(key)
        if level == 0 and (episode is None or spec.latching):
            return None
        if episode is None:
            episode = self._episodes[key] = _Episode(ts_event=onset)
        if level:
            episode.ranks[rule_i] = det.grade(level).rank
        else:
            episode.ranks.pop(rule_i, None)
        if not episode.ranks:
            del self._episodes[key]
            return ConditionChange(device, spec.type, None, episode.ts_event, ts, signal,
                                   f"{spec.channel} back to normal ({signal:.4g})")
        grade = GRADE_BY_RANK[max(episode.ranks.values())]
        if grade == episode.grade:
            return None
        episode.grade = grade
        reason = det.describe(level, signal, device) if level else (
            f"{spec.channel} back to normal ({signal:.4g})"
        )
        return ConditionChange(device, spec.type, grade, episode.ts_event, ts, signal, reason)


def threshold_bank(registry: Registry, rules: Sequence[Rule]) -> ThresholdBank:
    """A bank of threshold rules numbered like `registry` (its kinds and channels), so that an
    engine over that registry runs all of them in one kernel call."""
    return ThresholdBank(rules, tuple(registry.kind_index), registry.channels.intern)


def check_bank(registry: Registry, checks: Sequence[Check[Any]]) -> CheckBank:
    """A bank of checks numbered like `registry`, run by its engine in one kernel call."""
    return CheckBank(checks, tuple(registry.kind_index), registry.channels.intern)


def default_detectors(registry: Registry) -> list[Detector]:
    """Every default detector: the threshold rules in one bank, the checks in another."""
    return [*threshold_bank(registry, DEFAULT_RULES).views,
            *check_bank(registry, default_checks()).views]


_GateTables = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""per key: fault bits, record in the check bank's `plain` (-1: none), impossible-value
checks CSR (pointers, parameter rows, state columns)"""

_OPEN = np.zeros(1, dtype=PLAIN)
_OPEN["low"], _OPEN["high"] = -np.inf, np.inf
"""a key with no impossible-value check: only a value that is not finite is implausible"""
_NONE = np.zeros(0, dtype=np.int64)
_REFUSED = {UNKNOWN_DEVICE: "device index unknown to the registry or beyond the engine's clock",
            ROW_OUTSIDE: "value row outside the batch",
            NEGATIVE_CHANNEL: "negative channel index"}
_NO_PARAMS = np.zeros((0, 1), dtype=IMPOSSIBLE_PARAMS)
_NO_PROFILES = np.zeros((0, 1), dtype=np.int16)
