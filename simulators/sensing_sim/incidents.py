"""Scripted, labelled incidents: what a device measures while something is really wrong.

An `Incident` overrides its device's quiet signal from `start_s` (inclusive) to `end_s`
(exclusive), seconds since the run start; outside that window the device is quiet. The
incidents of a run are its labels: the alert type and grade a correct core should raise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Final

from sensing.wire import Grade

Values = dict[str, float]

INCIDENT_TYPES: Final[dict[str, tuple[str | None, Grade]]] = {
    # type: (kind of device it happens on, None for any; expected grade)
    "smoke.fire": ("smoke", Grade.MAJOR),  # one detector; two nearby would confirm: critical
    "smoke.co": ("smoke", Grade.CRITICAL),
    "manhole.displaced": ("manhole", Grade.CRITICAL),
    "manhole.overflow": ("manhole", Grade.CRITICAL),
    "manhole.gas": ("manhole", Grade.CRITICAL),
    "wearable.vitals": ("wearable", Grade.CRITICAL),
    "wearable.sos": ("wearable", Grade.CRITICAL),
    "wearable.fall": ("wearable", Grade.CRITICAL),
    "device.battery": (None, Grade.MAJOR),
}

LEVEL_RANGES: Final[dict[str, tuple[float, float]]] = {
    # type: range of the incident's level (its peak or plateau), in the channel's unit; each
    # range lies wholly beyond the threshold of its expected grade in the core's default rules
    "smoke.fire": (21.0, 25.0),  # obscuration %/m (dense smoke: 20 %/m and more)
    "smoke.co": (350.0, 500.0),  # co_ppm
    "manhole.displaced": (35.0, 60.0),  # tilt_deg
    "manhole.overflow": (0.1, 0.1),  # water_m below the cover
    "manhole.gas": (30.0, 40.0),  # gas_lel
    "wearable.vitals": (82.0, 84.0),  # spo2 (severe hypoxaemia: under 85 %)
    "wearable.sos": (1.0, 1.0),  # sos
    "wearable.fall": (3.0, 4.5),  # accel_g of the impact (a fall from standing: 3-6 g)
    "device.battery": (0.03, 0.03),  # battery
}

INCIDENT_CHANNEL: Final[dict[str, str]] = {
    # type: the channel its level is measured on ("battery": the reading's battery field)
    "smoke.fire": "obscuration",
    "smoke.co": "co_ppm",
    "manhole.displaced": "tilt_deg",
    "manhole.overflow": "water_m",
    "manhole.gas": "gas_lel",
    "wearable.vitals": "spo2",
    "wearable.sos": "sos",
    "wearable.fall": "accel_g",
    "device.battery": "battery",
}

TYPICAL_LENGTH_S: Final[dict[str, float]] = {
    "smoke.fire": 60.0,
    "smoke.co": 60.0,
    "manhole.displaced": 30.0,
    "manhole.overflow": 60.0,
    "manhole.gas": 40.0,
    "wearable.vitals": 40.0,
    "wearable.sos": 10.0,
    "wearable.fall": 40.0,
    "device.battery": 30.0,
}

FIRE_TEMP_RISE_C_PER_MIN: Final = 15.0
FIRE_TEMP_MAX_C: Final = 95.0
FIRE_RAMP_S: Final = 30.0
FIRE_WOBBLE: Final = 0.03
"""once built up, fire smoke wavers by this fraction of the level"""
GAS_RAMP_S: Final = 20.0
CO_RAMP_S: Final = 10.0
OVERFLOW_RAMP_S: Final = 30.0
VITALS_RAMP_S: Final = 10.0
FALL_IMPACT_S: Final = 10.0
"""the readings of the first seconds carry the impact's peak (accel_g is the peak since the
previous reading: every device sampling at least every 10 s shows it), then the wearer lies
still"""
FALL_STILL_G: Final = 1.0


def _ramp(start: float, end: float, elapsed_s: float, ramp_s: float) -> float:
    return end if ramp_s <= 0 else start + (end - start) * min(1.0, elapsed_s / ramp_s)


@dataclass(frozen=True, slots=True)
class Incident:
    """One labelled incident on one device."""

    type: str
    device: str
    gateway: str
    area: str
    start_s: float
    end_s: float
    grade: Grade
    """the grade a correct core raises the alert with"""
    level: float
    """peak or plateau of the incident's channel (see LEVEL_RANGES)"""

    def __post_init__(self) -> None:
        if self.type not in INCIDENT_TYPES:
            raise ValueError(f"unknown incident type {self.type!r}")
        if not 0.0 <= self.start_s < self.end_s:
            raise ValueError(f"incident window [{self.start_s}, {self.end_s}) is empty")

    @classmethod
    def of(
        cls, type: str, device: str, gateway: str, area: str, start_s: float,
        end_s: float | None = None, level: float | None = None,
    ) -> Incident:
        """An incident with its type's expected grade, typical length and mid-range level."""
        if type not in INCIDENT_TYPES:
            raise ValueError(f"unknown incident type {type!r} (one of {', '.join(INCIDENT_TYPES)})")
        lo, hi = LEVEL_RANGES[type]
        return cls(
            type=type, device=device, gateway=gateway, area=area, start_s=start_s,
            end_s=start_s + TYPICAL_LENGTH_S[type] if end_s is None else end_s,
            grade=INCIDENT_TYPES[type][1], level=(lo + hi) / 2 if level is None else level,
        )

    @property
    def kind(self) -> str | None:
        """Kind of device the incident happens on; None if any."""
        return INCIDENT_TYPES[self.type][0]

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s

    def apply(self, t_s: float, values: Values, battery: float) -> tuple[Values, float]:
        """The device's reading at `t_s` with this incident, from its quiet reading."""
        if not self.active(t_s):
            return values, battery
        return _EFFECTS[self.type](self, t_s - self.start_s, dict(values), battery)

    def to_dict(self, run_start_ms: int | None = None) -> dict[str, object]:
        """JSON-ready label; with `run_start_ms`, also the window as `ts_start`/`ts_end` (ms)."""
        out: dict[str, object] = asdict(self)
        out["grade"] = self.grade.value
        if run_start_ms is not None:
            out["ts_start"] = run_start_ms + round(self.start_s * 1000)
            out["ts_end"] = run_start_ms + round(self.end_s * 1000)
        return out


