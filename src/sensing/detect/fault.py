"""`device.fault`: impossible values, stuck sensors and drift, one check per (kind, channel)."""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from sensing.detect.base import DetectorSpec
from sensing.detect.checks import (
    DAY_S,
    HOUR_S,
    MINUTE_S,
    Check,
    CheckView,
    bank_of_one,
    ms,
    span,
)
from sensing.kernels.checks import DRIFT, IMPOSSIBLE, STUCK
from sensing.kernels.fault import STUCK_TICK_MS
from sensing.wire.kinds import CHANNEL_UNITS, KIND_CHANNELS
from sensing.wire.messages import Grade

FAULT = "device.fault"

def _check_hold(hold_s: float, hold_count: int) -> None:
    if hold_s < 0 or hold_count < 1:
        raise ValueError("hold_s must be >= 0 and hold_count >= 1")


def _hold(hold_s: float, hold_count: int) -> dict[str, int]:
    return {"hold_ms": ms(hold_s), "hold_count": hold_count}


def _unit(channel: str) -> str:
    unit = CHANNEL_UNITS.get(channel, "")
    return f" {unit}" if unit else ""


P = TypeVar("P")


class FaultCheck(Check[P]):
    """One fault check on one (kind, channel), graded minor, named "{kind}-{channel}-{check}"."""

    check: ClassVar[str]
    grade = Grade.MINOR

    def __init__(self, kind: str, channel: str, params: P | None = None) -> None:
        super().__init__(DetectorSpec(f"{kind}-{channel}-{self.check}", FAULT, kind, channel),
                         params if params is not None else self.default(kind, channel))

    @abstractmethod
    def default(self, kind: str, channel: str) -> P:
        """The parameters for this kind and channel when none are given."""


# --- impossible values -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImpossibleParams:
    low: float
    high: float
    integral: bool = False
    """values must be whole numbers (counts, on/off)"""
    min_count: int = 2
    """consecutive impossible readings: one garbled reading is not yet a fault"""
    hold_s: float = 10 * MINUTE_S
    hold_count: int = 3
    """the fault clears after this many plausible readings spanning hold_s"""

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError("low must not exceed high")
        if self.min_count < 1:
            raise ValueError("min_count must be >= 1")
        _check_hold(self.hold_s, self.hold_count)


PHYSICAL_LIMITS: dict[str, ImpossibleParams] = {
    # optical smoke obscuration is a fraction of light lost per metre
    "obscuration": ImpossibleParams(0.0, 100.0),
    # beyond the thermistors of home smoke/heat detectors (the unit melts first)
    "temp_c": ImpossibleParams(-40.0, 150.0),
    # full scale of electrochemical CO cells is 1,000-10,000 ppm
    "co_ppm": ImpossibleParams(0.0, 10_000.0),
    # an angle from level; upside down is 180
    "tilt_deg": ImpossibleParams(0.0, 180.0),
    # negative: water over the cover (a flooded street, at most about 1 m); no manhole
    # is 50 m deep
    "water_m": ImpossibleParams(-1.0, 50.0),
    # catalytic / IR methane heads report 0-100 % LEL
    "gas_lel": ImpossibleParams(0.0, 100.0),
    # outside what a human heart does (and what wrist PPG can report)
    "heart_rate": ImpossibleParams(20.0, 250.0),
    # oximeters do not report below about 50 % (ISO 80601-2-61 accuracy is for 70-100 %)
    "spo2": ImpossibleParams(50.0, 100.0),
    # a magnitude, within the ±16 g full scale of wearable MEMS accelerometers
    "accel_g": ImpossibleParams(0.0, 16.0),
    "steps": ImpossibleParams(0.0, np.inf, integral=True),
    "sos": ImpossibleParams(0.0, 1.0, integral=True),
}


