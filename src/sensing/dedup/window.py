"""Duplicate filter over (device, epoch, seq): state in preallocated arrays, one kernel call
per batch."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sensing.arrays import grown
from sensing.kernels.dedup import ADMITTED, WINDOW_WORDS, dedup_window


class DedupWindow:
    """Anti-replay window per device. `classify` returns a verdict per reading (see kernel)."""

    def __init__(self, capacity: int = 1024) -> None:
        self._cur_epoch = np.zeros(capacity, dtype=np.int64)
        self._top = np.full(capacity, -1, dtype=np.int64)
        self._bitmap = np.zeros((capacity, WINDOW_WORDS), dtype=np.uint64)

    @property
    def capacity(self) -> int:
        return int(self._top.shape[0])

    def ensure_capacity(self, n_devices: int) -> None:
        self._cur_epoch = grown(self._cur_epoch, n_devices, 0)
        self._top = grown(self._top, n_devices, -1)
        self._bitmap = grown(self._bitmap, n_devices, 0)

    def state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The arrays behind the window (for snapshots); not copies."""
        return self._cur_epoch, self._top, self._bitmap

    def restore(self, cur_epoch: np.ndarray, top: np.ndarray, bitmap: np.ndarray) -> None:
        """Load the state of the first len(top) devices from a snapshot."""
        n = int(top.shape[0])
        if cur_epoch.shape != (n,) or bitmap.shape != (n, WINDOW_WORDS):
            raise ValueError("snapshot arrays do not fit the window")
        self.ensure_capacity(n)
        self._cur_epoch[:n] = cur_epoch
        self._top[:n] = top
        self._bitmap[:n] = bitmap

    def classify(
        self, dev: npt.NDArray[np.int32], epoch: npt.NDArray[np.int64], seq: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int8]:
        if not (dev.shape == epoch.shape == seq.shape):
            raise ValueError("dev, epoch and seq must have the same shape")
        if dev.size and (int(dev.min()) < 0 or int(dev.max()) >= self.capacity):
            raise IndexError("device index outside the window's capacity")
        if seq.size and int(seq.min()) < 0:
            raise ValueError("seq must be non-negative")
        verdict = np.empty(dev.shape[0], dtype=np.int8)
        dedup_window(
            np.ascontiguousarray(dev, dtype=np.int32),
            np.ascontiguousarray(epoch, dtype=np.int64),
            np.ascontiguousarray(seq, dtype=np.int64),
            self._cur_epoch,
            self._top,
            self._bitmap,
            verdict,
        )
        return verdict

    def admit(
        self, dev: npt.NDArray[np.int32], epoch: npt.NDArray[np.int64], seq: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        admitted: npt.NDArray[np.bool_] = self.classify(dev, epoch, seq) == ADMITTED
        return admitted
