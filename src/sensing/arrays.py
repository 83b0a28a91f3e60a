"""Preallocated state arrays that grow in place as devices are added."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def next_capacity(capacity: int, n: int) -> int:
    """Rows to allocate for at least `n` when `capacity` is too few: a quarter more (or `n`,
    if more). Not doubled: the state of 100,000 devices is a few hundred bytes each, and a
    doubling would leave up to half of it unused (and hold old and new while copying)."""
    return max(n, capacity + capacity // 4)


def grown(a: npt.NDArray[Any], n: int, fill: object = 0) -> npt.NDArray[Any]:
    """`a` with room for at least `n` rows (`next_capacity`), the new rows set to `fill`.
    Returns `a` itself when it is large enough already."""
    cap = a.shape[0]
    if n <= cap:
        return a
    extra = np.full((next_capacity(cap, n) - cap, *a.shape[1:]), fill, dtype=a.dtype)
    return np.concatenate([a, extra])
