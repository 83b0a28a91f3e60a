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


def test_a_fall_incident_is_what_the_fall_check_confirms() -> None:
    """An impact beyond the check's impact level, then lying still within its still band for
    longer than its still time, inside its window, at the check's grade."""
    from sensing.detect.fall import Fall, FallParams
    from sensing_sim.incidents import FALL_IMPACT_S, FALL_STILL_G, TYPICAL_LENGTH_S

    p = FallParams()
    lo, _ = LEVEL_RANGES["wearable.fall"]
    assert lo > p.impact_g
    assert p.still_low_g <= FALL_STILL_G - 0.02 and p.still_high_g >= FALL_STILL_G + 0.02
    assert TYPICAL_LENGTH_S["wearable.fall"] - FALL_IMPACT_S >= p.still_s
    assert FALL_IMPACT_S + p.still_s <= p.window_s
    assert INCIDENT_TYPES["wearable.fall"][1] == Fall.grade


CHECKED_NOT_BY_RULES = {"wearable.fall"}
"""incident types the core detects with a check of its own (tested above), not a rule"""


@pytest.mark.parametrize("type_", sorted(set(INCIDENT_TYPES) - CHECKED_NOT_BY_RULES))
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
