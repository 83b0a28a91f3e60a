"""One threshold rule over many devices: the kernel's state, owned and grown in place."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensing.detect.rules import Rule
from sensing.kernels.threshold import MAX_LEVELS, threshold_levels


@dataclass(frozen=True, slots=True)
class LevelChanges:
    """Output of one rule over one batch: per change, the input row, new level (0 = clear,
    else 1-based index into the rule's levels), onset time of the episode and the signal."""

    row: npt.NDArray[np.int64]
    level: npt.NDArray[np.int8]
    onset: npt.NDArray[np.int64]
    signal: npt.NDArray[np.float64]


class ThresholdDetector:
    def __init__(self, rule: Rule, capacity: int = 1024) -> None:
        if not 1 <= len(rule.levels) <= MAX_LEVELS:
            raise ValueError(f"rule {rule.name}: 1 to {MAX_LEVELS} levels")
        self.rule = rule
        pad = MAX_LEVELS - len(rule.levels)
        self._thr = np.array([lv.threshold for lv in rule.levels] + [np.nan] * pad)
        self._reset = np.array([lv.reset for lv in rule.levels] + [np.nan] * pad)
        self._dur = np.array([int(lv.duration_s * 1000) for lv in rule.levels] + [0] * pad,
                             dtype=np.int64)
        self._count_min = np.array([lv.min_count for lv in rule.levels] + [1] * pad,
                                   dtype=np.int32)
        self._sign = 1.0 if rule.above else -1.0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        self.level = np.zeros(capacity, dtype=np.int8)
        self.since = np.full((capacity, MAX_LEVELS), -1, dtype=np.int64)
        self.count = np.zeros((capacity, MAX_LEVELS), dtype=np.int32)
        self.onset = np.full(capacity, -1, dtype=np.int64)
        self.prev_ts = np.full(capacity, -1, dtype=np.int64)
        self.prev_val = np.zeros(capacity, dtype=np.float64)

    def _state(self) -> tuple[np.ndarray, ...]:
        return (self.level, self.since, self.count, self.onset, self.prev_ts, self.prev_val)

    @property
    def capacity(self) -> int:
        return int(self.level.shape[0])

    def ensure_capacity(self, n: int) -> None:
        if n <= self.capacity:
            return
        old = self._state()
        self._alloc(max(n, 2 * self.capacity))
        for fresh, prev in zip(self._state(), old, strict=True):
            fresh[: prev.shape[0]] = prev

    def clear(self, device: int) -> None:
        """Forget a device's episode (after a person resolved its alert)."""
        self.level[device] = 0
        self.since[device] = -1
        self.count[device] = 0

    def process(
        self, dev: npt.NDArray[np.int32], ts: npt.NDArray[np.int64], val: npt.NDArray[np.float64]
    ) -> LevelChanges:
        n = dev.shape[0]
        if not (ts.shape[0] == val.shape[0] == n):
            raise ValueError("dev, ts and val must have the same length")
        if n and int(dev.max()) >= self.capacity:
            raise IndexError("device index outside the detector's capacity")
        out_row = np.empty(n, dtype=np.int64)
        out_level = np.empty(n, dtype=np.int8)
        out_onset = np.empty(n, dtype=np.int64)
        out_signal = np.empty(n, dtype=np.float64)
        k = threshold_levels(
            np.ascontiguousarray(dev, dtype=np.int32),
            np.ascontiguousarray(ts, dtype=np.int64),
            np.ascontiguousarray(val, dtype=np.float64),
            self._sign, int(self.rule.rate_window_s * 1000),
            self._thr, self._reset, self._dur, self._count_min,
            self.level, self.since, self.count, self.onset, self.prev_ts, self.prev_val,
            out_row, out_level, out_onset, out_signal,
        )
        return LevelChanges(out_row[:k], out_level[:k], out_onset[:k], out_signal[:k])
