"""A cache of names' ids: an open-addressing table (linear probing) from (key, the name's
bytes) to an int32 id, in arrays its owner preallocates and fills (sensing.wire.name_cache).

Row s of `table` is one slot: its key (T_KEY), its name's place in `arena` (T_SPAN: start
<< 16 | length), its id plus one (T_ID_1, 0 when the slot is free: a table of zeros is empty,
and its pages cost no memory until used) and its name's first HEAD_BYTES
bytes (T_HEAD), so that one row, one cache line, decides most probes, and a short name never
needs the arena. Entries are never removed one by one (the owner clears the table wholly),
and an entry lies at most MAX_PROBE slots after where its probe starts: names made to share a
start (the hash is no secret) cost a bounded search, and the ones beyond it are not cached. A
key is the caller's (a hash of the name, mixed with what the name belongs to); equal keys of
different names are told apart by their bytes.
"""

from __future__ import annotations

import numpy as np

from sensing.kernels.jit import njit_without_refcounts
from sensing.kernels.memory import PREFETCH_AHEAD, prefetch
from sensing.kernels.spans import at

EMPTY = -1
MAX_PROBE = 64
T_KEY, T_SPAN, T_ID_1, T_HEAD = range(4)
ROW = 4
HEAD_BYTES = 7
"""bytes of a name kept in its row (seven: the packed head stays a non-negative int64)"""
MAX_NAME = (1 << 16) - 1
"""the longest name the table holds (its length takes 16 bits of T_SPAN)"""


@njit_without_refcounts
def first_slot(key: int, mask: int) -> int:
    """Where the probe for `key` starts: its bits folded down (a key made of a small salt and
    a hash still spreads), masked to the table's power-of-two size."""
    return (key ^ (key >> 23) ^ (key >> 41)) & mask


@njit_without_refcounts
def head(buf: np.ndarray, start: int, end: int) -> int:
    """The first HEAD_BYTES bytes of buf[start:end] packed into an int."""
    packed = 0
    for i in range(min(end - start, HEAD_BYTES)):
        packed |= int(buf[at(start + i)]) << (8 * i)
    return packed


@njit_without_refcounts
def find_slot(buf: np.ndarray, start: int, end: int, key: int, table: np.ndarray,
              arena: np.ndarray) -> tuple[int, bool]:
    """(slot, found): the slot of the entry (key, buf[start:end]), or the free slot where it
    would go, EMPTY if none is within MAX_PROBE slots."""
    mask = table.shape[0] - 1
    slot = first_slot(key, mask)
    length = end - start
    packed = head(buf, start, end)
    for _ in range(min(MAX_PROBE, table.shape[0])):
        if table[slot, T_ID_1] == 0:
            return slot, False
        span = table[slot, T_SPAN]
        if (table[slot, T_KEY] == key and span & MAX_NAME == length
                and table[slot, T_HEAD] == packed):
            at_arena = span >> 16
            same = True
            for i in range(HEAD_BYTES, length):
                if arena[at(at_arena + i)] != buf[at(start + i)]:
                    same = False
                    break
            if same:
                return slot, True
        slot = (slot + 1) & mask
    return EMPTY, False


@njit_without_refcounts
def lookup(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, keys: np.ndarray,
           table: np.ndarray, arena: np.ndarray, out: np.ndarray) -> int:
    """out[i] = the id of (keys[i], buf[starts[i]:ends[i]]), EMPTY if the table has none
    (spans checked by the caller to lie in buf); returns how many were found."""
    found = 0
    n = starts.shape[0]
    mask = table.shape[0] - 1
    for i in range(n):
        if i + PREFETCH_AHEAD < n:  # the row a later name starts at, while this one is probed
            prefetch(table, first_slot(keys[i + PREFETCH_AHEAD], mask), 0)
        slot, hit = find_slot(buf, starts[i], ends[i], keys[i], table, arena)
        if hit:
            out[i] = table[slot, T_ID_1] - 1
            found += 1
        else:
            out[i] = EMPTY
    return found


@njit_without_refcounts
def rehash(old: np.ndarray, new: np.ndarray) -> int:
    """Move every entry of `old` into the empty, larger `new` at its probe's place there;
    returns how many would lie beyond MAX_PROBE slots of it and were left out."""
    mask = new.shape[0] - 1
    left_out = 0
    for s in range(old.shape[0]):
        if old[s, T_ID_1] == 0:
            continue
        slot = first_slot(old[s, T_KEY], mask)
        placed = False
        for _ in range(min(MAX_PROBE, new.shape[0])):
            if new[slot, T_ID_1] == 0:
                for c in range(ROW):
                    new[slot, c] = old[s, c]
                placed = True
                break
            slot = (slot + 1) & mask
        if not placed:
            left_out += 1
    return left_out
