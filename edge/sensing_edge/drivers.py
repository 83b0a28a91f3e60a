"""How the edge agent reads its sensors: a driver returns the samples measured since last poll."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SensorSample:
    """One measurement of one device, before the agent numbers it (epoch, seq)."""

    device: str
    kind: str
    ts: int
    """measurement time, ms since the Unix epoch (UTC)"""
    values: dict[str, float]
    battery: float | None = None


class Driver(Protocol):
    """A source of samples. `poll` must not block; it returns what is due at `now_ms`."""

    def poll(self, now_ms: int) -> list[SensorSample]: ...
