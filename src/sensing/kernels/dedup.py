"""Per-device anti-replay window over (epoch, seq), in the style of RFC 4303 / RFC 6479, with
bounds on how far ahead a reading may move it.

State per device d: `cur_epoch[d]`, `top[d]` (highest seq admitted in that epoch, -1 if none) and
`bitmap[d]`, WINDOW_BITS bits where bit (s % WINDOW_BITS) marks seq s as seen for
top - WINDOW_BITS < s <= top.

Bounds (a window moved far ahead by one reading would call every later genuine reading of the
device too old, and detection would never see it again):

- `seq >= seq_limit` or `epoch >= epoch_limit` is always refused (SEQ_JUMP / EPOCH_JUMP).
- EPOCH_JUMP: an epoch more than `max_epoch_jump` above the current one (0 for a device never
  seen) that is also later than `epoch_ceiling` (the wall clock in Unix seconds plus the
  clock-skew allowance: edge agents take max(previous + 1, Unix seconds) as their epoch).
- SEQ_JUMP: in the current epoch, a seq more than `max_seq_jump` above `top`; a new epoch of a
  device already seen that opens with a seq above `max_seq_jump` (its seqs count from 0). A
  device never seen may open with any seq below `seq_limit` (the core may meet it mid-epoch).
- A refused jump is remembered per device (`pend_epoch`, `pend_seq`); the next refused jump of
  the same epoch with a seq above it by at most WINDOW_BITS confirms it and is admitted: a
  single outlier never moves the window, a device that really went that far ahead (an agent
  that lost more than its buffer in an outage, a clock that ran ahead) is believed on its
  second reading. Repeats of the outlier do not confirm it.

Refused readings change nothing but the pending jump.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sensing.kernels.jit import ix
from sensing.kernels.memory import prefetch

WINDOW_WORDS = 16
WINDOW_BITS = WINDOW_WORDS * 64

DUPLICATE = np.int8(0)
ADMITTED = np.int8(1)
TOO_OLD = np.int8(2)
"""Older than the window or from an earlier epoch: cannot be proven new or repeated."""
SEQ_JUMP = np.int8(3)
"""seq too far ahead of the device's window (or beyond seq_limit): refused"""
EPOCH_JUMP = np.int8(4)
"""epoch too far ahead of the device's current one and of the clock (or beyond epoch_limit)"""
DEDUP_AHEAD = 8
"""readings: 100,000 devices in random order, 0.23 -> 0.16 ms a batch of 10,000"""


@njit(cache=True, nogil=True)
def dedup_window(
    dev: np.ndarray,
    epoch: np.ndarray,
    seq: np.ndarray,
    cur_epoch: np.ndarray,
    top: np.ndarray,
    bitmap: np.ndarray,
    pend_epoch: np.ndarray,
    pend_seq: np.ndarray,
    max_seq_jump: int,
    seq_limit: int,
    max_epoch_jump: int,
    epoch_ceiling: int,
    epoch_limit: int,
    verdict: np.ndarray,
) -> int:
    """Classify readings in arrival order into `verdict`; returns how many were admitted.
    `epoch` and `seq` must be non-negative (the wrapper checks)."""
    admitted = 0
    n = dev.shape[0]
    for i in range(n):
        if i + DEDUP_AHEAD < n:  # ask for the state of a reading ahead (sensing.kernels.memory)
            a = ix(dev[i + DEDUP_AHEAD])
            prefetch(cur_epoch, a, 0)
            prefetch(top, a, 0)
            prefetch(bitmap, a, ix((seq[i + DEDUP_AHEAD] % WINDOW_BITS) >> 6))
        d = ix(dev[i])
        e = epoch[i]
        s = seq[i]
        if s >= seq_limit:
            verdict[i] = SEQ_JUMP
            continue
        if e >= epoch_limit:
            verdict[i] = EPOCH_JUMP
            continue
        c = cur_epoch[d]
        if e < c:
            verdict[i] = TOO_OLD
            continue
        t = top[d]
        jump = ADMITTED
        if e > c:
            if e - c > max_epoch_jump and e > epoch_ceiling:
                jump = EPOCH_JUMP
            elif t >= 0 and s > max_seq_jump:
                jump = SEQ_JUMP
        elif t >= 0 and s - t > max_seq_jump:
            jump = SEQ_JUMP
        if jump != ADMITTED:
            p = pend_seq[d]
            if pend_epoch[d] == e and p < s and s - p <= WINDOW_BITS:
                pend_epoch[d] = -1  # confirmed: the device really is there
                pend_seq[d] = -1
            else:
                pend_epoch[d] = e
                pend_seq[d] = s
                verdict[i] = jump
                continue
        if e > c:
            cur_epoch[d] = e
            t = -1
            top[d] = -1
            for w in range(WINDOW_WORDS):
                bitmap[d, w] = 0
        if s > t:
            if t < 0 or s - t >= WINDOW_BITS:
                for w in range(WINDOW_WORDS):
                    bitmap[d, w] = 0
            else:
                for x in range(t + 1, s):
                    b = x % WINDOW_BITS
                    bitmap[d, ix(b >> 6)] &= ~(np.uint64(1) << np.uint64(b & 63))
            top[d] = s
        elif t - s >= WINDOW_BITS:
            verdict[i] = TOO_OLD
            continue
        b = s % WINDOW_BITS
        word = ix(b >> 6)
        mask = np.uint64(1) << np.uint64(b & 63)
        if s <= t and bitmap[d, word] & mask:
            verdict[i] = DUPLICATE
            continue
        bitmap[d, word] |= mask
        verdict[i] = ADMITTED
        admitted += 1
    return admitted
