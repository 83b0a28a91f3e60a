"""The engine's two gates in front of the detectors: event-time order and sensor faults.

`late_readings` keeps, per device `d`, `newest[d]`: the event time of the newest reading the
engine has been given from it (-1: none). A reading strictly older than that (at its arrival,
in arrival order) is *late*: it is stored, but no detector sees it, so it can neither raise,
clear, re-raise nor advance any condition, and every hold and duration runs forward on the
device's own event time. A reading stamped the same as the newest is not late.

`fault_gate` marks the values that no threshold rule may see (they neither raise nor clear):

- a value impossible for its channel: outside the range, or not whole where it must be, of
  an impossible-value check of the device's kind and the value's channel, in the parameters of
  the device's own profile (the check bank's tables, see `sensing.kernels.checks`: routing
  `route_ptr`/`route_check` by `key = kind * width + channel`, impossible-value checks first
  within a key, `check_param`/`check_slot`, `impossible_p[row, profile]`,
  `impossible_prof[d, slot]`, and `plain[key]`, a range every profile finds plausible);
- any value of a channel while a fault check of that channel (impossible, stuck, drift) has
  its fault raised on the device: `fault_bits[d]` has bit `b` set while the fault check with
  bit `b` among its kind's fault checks is raised, and `fault_mask[kind * fault_width +
  channel]` holds the bits of the checks watching that channel. The checks' level changes of
  the batch (`ev_*`, by row) are applied in arrival order: before the values of a reading,
  every change at that reading or earlier, so the reading that raises a fault is gated and the
  one that clears it is not.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sensing.kernels.checks import IMPOSSIBLE
from sensing.kernels.fault import impossible
from sensing.kernels.jit import ix


@njit(cache=True, nogil=True)
def late_readings(dev: np.ndarray, ts: np.ndarray, newest: np.ndarray, late: np.ndarray
                  ) -> int:
    """Mark `late[i]` for each reading older than its device's newest (which the others move
    forward, in arrival order); return how many are late."""
    n_late = 0
    for i in range(dev.shape[0]):
        d = ix(dev[i])
        t = ts[i]
        if t < newest[d]:
            late[i] = True
            n_late += 1
        else:
            late[i] = False
            newest[d] = t
    return n_late


@njit(cache=True, nogil=True)
def _flip(fault_bits: np.ndarray, n_open: np.ndarray, d: int, bit: int, up: bool) -> None:
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
def fault_gate(
    dev: np.ndarray, kind: np.ndarray, value_row: np.ndarray, value_channel: np.ndarray,
    value: np.ndarray,
    width: int, route_ptr: np.ndarray, route_check: np.ndarray, check_type: np.ndarray,
    check_param: np.ndarray, check_slot: np.ndarray, plain: np.ndarray,
    impossible_p: np.ndarray, impossible_prof: np.ndarray,
    fault_width: int, fault_mask: np.ndarray, fault_bits: np.ndarray, n_open: np.ndarray,
    ev_row: np.ndarray, ev_bit: np.ndarray, ev_level: np.ndarray,
    gated: np.ndarray,
) -> int:
    """Mark `gated[w]` for each value no threshold rule may see; return how many. Updates
    `fault_bits` with the changes `ev_*` (sorted by row; `ev_bit` the change's bit) and keeps
    `n_open[0]`, the number of bits set over all devices. `value_row` must not decrease."""
    n_gated = 0
    e = 0
    n_ev = ev_row.shape[0]
    profiled = impossible_p.shape[1] > 1
    prev_row = -1
    for w in range(value.shape[0]):
        i = ix(value_row[w])
        if i < prev_row:
            raise ValueError("value rows must not decrease")
        prev_row = i
        while e < n_ev and ev_row[e] <= i:
            _flip(fault_bits, n_open, ix(dev[ix(ev_row[e])]), ev_bit[e], ev_level[e] > 0)
            e += 1
        gated[w] = False
        k = kind[i]
        c = value_channel[w]
        if k < 0:
            continue
        v = value[w]
        bad = False
        if c < width:
            key = ix(k * width + c)
            if impossible(plain[key], v):  # implausible for some profile: ask the device's
                for q in range(route_ptr[key], route_ptr[key + 1]):
                    ch = ix(route_check[ix(q)])
                    if check_type[ch] != IMPOSSIBLE:
                        break
                    s = ix(check_slot[ch])
                    p = ix(impossible_prof[ix(dev[i]), s] if profiled else 0)
                    if impossible(impossible_p[ix(check_param[ch]), p], v):
                        bad = True
                        break
        if not bad and n_open[0] > 0 and c < fault_width:
            bad = fault_bits[ix(dev[i])] & fault_mask[ix(k * fault_width + c)] != 0
        if bad:
            gated[w] = True
            n_gated += 1
    for rest in range(e, n_ev):  # changes at readings after the last value
        _flip(fault_bits, n_open, ix(dev[ix(ev_row[rest])]), ev_bit[rest], ev_level[rest] > 0)
    return n_gated
