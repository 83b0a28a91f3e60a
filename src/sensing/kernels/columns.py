"""Whole-batch checks and lookups that numpy would do in several passes."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def batch_bounds(dev: np.ndarray, kind: np.ndarray, value_row: np.ndarray,
                 value_channel: np.ndarray) -> tuple[int, int, int, int, int, int]:
    """(lowest device, highest device, highest kind, lowest value row, highest value row,
    lowest channel), in one pass; an empty array gives 0 for its lowest and -1 for its
    highest."""
    dev_lo, dev_hi, kind_hi = 0, -1, -1
    if dev.shape[0]:
        dev_lo = dev_hi = int(dev[0])
        kind_hi = int(kind[0])
    for i in range(dev.shape[0]):
        d = int(dev[i])
        dev_lo = min(dev_lo, d)
        dev_hi = max(dev_hi, d)
        kind_hi = max(kind_hi, int(kind[i]))
    row_lo, row_hi, chan_lo = 0, -1, 0
    if value_row.shape[0]:
        row_lo = row_hi = int(value_row[0])
        chan_lo = int(value_channel[0])
    for j in range(value_row.shape[0]):
        r = int(value_row[j])
        row_lo = min(row_lo, r)
        row_hi = max(row_hi, r)
        chan_lo = min(chan_lo, int(value_channel[j]))
    return dev_lo, dev_hi, kind_hi, row_lo, row_hi, chan_lo


@njit(cache=True, nogil=True)
def take(table: np.ndarray, index: np.ndarray, out: np.ndarray) -> int:
    """out[i] = table[index[i]] (numpy's fancy indexing, without its per-call set-up); returns
    the position of the first index outside the table, or -1 when all are inside."""
    n = table.shape[0]
    for i in range(index.shape[0]):
        j = index[i]
        if j < 0 or j >= n:
            return i
        out[i] = table[j]
    return -1
