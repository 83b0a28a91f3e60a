"""A growing table of names packed into one array of bytes, as kernels read names."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from sensing.arrays import grown


def _utf8(name: str) -> bytes:
    return name.encode()


class PackedNames:
    """The names of a table that only grows at its end (as the registry's do), packed and
    kept up with it by `sync`: the bytes of name k are `table[offsets[k]:offsets[k + 1]]`,
    made by `encode` (UTF-8 by default). Growing copies what is packed a quarter at a time,
    not on every new name."""

    def __init__(self, names: Sequence[str],
                 encode: Callable[[str], bytes] = _utf8) -> None:
        self.names = names
        self.encode = encode
        self._arena = np.zeros(0, dtype=np.uint8)
        self._ends = np.zeros(1, dtype=np.int64)
        self.table: npt.NDArray[np.uint8] = self._arena
        self.offsets: npt.NDArray[np.int64] = self._ends
        self.longest = 0
        """bytes of the longest name packed"""

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def sync(self) -> None:
        """Pack the names added since the last call. If `encode` raises, nothing new is
        packed and the exception propagates."""
        known, n = len(self), len(self.names)
        if n == known:
            return
        if n < known:
            raise ValueError("a packed name table must only grow")
        new = [self.encode(name) for name in self.names[known:n]]
        lengths = np.fromiter(map(len, new), dtype=np.int64, count=len(new))
        start = int(self.offsets[-1])
        ends = start + np.cumsum(lengths)
        used = int(ends[-1])
        self._arena = grown(self._arena, used)
        self._arena[start:used] = np.frombuffer(b"".join(new), dtype=np.uint8)
        self._ends = grown(self._ends, n + 1)
        self._ends[known + 1:n + 1] = ends
        self.table = self._arena[:used]
        self.offsets = self._ends[:n + 1]
        self.longest = max(self.longest, int(lengths.max()))
