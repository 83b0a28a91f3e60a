"""The engine's two gates in front of the detectors: event-time order and sensor faults.

`gate_batch` keeps, per device `d`, `newest[d]`: the event time of the newest reading the
engine has been given from it (-1: none). A reading strictly older than that (at its arrival,
in arrival order) is *late*: it is stored, but no detector sees it, so it can neither raise,
clear, re-raise nor advance any condition, and every hold and duration runs forward on the
device's own event time. A reading stamped the same as the newest is not late.

A threshold rule sees no value that is *gated* (it neither raises nor clears):

- a value impossible for its channel: outside the range, or not whole where it must be, of
  an impossible-value check of the device's kind and the value's channel, in the parameters of
  the device's own profile;
- any value of a channel while a fault check of that channel (impossible, stuck, drift) has
  its fault raised on the device: `fault_bits[d]` has bit `b` set while the fault check with
  bit `b` among its kind's fault checks is raised, and `mask[key]` holds the bits of the
  checks watching the key's channel. The checks' level changes of the batch (`ev_*`, by row)
  are applied in arrival order: before the values of a reading, every change at that reading
  or earlier, so the reading that raises a fault is gated and the one that clears it is not.

The threshold kernel (`sensing.kernels.threshold`) asks only about the values that reach a rule
(few: a value short of every threshold with no rule busy is passed over first), and calls out
(`catch_up`, `impossible_for`, whose array arguments cost reference counting at every call)
only when a change is due or a value is implausible in some profile: the gate costs next to
nothing. Its tables, per key of the caller's key space:
`plain[key]`, a range every profile of every impossible-value check of the key finds
plausible (`sensing.kernels.checks.PLAIN`); the key's impossible-value checks
`imp_ptr[key]:imp_ptr[key + 1]`, each with its row `imp_row` in `imp_p[row, profile]` and its
column `imp_slot` in `imp_prof[d, slot]`, the device's profile (the check bank's tables).
`fault_gate` is the same gate over a whole batch at once, for the rules run one by one.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sensing.kernels.fault import impossible
from sensing.kernels.jit import ix

GATED = 0
"""`gate_batch`: the batch passed its checks"""
UNKNOWN_DEVICE = 1
"""`gate_batch`: a device index is negative or outside the kinds table or the clock"""
ROW_OUTSIDE = 2
"""`gate_batch`: a value's reading is outside the batch"""
NEGATIVE_CHANNEL = 3
"""`gate_batch`: a value's channel index is negative"""


@njit(cache=True, nogil=True)
def gate_batch(dev: np.ndarray, ts: np.ndarray, value_row: np.ndarray,
               value_channel: np.ndarray, device_kind: np.ndarray, newest: np.ndarray,
               kind: np.ndarray, late: np.ndarray) -> tuple[int, int, int, int]:
    """What the engine does with a batch before its detectors, in one call: check every index
    the banks will use unchecked, then look up each reading's kind (`kind[i] =
    device_kind[dev[i]]`) and mark `late[i]` for each reading older than its device's
    newest (which the others move forward, in arrival order). Returns (status, late
    readings, highest device index, highest kind); a status other than `GATED` changes
    nothing (the late readings and the highest kind are then 0 and -1)."""
    n = dev.shape[0]
    # plain minimum and maximum, in the columns' own 32 bits: the compiler vectorises them
    dev_lo, dev_hi = np.int32(0), np.int32(-1)
    for i in range(n):
        dev_lo = min(dev_lo, dev[i])
        dev_hi = max(dev_hi, dev[i])
    hi = int(dev_hi)
    if dev_lo < 0 or hi >= min(device_kind.shape[0], newest.shape[0]):
        return UNKNOWN_DEVICE, 0, hi, -1
    row_lo, row_hi, chan_lo = np.int32(0), np.int32(-1), np.int32(0)
    for j in range(value_row.shape[0]):
        row_lo = min(row_lo, value_row[j])
        row_hi = max(row_hi, value_row[j])
        chan_lo = min(chan_lo, value_channel[j])
    if row_lo < 0 or row_hi >= n:
        return ROW_OUTSIDE, 0, hi, -1
    if chan_lo < 0:
        return NEGATIVE_CHANNEL, 0, hi, -1
    n_late = 0
    kind_hi = -1
    for i in range(n):
        d = ix(dev[i])
        k = device_kind[d]
        kind[i] = k
        kind_hi = max(kind_hi, k)
        t = ts[i]
        if t < newest[d]:
            late[i] = True
            n_late += 1
        else:
            late[i] = False
            newest[d] = t
    return GATED, n_late, hi, kind_hi


