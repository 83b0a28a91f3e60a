"""Field cases that are no incident: what a correct core must ride out without an alert, or
without disturbing an incident's alert.

- `WristBang` (a nuisance on a wristband): the wearer knocks the wrist on a door frame or a
  table, a 3 g impact, walks on (steps, movement) and later sits down to rest. No
  `wearable.fall`: steps and movement after the impact show the wearer did not fall, even
  though the rest that follows is as still as lying on the floor.
- `Reboot` (a device's firmware restarts): the device is silent for up to `REBOOT_MAX_S`,
  then reports under a new epoch, seqs from 0 (the contract's `epoch` counts a device's
  restarts). No `device.offline`: the silence stays inside its offline timeout, which allows
  a restart's silence (`incidents.device_timeout_s`; a longer one is refused: it is an
  outage, to label as `device.offline`), and a device met again under a new epoch is the
  same device, not one whose cadence is unknown.
- `LateReadings` (a backlog): one device's readings sampled in `[from_s, to_s)` reach the
  broker only at `arrive_s`, after newer ones (a repeater's or a second gateway's
  store-and-forward queue, a slow link). Put on an incident (`[[incidents]] late`), ordinary
  readings from before it arrive inside it: the incident's alert must stay open
  (`Incident.stays_open`), and must not be raised again.
- `Cadence` (a gateway's devices, slower): every device under the gateway samples every 45 to
  60 s (each its own interval, drawn from `interval_s`) from its first reading, and the
  gateway forwards what it heard every `batch_s` (a LoRaWAN or NB-IoT gateway batching its
  uplink). No `device.offline` at start-up, before the core has heard a device twice.

They are part of a scenario (`sensing_sim.scenario`); the fleet (`Fleet.add_nuisance`,
`add_reboot`, `add_late_readings`, `FleetSpec.cadences`) and the transport
(`sensing_sim.transport`) play them. The labels do not name them: any alert they cause
matches no label and counts as a false positive (or, on an incident's device, a duplicate
or an early resolve).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from sensing_sim.incidents import (
    FALL_IMPACT_S,
    FALL_STILL_G,
    STILL_WOBBLE_G,
    device_timeout_s,
)

Values = dict[str, float]

NUISANCE_TYPES: Final[dict[str, str]] = {
    # type: kind of device it happens on
    "wrist_bang": "wearable",
}
BANG_LEVEL_G: Final = 3.0
"""the peak of a knock on the wrist: as hard as the impact of a fall from standing (3-6 g)"""
BANG_WALK_S: Final = 40.0
"""walking on after the knock: steps and movement for this long"""
BANG_REST_S: Final = 120.0
"""then sitting down: as still as lying on the floor, for this long"""
WALK_CADENCE_HZ: Final = 1.7
"""steps per second while walking on"""
REBOOT_MAX_S: Final = 100.0
"""how long a device's firmware takes to restart at most (a watchdog reset, an update)"""


