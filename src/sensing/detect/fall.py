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
    """Threshold fall detection on the wrist, as in the SisFall data set's baselines (Sucerquia,
    López and Vargas-Bonilla, "SisFall: A Fall and Movement Data Set", Sensors 17(1), 2017):
    an impact peak in the acceleration magnitude, then the posture and stillness of a person
    on the floor. The data set's daily activities (stumbles, jumps, sitting down hard) pass
    the impact thresholds too and are followed by walking on: movement or steps after the
    impact cancel it."""

    impact_g: float = 2.5
    """Wrist and trunk fall-detection studies put impact thresholds at about 2-3.5 g (e.g.
    Bourke et al. 2007, Kangas et al. 2008); walking peaks at 1.2-1.6 g"""
    still_low_g: float = 0.9
    still_high_g: float = 1.15
    """lying still: gravity alone, within the peak-magnitude noise of a resting wrist"""
    still_s: float = 10.0
    """long enough that a stumble with recovery moves again, short enough to call help fast"""
    window_s: float = 60.0
    """the stillness must begin within this after the impact"""
    move_s: float = 10.0
    """movement (readings outside the still band) lasting this long after the impact cancels
    it: as long as the stillness that would confirm a fall; the thrashing of the fall itself
    and turning over on the floor are shorter"""
    cancel_steps: int = 3
    """steps counted after the impact that cancel it: a wearer walking on (a pedometer can
    count a fall's jolts as a step or two)"""

    def __post_init__(self) -> None:
        if not 0 < self.still_low_g <= self.still_high_g < self.impact_g:
            raise ValueError("need 0 < still_low_g <= still_high_g < impact_g")
        if self.still_s < 0 or not self.still_s <= self.window_s <= 86_400:
            raise ValueError("need 0 <= still_s <= window_s <= 1 day")
        if self.move_s < 0 or self.cancel_steps < 1:
            raise ValueError("need move_s >= 0 and cancel_steps >= 1")


class Fall(Check[FallParams]):
    """Critical, latching: the alert stays open until a person resolves it (and the engine
    clears the device); only then can the device's next fall be reported. Fed accel_g, and the
    wristband's steps where the bank routes them (`also`)."""

    code = FALL
    grade = Grade.CRITICAL
    also = ("steps",)

    def __init__(self, params: FallParams | None = None) -> None:
        super().__init__(
            DetectorSpec("wearable-fall", "wearable.fall", "wearable", "accel_g", latching=True),
            params if params is not None else FallParams())

    def param_record(self, p: FallParams) -> dict[str, Any]:
        return {"impact_g": p.impact_g, "still_low": p.still_low_g, "still_high": p.still_high_g,
                "still_ms": ms(p.still_s), "window_ms": ms(p.window_s), "move_ms": ms(p.move_s),
                "cancel_steps": float(p.cancel_steps)}

    def describe(self, level: int, signal: float, p: FallParams) -> str:
        return f"fall: impact of {signal:.1f} g, then lying still for {span(p.still_s)}"


class FallDetector(CheckView):
    """`Fall` as a detector with its own state."""

    def __init__(self, params: FallParams | None = None, capacity: int = 1024) -> None:
        super().__init__(bank_of_one(Fall(params), capacity), 0)
