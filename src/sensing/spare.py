"""Large arrays a step needs afresh each time, kept for the next step once it is done with them.

The core has glibc map every block over 256 kB on its own and unmap it when freed
(`sensing.process.give_freed_memory_back`), so a fresh multi-megabyte array costs a page fault
per 4 kB page written, every step. Measured: Received.concat of a 4 MB step took 2.6 ms of CPU
so, 0.4 ms in a block used before. A `Spares` hands out views of arrays it keeps, taking back
an array only when nothing else refers to it any more (CPython's reference count says so: a
view, a memoryview or an object holding one keeps it taken), so reuse can never overwrite what
someone still reads.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import numpy.typing as npt

_FREE = 2
"""references to a kept array nothing else holds: the list's, and getrefcount's argument"""


class Spares:
    """At most `keep` arrays of one dtype, each handed out as a view of the size asked for."""

    def __init__(self, dtype: npt.DTypeLike, keep: int = 2) -> None:
        self.dtype = np.dtype(dtype)
        self.keep = keep
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def empty(self, size: int) -> np.ndarray:
        """An uninitialised array of `size` elements: a view of a kept array that is free and
        large enough, else of a new one (kept in place of a free one, or if there is room)."""
        kept = self._arrays
        with self._lock:
            free = -1
            for i in range(len(kept)):  # by index: a name bound to an array is a reference
                if sys.getrefcount(kept[i]) == _FREE:
                    if kept[i].shape[0] >= size:
                        return kept[i][:size]
                    free = i
            fresh = np.empty(size + size // 4, self.dtype)  # room for a larger step next
            if free >= 0:
                kept[free] = fresh
            elif len(kept) < self.keep:
                kept.append(fresh)
            return fresh[:size]
