"""One threshold rule over many devices: the kernel's state, owned and grown in place."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sensing.detect.base import DetectorSpec, LevelChanges
from sensing.detect.rules import Rule
from sensing.kernels.threshold import MAX_LEVELS, threshold_levels
from sensing.wire.messages import Grade


class ThresholdDetector:
    """Multi-level threshold with hysteresis, minimum count and duration (or rate of rise)."""

    def __init__(self, rule: Rule, capacity: int = 1024) -> None:
        if not 1 <= len(rule.levels) <= MAX_LEVELS:
            raise ValueError(f"rule {rule.name}: 1 to {MAX_LEVELS} levels")
        self.rule = rule
        self.spec = DetectorSpec(rule.name, rule.type, rule.kind, rule.channel, rule.latching)
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

    def grade(self, level: int) -> Grade:
        return self.rule.levels[level - 1].grade

    def describe(self, level: int, signal: float) -> str:
        return self.rule.describe(signal, self.grade(level))

    def score(self, ts: npt.NDArray[np.int64], val: npt.NDArray[np.float64]
              ) -> npt.NDArray[np.float64]:
        """0 at the reset level of the least severe level, 1 at the most severe threshold,
        linear in between, on the value or (rate rules) on the rate over the rule's spans."""
        signal = np.asarray(val, dtype=np.float64)
        if self.rule.rate_window_s:
            signal = _span_rates(np.asarray(ts, np.int64), signal,
                                 int(self.rule.rate_window_s * 1000))
        low = self._sign * self.rule.levels[0].reset
        high = self._sign * self.rule.levels[-1].threshold
        scores = np.clip((self._sign * signal - low) / (high - low), 0.0, 1.0)
        return np.nan_to_num(scores, nan=0.0)

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


def _span_rates(ts: npt.NDArray[np.int64], val: npt.NDArray[np.float64], window_ms: int
                ) -> npt.NDArray[np.float64]:
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
