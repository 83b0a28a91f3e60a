"""Multi-level threshold with minimum count/duration and reset levels (hysteresis).

One rule watches one signal. Level k (0-based, up to MAX_LEVELS, least severe first) is *met*
by a device once its value has been on the alarm side of `thr[k]` for at least `min_count[k]`
consecutive readings and `dur_ms[k]` of event time. The device's level rises to the highest
met level at once, and falls only when the value crosses the reset level `reset[lvl-1]` of its
current level. `sign` is +1 for "alarm when above" and -1 for "alarm when below". A NaN
threshold disables a level. With `rate_window_ms` > 0 the signal is instead the rate of change
per minute over spans of at least that long: each reading at least `rate_window_ms` after the
device's previous reference point is compared with it and becomes the next reference point;
readings in between are skipped (a short span would turn sensor noise into steep rates).
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAX_LEVELS = 3


@njit(cache=True, nogil=True)
def threshold_levels(
    dev: np.ndarray,
    ts: np.ndarray,
    val: np.ndarray,
    sign: float,
    rate_window_ms: int,
    thr: np.ndarray,
    reset: np.ndarray,
    dur_ms: np.ndarray,
    min_count: np.ndarray,
    level: np.ndarray,
    since: np.ndarray,
    count: np.ndarray,
    onset: np.ndarray,
    prev_ts: np.ndarray,
    prev_val: np.ndarray,
    out_row: np.ndarray,
    out_level: np.ndarray,
    out_onset: np.ndarray,
    out_signal: np.ndarray,
) -> int:
    """Process readings in order; write one output per level change; return the count."""
    n_out = 0
    for i in range(dev.shape[0]):
        d = dev[i]
        t = ts[i]
        v = val[i]
        if rate_window_ms > 0:
            pt = prev_ts[d]
            if pt < 0:
                prev_ts[d] = t
                prev_val[d] = v
                continue
            if t - pt < rate_window_ms:
                continue
            pv = prev_val[d]
            prev_ts[d] = t
            prev_val[d] = v
            v = (v - pv) * 60000.0 / (t - pt)
        x = sign * v
        target = 0
        for k in range(MAX_LEVELS):
            if np.isnan(thr[k]):
                continue
            if x >= sign * thr[k]:
                if count[d, k] == 0:
                    since[d, k] = t
                count[d, k] += 1
                if count[d, k] >= min_count[k] and t - since[d, k] >= dur_ms[k]:
                    target = k + 1
            else:
                count[d, k] = 0
                since[d, k] = -1
        cur = level[d]
        new = target
        if target < cur:
            for k in range(cur, target, -1):
                if x >= sign * reset[k - 1]:
                    new = k
                    break
        if new == cur:
            continue
        if cur == 0:
            first = t
            for k in range(MAX_LEVELS):
                if since[d, k] >= 0 and since[d, k] < first:
                    first = since[d, k]
            onset[d] = first
        level[d] = new
        out_row[n_out] = i
        out_level[n_out] = new
        out_onset[n_out] = onset[d]
        out_signal[n_out] = v
        n_out += 1
    return n_out