class ImpossibleValues(FaultCheck[ImpossibleParams]):
    """A channel reporting values its sensor cannot measure (broken sensor or firmware)."""

    check = "impossible"
    code = IMPOSSIBLE

    def default(self, kind: str, channel: str) -> ImpossibleParams:
        return PHYSICAL_LIMITS[channel]

    def param_record(self, p: ImpossibleParams) -> dict[str, Any]:
        return {"low": p.low, "high": p.high, "integral": p.integral, "min_count": p.min_count,
                **_hold(p.hold_s, p.hold_count)}

    def describe(self, level: int, signal: float, p: ImpossibleParams) -> str:
        what = "whole numbers" if p.integral else "values"
        where = f">= {p.low:g}" if np.isinf(p.high) else f"within {p.low:g}..{p.high:g}"
        return (f"{self.spec.channel} {signal:.4g}{_unit(self.spec.channel)} is impossible "
                f"(expected {what} {where}) for {p.min_count} readings: sensor fault")


# --- stuck sensor -------------------------------------------------------------------------
#
# The method is the flat-line test of the U.S. IOOS QARTOD manuals (e.g. "Manual for
# Real-Time Quality Control of In-situ Temperature and Salinity Data", 2015, and ioos_qc's
# `flat_line_test`): readings repeating within a tolerance over a span are a failed sensor,
# the span chosen per sensor "based on expert judgment". The spans below are what a
# maintenance technician would send a crew for: tens of minutes, and at least 30 readings, so
# that a device reporting every few minutes needs hours of sameness, not a handful of
# readings that can agree by chance. Two rules keep channels that legitimately sit still from
# crying wolf: a value at the channel's resting level (0 % LEL of gas in clean air, 0 ppm CO,
# no smoke) is never stuck, and only a channel that was showing noise before the run (a share
# `min_noise` of its readings differing from the one before) can be stuck at all: a sensor
# whose resolution is coarser than its signal's noise repeats itself legitimately.
#
# The checks see a device's first reading in each minute (`STUCK_TICK_MS`; the readings
# counted below are those), and every reading while one is raised: a frozen sensor repeats
# itself at every reading and a noisy one differs from minute to minute as from reading to
# reading, and looking at every reading of devices that report every few seconds would cost
# as much as all the other checks together.


@dataclass(frozen=True, slots=True)
class StuckParams:
    min_count: int = 30
    min_duration_s: float = 30 * MINUTE_S
    epsilon: float = 1e-9
    """readings are decimals of the sensor's resolution, far above this: it only absorbs
    floating-point noise, so 'unchanged' means unchanged"""
    rest_low: float = math.inf
    rest_high: float = -math.inf
    """a run at a value within [rest_low, rest_high] is the channel at rest, never stuck; the
    default (low above high) has no resting value"""
    min_noise: float = 0.25
    """the share of readings that differed from the one before, when the run starts (an
    average over about the last `noise_readings`, from 0: a noisy channel shows it after 6-10
    readings), below which the channel was quiet rather than noisy and its run does not count
    (a fault already raised counts regardless)"""
    noise_readings: int = 16
    hold_s: float = 0.0
    hold_count: int = 1
    """a sensor that moves again is alive: the fault clears at the first reading that differs
    (while raised, the check sees every reading, not one a minute), so that the alarm rules
    its fault holds back (`sensing.kernels.gate`) see a fire at once"""

    def __post_init__(self) -> None:
        if self.min_count < 2 or self.min_duration_s < 0 or self.epsilon < 0:
            raise ValueError("min_count must be >= 2, min_duration_s and epsilon >= 0")
        if math.isnan(self.rest_low) or math.isnan(self.rest_high):
            raise ValueError("rest_low and rest_high must be numbers (low > high: no rest)")
        if not 0 <= self.min_noise <= 1 or not 1 <= self.noise_readings <= 10_000:
            raise ValueError("min_noise must be within 0..1 and noise_readings 1..10000")
        _check_hold(self.hold_s, self.hold_count)


