"""Fall: an impact followed by lying still, on a wristband's peak acceleration magnitude.

Per device: an impact is a reading of at least `impact_g`; a later impact restarts the watch.
Readings within [still_low, still_high] are still; anything else (walking, getting up) ends
the still spell. The fall is confirmed at the reading that completes `still_ms` of still
readings, counted from the first of them, no later than `window_ms` after the impact; the
level then stays 1 until the detector's owner clears the device. The caller skips readings
older than the device's newest one.

`fall_step` follows the step protocol of `sensing.kernels.fault`: (change, onset, signal,
score), with onset = the impact and signal = its peak; the score is 0 without a pending
impact, 0.5 to 1 while the still spell after one grows, 1 once the fall is confirmed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

FALL_STATE = np.dtype([("impact_ts", np.int64),
                       ("impact_val", np.float64), ("still_since", np.int64),
                       ("level", np.int8)], align=True)
FALL_FRESH = {"impact_ts": -1, "impact_val": 0.0, "still_since": -1,
              "level": 0}
FALL_PARAMS = np.dtype([("impact_g", np.float64), ("still_low", np.float64),
                        ("still_high", np.float64), ("still_ms", np.int64),
                        ("window_ms", np.int64)], align=True)


@njit(cache=True, nogil=True)
def fall_step(s: np.void, p: np.void, t: int, v: float) -> tuple[int, int, float, float]:
    change = -1
    if s["level"] == 0:
        if v >= p["impact_g"]:
            s["impact_ts"] = t
            s["impact_val"] = v
            s["still_since"] = -1
        elif s["impact_ts"] >= 0 and t - s["impact_ts"] > p["window_ms"]:
            s["impact_ts"] = -1
            s["still_since"] = -1
        elif s["impact_ts"] >= 0 and p["still_low"] <= v <= p["still_high"]:
            if s["still_since"] < 0:
                s["still_since"] = t
            if t - s["still_since"] >= p["still_ms"]:
                s["level"] = 1
                change = 1
        else:
            s["still_since"] = -1
    if s["level"] > 0:
        score = 1.0
    elif s["impact_ts"] < 0:
        score = 0.0
    elif s["still_since"] < 0 or p["still_ms"] <= 0:
        score = 0.5
    else:
        score = 0.5 + 0.5 * min(1.0, (t - s["still_since"]) / p["still_ms"])
    return change, s["impact_ts"], s["impact_val"], score
