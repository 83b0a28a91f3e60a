"""What the detector banks (`ThresholdBank`, `CheckBank`) take and give: a checked batch in the
registry's columns, and the level changes of their rules or checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensing.arrays import next_capacity
from sensing.kernels.columns import batch_bounds

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BankInput:
    """Per reading: device, event time, the device's kind (-1 for none) and battery (NaN for
    none); per value: its reading, channel index and value. Contiguous, in the kernels' dtypes,
    checked once for every bank that runs it."""

    dev: I32
    ts: I64
    kind: npt.NDArray[np.int8]
    battery: F64
    value_row: I32
    value_channel: I32
    value: F64
    devices: int
    """the highest device index plus one"""
    kinds: int
    """the highest kind index plus one"""

    @classmethod
    def checked(cls, dev: I32, ts: I64, kind: npt.NDArray[np.int8], battery: F64,
                value_row: I32, value_channel: I32, value: F64) -> BankInput:
        n, m = dev.shape[0], value.shape[0]
        if not (ts.shape[0] == kind.shape[0] == battery.shape[0] == n):
            raise ValueError("dev, ts, kind and battery must have the same length")
        if not (value_row.shape[0] == value_channel.shape[0] == m):
            raise ValueError("value_row, value_channel and value must have the same length")
        dev = np.ascontiguousarray(dev, dtype=np.int32)
        kind = np.ascontiguousarray(kind, dtype=np.int8)
        value_row = np.ascontiguousarray(value_row, dtype=np.int32)
        value_channel = np.ascontiguousarray(value_channel, dtype=np.int32)
        dev_lo, dev_hi, kind_hi, row_lo, row_hi, chan_lo = batch_bounds(
            dev, kind, value_row, value_channel)
        if dev_lo < 0:
            raise IndexError("negative device index")
        if row_lo < 0 or row_hi >= n:
            raise IndexError("value row outside the batch")
        if chan_lo < 0:
            raise IndexError("negative channel index")
        return cls(dev, np.ascontiguousarray(ts, dtype=np.int64), kind,
                   np.ascontiguousarray(battery, dtype=np.float64), value_row, value_channel,
                   np.ascontiguousarray(value, dtype=np.float64), dev_hi + 1, kind_hi + 1)

    def check_fits(self, capacity: int, kinds: int) -> None:
        """Raise unless a bank of this capacity, knowing this many kinds, can run it."""
        if self.devices > capacity:
            raise IndexError("device index outside the bank's capacity")
        if self.kinds > kinds:
            raise IndexError("kind index outside the bank's kinds")


@dataclass(frozen=True, slots=True)
class BankChanges:
    """Level changes of one batch in processing order: the input row, the rule or check (index
    into the bank's `views`), the new level (0 = clear), the onset and the signal value that
    decided."""

    row: I64
    rule: I32
    level: npt.NDArray[np.int8]
    onset: I64
    signal: F64


class ChangeBuffers:
    """A bank's kernel outputs, allocated once and grown to the largest bound asked for: a
    batch allocates only the copies of the changes it made (few), not five arrays as long as
    every change it could have made (on 10,000 readings, about 100,000 entries each)."""

    def __init__(self) -> None:
        self._grow(0)

    def _grow(self, n: int) -> None:
        self.row = np.empty(n, dtype=np.int64)
        self.rule = np.empty(n, dtype=np.int32)
        self.level = np.empty(n, dtype=np.int8)
        self.onset = np.empty(n, dtype=np.int64)
        self.signal = np.empty(n, dtype=np.float64)

    def ensure(self, bound: int) -> None:
        """Room for at least `bound` changes."""
        if bound > self.row.shape[0]:
            self._grow(next_capacity(self.row.shape[0], bound))

    def changes(self, k: int) -> BankChanges:
        """The first `k` outputs, copied (the buffers serve the next batch)."""
        return BankChanges(self.row[:k].copy(), self.rule[:k].copy(), self.level[:k].copy(),
                           self.onset[:k].copy(), self.signal[:k].copy())
