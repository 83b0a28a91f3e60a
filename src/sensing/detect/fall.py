"""`wearable.fall`: an impact followed by lying still, on the wristband's accel_g."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sensing.detect.base import DetectorSpec
from sensing.detect.checks import Check, CheckView, bank_of_one, ms, span
from sensing.kernels.checks import FALL
from sensing.wire.messages import Grade


@dataclass(frozen=True, slots=True)
class FallParams:
    impact_g: float = 2.5
    """Wrist and trunk fall-detection studies put impact thresholds at about 2-3.5 g (e.g.
    Bourke et al. 2007, Kangas et al. 2008); walking peaks at 1.2-1.6 g"""
    still_low_g: float = 0.9
    still_high_g: float = 1.15
    """lying still: gravity alone, within the peak-magnitude noise of a resting wrist"""
    still_s: float = 10.0
    """long enough that a stumble with recovery moves again, short enough to call help fast"""
    window_s: float = 60.0
    """the stillness must be established within this after the impact"""

    def __post_init__(self) -> None:
        if not 0 < self.still_low_g <= self.still_high_g < self.impact_g:
            raise ValueError("need 0 < still_low_g <= still_high_g < impact_g")
        if self.still_s < 0 or self.window_s < self.still_s:
            raise ValueError("need 0 <= still_s <= window_s")


class Fall(Check[FallParams]):
    """Critical, latching: the alert stays open until a person resolves it (and the engine
    clears the device); only then can the device's next fall be reported."""

    code = FALL
    grade = Grade.CRITICAL

    def __init__(self, params: FallParams | None = None) -> None:
        super().__init__(
            DetectorSpec("wearable-fall", "wearable.fall", "wearable", "accel_g", latching=True),
            params if params is not None else FallParams())

    def param_record(self, p: FallParams) -> dict[str, Any]:
        return {"impact_g": p.impact_g, "still_low": p.still_low_g, "still_high": p.still_high_g,
                "still_ms": ms(p.still_s), "window_ms": ms(p.window_s)}

    def describe(self, level: int, signal: float, p: FallParams) -> str:
        return f"fall: impact of {signal:.1f} g, then lying still for {span(p.still_s)}"


class FallDetector(CheckView):
    """`Fall` as a detector with its own state."""

    def __init__(self, params: FallParams | None = None, capacity: int = 1024) -> None:
        super().__init__(bank_of_one(Fall(params), capacity), 0)
