"""Checks of byte spans (start, end) of one buffer, as the kernels that read them expect."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def first_span_outside(size: int, starts: np.ndarray, ends: np.ndarray) -> int:
    """The index of the first span that is not 0 <= start <= end <= size, or -1."""
    for i in range(starts.shape[0]):
        if not 0 <= starts[i] <= ends[i] <= size:
            return i
    return -1
