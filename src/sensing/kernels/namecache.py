"""A cache of names' ids: an open-addressing table (linear probing) from (key, the name's
bytes) to an int32 id, in arrays its owner preallocates and fills (sensing.wire.name_cache).

Slot s holds an entry when slot_id[s] >= 0 (EMPTY otherwise): its key slot_key[s] and its
name arena[slot_start[s]:slot_start[s] + slot_length[s]]. Entries are never removed one by
one (the owner clears the table wholly), and an entry lies at most MAX_PROBE slots after
where its probe starts: names made to share a start (the hash is no secret) cost a bounded
search, and the ones beyond it are not cached. A key is the caller's (a hash of the name,
mixed with what the name belongs to); equal keys of different names are told apart by their
bytes.
"""

from __future__ import annotations

import numpy as np

from sensing.kernels.jit import njit_without_refcounts

EMPTY = -1
MAX_PROBE = 64


@njit_without_refcounts
def first_slot(key: int, mask: int) -> int:
    """Where the probe for `key` starts: its bits folded down (a key made of a small salt and
    a hash still spreads), masked to the table's power-of-two size."""
    return (key ^ (key >> 23) ^ (key >> 41)) & mask


@njit_without_refcounts
def _holds(slot: int, key: int, buf: np.ndarray, start: int, length: int,
           slot_key: np.ndarray, slot_start: np.ndarray, slot_length: np.ndarray,
           arena: np.ndarray) -> bool:
    """Whether the entry in `slot` is (key, buf[start:start + length])."""
    if slot_key[slot] != key or slot_length[slot] != length:
        return False
    at = slot_start[slot]
    for i in range(length):  # noqa: SIM110 (numba compiles no generator into all())
        if arena[at + i] != buf[start + i]:
            return False
    return True


@njit_without_refcounts
def find_slot(buf: np.ndarray, start: int, end: int, key: int, slot_key: np.ndarray,
              slot_id: np.ndarray, slot_start: np.ndarray, slot_length: np.ndarray,
              arena: np.ndarray) -> tuple[int, bool]:
    """(slot, found): the slot of the entry (key, buf[start:end]), or the empty slot where it
    would go, EMPTY if none is within MAX_PROBE slots."""
    mask = slot_id.shape[0] - 1
    slot = first_slot(key, mask)
    for _ in range(min(MAX_PROBE, slot_id.shape[0])):
        if slot_id[slot] == EMPTY:
            return slot, False
        if _holds(slot, key, buf, start, end - start, slot_key, slot_start, slot_length, arena):
            return slot, True
        slot = (slot + 1) & mask
    return EMPTY, False


@njit_without_refcounts
def lookup(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, keys: np.ndarray,
           slot_key: np.ndarray, slot_id: np.ndarray, slot_start: np.ndarray,
           slot_length: np.ndarray, arena: np.ndarray, out: np.ndarray) -> int:
    """out[i] = the id of (keys[i], buf[starts[i]:ends[i]]), EMPTY if the table has none
    (spans checked by the caller to lie in buf); returns how many were found."""
    found = 0
    for i in range(starts.shape[0]):
        slot, hit = find_slot(buf, starts[i], ends[i], keys[i], slot_key, slot_id, slot_start,
                              slot_length, arena)
        if hit:
            out[i] = slot_id[slot]
            found += 1
        else:
            out[i] = EMPTY
    return found
