"""Counting distinct readings `(device, epoch, seq)` without keeping every one of them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sensing.wire import ReadingBatch


@dataclass(slots=True)
class _Seqs:
    """Seqs seen of one (device, epoch): all of [base, next), plus stragglers either side."""

    base: int
    next: int
    ahead: set[int] = field(default_factory=set)
    behind: set[int] = field(default_factory=set)

    def add(self, seq: int) -> bool:
        if seq == self.next:
            self.next += 1
            while self.next in self.ahead:
                self.ahead.remove(self.next)
                self.next += 1
            return True
        if seq > self.next:
            if seq in self.ahead:
                return False
            self.ahead.add(seq)
            return True
        if seq >= self.base or seq in self.behind:
            return False
        self.behind.add(seq)
        return True


class UniqueReadings:
    """Distinct readings seen so far. Memory stays per device when seqs come mostly in order.

    Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seqs: dict[tuple[str, int], _Seqs] = {}
        self.unique = 0
        self.repeated = 0

    def add(self, device: str, epoch: int, seq: int) -> bool:
        """Record one reading; True if it was not seen before."""
        with self._lock:
            return self._add(device, epoch, seq)

    def add_batch(self, batch: ReadingBatch) -> int:
        """Record a batch; returns how many of its readings were new."""
        devices = batch.devices
        rows = zip(batch.device.tolist(), batch.epoch.tolist(), batch.seq.tolist(), strict=True)
        with self._lock:
            return sum(self._add(devices[d], e, s) for d, e, s in rows)

    def _add(self, device: str, epoch: int, seq: int) -> bool:
        key = (device, epoch)
        seqs = self._seqs.get(key)
        if seqs is None:
            self._seqs[key] = _Seqs(base=seq, next=seq + 1)
            new = True
        else:
            new = seqs.add(seq)
        if new:
            self.unique += 1
        else:
            self.repeated += 1
        return new