@dataclass(frozen=True, slots=True)
class WristBang:
    """A knock on the wrist (`level` g), walking on for `walk_s`, then rest until `end_s`."""

    device: str
    gateway: str
    area: str
    start_s: float
    end_s: float
    level: float = BANG_LEVEL_G
    walk_s: float = BANG_WALK_S
    type: str = "wrist_bang"

    def __post_init__(self) -> None:
        if self.type not in NUISANCE_TYPES:
            raise ValueError(f"unknown nuisance {self.type!r} (one of {', '.join(NUISANCE_TYPES)})")
        if not 0.0 <= self.start_s < self.end_s:
            raise ValueError(f"nuisance window [{self.start_s}, {self.end_s}) is empty")
        if not (math.isfinite(self.level) and self.level > 0 and self.walk_s >= 0):
            raise ValueError("a wrist bang needs a positive level and walk_s >= 0")

    @classmethod
    def of(cls, device: str, gateway: str, area: str, start_s: float,
           end_s: float | None = None, level: float | None = None,
           walk_s: float | None = None) -> WristBang:
        walk = BANG_WALK_S if walk_s is None else walk_s
        return cls(device, gateway, area, start_s,
                   start_s + FALL_IMPACT_S + walk + BANG_REST_S if end_s is None else end_s,
                   BANG_LEVEL_G if level is None else level, walk)

    @property
    def kind(self) -> str:
        return NUISANCE_TYPES[self.type]

    def silences(self, t_s: float) -> bool:
        return False

    def apply(self, t_s: float, values: Values, battery: float,
              since_s: float | None = None) -> tuple[Values, float]:
        """The device's reading at `t_s`, from its quiet reading; `since_s`: the time of its
        previous reading, if any (accel_g is the peak since then, so the first reading after
        the knock carries it, however long the device's interval)."""
        if not self.start_s <= t_s < self.end_s:
            return values, battery
        e = t_s - self.start_s
        v = dict(values)
        first = since_s is None or since_s < self.start_s
        if e < FALL_IMPACT_S or first:
            v["accel_g"] = self.level
        elif e < FALL_IMPACT_S + self.walk_s:  # walking on
            dt = t_s - since_s if since_s is not None else 1.0
            v["accel_g"] = round(1.35 + 0.1 * math.sin(e), 2)  # walking peaks: 1.2-1.6 g
            v["steps"] = float(max(1, round(WALK_CADENCE_HZ * dt)))
        else:  # sitting down to rest: gravity alone at the wrist, no steps
            v["accel_g"] = round(FALL_STILL_G + STILL_WOBBLE_G * abs(math.sin(e / 7.0)), 2)
            v["steps"] = 0.0
        return v, battery

    def to_dict(self) -> dict[str, object]:
        return {"type": self.type, "device": self.device, "gateway": self.gateway,
                "area": self.area, "start_s": self.start_s, "end_s": self.end_s,
                "level": self.level, "walk_s": self.walk_s}


@dataclass(frozen=True, slots=True)
class Reboot:
    """A device silent from `at_s` for `down_s`, then under a new epoch, seqs from 0."""

    device: str
    gateway: str
    at_s: float
    down_s: float = REBOOT_MAX_S

    def __post_init__(self) -> None:
        if not (self.at_s >= 0 and 0 < self.down_s <= REBOOT_MAX_S):
            raise ValueError(f"a reboot needs at_s >= 0 and 0 < down_s <= {REBOOT_MAX_S:g}")

    def check_interval(self, kind: str, interval_s: float) -> None:
        """Raises ValueError if the silence, with the device's interval, would make an outage
        a correct core calls offline (beyond its timeout)."""
        timeout = device_timeout_s(kind, interval_s)
        if self.down_s + interval_s >= timeout:
            raise ValueError(
                f"{self.device} reads every {interval_s:g} s: silent {self.down_s:g} s, it is "
                f"offline by the core's rule ({timeout:g} s), not rebooting quietly; script "
                f"a device.offline")


@dataclass(frozen=True, slots=True)
class LateReadings:
    """The readings of `device` sampled in [from_s, to_s) reach the broker at `arrive_s`."""

    device: str
    gateway: str
    from_s: float
    to_s: float
    arrive_s: float

    def __post_init__(self) -> None:
        if not 0 <= self.from_s < self.to_s <= self.arrive_s:
            raise ValueError("late readings need 0 <= from_s < to_s <= arrive_s")


@dataclass(frozen=True, slots=True)
class Cadence:
    """The devices under `gateway` sample every `interval_s` (each its own, drawn from the
    range) from their first reading; the gateway forwards every `batch_s` (0: every poll)."""

    gateway: str
    interval_s: tuple[float, float] = (45.0, 60.0)
    batch_s: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.interval_s
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.05 <= lo <= hi <= 86_400):
            raise ValueError("a cadence's interval_s must be [low, high] within 0.05..86400 s")
        if not (math.isfinite(self.batch_s) and 0 <= self.batch_s <= 3600):
            raise ValueError("batch_s must be between 0 and 3600 seconds")
