"""Sensor faults: impossible values, a stuck (flat-lined) sensor, drift from its own baseline.

Each kernel reduces a reading to two facts about its device: the fault is *met* (enough
evidence to raise) and the fault is *active* (still showing). `_settle` turns them into one level
per device: 0 -> 1 as soon as the fault is met, 1 -> 0 once it has been inactive for
`hold_count` consecutive readings and `hold_ms` of event time. A reading older than the
device's newest one is skipped, so every timer only moves forward in event time.

`progress`, when not empty, receives per reading how close the device is to the fault, in
[0, 1] (the detectors' anomaly score).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _hold(
    d: int, t: int, met: bool, active: bool,
    level: np.ndarray, off_since: np.ndarray, off_count: np.ndarray, hold_ms: int, hold_count: int,
) -> int:
    """The new level of device `d` (0 or 1), or -1 when it stays."""
    if level[d] == 0:
        if not met:
            return -1
        level[d] = 1
        off_count[d] = 0
        return 1
    if active:
        off_count[d] = 0
        return -1
    if off_count[d] == 0:
        off_since[d] = t
    off_count[d] += 1
    if off_count[d] < hold_count or t - off_since[d] < hold_ms:
        return -1
    level[d] = 0
    off_count[d] = 0
    return 0


@njit(cache=True, nogil=True)
def _settle(
    n_out: int, i: int, d: int, t: int, met: bool, active: bool, start: int, signal: float,
    hold_ms: int, hold_count: int,
    level: np.ndarray, onset: np.ndarray, off_since: np.ndarray, off_count: np.ndarray,
    out_row: np.ndarray, out_level: np.ndarray, out_onset: np.ndarray, out_signal: np.ndarray,
) -> int:
    """Apply `_hold` to device `d` at reading `i`; write a change (onset `start` when raised)
    at `n_out`; return the new output count."""
    new = _hold(d, t, met, active, level, off_since, off_count, hold_ms, hold_count)
    if new < 0:
        return n_out
    if new == 1:
        onset[d] = start
    out_row[n_out] = i
    out_level[n_out] = new
    out_onset[n_out] = onset[d]
    out_signal[n_out] = signal
    return n_out + 1


@njit(cache=True, nogil=True)
def _count_run(on: bool, d: int, t: int, run_count: np.ndarray, run_since: np.ndarray) -> None:
    """Track the device's run of consecutive readings with `on` (its length and start)."""
    if not on:
        run_count[d] = 0
        return
    if run_count[d] == 0:
        run_since[d] = t
    run_count[d] += 1


@njit(cache=True, nogil=True)
def impossible_values(
    dev: np.ndarray, ts: np.ndarray, val: np.ndarray,
    low: float, high: float, integral: bool, min_count: int, hold_ms: int, hold_count: int,
    last_ts: np.ndarray, run_count: np.ndarray, run_since: np.ndarray,
    level: np.ndarray, onset: np.ndarray, off_since: np.ndarray, off_count: np.ndarray,
    out_row: np.ndarray, out_level: np.ndarray, out_onset: np.ndarray, out_signal: np.ndarray,
    progress: np.ndarray,
) -> int:
    """Met after `min_count` consecutive readings that are not finite, outside [low, high] or
    (with `integral`) not whole numbers; active while the readings stay impossible."""
    n_out = 0
    track = progress.shape[0] > 0
    for i in range(dev.shape[0]):
        d, t, v = dev[i], ts[i], val[i]
        if t < last_ts[d]:
            continue
        last_ts[d] = t
        bad = not (np.isfinite(v) and low <= v <= high) or (integral and v != math.floor(v))
        _count_run(bad, d, t, run_count, run_since)
        if track:
            progress[i] = 1.0 if bad else 0.0
        n_out = _settle(n_out, i, d, t, run_count[d] >= min_count, bad, run_since[d], v,
                        hold_ms, hold_count, level, onset, off_since, off_count,
                        out_row, out_level, out_onset, out_signal)
    return n_out


@njit(cache=True, nogil=True)
def stuck_values(
    dev: np.ndarray, ts: np.ndarray, val: np.ndarray,
    eps: float, min_count: int, min_ms: int, hold_ms: int, hold_count: int,
    last_ts: np.ndarray, run_val: np.ndarray, run_count: np.ndarray, run_since: np.ndarray,
    level: np.ndarray, onset: np.ndarray, off_since: np.ndarray, off_count: np.ndarray,
    out_row: np.ndarray, out_level: np.ndarray, out_onset: np.ndarray, out_signal: np.ndarray,
    progress: np.ndarray,
) -> int:
    """Met (and active) while the device's last `min_count` or more readings, spanning at least
    `min_ms`, all lie within `eps` of the first of them."""
    n_out = 0
    track = progress.shape[0] > 0
    for i in range(dev.shape[0]):
        d, t, v = dev[i], ts[i], val[i]
        if t < last_ts[d]:
            continue
        last_ts[d] = t
        if run_count[d] > 0 and abs(v - run_val[d]) <= eps:
            run_count[d] += 1
        else:
            run_val[d] = v
            run_count[d] = 1
            run_since[d] = t
        span = t - run_since[d]
        stuck = run_count[d] >= min_count and span >= min_ms
        if track:
            by_time = 1.0 if min_ms <= 0 else min(1.0, span / min_ms)
            progress[i] = min(by_time, min(1.0, run_count[d] / min_count))
        n_out = _settle(n_out, i, d, t, stuck, stuck, run_since[d], v, hold_ms, hold_count,
                        level, onset, off_since, off_count,
                        out_row, out_level, out_onset, out_signal)
    return n_out