@njit(cache=True, nogil=True)
def flip(fault_bits: np.ndarray, n_open: np.ndarray, d: int, bit: int, up: bool) -> None:
    """Set (`up`) or clear one fault bit of device `d`, counting the bits set in `n_open`."""
    b = np.uint32(bit)
    was = fault_bits[d] & b != 0
    if up and not was:
        fault_bits[d] |= b
        n_open[0] += 1
    elif was and not up:
        fault_bits[d] &= ~b
        n_open[0] -= 1


@njit(cache=True, nogil=True)
def catch_up(dev: np.ndarray, fault_bits: np.ndarray, n_open: np.ndarray,
             ev_row: np.ndarray, ev_bit: np.ndarray, ev_level: np.ndarray, e: int,
             row: int) -> int:
    """Apply the changes from `e` on at readings up to `row`; return the next change."""
    while e < ev_row.shape[0] and ev_row[e] <= row:
        flip(fault_bits, n_open, ix(dev[ix(ev_row[e])]), ev_bit[e], ev_level[e] > 0)
        e += 1
    return e


@njit(cache=True, nogil=True)
def impossible_for(d: int, key: int, v: float, imp_ptr: np.ndarray, imp_row: np.ndarray,
                   imp_slot: np.ndarray, imp_p: np.ndarray, imp_prof: np.ndarray) -> bool:
    """Whether `v` is impossible for an impossible-value check of `key` in device `d`'s
    profile (asked only of a value some profile finds implausible: rare)."""
    profiled = imp_p.shape[1] > 1
    for q in range(imp_ptr[key], imp_ptr[key + 1]):
        p = ix(imp_prof[d, ix(imp_slot[q])] if profiled else 0)
        if impossible(imp_p[ix(imp_row[q]), p], v):
            return True
    return False


@njit(cache=True, nogil=True)
def fault_gate(
    dev: np.ndarray, kind: np.ndarray, value_row: np.ndarray, value_channel: np.ndarray,
    value: np.ndarray, width: int,
    fault_bits: np.ndarray, mask: np.ndarray, n_open: np.ndarray,
    ev_row: np.ndarray, ev_bit: np.ndarray, ev_level: np.ndarray,
    plain: np.ndarray, imp_ptr: np.ndarray, imp_row: np.ndarray, imp_slot: np.ndarray,
    imp_p: np.ndarray, imp_prof: np.ndarray, out: np.ndarray,
) -> int:
    """Mark `out[w]` for each gated value, keyed `kind * width + channel` (channels `>=
    width` are never gated); return how many. Applies the changes `ev_*` (sorted by row) to
    `fault_bits` and `n_open[0]`, the number of bits set."""
    n_gated = 0
    e = 0
    for w in range(value.shape[0]):
        i = ix(value_row[w])
        e = catch_up(dev, fault_bits, n_open, ev_row, ev_bit, ev_level, e, i)
        k = kind[i]
        c = value_channel[w]
        out[w] = False
        if k < 0 or c >= width:
            continue
        d = ix(dev[i])
        key = ix(k * width + c)
        v = value[w]
        out[w] = (n_open[0] > 0 and fault_bits[d] & mask[key] != 0) or (
            impossible(plain[key], v)
            and impossible_for(d, key, v, imp_ptr, imp_row, imp_slot, imp_p, imp_prof))
        n_gated += out[w]
    catch_up(dev, fault_bits, n_open, ev_row, ev_bit, ev_level, e, dev.shape[0])
    return n_gated
