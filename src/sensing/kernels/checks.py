"""The check bank: every single-level check (faults, fall, inactivity) over one batch, in one pass.

A check watches one channel of the devices of one kind and is one of the step functions of
`sensing.kernels.fault`, `sensing.kernels.fall` and `sensing.kernels.inactivity`. Each check
type keeps its state in a 2-D record array `[device, slot]` (a device's checks of one type side
by side; its checks of other types are in the other types' arrays, so a reading touches a
record array per type it feeds, the cost that dominates when devices come in random order)
and its parameters in a 2-D record array `[row, profile]`, one row per check of that type.

Tables (built once by the owner, see `sensing.detect.checks.CheckBank`):

- routing, CSR: the checks fed by channel `c` of a device of kind `k` are
  `route_check[route_ptr[key]:route_ptr[key + 1]]` with `key = k * width + c`; channels
  `>= width` feed no check. `route_role` says which of its channels a route feeds a check: 0
  for its own, 1 for the fall check's steps (`fall_steps_step`).
  Within a key the impossible-value checks come first.
- per check `q`: `check_type[q]` (one of the type codes below), `check_param[q]` (its row in
  that type's parameter array `[row, profile]`) and `check_slot[q]` (its column in that type's
  state array). Profile 0 holds each check's defaults; `<type>_prof[d, slot]` picks a device's
  profile (read only when the type has more than one).
- per kind `k`, `kind_types[k]`: bit `t` set when a check of type code `t` watches devices of
  that kind (whose state records are fetched ahead, `PREFETCH_AHEAD` readings early).
- per key, a `PLAIN` record: the range (and wholeness) a value must have to be plausible for
  every impossible-value check of the key in every profile, their `bits` in `busy` and their
  number `skip`; and the number `stuck` of its stuck checks, which come right after those.

State besides the records, per device `d`: `newest[d]`, the event time of its newest reading
(-1: none; not kept when the caller keeps the clock, see `run_checks`), and `busy[d]`, bit `s`
set unless the impossible-value record in column `s` is idle (`impossible_idle`), so that a
plausible value of idle checks is passed over without touching their records: nearly every
value, and most of the work on a large fleet otherwise.
The stuck checks see a device's first reading in each `stuck_tick` ms of its event time that
carries a channel they watch (decided at its first such value; the values of a reading are
contiguous), and every such reading after one in which a stuck check of the device was raised
(so that it clears at the first sign of life): `stuck_next[d]` is the start of the device's
next tick (-1: the next reading; every reading with a tick of 0). A frozen sensor repeats
itself at every reading and a noisy one differs from minute to minute as from reading to
reading; looking at every reading of devices that report every few seconds would cost as much
as every other check together.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sensing.kernels.fall import (
    FALL_FRESH,
    FALL_PARAMS,
    FALL_STATE,
    fall_step,
    fall_steps_step,
)
from sensing.kernels.fault import (
    DRIFT_FRESH,
    DRIFT_PARAMS,
    DRIFT_STATE,
    IMPOSSIBLE_FRESH,
    IMPOSSIBLE_PARAMS,
    IMPOSSIBLE_STATE,
    STUCK_FRESH,
    STUCK_PARAMS,
    STUCK_STATE,
    drift_step,
    impossible,
    impossible_idle,
    impossible_step,
    stuck_step,
)
from sensing.kernels.inactivity import (
    INACTIVITY_FRESH,
    INACTIVITY_PARAMS,
    INACTIVITY_STATE,
    inactivity_step,
)
from sensing.kernels.jit import ix
from sensing.kernels.memory import PREFETCH_AHEAD, prefetch

IMPOSSIBLE, STUCK, DRIFT, FALL, INACTIVITY = range(5)
STATE = (IMPOSSIBLE_STATE, STUCK_STATE, DRIFT_STATE, FALL_STATE, INACTIVITY_STATE)
"""per type code: the record dtype of one (device, check) state"""
FRESH = (IMPOSSIBLE_FRESH, STUCK_FRESH, DRIFT_FRESH, FALL_FRESH, INACTIVITY_FRESH)
"""per type code: the state of a device never seen"""
PARAMS = (IMPOSSIBLE_PARAMS, STUCK_PARAMS, DRIFT_PARAMS, FALL_PARAMS, INACTIVITY_PARAMS)
"""per type code: the record dtype of one check's parameters"""
PLAIN = np.dtype([("low", np.float64), ("high", np.float64), ("integral", np.bool_),
                  ("bits", np.uint16), ("skip", np.int64), ("stuck", np.int64)], align=True)


@njit(cache=True, nogil=True)
def _profile(params: np.ndarray, profile: np.ndarray, d: int, s: int) -> int:
    return ix(profile[d, s] if params.shape[1] > 1 else 0)


