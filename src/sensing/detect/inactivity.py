"""`wearable.inactivity`: no steps for too long in the daytime, on the wristband's steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sensing.detect.base import DetectorSpec
from sensing.detect.checks import HOUR_S, Check, CheckView, bank_of_one, ms, span
from sensing.kernels.checks import INACTIVITY
from sensing.wire.messages import Grade


@dataclass(frozen=True, slots=True)
class InactivityParams:
    limit_s: float = 3 * HOUR_S
    """longer than a nap or a film, short enough to find a person who cannot get up the
    same day"""
    day_start_h: float = 8.0
    day_end_h: float = 21.0
    """local hours in which stillness counts; a raised alert outlasts day_end_h until steps"""
    utc_offset_h: float = 8.0
    """local time of the pilot city (China Standard Time, UTC+8, no daylight saving)"""

    def __post_init__(self) -> None:
        if self.limit_s <= 0:
            raise ValueError("limit_s must be positive")
        if not 0 <= self.day_start_h < self.day_end_h <= 24:
            raise ValueError("need 0 <= day_start_h < day_end_h <= 24")
        if not -14 <= self.utc_offset_h <= 14:
            raise ValueError("utc_offset_h must be within -14..14")


class Inactivity(Check[InactivityParams]):
    code = INACTIVITY
    grade = Grade.MAJOR

    def __init__(self, params: InactivityParams | None = None) -> None:
        super().__init__(
            DetectorSpec("wearable-inactivity", "wearable.inactivity", "wearable", "steps"),
            params if params is not None else InactivityParams())

    def param_record(self, p: InactivityParams) -> dict[str, Any]:
        return {"limit_ms": ms(p.limit_s), "day_start_ms": ms(p.day_start_h * HOUR_S),
                "day_end_ms": ms(p.day_end_h * HOUR_S), "offset_ms": ms(p.utc_offset_h * HOUR_S)}

    def describe(self, level: int, signal: float, p: InactivityParams) -> str:
        return f"no steps for {signal:.1f} h in the daytime (limit {span(p.limit_s)})"


class InactivityDetector(CheckView):
    """`Inactivity` as a detector with its own state."""

    def __init__(self, params: InactivityParams | None = None, capacity: int = 1024) -> None:
        super().__init__(bank_of_one(Inactivity(params), capacity), 0)
