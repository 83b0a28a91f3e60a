"""Ids of names (device ids, kinds, channels) by their bytes in a buffer, many in one call: a
bounded cache of the slow path's decisions for the JSON fast lane (sensing.kernels.namecache).

A key says whose name it is: `salted_keys(hashes, salt)` mixes a name's hash
(json_columns.name_hash, as the lane gives it) with e.g. a gateway's id, so that the same
device id under two gateways is two entries. Lookups compare the bytes, so two names of one
key (a hash collision) never share an id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from sensing.kernels import namecache
from sensing.kernels.spans import span_bytes

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Keys = npt.NDArray[np.int64] | npt.NDArray[np.uint64]

_GOLDEN = 0x9E3779B97F4A7C15
_INT32_MAX = 2**31 - 1


def _signed64(x: int) -> int:
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


def _signed_keys(keys: Keys) -> I64:
    """Keys as int64: uint64 ones reinterpreted (the same bits)."""
    if keys.dtype == np.uint64:
        return np.ascontiguousarray(keys).view(np.int64)
    return np.ascontiguousarray(keys, dtype=np.int64)


def salted_key(name_hash: int, salt: int) -> int:
    """The key of a name with this hash, salted (e.g. with its gateway's id)."""
    return _signed64(name_hash ^ (salt * _GOLDEN))


def salted_keys(hashes: I64, salt: int) -> I64:
    """salted_key of each hash, for one salt."""
    return np.bitwise_xor(np.asarray(hashes, dtype=np.int64),
                          np.int64(_signed64(salt * _GOLDEN)))


class NameCache:
    """(key, name bytes) -> id (0 .. 2^31 - 1), at most `max_entries` entries of at most
    `max_bytes` bytes of names in all. Inserting beyond either bound first clears the cache
    wholly (it only remembers what the slow path decided: a miss costs that path again).
    Memory: a 32-byte row per slot, the table doubling from `initial_slots` so that at least
    half of its slots stay free (under 128 bytes per entry), and the bytes of the names; the
    names' room is `max_bytes` of zeros, whose pages the system provides as they are first
    written."""

    def __init__(self, max_entries: int = 1 << 18, max_bytes: int = 1 << 24,
                 initial_slots: int = 1 << 10) -> None:
        if not (0 < max_entries <= 1 << 30 and 0 < max_bytes <= 1 << 40):
            raise ValueError("max_entries must be in 1 .. 2^30, max_bytes in 1 .. 2^40")
        if initial_slots < 2 or initial_slots & (initial_slots - 1):
            raise ValueError("initial_slots must be a power of two, at least 2")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_slots = 1 << (2 * max_entries - 1).bit_length()  # half of them stay free
        self.initial_slots = min(initial_slots, self.max_slots)
        self._table = np.zeros((self.initial_slots, namecache.ROW), dtype=np.int64)
        self._arena = np.zeros(max_bytes, dtype=np.uint8)
        self._entries = 0
        self._bytes = 0
        self.clears = 0
        """how often the cache was cleared because it was full"""

    def __len__(self) -> int:
        return self._entries

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def lookup(self, buf: U8, keys: Keys, starts: I64, ends: I64) -> I32:
        """The id of each (keys[i], buf[starts[i]:ends[i]]), -1 where the cache has none.
        Keys are int64 or uint64 (the same bits). Raises ValueError if the arrays do not
        match or a span does not lie in buf."""
        if buf.dtype != np.uint8 or buf.ndim != 1:
            raise ValueError(f"buf must be a 1-D uint8 array, got {buf.dtype} of {buf.ndim} dims")
        starts = np.ascontiguousarray(starts, dtype=np.int64)
        ends = np.ascontiguousarray(ends, dtype=np.int64)
        signed = _signed_keys(keys)
        if starts.ndim != 1 or not starts.shape == ends.shape == signed.shape:
            raise ValueError(f"starts, ends and keys must be 1-D of one length, got shapes "
                             f"{starts.shape}, {ends.shape} and {signed.shape}")
        outside, _ = span_bytes(buf.shape[0], starts, ends)
        if outside >= 0:
            raise ValueError(f"span {outside} ({starts[outside]}, {ends[outside]}) is not "
                             f"inside the buffer of {buf.shape[0]} bytes")
        out = np.empty(starts.shape[0], dtype=np.int32)
        namecache.lookup(buf, starts, ends, signed, self._table, self._arena, out)
        return out

    def get(self, key: int | np.integer[Any], name: bytes) -> int:
        """The id of (key, name), -1 if the cache has none."""
        slot, found = self._find(key, name)
        return int(self._table[slot, namecache.T_ID_1]) - 1 if found else namecache.EMPTY

    def insert(self, key: int | np.integer[Any], name: bytes, ident: int) -> bool:
        """Remember (key, name) -> ident, replacing an id it had; False (nothing remembered)
        when the name alone is longer than max_bytes (or namecache.MAX_NAME), or when
        namecache.MAX_PROBE entries already crowd the slots where it would go (names made to
        collide). A key is a 64-bit integer, signed or unsigned (the same bits: 2^64 - 1 is
        -1)."""
        if not 0 <= ident <= _INT32_MAX:
            raise ValueError(f"an id must be in 0 .. 2^31 - 1, got {ident}")
        slot, found = self._find(key, name)
        if found:
            self._table[slot, namecache.T_ID_1] = ident + 1
            return True
        if len(name) > min(self.max_bytes, namecache.MAX_NAME) or slot == namecache.EMPTY:
            return False
        if self._entries == self.max_entries or self._bytes + len(name) > self.max_bytes:
            self.clear()
            self.clears += 1
            slot, _ = self._find(key, name)
        elif 2 * (self._entries + 1) > self._table.shape[0]:
            self._grow()
            slot, _ = self._find(key, name)
            if slot == namecache.EMPTY:
                return False
        raw = np.frombuffer(name, dtype=np.uint8)
        self._arena[self._bytes:self._bytes + len(name)] = raw
        self._table[slot] = (_signed64(int(key)), self._bytes << 16 | len(name), ident + 1,
                             namecache.head(raw, 0, len(name)))
        self._entries += 1
        self._bytes += len(name)
        return True

    @property
    def slots(self) -> int:
        return int(self._table.shape[0])

    def clear(self) -> None:
        """Forget every entry."""
        self._table = np.zeros((self.initial_slots, namecache.ROW), dtype=np.int64)
        self._entries = 0
        self._bytes = 0

    def _grow(self) -> None:
        bigger = np.zeros((2 * self._table.shape[0], namecache.ROW), dtype=np.int64)
        # an entry that would now lie beyond its probe is forgotten (its bytes stay counted)
        self._entries -= namecache.rehash(self._table, bigger)
        self._table = bigger

    def _find(self, key: int | np.integer[Any], name: bytes) -> tuple[int, bool]:
        if not -(2**63) <= int(key) < 2**64:
            raise ValueError(f"a key must be a 64-bit integer, got {key}")
        slot, found = namecache.find_slot(np.frombuffer(name, dtype=np.uint8), 0, len(name),
                                          _signed64(int(key)), self._table, self._arena)
        return int(slot), bool(found)
