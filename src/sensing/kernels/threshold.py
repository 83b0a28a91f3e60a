"""The threshold bank: every threshold rule of every kind over one batch, in one pass.

One rule watches one signal of the devices of one kind. Level k (0-based, up to MAX_LEVELS,
least severe first) is *met* by a device once its value has been on the alarm side of `thr[k]`
for at least `min_count[k]` consecutive readings and `dur_ms[k]` of event time. The device's
level rises to the highest met level at once, and falls only when the value crosses the reset
level `reset[lvl-1]` of its current level. `sign` is +1 for "alarm when above" and -1 for
"alarm when below". With `rate_ms` > 0 the signal is instead the rate of change per minute over
spans of at least that long: each reading at least `rate_ms` after the device's previous
reference point is compared with it and becomes the next reference point; readings in between
are skipped (a short span would turn sensor noise into steep rates).

Tables (built once by the owner, see `sensing.detect.threshold.ThresholdBank`):

- routing, CSR: the rules fed by channel `c` of a device of kind `k` are
  `route_rule[route_ptr[key]:route_ptr[key + 1]]` with `key = k * (width + 1) + c + 1`;
  `key = k * (width + 1)` is the reading's battery field. Channels `>= width` feed no rule.
- per rule `r`: `slot[r]` (its column in the state arrays; rules of one kind have distinct
  slots), `sign[r]`, `rate_ms[r]`, `rate_slot[r]` (its column in the rate rules' arrays),
  `n_levels[r]`.
- per rule, profile `p` and level `k`: `thr`, `reset`, `dur_ms`, `min_count` `[r, p, k]`.
  Profile 0 is the rule's defaults; `profile[d, slot]` picks a device's profile.
  `quiet[r, p]` is the least of `sign[r] * thr[r, p, k]`: a signal short of it (times the sign)
  with no run on and level 0 changes nothing.
- per key, a `CALM` record: within a key the rules that are not rate rules come first, `skip`
  of them; a value strictly between `low` and `high` is short of every threshold of all of
  them in every profile, so when none of their slots (`bits`) is busy the value passes them
  by without touching their state: nearly every value.

With `gate`, a value (not a battery level) is asked whether it is gated (`sensing.kernels.gate`:
impossible for the device, or its channel's sensor has a fault raised) before it would change
the state of any rule (once: most values change none and are never asked); a gated value
passes every rule by, as a NaN does. The gate's tables are keyed like
the routing; the fault checks' changes of the batch (`ev_*`, by row) are applied to
`fault_bits` in arrival order as the values go by, and all of them by the end.

State per device `d` and slot `s`, updated in place: `level[d, s]`, `runs[d, s]` (bit k set while
the value has been beyond level k's threshold since `since[d, s, k]`, for `count[d, s, k]`
readings, counted up to the level's `min_count`), `onset[d, s]` (event time of the first reading
of the episode), and for rate rules the reference point `prev_ts[d, rate_slot]` (-1: none) and
`prev_val[d, rate_slot]`; and `busy[d]`, bit `s` set while slot `s` has a run on or a level
raised.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sensing.kernels.fault import impossible
from sensing.kernels.gate import catch_up, impossible_for
from sensing.kernels.jit import ix

MAX_LEVELS = 3
CALM = np.dtype([("low", np.float64), ("high", np.float64), ("bits", np.uint32),
                 ("skip", np.int64)], align=True)


@njit(cache=True, nogil=True)
def threshold_bank(
    dev: np.ndarray, ts: np.ndarray, kind: np.ndarray, battery: np.ndarray,
    value_row: np.ndarray, value_channel: np.ndarray, value: np.ndarray,
    width: int, route_ptr: np.ndarray, route_rule: np.ndarray, calm: np.ndarray,
    slot: np.ndarray, sign: np.ndarray, rate_ms: np.ndarray, rate_slot: np.ndarray,
    n_levels: np.ndarray, thr: np.ndarray, reset: np.ndarray, dur_ms: np.ndarray,
    min_count: np.ndarray, quiet: np.ndarray,
    profile: np.ndarray, level: np.ndarray, runs: np.ndarray, onset: np.ndarray,
    since: np.ndarray, count: np.ndarray, prev_ts: np.ndarray, prev_val: np.ndarray,
    busy: np.ndarray,
    gate: bool, fault_bits: np.ndarray, g_mask: np.ndarray, n_open: np.ndarray,
    ev_row: np.ndarray, ev_bit: np.ndarray, ev_level: np.ndarray, g_plain: np.ndarray,
    imp_ptr: np.ndarray, imp_row: np.ndarray, imp_slot: np.ndarray, imp_p: np.ndarray,
    imp_prof: np.ndarray,
    out_row: np.ndarray, out_rule: np.ndarray, out_level: np.ndarray, out_onset: np.ndarray,
    out_signal: np.ndarray,
) -> int:
    """Feed every value (in value order), then every battery level (in reading order), to the
    rules routed to it; write one output per level change; return the number of changes.

    Per reading `i`: device `dev[i]`, event time `ts[i]`, its device's kind `kind[i]` (-1: none),
    `battery[i]` (NaN: none). Per value `j`: reading `value_row[j]`, `value_channel[j]`,
    `value[j]`, rows in order. Each rule sees its readings in arrival order; the output is in
    processing order (sort by row and rule to interleave rules).
    """
    n_out = 0
    e = 0  # the next fault change to apply
    stride = width + 1
    profiled = thr.shape[1] > 1  # else every device has profile 0: no need to look
    m = value.shape[0]
    for w in range(m + dev.shape[0]):
        if w < m:  # a value
            i = ix(value_row[w])
            k = kind[i]
            c = value_channel[w]
            if k < 0 or c >= width:
                continue
            key = ix(k * stride + c + 1)
            x0 = value[w]
            if np.isnan(x0):
                continue  # no evidence either way: neither raises nor clears
        else:  # a battery level
            i = ix(w - m)
            k = kind[i]
            x0 = battery[i]
            if k < 0 or np.isnan(x0):
                continue
            key = ix(k * stride)
        d = ix(dev[i])
        t = ts[i]
        first = route_ptr[key]
        ck = calm[key]
        if busy[d] & ck["bits"] == 0 and ck["low"] < x0 < ck["high"]:
            first += ck["skip"]
        pending = gate and w < m  # the value has yet to pass the gate (sensing.kernels.gate)
        for q in range(first, route_ptr[key + 1]):
            r = ix(route_rule[ix(q)])
            s = ix(slot[r])
            p = ix(profile[d, s] if profiled else 0)
            window = rate_ms[r]
            if window > 0:
                rs = ix(rate_slot[r])
                pt = prev_ts[d, rs]
                if pt >= 0 and t - pt < window:
                    continue  # inside the span: skipped
            elif runs[d, s] == 0 and level[d, s] == 0 and sign[r] * x0 < quiet[r, p]:
                continue  # the usual case: short of every threshold, nothing going on
            if pending:  # asked once, before the value changes any rule's state
                pending = False
                if e < ev_row.shape[0] and ev_row[e] <= i:
                    e = catch_up(dev, fault_bits, n_open, ev_row, ev_bit, ev_level, e, i)
                if n_open[0] > 0 and fault_bits[d] & g_mask[key] != 0:
                    break
                if impossible(g_plain[key], x0) and impossible_for(
                        d, key, x0, imp_ptr, imp_row, imp_slot, imp_p, imp_prof):
                    break
            v = x0
            if window > 0:
                prev_ts[d, rs] = t
                pv = prev_val[d, rs]
                prev_val[d, rs] = v
                if pt < 0:
                    continue
                v = (v - pv) * 60000.0 / (t - pt)
            sg = sign[r]
            x = sg * v
            on = int(runs[d, s])
            if on == 0 and x < quiet[r, p] and level[d, s] == 0:
                continue  # the usual case: short of every threshold, nothing going on
            was_on = on
            target = 0
            for lv in range(n_levels[r]):
                bit = 1 << lv
                if x >= sg * thr[r, p, lv]:
                    need = min_count[r, p, lv]
                    if on & bit == 0:
                        on |= bit
                        since[d, s, lv] = t
                        count[d, s, lv] = 1
                    elif count[d, s, lv] < need:
                        count[d, s, lv] += 1
                    if count[d, s, lv] >= need and t - since[d, s, lv] >= dur_ms[r, p, lv]:
                        target = lv + 1
                elif on & bit:
                    on ^= bit
            if on != was_on:
                runs[d, s] = on
            cur = int(level[d, s])
            new = target
            if target < cur:
                for lv in range(cur, target, -1):
                    if x >= sg * reset[r, p, lv - 1]:
                        new = lv
                        break
            slot_bit = np.uint32(1) << np.uint32(s)
            busy[d] = busy[d] | slot_bit if on != 0 or new != 0 else busy[d] & ~slot_bit
            if new == cur:
                continue
            if cur == 0:
                first = t
                for lv in range(n_levels[r]):
                    if on & (1 << lv) and since[d, s, lv] < first:
                        first = since[d, s, lv]
                onset[d, s] = first
            level[d, s] = new
            out_row[n_out] = i
            out_rule[n_out] = r
            out_level[n_out] = new
            out_onset[n_out] = onset[d, s]
            out_signal[n_out] = v
            n_out += 1
    if gate and e < ev_row.shape[0]:
        catch_up(dev, fault_bits, n_open, ev_row, ev_bit, ev_level, e, dev.shape[0])
    return n_out
