"""Duplicate filter over (device, epoch, seq): state in preallocated arrays, one kernel call
per batch, with bounds on how far ahead one reading may move a device's window."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sensing.arrays import grown
from sensing.kernels.dedup import ADMITTED, WINDOW_WORDS, dedup_window
from sensing.wire.limits import MAX_FUTURE_MS

MAX_SEQ_JUMP = 1_000_000
"""How far above the highest seq of its epoch a reading's seq may be (and the highest seq a new
epoch of a known device may open with). An agent's seqs are consecutive; the core misses some
only while they wait in the agent's buffer or are dropped from it, and the buffer holds at most
1,000,000 readings by default (`buffer_max_readings`, shared by all the gateway's devices). A
jump beyond it is an outlier (a flipped bit, a bug, a forgery) until a second reading confirms
it (see sensing.kernels.dedup)."""
SEQ_LIMIT = 2**40
"""No seq at or above this is ever admitted: 35 years of a reading every millisecond."""
MAX_EPOCH_JUMP = 1_000
"""How far above a device's current epoch (0 for a device never seen) a new epoch may be
whatever the clock says: epochs that count restarts (the contract's default, the agent's
`epoch` override) grow by one per restart. Epochs up to the wall clock in Unix seconds plus
EPOCH_SKEW_S are accepted too: edge agents take max(previous + 1, Unix seconds)."""
EPOCH_SKEW_S = MAX_FUTURE_MS // 1000
"""the clock-skew allowance of timestamps, for epochs taken from a gateway's clock"""
EPOCH_LIMIT = 2**32
"""No epoch at or above this is ever admitted (SNB carries epochs as 32-bit unsigned)."""
_UNBOUNDED = np.iinfo(np.int64).max


class DedupWindow:
    """Anti-replay window per device. `classify` returns a verdict per reading (see kernel)."""

    def __init__(self, capacity: int = 1024) -> None:
        self._cur_epoch = np.zeros(capacity, dtype=np.int64)
        self._top = np.full(capacity, -1, dtype=np.int64)
        self._bitmap = np.zeros((capacity, WINDOW_WORDS), dtype=np.uint64)
        # the jump each device was last refused (not snapshotted: a restart forgets it, and a
        # device that really jumped is believed one reading later)
        self._pend_epoch = np.full(capacity, -1, dtype=np.int64)
        self._pend_seq = np.full(capacity, -1, dtype=np.int64)

    @property
    def capacity(self) -> int:
        return int(self._top.shape[0])

    def ensure_capacity(self, n_devices: int) -> None:
        self._cur_epoch = grown(self._cur_epoch, n_devices, 0)
        self._top = grown(self._top, n_devices, -1)
        self._bitmap = grown(self._bitmap, n_devices, 0)
        self._pend_epoch = grown(self._pend_epoch, n_devices, -1)
        self._pend_seq = grown(self._pend_seq, n_devices, -1)

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
        self, dev: npt.NDArray[np.int32], epoch: npt.NDArray[np.int64],
        seq: npt.NDArray[np.int64], now_s: int | None = None,
    ) -> npt.NDArray[np.int8]:
        """Verdicts of readings in arrival order. `now_s`: the core's clock in Unix seconds,
        for the bounds on jumps; None replays readings admitted before (the journal), bounds
        off."""
        if not (dev.shape == epoch.shape == seq.shape):
            raise ValueError("dev, epoch and seq must have the same shape")
        if dev.size and (int(dev.min()) < 0 or int(dev.max()) >= self.capacity):
            raise IndexError("device index outside the window's capacity")
        if seq.size and int(seq.min()) < 0:
            raise ValueError("seq must be non-negative")
        if epoch.size and int(epoch.min()) < 0:
            raise ValueError("epoch must be non-negative")
        bounded = now_s is not None
        verdict = np.empty(dev.shape[0], dtype=np.int8)
        dedup_window(
            np.ascontiguousarray(dev, dtype=np.int32),
            np.ascontiguousarray(epoch, dtype=np.int64),
            np.ascontiguousarray(seq, dtype=np.int64),
            self._cur_epoch,
            self._top,
            self._bitmap,
            self._pend_epoch,
            self._pend_seq,
            MAX_SEQ_JUMP if bounded else _UNBOUNDED,
            SEQ_LIMIT if bounded else _UNBOUNDED,
            MAX_EPOCH_JUMP if bounded else _UNBOUNDED,
            min(max(int(now_s), 0), EPOCH_LIMIT) + EPOCH_SKEW_S if now_s is not None else 0,
            EPOCH_LIMIT if bounded else _UNBOUNDED,
            verdict,
        )
        return verdict

    def admit(
        self, dev: npt.NDArray[np.int32], epoch: npt.NDArray[np.int64],
        seq: npt.NDArray[np.int64], now_s: int | None = None,
    ) -> npt.NDArray[np.bool_]:
        admitted: npt.NDArray[np.bool_] = self.classify(dev, epoch, seq, now_s) == ADMITTED
        return admitted
