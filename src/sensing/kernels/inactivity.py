"""Daytime inactivity on a wristband's step counts (steps since the previous reading).

Per device the still spell starts at its last reading with steps > 0 (or its first reading
seen). In the daytime, local time of day in [day_start_ms, day_end_ms) with local time =
ts + offset_ms, the idle time is counted from the later of the spell's start and today's
daytime start, so night-time stillness never counts. Idle time over `limit_ms` raises level 1
(onset = where the counted idle time began, signal = idle hours); the next reading with
steps clears it, at any hour. A reading older than the device's newest one is skipped.
"""

from __future__ import annotations

import numpy as np
from numba import njit

DAY_MS = 86_400_000
HOUR_MS = 3_600_000.0


@njit(cache=True, nogil=True)
def inactivity_levels(
    dev: np.ndarray, ts: np.ndarray, val: np.ndarray,
    limit_ms: int, day_start_ms: int, day_end_ms: int, offset_ms: int,
    last_ts: np.ndarray, still_since: np.ndarray, level: np.ndarray, onset: np.ndarray,
    out_row: np.ndarray, out_level: np.ndarray, out_onset: np.ndarray, out_signal: np.ndarray,
    progress: np.ndarray,
) -> int:
    """Write one output per level change; return their count. `progress`, when not empty,
    gets the counted idle time over `limit_ms` (at most 1; 1 while raised, 0 at night)."""
    n_out = 0
    track = progress.shape[0] > 0
    for i in range(dev.shape[0]):
        d, t, v = dev[i], ts[i], val[i]
        if t < last_ts[d]:
            continue
        last_ts[d] = t
        if v > 0:
            still_since[d] = t
            if level[d] > 0:
                level[d] = 0
                out_row[n_out] = i
                out_level[n_out] = 0
                out_onset[n_out] = onset[d]
                out_signal[n_out] = v
                n_out += 1
            continue
        if still_since[d] < 0:
            still_since[d] = t
        if level[d] > 0:
            if track:
                progress[i] = 1.0
            continue
        tod = (t + offset_ms) % DAY_MS
        if tod < day_start_ms or tod >= day_end_ms:
            continue
        since = max(still_since[d], t - tod + day_start_ms)
        idle = t - since
        if track:
            progress[i] = min(1.0, idle / limit_ms)
        if idle > limit_ms:
            level[d] = 1
            onset[d] = since
            out_row[n_out] = i
            out_level[n_out] = 1
            out_onset[n_out] = since
            out_signal[n_out] = idle / HOUR_MS
            n_out += 1
    return n_out
