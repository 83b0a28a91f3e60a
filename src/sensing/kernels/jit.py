"""How the kernels are compiled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from numba import njit

_F = TypeVar("_F", bound=Callable[..., Any])


def njit_without_refcounts(fn: _F) -> _F:
    """njit without the runtime's reference counting, hence without allocation (which the
    compiler enforces), for hot functions that call helpers with arrays or records: with it,
    every such call costs atomic increments and decrements of each array passed, often more
    than the helper's own work. Everything it calls must be compiled the same way."""
    compile_: Any = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
    return cast(_F, compile_(fn))