@njit(cache=True, nogil=True)
def run_checks(
    dev: np.ndarray, ts: np.ndarray, kind: np.ndarray,
    value_row: np.ndarray, value_channel: np.ndarray, value: np.ndarray,
    width: int, route_ptr: np.ndarray, route_check: np.ndarray, route_role: np.ndarray,
    plain: np.ndarray,
    check_type: np.ndarray, check_param: np.ndarray, check_slot: np.ndarray,
    kind_types: np.ndarray, newest: np.ndarray, in_order: bool, busy: np.ndarray,
    stuck_next: np.ndarray, stuck_tick: int,
    impossible_p: np.ndarray, impossible_prof: np.ndarray, impossible_s: np.ndarray,
    stuck_p: np.ndarray, stuck_prof: np.ndarray, stuck_s: np.ndarray,
    drift_p: np.ndarray, drift_prof: np.ndarray, drift_s: np.ndarray,
    fall_p: np.ndarray, fall_prof: np.ndarray, fall_s: np.ndarray,
    inactivity_p: np.ndarray, inactivity_prof: np.ndarray, inactivity_s: np.ndarray,
    out_row: np.ndarray, out_check: np.ndarray, out_level: np.ndarray, out_onset: np.ndarray,
    out_signal: np.ndarray, score: np.ndarray,
) -> int:
    """Feed every value (in value order) to the checks routed to it; write one output per
    level change; return the number of changes. `score`, when not empty, receives the score
    of each value's last check (callers scoring one check route one).

    Per reading `i`: device `dev[i]`, event time `ts[i]`, its device's kind `kind[i]` (-1:
    none). Per value `j`: reading `value_row[j]`, `value_channel[j]`, `value[j]`. A reading
    older than its device's newest one is skipped by every check (their timers only move
    forward in event time); the others reach each check in arrival order. With `in_order`
    the caller has dropped such readings already and keeps the clock itself (the engine's
    gate, `sensing.kernels.gate`): `newest` is then neither read nor moved. The output is in
    processing order (sort by row and check to interleave checks).
    """
    n_out = 0
    track = score.shape[0] > 0
    late = np.zeros(0 if in_order else dev.shape[0], dtype=np.bool_)
    for i in range(late.shape[0]):
        d = ix(dev[i])
        if ts[i] < newest[d]:
            late[i] = True
        else:
            newest[d] = ts[i]
    n = dev.shape[0]
    ahead = -1  # the reading whose state was last asked for
    sampled, sample = -1, False  # the reading whose tick was asked for, and the answer
    for w in range(value.shape[0]):
        i = ix(value_row[w])
        if i + PREFETCH_AHEAD > ahead and i + PREFETCH_AHEAD < n:
            # the state the reading that many ahead will need (written out here: a call with
            # arrays costs reference counting); impossible-value records are left out, being
            # touched only while busy
            ahead = i + PREFETCH_AHEAD
            k = kind[ahead]
            # devices in ascending order too: their records lie too far apart (the drift
            # check's are 120 bytes) for the processor to read ahead soon enough
            if k >= 0:
                d = ix(dev[ahead])
                types = kind_types[k]
                prefetch(busy, d, 0)
                if types & (1 << STUCK):  # its records are touched once a tick only
                    prefetch(stuck_next, d, 0)
                if types & (1 << DRIFT):
                    prefetch(drift_s, d, 0)
                if types & (1 << FALL):
                    prefetch(fall_s, d, 0)
                if types & (1 << INACTIVITY):
                    prefetch(inactivity_s, d, 0)
        k = kind[i]
        c = value_channel[w]
        if (not in_order and late[i]) or k < 0 or c >= width:
            continue
        key = ix(k * width + c)
        d = ix(dev[i])
        t = ts[i]
        v = value[w]
        first = route_ptr[key]
        pk = plain[key]
        # the stuck checks, right after the impossible-value ones: [gap, gap_end)
        gap = first + pk["skip"]
        gap_end = gap
        if pk["stuck"] > 0:
            if i != sampled:
                sampled = i
                sample = t >= stuck_next[d]
                if sample:
                    stuck_next[d] = t - t % stuck_tick + stuck_tick if stuck_tick > 0 else t
            if not sample:
                gap_end += pk["stuck"]
        if busy[d] & pk["bits"] == 0 and not impossible(pk, v):
            first = gap_end
        end = route_ptr[key + 1]
        q = first
        while q < end:
            if q == gap and gap_end > gap:  # not this reading's tick: no stuck check
                q = gap_end
                continue
            ch = ix(route_check[ix(q)])
            typ = check_type[ch]
            j = ix(check_param[ch])
            s = ix(check_slot[ch])
            if typ == IMPOSSIBLE:
                bit = np.uint16(1 << s)
                rec = impossible_s[d, s]
                change, onset, signal, sc = impossible_step(
                    rec, impossible_p[j, _profile(impossible_p, impossible_prof, d, s)], t, v)
                busy[d] = busy[d] & ~bit if impossible_idle(rec) else busy[d] | bit
            elif typ == STUCK:
                rec = stuck_s[d, s]
                change, onset, signal, sc = stuck_step(
                    rec, stuck_p[j, _profile(stuck_p, stuck_prof, d, s)], t, v)
                if rec["level"] > 0:
                    stuck_next[d] = -1  # raised: it sees every reading until it clears
            elif typ == DRIFT:
                change, onset, signal, sc = drift_step(
                    drift_s[d, s], drift_p[j, _profile(drift_p, drift_prof, d, s)], t, v)
            elif typ == FALL:
                rec, par = fall_s[d, s], fall_p[j, _profile(fall_p, fall_prof, d, s)]
                if route_role[ix(q)] == 0:
                    change, onset, signal, sc = fall_step(rec, par, t, v)
                else:
                    change, onset, signal, sc = fall_steps_step(rec, par, t, v)
            else:
                change, onset, signal, sc = inactivity_step(
                    inactivity_s[d, s],
                    inactivity_p[j, _profile(inactivity_p, inactivity_prof, d, s)], t, v)
            if track:
                score[w] = sc
            if change >= 0:
                out_row[n_out] = i
                out_check[n_out] = ch
                out_level[n_out] = change
                out_onset[n_out] = onset
                out_signal[n_out] = signal
                n_out += 1
            q += 1
    return n_out
