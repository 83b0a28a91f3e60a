"""Byte spans of one buffer compared with names of a packed table."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def spans_equal(data: np.ndarray, start: np.ndarray, end: np.ndarray, table: np.ndarray,
                offsets: np.ndarray, ids: np.ndarray, out: np.ndarray) -> None:
    """out[i]: whether data[start[i]:end[i]] is name ids[i] of the table, the bytes of name k
    being table[offsets[k]:offsets[k + 1]]. A negative start (no span) is True."""
    for i in range(start.shape[0]):
        a = start[i]
        if a < 0:
            out[i] = True
            continue
        k = ids[i]
        lo = offsets[k]
        n = offsets[k + 1] - lo
        if end[i] - a != n:
            out[i] = False
            continue
        same = True
        for j in range(n):
            if data[a + j] != table[lo + j]:
                same = False
                break
        out[i] = same
