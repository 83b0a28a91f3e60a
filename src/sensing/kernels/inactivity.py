"""Daytime inactivity on a wristband's step counts (steps since the previous reading).

Per device the still spell starts at its last reading with steps > 0 (or its first reading
seen). In the daytime, local time of day in [day_start_ms, day_end_ms) with local time =
ts + offset_ms, the idle time is counted from the later of the spell's start and today's
daytime start, so night-time stillness never counts. Idle time over `limit_ms` raises level 1
(onset = where the counted idle time began, signal = idle hours); the next reading with
steps clears it, at any hour. The caller skips readings older than the device's newest one.

`inactivity_step` follows the step protocol of `sensing.kernels.fault`: (change, onset, signal,
score), the score being the counted idle time over `limit_ms` (at most 1; 1 while raised, 0
at night).
"""

from __future__ import annotations

import numpy as np
from numba import njit

DAY_MS = 86_400_000
HOUR_MS = 3_600_000.0

INACTIVITY_STATE = np.dtype([("still_since", np.int64),
                             ("onset", np.int64), ("level", np.int8)], align=True)
INACTIVITY_FRESH = {"still_since": -1, "onset": -1, "level": 0}
INACTIVITY_PARAMS = np.dtype([("limit_ms", np.int64), ("day_start_ms", np.int64),
                              ("day_end_ms", np.int64), ("offset_ms", np.int64)], align=True)


@njit(cache=True, nogil=True)
def inactivity_step(s: np.void, p: np.void, t: int, v: float
                    ) -> tuple[int, int, float, float]:
    if v > 0:
        s["still_since"] = t
        if s["level"] > 0:
            s["level"] = 0
            return 0, s["onset"], v, 0.0
        return -1, -1, v, 0.0
    if s["still_since"] < 0:
        s["still_since"] = t
    if s["level"] > 0:
        return -1, -1, v, 1.0
    tod = (t + p["offset_ms"]) % DAY_MS
    if tod < p["day_start_ms"] or tod >= p["day_end_ms"]:
        return -1, -1, v, 0.0
    since = max(s["still_since"], t - tod + p["day_start_ms"])
    idle = t - since
    if idle > p["limit_ms"]:
        s["level"] = 1
        s["onset"] = since
        return 1, since, idle / HOUR_MS, 1.0
    return -1, -1, v, min(1.0, idle / p["limit_ms"])
