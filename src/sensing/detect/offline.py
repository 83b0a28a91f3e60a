"""`device.offline`: devices that stopped reporting while their gateway is online.

Time is the event time of each gateway's own readings (its watermark), so a gateway with a
skewed clock cannot make every other gateway's devices look silent, and a replay at ×60 gives
the same alerts as real time. A gateway that sends nothing at all advances on the wall clock.

A device's timeout knows its kind before the device has spoken twice: until its usual gap is
learned, the kind's expected interval stands in for it, and the learned gap never brings the
timeout below what that interval gives (see `sensing.kernels.offline` for the formula). Every
timeout also allows one restart (the core cannot tell a reboot from a failure until the device
speaks again, with a new epoch) and the time a gateway may hold a reading in a batch.

No time from an input is taken beyond the core's clock (`now`: the wall clock live, the
simulated one in `sensing-sim offline`): a reading stamped ahead of it counts as heard now,
so one reading from the future (within the skew allowance; later ones are refused before they
get here) cannot move its gateway's watermark and make its other devices look silent, and a
status with any `ts` at all cannot overflow the state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from sensing.arrays import grown
from sensing.kernels.offline import OFFLINE, device_timeout, note_seen, offline_scan
from sensing.wire.kinds import KINDS

if TYPE_CHECKING:
    from sensing.detect.overrides import Overrides
    from sensing.registry import Registry

INT64_MAX = int(np.iinfo(np.int64).max)
OFFLINE_DETECTOR = "device-offline"
"""its name in a detectors file: `[kind.manhole.device-offline] interval_s = 300`"""
MAX_INTERVAL_S = 7 * 86_400.0
"""the longest expected interval (kept in int32 milliseconds per device)"""

DEFAULT_INTERVALS_S: Mapping[str, float] = {"smoke": 60.0, "manhole": 60.0, "wearable": 30.0}
"""What each kind's devices do at the slow end. The project's own devices report every 2-10 s
(`sensing-edge` samples every 5 s, the shipped scenarios every 2, 5 or 10 s); the independent
city replay of issue 13 had smoke detectors and manhole sensors reporting every 45-60 s from
their first reading. A wristband leaves a person unwatched while it is silent, so it is
expected at least every 30 s. Sensors that report less often (a manhole cover's hourly
heartbeat) need their interval set, per kind, area or device (`[kind.manhole.device-offline]
interval_s = 3600`)."""


def _interval_ok(seconds: float) -> bool:
    return math.isfinite(seconds) and 0 < seconds <= MAX_INTERVAL_S


@dataclass(frozen=True, slots=True)
class OfflinePolicy:
    min_timeout_s: float = 60.0
    """never call a device offline sooner than this"""
    factor: float = 5.0
    """... nor before it has been silent for this many of its usual gaps (or of its kind's
    interval, if longer)"""
    gap_alpha: float = 0.2
    """EWMA weight of the newest gap between readings"""
    lateness_s: float = 5.0
    """how far behind its newest reading a gateway's watermark stays (late readings)"""
    idle_s: float = 10.0
    """after this much wall time without a message, a gateway's watermark follows the clock"""
    intervals_s: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_INTERVALS_S))
    """kind -> how often its devices report, at the slow end; kinds not named keep theirs
    from `DEFAULT_INTERVALS_S`. A detectors file can set it per kind, area and device
    (`device-offline`, `interval_s`)"""
    default_interval_s: float = 60.0
    """the same for devices of a kind the contract does not name"""
    restart_s: float = 100.0
    """how long a device may be silent while it restarts (a reboot, a firmware update; the
    city replay's devices came back after 100 s with a new epoch): no device is called
    offline before this plus its interval"""
    batch_delay_s: float = 10.0
    """how long a gateway may hold a reading in a batch beyond its interval (`sensing-edge`
    holds one 0.5 s, or until its backlog drains; others batch for seconds): added to every
    timeout"""

    def __post_init__(self) -> None:
        for name in ("min_timeout_s", "lateness_s", "idle_s", "restart_s", "batch_delay_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= MAX_INTERVAL_S):
                raise ValueError(f"{name} must be seconds in [0, {MAX_INTERVAL_S:.0f}]")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ValueError("factor must be a number >= 1")
        if not 0 < self.gap_alpha <= 1:
            raise ValueError("gap_alpha must be in (0, 1]")
        for kind, seconds in {**self.intervals_s, "": self.default_interval_s}.items():
            if kind and kind not in KINDS:
                raise ValueError(f"intervals_s: unknown kind {kind!r} (expected one of "
                                 f"{', '.join(KINDS)})")
            if not _interval_ok(seconds):
                raise ValueError(f"interval of {kind or 'other kinds'} must be seconds in "
                                 f"(0, {MAX_INTERVAL_S:.0f}]")

    def interval_s(self, kind: str) -> float:
        return self.intervals_s.get(kind, DEFAULT_INTERVALS_S.get(kind, self.default_interval_s))

    def timeout_s(self, kind: str, gap_s: float = 0.0, interval_s: float | None = None
                  ) -> float:
        """How long a device of `kind` whose usual gap is `gap_s` (0: not known yet) may be
        silent on its gateway's watermark, with its kind's interval or `interval_s`."""
        interval = self.interval_s(kind) if interval_s is None else interval_s
        return device_timeout(gap_s * 1000, round(interval * 1000),
                              round(self.min_timeout_s * 1000), self.factor,
                              round(self.restart_s * 1000), round(self.batch_delay_s * 1000)
                              ) / 1000


@dataclass(frozen=True, slots=True)
class OfflineChange:
    device: int
    offline: bool
    """True: silent too long (raise); False: reporting again (clear)"""
    silent_since: int
    """event time of its newest reading"""
    silent_ms: int
    """how long since then on its gateway's watermark (the same clock) when the change was
    seen"""


class OfflineWatch:
    def __init__(self, policy: OfflinePolicy = OfflinePolicy(), capacity: int = 1024,
                 gateways: int = 64) -> None:
        self.policy = policy
        self.last_seen = np.full(capacity, -1, dtype=np.int64)
        self.gap = np.zeros(capacity, dtype=np.float32)
        """EWMA of the gaps between readings, ms (0: not known yet)"""
        self.interval_ms = np.full(capacity, self._ms(policy.default_interval_s), dtype=np.int32)
        """the expected interval of each device (its kind's, or an override), set by `assign`"""
        self.state = np.zeros(capacity, dtype=np.int8)
        self.gw_max_ts = np.full(gateways, -1, dtype=np.int64)
        self.gw_last_wall = np.zeros(gateways, dtype=np.int64)
        self.gw_down = np.zeros(gateways, dtype=np.bool_)
        self.gw_back = np.full(gateways, -1, dtype=np.int64)
        self._assigned = 0
        """devices 0.._assigned-1 have their interval"""

    @staticmethod
    def _ms(seconds: float) -> int:
        return round(seconds * 1000)

    def ensure_capacity(self, n_devices: int, n_gateways: int) -> None:
        if n_devices <= self.last_seen.shape[0] and n_gateways <= self.gw_max_ts.shape[0]:
            return  # the usual case, once per message
        self.last_seen = grown(self.last_seen, n_devices, -1)
        self.gap = grown(self.gap, n_devices, 0.0)
        self.interval_ms = grown(self.interval_ms, n_devices,
                                 self._ms(self.policy.default_interval_s))
        self.state = grown(self.state, n_devices, 0)
        self.gw_max_ts = grown(self.gw_max_ts, n_gateways, -1)
        self.gw_last_wall = grown(self.gw_last_wall, n_gateways, 0)
        self.gw_down = grown(self.gw_down, n_gateways, False)
        self.gw_back = grown(self.gw_back, n_gateways, -1)

    def assign(self, registry: Registry, overrides: Overrides | None = None) -> None:
        """Give the devices the registry learned since the last call their expected interval:
        their kind's (settings, then the detectors file's kind, area and device sections)."""
        n = len(registry.devices)
        first = self._assigned
        if n <= first:
            return
        self.ensure_capacity(n, len(registry.gateways))
        entries = ({} if overrides is None else overrides.kind, {} if overrides is None
                   else overrides.area, {} if overrides is None else overrides.device)

        def override(scope: int, target: str) -> float | None:
            value = entries[scope].get(target, {}).get(OFFLINE_DETECTOR, {}).get("interval_s")
            return None if value is None else float(value)

        table = np.array([self._ms(override(0, k) or self.policy.interval_s(k)) for k in KINDS]
                         + [self._ms(self.policy.default_interval_s)], dtype=np.int32)
        kinds = registry.device_kind[first:n].astype(np.int64)
        self.interval_ms[first:n] = table[np.where(kinds >= 0, kinds, len(KINDS))]
        for area in entries[1]:
            seconds, a = override(1, area), registry.areas.index.get(area)
            if seconds is not None and a is not None:
                placed = registry.device_area[first:n] == a
                self.interval_ms[first:n][placed] = self._ms(seconds)
        for name in entries[2]:
            seconds = override(2, name)
            d = registry.devices.index.get(name)
            if seconds is not None and d is not None and first <= d < n:
                self.interval_ms[d] = self._ms(seconds)
        self._assigned = n

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
                       now_wall: int | None = None) -> int:
        """`ts`: the status's own time, taken no later than `now_wall` (any int is safe).
        Returns the event time the status takes: its `ts`, never ahead of `now_wall`, and an
        `offline` never before the gateway's newest reading nor its last `online` (a last will
        carries the time the gateway connected, which may be hours before it died, and is
        older than the `online` it sent once connected)."""
        self.gw_down[gateway] = not online
        clock = INT64_MAX if now_wall is None else now_wall
        ts = max(min(ts, clock), -1)
        newest = int(self.gw_max_ts[gateway])
        if online:
            # its devices get a full timeout from now before they can be called offline
            self.gw_back[gateway] = max(ts, newest)
            return max(ts, 0)
        return max(min(max(ts, newest, int(self.gw_back[gateway])), clock), 0)

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
        out_silent = np.empty(n_devices, dtype=np.int64)
        p = self.policy
        k = offline_scan(n_devices, self.last_seen, self.gap, self.interval_ms, device_gateway,
                         marks, self.gw_down, self.gw_back, self._ms(p.min_timeout_s), p.factor,
                         self._ms(p.restart_s), self._ms(p.batch_delay_s), self.state, out_dev,
                         out_state, out_silent)
        return [OfflineChange(int(d), bool(s == OFFLINE), int(self.last_seen[d]), int(silent))
                for d, s, silent in zip(out_dev[:k], out_state[:k], out_silent[:k],
                                        strict=True)]
