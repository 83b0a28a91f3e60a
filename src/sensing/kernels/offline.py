"""Dead-man timers per device on event time: who has gone quiet for too long.

`note_seen` keeps, per device, the event time of the newest reading and an EWMA of the gaps
between readings (float32: milliseconds to 7 significant digits). `offline_scan` compares each
device's silence with its timeout, measured on the watermark of the device's gateway::

    cadence = max(usual gap, the device's expected interval)     (interval alone before a gap)
    timeout = max(min_timeout, factor * cadence, restart + cadence) + delay

and keeps each device's state: 0 reporting, 1 offline, 2 silent but held back because its
gateway is offline (no alert while the gateway alert stands). It reports the devices that went
offline and those that came back from offline, with how long since each one's newest reading
on its gateway's watermark; changes to and from "held" are silent. A gateway's return
(`gateway_back`) restarts its devices' timers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sensing.kernels.jit import ix

REPORTING = np.int8(0)
OFFLINE = np.int8(1)
HELD = np.int8(2)


@njit(cache=True, nogil=True)
def note_seen(dev: np.ndarray, ts: np.ndarray, last_seen: np.ndarray, gap: np.ndarray,
              alpha: float) -> int:
    """Returns the newest `ts` (-1 for none)."""
    newest = -1
    for i in range(dev.shape[0]):
        d = ix(dev[i])
        t = ts[i]
        newest = max(newest, t)
        prev = last_seen[d]
        if t <= prev:
            continue  # late or repeated: the device was heard of later already
        if prev >= 0:
            g = float(t - prev)
            old = float(gap[d])
            gap[d] = g if old <= 0.0 else (1.0 - alpha) * old + alpha * g
        last_seen[d] = t
    return newest


@njit(cache=True, nogil=True)
def device_timeout(gap: float, interval_ms: float, min_timeout_ms: int, factor: float,
                   restart_ms: int, delay_ms: int) -> float:
    """How long a device may stay silent (ms of its gateway's watermark)."""
    cadence = max(gap, interval_ms)
    return max(float(min_timeout_ms), factor * cadence, restart_ms + cadence) + delay_ms


@njit(cache=True, nogil=True)
def offline_scan(n_devices: int, last_seen: np.ndarray, gap: np.ndarray,
                 interval_ms: np.ndarray, device_gateway: np.ndarray,
                 gateway_watermark: np.ndarray, gateway_down: np.ndarray,
                 gateway_back: np.ndarray, min_timeout_ms: int, factor: float,
                 restart_ms: int, delay_ms: int, state: np.ndarray, out_dev: np.ndarray,
                 out_state: np.ndarray, out_silent: np.ndarray) -> int:
    n_out = 0
    shortest = max(min_timeout_ms, restart_ms) + delay_ms  # no timeout is shorter
    for d in range(n_devices):
        if last_seen[d] < 0 or device_gateway[d] < 0:
            continue  # never heard of, or under no gateway: no watermark to measure on
        g = ix(device_gateway[d])
        silent = gateway_watermark[g] - max(last_seen[d], gateway_back[g])
        if silent <= shortest and state[d] == REPORTING:
            continue  # the usual case: reporting, and heard of recently
        new = REPORTING
        if silent > device_timeout(float(gap[d]), float(interval_ms[d]), min_timeout_ms, factor,
                                   restart_ms, delay_ms):
            new = HELD if gateway_down[g] else OFFLINE
        old = state[d]
        if new != old:
            state[d] = new
            if new == HELD or (new == REPORTING and old == HELD):
                continue  # nothing was raised, nothing to clear
            out_dev[n_out] = d
            out_state[n_out] = new
            out_silent[n_out] = gateway_watermark[g] - last_seen[d]
            n_out += 1
    return n_out