STUCK_DEFAULTS: dict[tuple[str, str], StuckParams] = {
    # Manhole covers: an accelerometer's tilt, an ultrasonic or radar distance to the water and
    # a gas head all show noise at their resolution; half an hour without it is a dead sensor
    # (the cover can be moved, flooded or gassed meanwhile without anyone knowing).
    ("manhole", "tilt_deg"): StuckParams(),
    ("manhole", "water_m"): StuckParams(),
    # 0 % LEL is clean air: catalytic and IR heads sit at their zero (zero suppression)
    ("manhole", "gas_lel"): StuckParams(rest_low=0.0, rest_high=0.0),
    # A smoke chamber's obscuration in clean air is noise around its clean-air level; 0 is a
    # chamber that reports no smoke at all, which clean air may do.
    ("smoke", "obscuration"): StuckParams(rest_low=0.0, rest_high=0.0),
    # Electrochemical CO cells read 0 ppm in clean air.
    ("smoke", "co_ppm"): StuckParams(rest_low=0.0, rest_high=0.0),
    # A quiet room can hold its temperature to a reading's resolution for most of an hour at
    # night (a heated room at its thermostat's set point, a detector reporting 0.1 °C steps): 2 h.
    ("smoke", "temp_c"): StuckParams(min_duration_s=2 * HOUR_S),
    # A wrist PPG heart rate wanders by several bpm within minutes (breathing, heart-rate
    # variability), awake or asleep; the same integer for 30 min is a frozen sensor.
    # (Off-wrist bands report 0 or nothing, which the other checks see.)
    ("wearable", "heart_rate"): StuckParams(),
    # SpO2 is a whole percentage: a wrist oximeter's reading wanders by a point or two from
    # minute to minute (ISO 80601-2-61 accuracy is 2-4 % Arms); one that does not shows no
    # noise and is not watched. 100 % is where a saturated oximeter sits: at rest.
    ("wearable", "spo2"): StuckParams(rest_low=100.0, rest_high=100.0),
}


class StuckValues(FaultCheck[StuckParams]):
    """A channel that normally varies repeating one value (a frozen sensor or firmware)."""

    check = "stuck"
    code = STUCK

    def default(self, kind: str, channel: str) -> StuckParams:
        return STUCK_DEFAULTS[(kind, channel)]

    def param_record(self, p: StuckParams) -> dict[str, Any]:
        return {"eps": p.epsilon, "min_count": p.min_count, "min_ms": ms(p.min_duration_s),
                "rest_low": p.rest_low, "rest_high": p.rest_high, "min_noise": p.min_noise,
                "noise_readings": p.noise_readings, **_hold(p.hold_s, p.hold_count)}

    def describe(self, level: int, signal: float, p: StuckParams) -> str:
        return (f"{self.spec.channel} stuck at {signal:.4g}{_unit(self.spec.channel)} for "
                f"{p.min_count} readings and {span(p.min_duration_s)}: sensor fault")


# --- drift --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DriftParams:
    min_sigma: float
    """floor of the baseline's standard deviation, in the channel's unit: shifts smaller than
    z_alarm * min_sigma never alarm however steady the channel was"""
    fast_tau_s: float = 6 * HOUR_S
    """the level watched: slow enough to shrug off cooking, an aired room or a night's dip,
    and to damp the daily cycle to about half"""
    base_tau_s: float = 3 * DAY_S
    """the baseline: follows seasons (a few tenths of a degree a day), not a failing sensor"""
    warmup_s: float = DAY_S
    """no verdict before the baseline has seen one daily cycle"""
    z_alarm: float = 4.0
    cusum_k: float = 2.0
    """the CUSUM ignores gaps under 2 sd (a room's daily cycle stays under 1 in the 6-h mean),
    and sd is learned only from gaps under this"""
    cusum_h: float = 12.0
    cusum_tau_s: float = HOUR_S
    """CUSUM unit: h = 12 is 3 sd held for 12 h, or 2.5 sd for a day"""
    tick_s: float = MINUTE_S
    """the averages move once per tick, on the mean of the readings in it: a 6-hour mean needs
    no finer steps, and a tick costs two exponentials and a square root (0: every reading)"""
    min_count: int = 10
    """ticks, as is hold_count"""
    min_duration_s: float = 30 * MINUTE_S
    hold_s: float = DAY_S
    """gone for a whole daily cycle: while the baseline catches up with a shift, the daily
    cycle would otherwise clear and re-raise it every half day"""
    hold_count: int = 10

    def __post_init__(self) -> None:
        positive = (self.min_sigma, self.fast_tau_s, self.base_tau_s, self.z_alarm,
                    self.cusum_h, self.cusum_tau_s)
        if min(positive) <= 0 or min(self.cusum_k, self.warmup_s, self.tick_s) < 0:
            raise ValueError("drift parameters must be positive (cusum_k, warmup_s and tick_s"
                             " >= 0)")
        if self.min_count < 1 or self.min_duration_s < 0:
            raise ValueError("min_count must be >= 1 and min_duration_s >= 0")
        _check_hold(self.hold_s, self.hold_count)


