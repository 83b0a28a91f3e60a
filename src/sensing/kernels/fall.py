"""Fall: an impact followed by lying still, on a wristband's peak acceleration magnitude, with
its step counter to tell a knock followed by walking from a fall.

Per device: an impact is a reading of accel_g of at least `impact_g`; a later impact restarts
the watch. Readings within [still_low, still_high] are still; anything else is movement and
ends the still spell. The fall is confirmed at the reading that completes `still_ms` of still
readings, counted from the first of them, which must come no later than `window_ms` after the
impact. The pending impact is cancelled (the wearer is up and about, or was never down) by
movement that lasts `move_ms` (from its first reading after the impact or after the last still
one), by `cancel_steps` steps counted in readings later than the impact (the impact's own
reading counts the steps before it), and by the window passing without stillness. Once
confirmed, the level stays 1 until the detector's owner clears the device. The caller skips
readings older than the device's newest one.

`fall_step` (accel_g) and `fall_steps_step` (steps, the wristband's steps since its previous
reading) follow the step protocol of `sensing.kernels.fault`: (change, onset, signal, score),
with onset = the impact and signal = its peak; the score is 0 without a pending impact, 0.5 to
1 while the still spell after one grows, 1 once the fall is confirmed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

FALL_STATE = np.dtype([("impact_ts", np.int64), ("impact_val", np.float64),
                       ("still_off", np.int32), ("move_off", np.int32), ("steps", np.float32),
                       ("level", np.int8)], align=True)
"""32 bytes: the still spell's and the movement's starts as ms after the impact (-1: none;
only kept within the window), the steps since the impact (float32: whole numbers)"""
FALL_FRESH = {"impact_ts": -1, "impact_val": 0.0, "still_off": -1, "move_off": -1,
              "steps": 0.0, "level": 0}
FALL_PARAMS = np.dtype([("impact_g", np.float64), ("still_low", np.float64),
                        ("still_high", np.float64), ("still_ms", np.int64),
                        ("window_ms", np.int64), ("move_ms", np.int64),
                        ("cancel_steps", np.float64)], align=True)


@njit(cache=True, nogil=True)
def _cancel(s: np.void) -> None:
    s["impact_ts"] = -1
    s["still_off"] = -1
    s["move_off"] = -1
    s["steps"] = 0.0


@njit(cache=True, nogil=True)
def _score(s: np.void, p: np.void, t: int) -> float:
    if s["level"] > 0:
        return 1.0
    if s["impact_ts"] < 0:
        return 0.0
    if s["still_off"] < 0 or p["still_ms"] <= 0:
        return 0.5
    grown: float = (t - s["impact_ts"] - s["still_off"]) / p["still_ms"]
    return 0.5 + 0.5 * min(1.0, grown)


@njit(cache=True, nogil=True)
def fall_step(s: np.void, p: np.void, t: int, v: float) -> tuple[int, int, float, float]:
    change = -1
    if s["level"] == 0:
        if v >= p["impact_g"]:
            s["impact_ts"] = t
            s["impact_val"] = v
            s["still_off"] = -1
            s["move_off"] = -1
            s["steps"] = 0.0
        elif s["impact_ts"] >= 0:
            since = t - s["impact_ts"]
            if p["still_low"] <= v <= p["still_high"]:
                s["move_off"] = -1
                if s["still_off"] < 0:
                    if since > p["window_ms"]:
                        _cancel(s)  # still only after the window: not this impact's doing
                    else:
                        s["still_off"] = since
                if s["still_off"] >= 0 and since - s["still_off"] >= p["still_ms"]:
                    s["level"] = 1
                    change = 1
            else:
                s["still_off"] = -1
                if since > p["window_ms"]:
                    _cancel(s)
                else:
                    if s["move_off"] < 0:
                        s["move_off"] = since
                    if since - s["move_off"] >= p["move_ms"]:
                        _cancel(s)  # moving on: up and about
    return change, s["impact_ts"], s["impact_val"], _score(s, p, t)


@njit(cache=True, nogil=True)
def fall_steps_step(s: np.void, p: np.void, t: int, v: float
                    ) -> tuple[int, int, float, float]:
    """Steps counted after a pending impact (in a later reading than its) cancel it once they
    reach `cancel_steps`; NaN or no steps change nothing."""
    if s["level"] == 0 and s["impact_ts"] >= 0 and t > s["impact_ts"] and v > 0:
        s["steps"] = s["steps"] + v
        if s["steps"] >= p["cancel_steps"]:
            _cancel(s)
    return -1, -1, v, _score(s, p, t)
