"""The simulator's labels and quiet signals agree with the core's default detection rules.

If a rule changes, this says which labels (expected grades, incident levels) or nuisance
bounds of the simulator must follow.
"""

from __future__ import annotations

import pytest

from sensing.wire import Grade
from sensing_sim import INCIDENT_TYPES, LEVEL_RANGES
from sensing_sim import signals as sig
from sensing_sim.incidents import FIRE_WOBBLE, INCIDENT_CHANNEL

rules = pytest.importorskip("sensing.detect.rules")

QUIET_RANGE: dict[tuple[str, str], tuple[float, float]] = {
    ("smoke", "obscuration"): (0.0, sig.SMOKE_OBSCURATION_QUIET_MAX + sig.SMOKE_COOKING_PEAK[1]),
    ("smoke", "temp_c"): sig.SMOKE_TEMP_RANGE,
    ("smoke", "co_ppm"): (0.0, sig.SMOKE_CO_MAX),
    ("manhole", "tilt_deg"): (0.0, sig.MANHOLE_TRAFFIC_TILT[1]),
    ("manhole", "water_m"): (sig.MANHOLE_WATER_RAIN_MIN, sig.MANHOLE_WATER_RANGE[1]),
    ("manhole", "gas_lel"): (0.0, sig.MANHOLE_GAS_MAX),
    ("wearable", "heart_rate"): (sig.WEARABLE_HR_REST[0], sig.WEARABLE_HR_WALK_MAX),
    ("wearable", "spo2"): sig.WEARABLE_SPO2_RANGE,
    ("wearable", "sos"): (0.0, 0.0),
    **{(k, "battery"): (sig.BATTERY_QUIET_MIN, 1.0) for k in ("smoke", "manhole", "wearable")},
}


def beyond(rule: object, value: float, threshold: float) -> bool:
    return value >= threshold if rule.above else value <= threshold  # type: ignore[attr-defined]


@pytest.mark.parametrize("rule", [r for r in rules.DEFAULT_RULES if not r.rate_window_s],
                         ids=lambda r: r.name)
def test_quiet_signals_stay_short_of_every_rule(rule: object) -> None:
    lo, hi = QUIET_RANGE[(rule.kind, rule.channel)]  # type: ignore[attr-defined]
    worst = hi if rule.above else lo  # type: ignore[attr-defined]
    for level in rule.levels:  # type: ignore[attr-defined]
        assert not beyond(rule, worst, level.threshold), (rule, level)


@pytest.mark.parametrize("type_", sorted(INCIDENT_TYPES))
def test_incident_levels_reach_their_expected_grade(type_: str) -> None:
    kind, expected = INCIDENT_TYPES[type_]
    channel = INCIDENT_CHANNEL[type_]
    watching = [r for r in rules.DEFAULT_RULES if r.type == type_ and r.channel == channel
                and not r.rate_window_s and r.kind in ((kind,) if kind else (r.kind,))]
    assert watching, f"no rule watches {channel} for {type_}"
    lo, hi = LEVEL_RANGES[type_]
    for rule in watching:
        weakest = (lo * (1 - FIRE_WOBBLE) if type_ == "smoke.fire" else lo) if rule.above else hi
        reached = [lv.grade for lv in rule.levels if beyond(rule, weakest, lv.threshold)]
        assert reached, f"{type_} at {weakest} raises nothing under {rule.name}"
        best = max(reached, key=lambda g: Grade(g).rank)
        assert best == expected, f"{type_}: {rule.name} gives {best}, the label says {expected}"