@njit(cache=True, nogil=True)
def _ewma_weight(dt: float, tau: float, elapsed: float) -> float:
    """Weight of a reading `dt` after the previous one in an event-time EWMA of time constant
    `tau`; early on (elapsed < tau) the time-weighted mean of everything so far instead, so the
    first reading does not dominate for a whole `tau`."""
    w = -math.expm1(-dt / tau)
    if elapsed > 0.0:
        w = max(w, dt / elapsed)
    return w


@njit(cache=True, nogil=True)
def drift(
    dev: np.ndarray, ts: np.ndarray, val: np.ndarray,
    fast_tau_ms: float, base_tau_ms: float, warmup_ms: int, min_sigma: float,
    z_alarm: float, cusum_k: float, cusum_h: float, cusum_tau_ms: float,
    min_count: int, min_ms: int, hold_ms: int, hold_count: int,
    last_ts: np.ndarray, first_ts: np.ndarray, fast: np.ndarray, base: np.ndarray,
    var: np.ndarray, cusum_hi: np.ndarray, cusum_lo: np.ndarray,
    run_count: np.ndarray, run_since: np.ndarray,
    level: np.ndarray, onset: np.ndarray, off_since: np.ndarray, off_count: np.ndarray,
    out_row: np.ndarray, out_level: np.ndarray, out_onset: np.ndarray, out_signal: np.ndarray,
    progress: np.ndarray,
) -> int:
    """A fast event-time EWMA of the channel against a slow EWMA baseline, in units of the
    gap's own usual spread: z = (fast - base) / max(sd, min_sigma), where sd is learned (at
    the baseline's pace) from the gap during the warm-up and whenever |z| < cusum_k, so a
    shift being watched does not widen the yardstick it is measured with.

    Active after the warm-up while |z| >= z_alarm, or while either side of a two-sided CUSUM
    of z (integrated over event time in units of `cusum_tau_ms`, allowance `cusum_k`,
    saturating at `cusum_h`) is at `cusum_h`; met once active for `min_count` readings and
    `min_ms`. The signal is the gap, in the channel's unit. NaN readings are skipped."""
    n_out = 0
    track = progress.shape[0] > 0
    for i in range(dev.shape[0]):
        d, t, v = dev[i], ts[i], val[i]
        if np.isnan(v) or t < last_ts[d]:
            continue
        if first_ts[d] < 0:
            first_ts[d] = t
            last_ts[d] = t
            fast[d] = v
            base[d] = v
            continue
        dt = float(t - last_ts[d])
        last_ts[d] = t
        elapsed = float(t - first_ts[d])
        fast[d] += _ewma_weight(dt, fast_tau_ms, elapsed) * (v - fast[d])
        w = _ewma_weight(dt, base_tau_ms, elapsed)
        base[d] += w * (v - base[d])
        gap = fast[d] - base[d]
        z = gap / max(math.sqrt(var[d]), min_sigma)
        warm = elapsed >= warmup_ms
        if abs(z) < cusum_k or not warm:
            var[d] += w * (gap * gap - var[d])
        drifting = False
        if warm:
            # a gap counts for at most one fast time constant: z is unknown beyond that
            step = min(dt, fast_tau_ms) / cusum_tau_ms
            cusum_hi[d] = min(cusum_h, max(0.0, cusum_hi[d] + (z - cusum_k) * step))
            cusum_lo[d] = min(cusum_h, max(0.0, cusum_lo[d] + (-z - cusum_k) * step))
            drifting = (abs(z) >= z_alarm or cusum_hi[d] >= cusum_h
                        or cusum_lo[d] >= cusum_h)
            if track:
                near = max(abs(z) / z_alarm, max(cusum_hi[d], cusum_lo[d]) / cusum_h)
                progress[i] = min(1.0, near)
        _count_run(drifting, d, t, run_count, run_since)
        met = drifting and run_count[d] >= min_count and t - run_since[d] >= min_ms
        n_out = _settle(n_out, i, d, t, met, drifting, run_since[d], gap, hold_ms, hold_count,
                        level, onset, off_since, off_count,
                        out_row, out_level, out_onset, out_signal)
    return n_out
