"""Per-device anti-replay window over (epoch, seq), in the style of RFC 4303 / RFC 6479.

State per device d: `cur_epoch[d]`, `top[d]` (highest seq admitted in that epoch, -1 if none) and
`bitmap[d]`, WINDOW_BITS bits where bit (s % WINDOW_BITS) marks seq s as seen for
top - WINDOW_BITS < s <= top.
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
    verdict: np.ndarray,
) -> int:
    """Classify readings in arrival order into `verdict`; returns how many were admitted."""
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
        if e > cur_epoch[d]:
            cur_epoch[d] = e
            top[d] = -1
            for w in range(WINDOW_WORDS):
                bitmap[d, w] = 0
        elif e < cur_epoch[d]:
            verdict[i] = TOO_OLD
            continue
        t = top[d]
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