Effect = Callable[[Incident, float, Values, float], tuple[Values, float]]


def _fire(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    wobble = FIRE_WOBBLE * inc.level * math.sin(e / 3.0)
    v["obscuration"] = round(_ramp(v.get("obscuration", 0.0), inc.level, e, FIRE_RAMP_S)
                             + (wobble if e >= FIRE_RAMP_S else 0.0), 2)
    temp = v.get("temp_c", 21.0) + FIRE_TEMP_RISE_C_PER_MIN * e / 60.0
    v["temp_c"] = round(min(temp, FIRE_TEMP_MAX_C), 1)
    v["co_ppm"] = round(v.get("co_ppm", 0.0) + min(25.0, 0.5 * e), 1)
    return v, battery


def _co(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    v["co_ppm"] = round(_ramp(v.get("co_ppm", 0.0), inc.level, e, CO_RAMP_S), 1)
    return v, battery


def _displaced(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    v["tilt_deg"] = round(inc.level + 0.5 * math.sin(e), 2)
    return v, battery


def _overflow(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    v["water_m"] = round(_ramp(v.get("water_m", 2.0), inc.level, e, OVERFLOW_RAMP_S), 3)
    return v, battery


def _gas(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    v["gas_lel"] = round(_ramp(v.get("gas_lel", 0.0), inc.level, e, GAS_RAMP_S), 2)
    return v, battery


def _vitals(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    v["spo2"] = float(round(_ramp(v.get("spo2", 97.0), inc.level, e, VITALS_RAMP_S)))
    return v, battery


def _fall(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    if e < FALL_IMPACT_S:
        v["accel_g"] = inc.level
    else:  # lying on the floor: gravity alone, a little wrist tremor, no steps
        v["accel_g"] = round(FALL_STILL_G + 0.02 * math.sin(e), 2)
        v["steps"] = 0.0
    return v, battery


def _sos(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    v["sos"] = inc.level
    return v, battery


def _battery(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    return v, inc.level


_EFFECTS: Final[dict[str, Effect]] = {
    "smoke.fire": _fire,
    "smoke.co": _co,
    "manhole.displaced": _displaced,
    "manhole.overflow": _overflow,
    "manhole.gas": _gas,
    "wearable.vitals": _vitals,
    "wearable.sos": _sos,
    "wearable.fall": _fall,
    "device.battery": _battery,
}
