"""`KernelDetector`: the plumbing shared by the single-level detectors (faults, fall,
inactivity): per-device state arrays grown in place, checked batches, level changes out of a
kernel, and a stateless score from the same kernel run on fresh state."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from sensing.detect.base import F64, I32, I64, DetectorSpec, LevelChanges
from sensing.wire.messages import Grade

MINUTE_S = 60.0
HOUR_S = 3600.0
DAY_S = 86_400.0

State = dict[str, npt.NDArray[Any]]
Layout = tuple[tuple[str, type[np.generic], float], ...]
"""per-device state arrays: name, dtype, value of a fresh device"""
Outputs = tuple[I64, npt.NDArray[np.int8], I64, F64]


def ms(seconds: float) -> int:
    return round(seconds * 1000)


class KernelDetector(ABC):
    """A one-level detector whose work is one numba kernel over per-device state arrays."""

    layout: ClassVar[Layout]

    def __init__(self, spec: DetectorSpec, grade: Grade, capacity: int) -> None:
        self.spec = spec
        self._grade = grade
        self.state = self._fresh(max(1, capacity))

    @abstractmethod
    def _run(self, dev: I32, ts: I64, val: F64, state: State, out: Outputs,
             progress: F64) -> int:
        """Call the kernel; return the number of outputs written."""

    @abstractmethod
    def describe(self, level: int, signal: float) -> str: ...

    def _fresh(self, capacity: int) -> State:
        return {name: np.full(capacity, init, dtype) for name, dtype, init in self.layout}

    @property
    def capacity(self) -> int:
        return int(next(iter(self.state.values())).shape[0])

    def ensure_capacity(self, n_devices: int) -> None:
        cap = self.capacity
        if n_devices <= cap:
            return
        grown = self._fresh(max(n_devices, 2 * cap))
        for name, arr in self.state.items():
            grown[name][:cap] = arr
        self.state = grown

    def clear(self, device: int) -> None:
        for name, _, init in self.layout:
            self.state[name][device] = init

    def grade(self, level: int) -> Grade:
        if level != 1:
            raise ValueError(f"{self.spec.name} has one level, not {level}")
        return self._grade

    def process(self, dev: I32, ts: I64, val: F64) -> LevelChanges:
        n = dev.shape[0]
        if not (ts.shape[0] == val.shape[0] == n):
            raise ValueError("dev, ts and val must have the same length")
        if n == 0:
            return LevelChanges.empty()
        if int(dev.min()) < 0 or int(dev.max()) >= self.capacity:
            raise IndexError("device index outside the detector's capacity")
        out = _outputs(n)
        k = self._run(np.ascontiguousarray(dev, dtype=np.int32),
                      np.ascontiguousarray(ts, dtype=np.int64),
                      np.ascontiguousarray(val, dtype=np.float64),
                      self.state, out, np.zeros(0))
        return LevelChanges(out[0][:k], out[1][:k], out[2][:k], out[3][:k])

    def score(self, ts: I64, val: F64) -> F64:
        """How close each reading brings the series (one device, fresh state) to the
        condition, in [0, 1]; 1 where the condition holds."""
        n = val.shape[0]
        if ts.shape[0] != n:
            raise ValueError("ts and val must have the same length")
        progress = np.zeros(n)
        if n:
            self._run(np.zeros(n, np.int32), np.ascontiguousarray(ts, dtype=np.int64),
                      np.ascontiguousarray(val, dtype=np.float64), self._fresh(1),
                      _outputs(n), progress)
        return progress


def _outputs(n: int) -> Outputs:
    return (np.empty(n, np.int64), np.empty(n, np.int8), np.empty(n, np.int64),
            np.empty(n, np.float64))


def span(seconds: float) -> str:
    """A duration for people: "45 s", "30 min", "6 h", "3 d"."""
    for unit, size in (("d", DAY_S), ("h", HOUR_S), ("min", MINUTE_S)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"
