"""Byte spans (start, end) of one buffer and positions in it, for the kernels that read them."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def at(pos: int) -> np.uint64:
    """A position in a buffer (never negative) as an unsigned index: numba then skips the
    check for a negative index counting from the end. On every byte the JSON lane reads, that
    check cost a sixth of its time."""
    return np.uint64(pos)


@njit(cache=True, nogil=True)
def span_bytes(size: int, starts: np.ndarray, ends: np.ndarray) -> tuple[int, int]:
    """(the index of the first span that is not 0 <= start <= end <= size, or -1 when all
    are; the bytes of the spans up to it)."""
    total = 0
    for i in range(starts.shape[0]):
        if not 0 <= starts[i] <= ends[i] <= size:
            return i, total
        total += ends[i] - starts[i]
    return -1, total
