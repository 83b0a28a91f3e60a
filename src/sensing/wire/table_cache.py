"""What a remembered name table costs in memory, and a cache of them bounded in bytes.

Decoders hand out the same tuples of names for the same table (SNB batches repeat their
table), so several stages remember per-table work by the tuples' identity. A hostile client
can send a new large table with every message: every such cache is bounded by an estimate of
the bytes it holds, not only by its number of tables (issue 11, problem 4). No numpy here.
"""

from __future__ import annotations

from typing import Generic, TypeVar

NAME_OVERHEAD = 80
"""bytes a short str takes besides its characters (49 for the object, rounded up for the
allocator) plus its slot in a tuple or array"""
TABLE_OVERHEAD = 128

V = TypeVar("V")
Key = tuple[tuple[str, ...], ...]


SLOT_BYTES = 8
"""a tuple's slot for one name"""


def names_bytes(*tables: tuple[str, ...]) -> int:
    """An upper estimate of the memory that these tuples of names hold: a slot per name, each
    distinct str object once (a kind in every row of a table is one shared object, not a
    thousand), their characters (passes in C; only when a table is first remembered)."""
    return sum(TABLE_OVERHEAD + SLOT_BYTES * len(t)
               + (NAME_OVERHEAD - SLOT_BYTES) * len(set(map(id, t))) + sum(map(len, t))
               for t in tables)


class ByIdentity(Generic[V]):
    """Values by the identity of tuples of names, holding the tuples (so that their ids stay
    theirs), within `max_bytes` of estimated memory and `max_tables` entries: over either, it
    starts afresh (the usual traffic, a few tables repeated, refills it at once)."""

    def __init__(self, max_bytes: int = 64 << 20, max_tables: int = 4096) -> None:
        self._entries: dict[tuple[int, ...], tuple[Key, V, int]] = {}
        self.bytes = 0
        self.max_bytes = max_bytes
        self.max_tables = max_tables

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> V | None:
        hit = self._entries.get(tuple(map(id, key)))
        # the tuples held are the key's own (the same ids, alive): == finds that by identity,
        # element by element, without looking at a name
        if hit is None or hit[0] != key:
            return None
        return hit[1]

    def put(self, key: Key, value: V, extra_bytes: int = 0) -> V:
        """Remember `value` for `key`; `extra_bytes`: what the value holds besides the names."""
        cost = names_bytes(*key) + extra_bytes
        ident = tuple(map(id, key))
        old = self._entries.pop(ident, None)
        if old is not None:
            self.bytes -= old[2]
        if self.bytes + cost > self.max_bytes or len(self._entries) >= self.max_tables:
            self._entries.clear()
            self.bytes = 0
        if cost <= self.max_bytes:
            self._entries[ident] = (key, value, cost)
            self.bytes += cost
        return value
