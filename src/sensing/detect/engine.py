"""Runs every rule over a batch of admitted readings and reports changes of alert conditions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sensing.detect.bank import BankInput
from sensing.detect.base import Detector
from sensing.detect.catalog import default_checks
from sensing.detect.checks import Check, CheckBank, CheckView
from sensing.detect.overrides import Overrides
from sensing.detect.rules import BATTERY_CHANNEL, DEFAULT_RULES, Rule
from sensing.detect.threshold import RuleView, ThresholdBank
from sensing.kernels.columns import take
from sensing.registry import Registry
from sensing.wire.batch import kept_values
from sensing.wire.messages import GRADE_BY_RANK, Grade

Signal = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(rows into the step's readings, device indices, values) of one detector's channel"""


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
        kernel call per bank; every other detector is fed its channel on its own."""
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
        self._known = 0

    def ensure_capacity(self, n: int) -> None:
        if n <= self._known:
            return
        for d in self.detectors:
            d.ensure_capacity(n)
        self.devices_added(self._known, n)

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
        changes: list[tuple[int, int, int, int, float]] = []  # row, rule, level, onset, signal
        if self._banks and r.dev.shape[0]:
            kind = np.empty(r.dev.shape[0], dtype=np.int8)
            if take(self.registry.device_kind, np.ascontiguousarray(r.dev, np.int32), kind) >= 0:
                raise IndexError("device index unknown to the registry")
            batch = BankInput.checked(r.dev, r.ts, kind, r.battery, r.value_row,
                                      r.value_channel, r.value)
            for bank, index in self._banks:
                fired = bank.run(batch)
                if fired.row.shape[0]:
                    rule = index[fired.rule]
                    ok = rule >= 0
                    changes.extend(zip(fired.row[ok].tolist(), rule[ok].tolist(),
                                       fired.level[ok].tolist(), fired.onset[ok].tolist(),
                                       fired.signal[ok].tolist(), strict=True))
        signal_of = self._signals(r) if self._alone else None
        for i in self._alone:
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
        if not changes:
            return []
        changes.sort(key=lambda c: (c[0], c[1]))
        result: list[ConditionChange] = []
        for row, i, lvl, onset, sig in changes:
            change = self._apply(int(r.dev[row]), int(r.ts[row]), i, lvl, onset, sig)
            if change is not None:
                result.append(change)
        return result

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
