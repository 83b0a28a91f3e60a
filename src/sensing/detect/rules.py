"""Default detection rules, with the standards their thresholds come from.

Every rule watches one channel of one kind. Several rules may feed one alert type; the type's
grade is the most severe of its rules', and for `smoke.fire` smoke *and* heat together make it
critical.
"""

from __future__ import annotations

from dataclasses import dataclass

from sensing.wire.messages import Grade

BATTERY_CHANNEL = "battery"
"""The reading's `battery` field is watched like a channel of every kind."""


@dataclass(frozen=True, slots=True)
class Level:
    grade: Grade
    threshold: float
    reset: float
    """the level holds until the signal crosses back over this value (hysteresis)"""
    min_count: int = 1
    """consecutive readings beyond the threshold"""
    duration_s: float = 0.0
    """event time the signal must stay beyond the threshold"""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    type: str
    kind: str
    channel: str
    above: bool
    levels: tuple[Level, ...]
    """least severe first, at most 3"""
    unit: str = ""
    rate_window_s: float = 0.0
    """> 0: watch the rate of change per minute over spans at least this long"""
    latching: bool = False
    """once raised, the alert stays open until a person resolves it (SOS)"""

    def describe(self, value: float, grade: Grade, levels: tuple[Level, ...] | None = None
                 ) -> str:
        """Why `value` is at `grade`, quoting `levels` (a device's own) or the rule's."""
        return self.describe_with(value, self.condition(grade, levels))

    def describe_with(self, value: float, condition: str) -> str:
        """`describe` with its `condition` part given (the same for every value)."""
        what = f"{self.channel} rising {value:.1f} {self.unit}" if self.rate_window_s else (
            f"{self.channel} {value:.4g} {self.unit}".rstrip()
        )
        return f"{what}{condition}".replace("  ", " ")

    def condition(self, grade: Grade, levels: tuple[Level, ...] | None = None) -> str:
        """What `describe` says after the value: " over 57 °C for 2 readings"."""
        level = next(lv for lv in levels or self.levels if lv.grade == grade)
        side = "over" if self.above else "under"
        held = []
        if level.min_count > 1:
            held.append(f"{level.min_count} readings")
        if level.duration_s:
            held.append(f"{level.duration_s:g} s")
        suffix = f" for {' and '.join(held)}" if held else ""
        return f" {side} {level.threshold:g} {self.unit}{suffix}"


G = Grade

DEFAULT_RULES: tuple[Rule, ...] = (
    # Smoke: UL 217 (9th ed.) requires alarms between 0.5 and 4 %/ft obscuration (about 1.6 to
    # 12.5 %/m); EN 14604 / EN 54-7 test within a similar band. Below 4 %/m is pre-alarm
    # territory (cooking), 8 %/m is a firm alarm. One detector alone makes a fire `major`; two
    # or more in alarm nearby make it `critical` (see sensing.alerts.lifecycle).
    Rule("smoke-obscuration", "smoke.fire", "smoke", "obscuration", True, (
        Level(G.MINOR, 4.0, 2.0, min_count=2, duration_s=20.0),
        Level(G.MAJOR, 8.0, 4.0, min_count=2),
    ), unit="%/m"),
    # Heat: EN 54-5 class A1 fixed-temperature response 54-65 °C; rate-of-rise heat detectors
    # (UL 521, EN 54-5 class A1R) respond at about 8.3 °C/min (15 °F/min).
    Rule("smoke-heat-fixed", "smoke.fire", "smoke", "temp_c", True, (
        Level(G.MAJOR, 57.0, 50.0, min_count=2),
    ), unit="°C"),
    Rule("smoke-heat-rate", "smoke.fire", "smoke", "temp_c", True, (
        Level(G.MAJOR, 8.3, 2.0, min_count=2),
    ), unit="°C/min", rate_window_s=15.0),
    # CO: EN 50291-1 alarm times: 50 ppm within 60-90 min, 100 ppm within 10-40 min,
    # 300 ppm within 3 min; no alarm at 30 ppm for 120 min.
    Rule("smoke-co", "smoke.co", "smoke", "co_ppm", True, (
        Level(G.MINOR, 50.0, 30.0, duration_s=60 * 60.0),
        Level(G.MAJOR, 100.0, 30.0, duration_s=10 * 60.0),
        Level(G.CRITICAL, 300.0, 30.0, min_count=2, duration_s=30.0),
    ), unit="ppm"),
    # Manhole cover: a cover seated in its frame reads within a few degrees; traffic rocks it
    # for a moment. Sustained tilt means lifted or displaced; beyond 30° it is off the frame.
    Rule("manhole-tilt", "manhole.displaced", "manhole", "tilt_deg", True, (
        Level(G.MAJOR, 10.0, 5.0, min_count=2, duration_s=5.0),
        Level(G.CRITICAL, 30.0, 10.0, min_count=2, duration_s=5.0),
    ), unit="°"),
    # Water depth below the cover: less is worse.
    Rule("manhole-water", "manhole.overflow", "manhole", "water_m", False, (
        Level(G.MINOR, 1.0, 1.2, min_count=2),
        Level(G.MAJOR, 0.5, 0.7, min_count=2),
        Level(G.CRITICAL, 0.2, 0.35, min_count=2),
    ), unit="m"),
    # Methane: the usual two-stage alarm of fixed gas detectors (IEC/EN 60079-29-2 practice):
    # 10 % LEL warning, 25 % LEL alarm.
    Rule("manhole-gas", "manhole.gas", "manhole", "gas_lel", True, (
        Level(G.MAJOR, 10.0, 5.0),
        Level(G.CRITICAL, 25.0, 15.0),
    ), unit="% LEL"),
    # SpO2: below 90 % is hypoxaemia (WHO pulse oximetry manual); below 85 % is severe.
    Rule("wearable-spo2", "wearable.vitals", "wearable", "spo2", False, (
        Level(G.MAJOR, 90.0, 92.0, min_count=2, duration_s=20.0),
        Level(G.CRITICAL, 85.0, 88.0, min_count=2, duration_s=20.0),
    ), unit="%"),
    # Heart rate at rest outside 40-130 bpm is abnormal for an elderly wearer; walking stays
    # under about 110.
    Rule("wearable-hr-high", "wearable.vitals", "wearable", "heart_rate", True, (
        Level(G.MAJOR, 130.0, 115.0, min_count=3, duration_s=30.0),
        Level(G.CRITICAL, 150.0, 130.0, min_count=3, duration_s=30.0),
    ), unit="bpm"),
    Rule("wearable-hr-low", "wearable.vitals", "wearable", "heart_rate", False, (
        Level(G.MAJOR, 40.0, 45.0, min_count=3, duration_s=30.0),
        Level(G.CRITICAL, 35.0, 40.0, min_count=3, duration_s=30.0),
    ), unit="bpm"),
    Rule("wearable-sos", "wearable.sos", "wearable", "sos", True, (
        Level(G.CRITICAL, 0.5, 0.5),
    ), latching=True),
    # Battery: most detector makers warn at 20 % and call it critical below 10 %.
    *(
        Rule(f"{kind}-battery", "device.battery", kind, BATTERY_CHANNEL, False, (
            Level(G.MINOR, 0.20, 0.30, min_count=3),
            Level(G.MAJOR, 0.10, 0.30, min_count=3),
        ))
        for kind in ("smoke", "manhole", "wearable")
    ),
)
