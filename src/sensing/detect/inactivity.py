"""`wearable.inactivity`: no steps for too long in the daytime, on the wristband's steps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensing.detect.base import F64, I32, I64, DetectorSpec
from sensing.detect.kernel import HOUR_S, KernelDetector, Outputs, State, ms, span
from sensing.kernels.inactivity import inactivity_levels
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


class InactivityDetector(KernelDetector):
    layout = (
        ("last_ts", np.int64, -1), ("still_since", np.int64, -1), ("level", np.int8, 0),
        ("onset", np.int64, -1),
    )

    def __init__(self, params: InactivityParams | None = None, capacity: int = 1024) -> None:
        self.params = params if params is not None else InactivityParams()
        super().__init__(
            DetectorSpec("wearable-inactivity", "wearable.inactivity", "wearable", "steps"),
            Grade.MAJOR, capacity)

    def _run(self, dev: I32, ts: I64, val: F64, state: State, out: Outputs,
             progress: F64) -> int:
        p, s = self.params, state
        return int(inactivity_levels(
            dev, ts, val, ms(p.limit_s), ms(p.day_start_h * HOUR_S), ms(p.day_end_h * HOUR_S),
            ms(p.utc_offset_h * HOUR_S), s["last_ts"], s["still_since"], s["level"],
            s["onset"], *out, progress))

    def describe(self, level: int, signal: float) -> str:
        return (f"no steps for {signal:.1f} h in the daytime "
                f"(limit {span(self.params.limit_s)})")
