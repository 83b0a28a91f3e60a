"""How the kernels are compiled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit

_F = TypeVar("_F", bound=Callable[..., Any])


def njit_without_refcounts(fn: _F) -> _F:
    """njit without the runtime's reference counting, hence without allocation (which the
    compiler enforces), for hot functions that call helpers with arrays or records: with it,
    every such call costs atomic increments and decrements of each array passed, often more
    than the helper's own work. Everything it calls must be compiled the same way."""
    compile_: Any = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
    return cast(_F, compile_(fn))


@njit(cache=True, nogil=True)
def ix(x: int | np.integer[Any]) -> int:
    """`x` (known not to be negative) as an array index numba need not check: it lets a
    negative signed index count from the end, with a compare and a select per index and
    dimension. In the banks' loops, indexing with unsigned integers made them up to twice as
    fast. Unsigned 32 bits, since numba turns mixed int64 and uint64 arithmetic into floats."""
    return np.uint32(x)  # type: ignore[return-value]
