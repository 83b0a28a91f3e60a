"""Sensor faults: impossible values, a stuck (flat-lined) sensor, drift from its own baseline.

Each check is a step function over one device's state record (`s`, updated in place) and the
check's parameter record (`p`), for one reading at event time `t` with value `v`. It returns
`(change, onset, signal, score)`: `change` is the new level (0 or 1) or -1 when the level
stays, `onset` the episode's onset, `signal` the value that decided, and `score` how close the
device is to the fault, in [0, 1] (the detectors' anomaly score). The fused loop that routes
readings to the checks is `sensing.kernels.checks`.

Each check reduces a reading to two facts: the fault is *met* (enough evidence to raise) and
the fault is *active* (still showing). `_settle` turns them into one level: 0 -> 1 as soon as
the fault is met, 1 -> 0 once it has been inactive for `hold_count` consecutive readings and
`hold_ms` of event time. The caller skips readings older than the device's newest one, so
every timer only moves forward in event time.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_HOLD = [("onset", np.int64), ("off_since", np.int64), ("off_count", np.int32),
         ("level", np.int8)]
_HOLD_FRESH = {"onset": -1, "off_since": -1, "off_count": 0, "level": 0}
_HOLD_PARAMS = [("hold_ms", np.int64), ("hold_count", np.int64)]

IMPOSSIBLE_STATE = np.dtype([("run_since", np.int64), ("run_count", np.int32), *_HOLD],
                            align=True)
IMPOSSIBLE_FRESH = {"run_since": -1, "run_count": 0, **_HOLD_FRESH}
IMPOSSIBLE_PARAMS = np.dtype([("low", np.float64), ("high", np.float64),
                              ("integral", np.bool_), ("min_count", np.int64), *_HOLD_PARAMS],
                             align=True)

STUCK_STATE = np.dtype([("run_val", np.float64), ("run_since", np.int64),
                        ("run_count", np.int32), ("noise", np.float32), *_HOLD,
                        ("armed", np.bool_)], align=True)
"""48 bytes: `noise` and `armed` sit in what would be padding"""
STUCK_FRESH = {"run_val": 0.0, "run_since": -1, "run_count": 0, "noise": 0.0, "armed": False,
               **_HOLD_FRESH}
STUCK_PARAMS = np.dtype([("eps", np.float64), ("min_count", np.int64), ("min_ms", np.int64),
                         ("rest_low", np.float64), ("rest_high", np.float64),
                         ("min_noise", np.float64), ("noise_readings", np.int64),
                         *_HOLD_PARAMS], align=True)
STUCK_TICK_MS = 60_000
"""The stuck checks see a device's first reading in each minute of its event time that
carries a channel they watch, and every reading while one of them is raised
(`sensing.kernels.checks`)."""

DRIFT_STATE = np.dtype([
    # what every reading touches first, the rest once per tick
    ("tick_ts", np.int64), ("tick_sum", np.float64), ("tick_count", np.int32),
    ("first_ts", np.int64), ("near", np.float64),
    ("fast", np.float64), ("base", np.float64), ("var", np.float64),
    ("cusum_hi", np.float64), ("cusum_lo", np.float64), ("run_since", np.int64),
    ("run_count", np.int32), *_HOLD], align=True)
DRIFT_FRESH = {"first_ts": -1, "tick_ts": -1, "fast": 0.0, "base": 0.0,
               "var": 0.0, "cusum_hi": 0.0, "cusum_lo": 0.0, "tick_sum": 0.0, "near": 0.0,
               "run_since": -1, "tick_count": 0, "run_count": 0, **_HOLD_FRESH}
DRIFT_PARAMS = np.dtype([
    ("fast_tau_ms", np.float64), ("base_tau_ms", np.float64), ("warmup_ms", np.int64),
    ("min_sigma", np.float64), ("z_alarm", np.float64), ("cusum_k", np.float64),
    ("cusum_h", np.float64), ("cusum_tau_ms", np.float64), ("min_count", np.int64),
    ("min_ms", np.int64), ("tick_ms", np.int64), *_HOLD_PARAMS], align=True)


@njit(cache=True, nogil=True)
def _settle(s: np.void, p: np.void, t: int, met: bool, active: bool, start: int) -> int:
    """The new level of the check (0 or 1), or -1 when it stays; raising sets the onset to
    `start`."""
    if s["level"] == 0:
        if not met:
            return -1
        s["level"] = 1
        s["off_count"] = 0
        s["onset"] = start
        return 1
    if active:
        s["off_count"] = 0
        return -1
    if s["off_count"] == 0:
        s["off_since"] = t
    s["off_count"] += 1
    if s["off_count"] < p["hold_count"] or t - s["off_since"] < p["hold_ms"]:
        return -1
    s["level"] = 0
    s["off_count"] = 0
    return 0


@njit(cache=True, nogil=True)
def _count_run(s: np.void, on: bool, t: int) -> None:
    """Track the run of consecutive readings with `on` (its length and start)."""
    if not on:
        s["run_count"] = 0
        return
    if s["run_count"] == 0:
        s["run_since"] = t
    s["run_count"] += 1


@njit(cache=True, nogil=True)
def impossible(p: np.void, v: float) -> bool:
    """Not finite, outside [low, high] or (with `integral`) not a whole number."""
    return (not (np.isfinite(v) and p["low"] <= v <= p["high"])
            or (p["integral"] and v != math.floor(v)))


@njit(cache=True, nogil=True)
def impossible_idle(s: np.void) -> bool:
    """No impossible reading in the last one and no fault raised: a plausible reading changes
    nothing."""
    return bool(s["run_count"] == 0 and s["level"] == 0)


@njit(cache=True, nogil=True)
def impossible_step(s: np.void, p: np.void, t: int, v: float
                    ) -> tuple[int, int, float, float]:
    """Met after `min_count` consecutive impossible readings; active while the readings stay
    impossible."""
    bad = impossible(p, v)
    if not bad and impossible_idle(s):
        return -1, -1, v, 0.0  # the usual case: nothing going on, nothing to change
    _count_run(s, bad, t)
    change = _settle(s, p, t, s["run_count"] >= p["min_count"], bad, s["run_since"])
    return change, s["onset"], v, 1.0 if bad else 0.0


@njit(cache=True, nogil=True)
def _noise(s: np.void, p: np.void, changed: float) -> None:
    """Average `changed` (1 or 0) into the share of readings that differed from the one before,
    each weighing 1/noise_readings; from 0, so that a few changes are not yet noise (kept as
    float32)."""
    s["noise"] = s["noise"] + (changed - s["noise"]) / p["noise_readings"]


@njit(cache=True, nogil=True)
def stuck_step(s: np.void, p: np.void, t: int, v: float) -> tuple[int, int, float, float]:
    """Met (and active) while the device's last `min_count` or more readings, spanning at least
    `min_ms`, all lie within `eps` of the first of them (a *run*), if the run is *armed*.

    Whether a run is armed is decided at its second reading (`min_count` is at least 2, and
    most runs of a noisy channel end at their first reading, so the usual reading does not
    ask): the channel was showing noise, `noise` (the share of readings that differed from the
    one before, as of the run's first reading) at least `min_noise`, or the fault is raised (a
    sensor that froze again after one glitch stays faulty); and the run's value is not at
    rest, outside [rest_low, rest_high]. NaN readings are skipped."""
    if np.isnan(v):
        return -1, -1, v, 0.0
    if s["run_count"] > 0 and abs(v - s["run_val"]) <= p["eps"]:
        if s["run_count"] == 1:
            s["armed"] = ((s["noise"] >= p["min_noise"] or s["level"] > 0)
                          and not p["rest_low"] <= s["run_val"] <= p["rest_high"])
        s["run_count"] += 1
        _noise(s, p, 0.0)
        if not s["armed"] and s["level"] == 0:
            return -1, -1, v, 0.0  # a channel at rest, or one that showed no noise
    else:
        if s["run_count"] > 0:
            _noise(s, p, 1.0)
        s["run_val"] = v
        s["run_count"] = 1
        s["run_since"] = t
        if s["level"] == 0:  # the usual case: a changing value, no fault to clear
            return -1, -1, v, 0.0
    span = t - s["run_since"]
    min_ms = p["min_ms"]
    armed = s["armed"] and s["run_count"] > 1
    stuck = armed and s["run_count"] >= p["min_count"] and span >= min_ms
    by_time = 1.0 if min_ms <= 0 else min(1.0, span / min_ms)
    score = min(by_time, min(1.0, s["run_count"] / p["min_count"])) if armed else 0.0
    change = _settle(s, p, t, stuck, stuck, s["run_since"])
    return change, s["onset"], v, score


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
def drift_step(s: np.void, p: np.void, t: int, v: float) -> tuple[int, int, float, float]:
    """A fast event-time EWMA of the channel against a slow EWMA baseline, in units of the
    gap's own usual spread: z = (fast - base) / max(sd, min_sigma), where sd is learned (at
    the baseline's pace) from the gap during the warm-up and whenever |z| < cusum_k, so a
    shift being watched does not widen the yardstick it is measured with.

    The averages move in *ticks*: the readings since the previous tick are summed, and the
    first one at least `tick_ms` after it closes the tick with their mean (a 6-hour average
    needs no 10-second resolution; with `tick_ms` = 0 every reading is a tick). Everything
    below happens once per tick, and `min_count` and `hold_count` count ticks.

    Active after the warm-up while |z| >= z_alarm, or while either side of a two-sided CUSUM
    of z (integrated over event time in units of `cusum_tau_ms`, allowance `cusum_k`,
    saturating at `cusum_h`) is at `cusum_h`; met once active for `min_count` ticks and
    `min_ms`. The signal is the gap, in the channel's unit. NaN readings are skipped."""
    if np.isnan(v):
        return -1, -1, v, 0.0
    if s["first_ts"] < 0:
        s["first_ts"] = t
        s["tick_ts"] = t
        s["fast"] = v
        s["base"] = v
        return -1, -1, 0.0, 0.0
    s["tick_sum"] += v
    s["tick_count"] += 1
    if t - s["tick_ts"] < p["tick_ms"]:
        return -1, -1, s["fast"] - s["base"], s["near"]
    v = s["tick_sum"] / s["tick_count"]
    dt = float(t - s["tick_ts"])
    s["tick_ts"] = t
    s["tick_sum"] = 0.0
    s["tick_count"] = 0
    elapsed = float(t - s["first_ts"])
    s["fast"] += _ewma_weight(dt, p["fast_tau_ms"], elapsed) * (v - s["fast"])
    w = _ewma_weight(dt, p["base_tau_ms"], elapsed)
    s["base"] += w * (v - s["base"])
    gap = s["fast"] - s["base"]
    z = gap / max(math.sqrt(s["var"]), p["min_sigma"])
    warm = elapsed >= p["warmup_ms"]
    if abs(z) < p["cusum_k"] or not warm:
        s["var"] += w * (gap * gap - s["var"])
    drifting = False
    if warm:
        # a gap counts for at most one fast time constant: z is unknown beyond that
        step = min(dt, p["fast_tau_ms"]) / p["cusum_tau_ms"]
        k, h = p["cusum_k"], p["cusum_h"]
        s["cusum_hi"] = min(h, max(0.0, s["cusum_hi"] + (z - k) * step))
        s["cusum_lo"] = min(h, max(0.0, s["cusum_lo"] + (-z - k) * step))
        drifting = abs(z) >= p["z_alarm"] or s["cusum_hi"] >= h or s["cusum_lo"] >= h
        s["near"] = min(1.0, max(abs(z) / p["z_alarm"], max(s["cusum_hi"], s["cusum_lo"]) / h))
    _count_run(s, drifting, t)
    met = drifting and s["run_count"] >= p["min_count"] and t - s["run_since"] >= p["min_ms"]
    change = _settle(s, p, t, met, drifting, s["run_since"])
    return change, s["onset"], gap, s["near"]
