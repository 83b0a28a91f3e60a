"""`device.offline`: devices that stopped reporting while their gateway is online.

Time is the event time of each gateway's own readings (its watermark), so a gateway with a
skewed clock cannot make every other gateway's devices look silent, and a replay at ×60 gives
the same alerts as real time. A gateway that sends nothing at all advances on the wall clock.

No time from an input is taken beyond the core's clock (`now`: the wall clock live, the
simulated one in `sensing-sim offline`): a reading stamped ahead of it counts as heard now,
so one reading from the future (within the skew allowance; later ones are refused before they
get here) cannot move its gateway's watermark and make its other devices look silent, and a
status with any `ts` at all cannot overflow the state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensing.arrays import grown
from sensing.kernels.offline import OFFLINE, note_seen, offline_scan

INT64_MAX = int(np.iinfo(np.int64).max)


@dataclass(frozen=True, slots=True)
class OfflinePolicy:
    min_timeout_s: float = 60.0
    """never call a device offline sooner than this"""
    factor: float = 5.0
    """... nor before it has been silent for this many of its usual gaps"""
    gap_alpha: float = 0.2
    """EWMA weight of the newest gap between readings"""
    lateness_s: float = 5.0
    """how far behind its newest reading a gateway's watermark stays (late readings)"""
    idle_s: float = 10.0
    """after this much wall time without a message, a gateway's watermark follows the clock"""


@dataclass(frozen=True, slots=True)
class OfflineChange:
    device: int
    offline: bool
    """True: silent too long (raise); False: reporting again (clear)"""
    silent_since: int


class OfflineWatch:
    def __init__(self, policy: OfflinePolicy = OfflinePolicy(), capacity: int = 1024,
                 gateways: int = 64) -> None:
        self.policy = policy
        self.last_seen = np.full(capacity, -1, dtype=np.int64)
        self.gap = np.zeros(capacity, dtype=np.float64)
        self.state = np.zeros(capacity, dtype=np.int8)
        self.gw_max_ts = np.full(gateways, -1, dtype=np.int64)
        self.gw_last_wall = np.zeros(gateways, dtype=np.int64)
        self.gw_down = np.zeros(gateways, dtype=np.bool_)
        self.gw_back = np.full(gateways, -1, dtype=np.int64)

    def ensure_capacity(self, n_devices: int, n_gateways: int) -> None:
        if n_devices <= self.last_seen.shape[0] and n_gateways <= self.gw_max_ts.shape[0]:
            return  # the usual case, once per message
        self.last_seen = grown(self.last_seen, n_devices, -1)
        self.gap = grown(self.gap, n_devices, 0.0)
        self.state = grown(self.state, n_devices, 0)
        self.gw_max_ts = grown(self.gw_max_ts, n_gateways, -1)
        self.gw_last_wall = grown(self.gw_last_wall, n_gateways, 0)
        self.gw_down = grown(self.gw_down, n_gateways, False)
        self.gw_back = grown(self.gw_back, n_gateways, -1)

    def seen(self, dev: npt.NDArray[np.int32], ts: npt.NDArray[np.int64],
             gateway: int, now_wall: int) -> None:
        """Readings of one message (one gateway), heard at `now_wall` (the step's clock)."""
        if not dev.size:
            return
        if int(ts.max()) > now_wall:
            ts = np.minimum(ts, now_wall)
        newest = note_seen(dev, ts, self.last_seen, self.gap, self.policy.gap_alpha)
        self.gw_max_ts[gateway] = max(int(self.gw_max_ts[gateway]), newest)
        self.gw_last_wall[gateway] = now_wall

    def seen_rows(self, dev: npt.NDArray[np.int32], ts: npt.NDArray[np.int64],
                  gateway: npt.NDArray[np.int32], now_wall: int) -> None:
        """Readings of many messages, `gateway` per reading: as `seen` per message, in one
        pass."""
        if not dev.size:
            return
        if int(ts.max()) > now_wall:
            ts = np.minimum(ts, now_wall)
        note_seen(dev, ts, self.last_seen, self.gap, self.policy.gap_alpha)
        np.maximum.at(self.gw_max_ts, gateway, ts)
        self.gw_last_wall[gateway] = now_wall

    def gateway_status(self, gateway: int, online: bool, ts: int,
                       now_wall: int | None = None) -> None:
        """`ts`: the status's own time, taken no later than `now_wall` (any int is safe)."""
        self.gw_down[gateway] = not online
        ts = max(min(ts, INT64_MAX if now_wall is None else now_wall), -1)
        if online:
            # its devices get a full timeout from now before they can be called offline
            self.gw_back[gateway] = max(ts, int(self.gw_max_ts[gateway]))

    def watermarks(self, n_gateways: int, now_wall: int) -> npt.NDArray[np.int64]:
        lateness = int(self.policy.lateness_s * 1000)
        idle = int(self.policy.idle_s * 1000)
        mark = self.gw_max_ts[:n_gateways] - lateness
        quiet = now_wall - self.gw_last_wall[:n_gateways]
        follow = (quiet > idle) & (self.gw_max_ts[:n_gateways] >= 0)
        mark[follow] += quiet[follow] - idle
        return mark

    def scan(self, device_gateway: npt.NDArray[np.int32], n_devices: int, n_gateways: int,
             now_wall: int) -> list[OfflineChange]:
        marks = np.full(self.gw_max_ts.shape[0], -1, dtype=np.int64)
        marks[:n_gateways] = self.watermarks(n_gateways, now_wall)
        out_dev = np.empty(n_devices, dtype=np.int64)
        out_state = np.empty(n_devices, dtype=np.int8)
        k = offline_scan(n_devices, self.last_seen, self.gap, device_gateway, marks,
                         self.gw_down, self.gw_back, int(self.policy.min_timeout_s * 1000),
                         self.policy.factor, self.state, out_dev, out_state)
        return [OfflineChange(int(d), bool(s == OFFLINE), int(self.last_seen[d]))
                for d, s in zip(out_dev[:k], out_state[:k], strict=True)]