DRIFT_DEFAULTS: dict[tuple[str, str], DriftParams] = {
    # Thermistor offset drift blinds the heat alarms (57 °C fixed, 8.3 °C/min); 4 °C off is
    # worth a visit, a room's own swings (±1.5 °C a day, an hour of open window) are not.
    ("smoke", "temp_c"): DriftParams(min_sigma=1.0),
    # Oximeter accuracy is about ±2-3 % (ISO 80601-2-61 allows Arms 4 %); 4 % off the
    # wearer's own baseline for hours is a sensor (or a wearer) to check.
    ("wearable", "spo2"): DriftParams(min_sigma=1.0),
}


class Drift(FaultCheck[DriftParams]):
    """A channel's slow mean leaving the baseline learned from its own history."""

    check = "drift"
    code = DRIFT

    def default(self, kind: str, channel: str) -> DriftParams:
        return DRIFT_DEFAULTS[(kind, channel)]

    def param_record(self, p: DriftParams) -> dict[str, Any]:
        return {"fast_tau_ms": p.fast_tau_s * 1000, "base_tau_ms": p.base_tau_s * 1000,
                "warmup_ms": ms(p.warmup_s), "min_sigma": p.min_sigma, "z_alarm": p.z_alarm,
                "cusum_k": p.cusum_k, "cusum_h": p.cusum_h,
                "cusum_tau_ms": p.cusum_tau_s * 1000, "min_count": p.min_count,
                "min_ms": ms(p.min_duration_s), "tick_ms": ms(p.tick_s),
                **_hold(p.hold_s, p.hold_count)}

    def describe(self, level: int, signal: float, p: DriftParams) -> str:
        return (f"{self.spec.channel} drifting {signal:+.3g}{_unit(self.spec.channel)} off its "
                f"own baseline ({span(p.fast_tau_s)} mean against {span(p.base_tau_s)}): "
                "sensor fault?")


def default_fault_checks() -> list[FaultCheck[Any]]:
    """Impossible values on every known channel; stuck and drift where they make sense."""
    out: list[FaultCheck[Any]] = [
        ImpossibleValues(kind, channel)
        for kind, channels in KIND_CHANNELS.items() for channel in channels
    ]
    out += [StuckValues(k, c) for k, c in STUCK_DEFAULTS]
    out += [Drift(k, c) for k, c in DRIFT_DEFAULTS]
    return out


class ImpossibleValueDetector(CheckView):
    """`ImpossibleValues` as a detector with its own state."""

    def __init__(self, kind: str, channel: str, params: ImpossibleParams | None = None,
                 capacity: int = 1024) -> None:
        super().__init__(bank_of_one(ImpossibleValues(kind, channel, params), capacity), 0)


class StuckSensorDetector(CheckView):
    """`StuckValues` as a detector with its own state (and its own tick, see `CheckBank`)."""

    def __init__(self, kind: str, channel: str, params: StuckParams | None = None,
                 capacity: int = 1024, tick_ms: int = STUCK_TICK_MS) -> None:
        super().__init__(bank_of_one(StuckValues(kind, channel, params), capacity, tick_ms), 0)


class DriftDetector(CheckView):
    """`Drift` as a detector with its own state."""

    def __init__(self, kind: str, channel: str, params: DriftParams | None = None,
                 capacity: int = 1024) -> None:
        super().__init__(bank_of_one(Drift(kind, channel, params), capacity), 0)


def default_fault_detectors(capacity: int = 1024) -> list[CheckView]:
    """Every default fault check as a detector with its own state."""
    return [CheckView(bank_of_one(c, capacity), 0) for c in default_fault_checks()]
