"""Preallocated state arrays that grow in place as devices are added."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def grown(a: npt.NDArray[Any], n: int, fill: object = 0) -> npt.NDArray[Any]:
    """`a` with room for at least `n` rows: doubled (or to `n`, if more), the new rows set to
    `fill`. Returns `a` itself when it is large enough already."""
    cap = a.shape[0]
    if n <= cap:
        return a
    extra = np.full((max(n, 2 * cap) - cap, *a.shape[1:]), fill, dtype=a.dtype)
    return np.concatenate([a, extra])
