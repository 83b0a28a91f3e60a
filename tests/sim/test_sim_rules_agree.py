"""The simulator's labels and quiet signals agree with the core's default detection rules and
checks, and its copies of the core's constants (the simulator must not import numba, the core's
detectors do) equal the core's.

If a rule or check changes, this says which labels (expected grades, incident levels and
lengths) or nuisance bounds of the simulator must follow.
"""

from __future__ import annotations

import pytest

from sensing.wire import KIND_CHANNELS, Grade
from sensing_sim import INCIDENT_TYPES, LEVEL_RANGES
from sensing_sim import incidents as inc
from sensing_sim import signals as sig
from sensing_sim.incidents import FIRE_WOBBLE, FORMS, HR_WOBBLE, INCIDENT_CHANNEL, kinds_of

rules = pytest.importorskip("sensing.detect.rules")

CONTRACT_ALERT_TYPES = {
    "smoke.fire", "smoke.co", "manhole.displaced", "manhole.overflow", "manhole.gas",
    "wearable.fall", "wearable.vitals", "wearable.sos", "wearable.inactivity", "device.offline",
    "gateway.offline", "device.fault", "device.battery",
}

QUIET_RANGE: dict[tuple[str, str], tuple[float, float]] = {
    ("smoke", "obscuration"): (0.0, sig.SMOKE_OBSCURATION_QUIET_MAX
                               + max(sig.SMOKE_COOKING_PEAK[1], sig.SMOKE_STEAM_PEAK[1])),
    ("smoke", "temp_c"): sig.SMOKE_TEMP_RANGE,
    ("smoke", "co_ppm"): (0.0, sig.SMOKE_CO_MAX),
    ("manhole", "tilt_deg"): (0.0, sig.MANHOLE_TRAFFIC_TILT[1]),
    ("manhole", "water_m"): (sig.MANHOLE_WATER_RAIN_MIN, sig.MANHOLE_WATER_RANGE[1]),
    ("manhole", "gas_lel"): (0.0, sig.MANHOLE_GAS_MAX),
    ("wearable", "heart_rate"): (sig.WEARABLE_HR_SLEEP_MIN, sig.WEARABLE_HR_WALK_MAX),
    ("wearable", "spo2"): sig.WEARABLE_SPO2_RANGE,
    ("wearable", "sos"): (0.0, 0.0),
    **{(k, "battery"): (sig.BATTERY_QUIET_MIN, 1.0) for k in ("smoke", "manhole", "wearable")},
}


def beyond(rule: object, value: float, threshold: float) -> bool:
    return value >= threshold if rule.above else value <= threshold  # type: ignore[attr-defined]


def test_every_alert_type_of_the_contract_has_incidents() -> None:
    assert set(INCIDENT_TYPES) == CONTRACT_ALERT_TYPES


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
    # a sleeper turning over is no impact
    assert p.impact_g > max(sig.WEARABLE_ACCEL_TURN_MAX, sig.WEARABLE_ACCEL_WALK_MAX)


RULE_TYPES = {r.type for r in rules.DEFAULT_RULES}
RULE_FORMS = sorted((t, v, k) for (t, v) in FORMS if t in RULE_TYPES for k in kinds_of(t, v))
CHECKED_BELOW = {"wearable.fall", "wearable.inactivity", "device.fault", "device.offline",
                 "gateway.offline"}
"""incident types the core detects with a check or timer of its own (tested below), not a
rule"""


def test_every_incident_type_is_checked_here() -> None:
    assert set(INCIDENT_TYPES) == RULE_TYPES | CHECKED_BELOW
    assert not RULE_TYPES & CHECKED_BELOW


@pytest.mark.parametrize(("type_", "variant", "kind"), RULE_FORMS, ids=lambda x: str(x))
def test_incident_levels_reach_their_expected_grade(type_: str, variant: str,
                                                    kind: str) -> None:
    expected = INCIDENT_TYPES[type_][1]
    form = inc.form_of(type_, variant, kind)
    assert form is not None
    watching = [r for r in rules.DEFAULT_RULES if r.type == type_ and r.channel == form.channel
                and not r.rate_window_s and r.kind == kind]
    assert watching, f"no rule watches {form.channel} of {kind} for {type_}"
    lo, hi = form.levels
    if variant in ("hr_high", "hr_low"):  # one rule each way on the heart rate
        against = [r for r in watching if r.above != (variant == "hr_high")]
        for rule in against:
            assert not any(beyond(rule, v, lv.threshold) for v in (lo, hi)
                           for lv in rule.levels)
        watching = [r for r in watching if r not in against]
    wobble = 0.0
    if type_ == "smoke.fire":
        wobble = lo * FIRE_WOBBLE
    elif variant in ("hr_high", "hr_low"):
        wobble = HR_WOBBLE[0 if variant == "hr_high" else 1]
    for rule in watching:
        weakest = lo - wobble if rule.above else hi + wobble
        reached = [lv.grade for lv in rule.levels if beyond(rule, weakest, lv.threshold)]
        assert reached, f"{type_} at {weakest} raises nothing under {rule.name}"
        best = max(reached, key=lambda g: Grade(g).rank)
        assert best == expected, f"{type_}: {rule.name} gives {best}, the label says {expected}"
        # long enough to be held for the rule's duration and readings (every 10 s), after
        # the ramp
        level = next(lv for lv in rule.levels if lv.grade == expected)
        ramp = {"smoke.co": inc.CO_RAMP_S, "manhole.overflow": inc.OVERFLOW_RAMP_S,
                "manhole.gas": inc.GAS_RAMP_S, "smoke.fire": inc.FIRE_RAMP_S}.get(
            type_, inc.HR_RAMP_S if variant.startswith("hr") else inc.VITALS_RAMP_S)
        held = max(level.duration_s, 10.0 * (level.min_count - 1))
        if type_ in ("wearable.sos", "device.battery", "manhole.displaced"):
            ramp = 0.0
        assert form.length_s >= min(ramp, 30.0) + held, (type_, variant)


def test_default_forms_are_the_first_variants() -> None:
    assert INCIDENT_CHANNEL["wearable.vitals"] == "spo2"
    assert "device.fault" not in LEVEL_RANGES, "its default (impossible) depends on the kind"


# -- checks -----------------------------------------------------------------------------------


def test_inactivity_copies_and_labels_agree_with_the_check() -> None:
    from sensing.detect.inactivity import Inactivity, InactivityParams

    p = InactivityParams()
    assert p.limit_s == inc.INACTIVITY_LIMIT_S
    assert (p.day_start_h, p.day_end_h) == inc.INACTIVITY_DAY_H
    assert p.utc_offset_h == sig.CORE_UTC_OFFSET_H
    assert INCIDENT_TYPES["wearable.inactivity"][1] == Inactivity.grade
    form = inc.form_of("wearable.inactivity")
    assert form is not None and form.channel == Inactivity().spec.channel == "steps"
    assert form.levels == (0.0, 0.0)
    assert form.length_s >= p.limit_s + 10 * 60, "room for the core to raise it"


def test_fault_incidents_are_what_the_default_fault_checks_see() -> None:
    from sensing.detect.fault import (
        DRIFT_DEFAULTS,
        PHYSICAL_LIMITS,
        STUCK_DEFAULTS,
        DriftParams,
        FaultCheck,
        default_fault_checks,
    )

    assert INCIDENT_TYPES["device.fault"][1] == FaultCheck.grade
    watched = {(c.spec.kind, c.spec.channel, c.check) for c in default_fault_checks()}
    for variant in inc.VARIANTS["device.fault"]:
        for kind in kinds_of("device.fault", variant):
            form = inc.form_of("device.fault", variant, kind)
            assert form is not None and form.channel in KIND_CHANNELS[kind]
            assert (kind, form.channel, variant) in watched, (kind, variant)
            # nothing but the fault: no rule on the channel fires at the fault's levels
            for rule in rules.DEFAULT_RULES:
                if (rule.kind, rule.channel) == (kind, form.channel) and not rule.rate_window_s:
                    for value in form.levels:
                        if variant == "drift":
                            value = QUIET_RANGE[(kind, form.channel)][1] + value
                        assert not any(beyond(rule, value, lv.threshold)
                                       for lv in rule.levels), (rule.name, variant, value)
            if variant == "impossible":
                limits = PHYSICAL_LIMITS[form.channel]
                assert all(not limits.low <= v <= limits.high for v in form.levels)
                assert form.length_s >= 10.0 * (limits.min_count + 1)
            elif variant == "stuck":
                p = STUCK_DEFAULTS[(kind, form.channel)]
                # at a reading every 30 s (a wristband's min_count 60 takes 30 min)
                assert form.length_s >= max(p.min_duration_s, 30.0 * p.min_count) + 10 * 60
                quiet = QUIET_RANGE.get((kind, form.channel), sig.SMOKE_TEMP_RANGE)
                assert quiet[0] <= form.levels[0] <= form.levels[1] <= quiet[1], "plausible"
            else:
                d: DriftParams = DRIFT_DEFAULTS[(kind, form.channel)]
                assert d.warmup_s == inc.DRIFT_WARMUP_S
                # twice the shift the check alarms at, reached within the window
                assert form.levels[0] >= 2 * d.z_alarm * d.min_sigma
                assert form.levels[1] / inc.DRIFT_C_PER_H * 3600 < form.length_s
                assert form.length_s >= d.fast_tau_s * 2


def test_fault_incidents_on_channels_of_their_own_are_faults_and_nothing_else() -> None:
    """Impossible values on any channel are beyond the core's physical limits (and a fault
    only: alarms on them are false positives); a stuck value is a plausible quiet value; a
    stuck channel the core has no stuck check for yet is listed, not failed (the label is
    right whatever the core does)."""
    from sensing.detect.fault import PHYSICAL_LIMITS, default_fault_checks

    for (kind, channel), form in inc.CHANNEL_FORMS[("device.fault", "impossible")].items():
        assert channel in KIND_CHANNELS[kind]
        limits = PHYSICAL_LIMITS[channel]
        assert all(not limits.low <= v <= limits.high for v in form.levels), (kind, channel)
        assert form.length_s >= 10.0 * (limits.min_count + 1)
    watched = {(c.spec.kind, c.spec.channel) for c in default_fault_checks()
               if c.check == "stuck"}
    for (kind, channel), form in inc.CHANNEL_FORMS[("device.fault", "stuck")].items():
        assert channel in KIND_CHANNELS[kind]
        lo, hi = QUIET_RANGE.get((kind, channel), sig.SMOKE_TEMP_RANGE)
        assert lo < form.levels[0] <= form.levels[1] <= hi, "plausible, off the floor"
        for rule in rules.DEFAULT_RULES:
            if (rule.kind, rule.channel) == (kind, channel) and not rule.rate_window_s:
                assert not any(beyond(rule, v, lv.threshold) for v in form.levels
                               for lv in rule.levels)
    unwatched = set(inc.CHANNEL_FORMS[("device.fault", "stuck")]) - watched
    if unwatched:
        pytest.skip(f"the core has no stuck check yet for {sorted(unwatched)}")


def test_a_wrist_bang_is_an_impact_the_fall_check_sees_then_walking() -> None:
    """The knock is as hard as a fall's impact and the rest after it is as still as lying on
    the floor: only the walking in between tells it from a fall."""
    from sensing.detect.fall import FallParams
    from sensing_sim import cases

    p = FallParams()
    assert p.impact_g < cases.BANG_LEVEL_G
    assert p.still_s <= cases.BANG_WALK_S and p.window_s <= cases.BANG_REST_S
    bang = cases.WristBang.of("w", "gw-01", "a", 0.0)
    walking = bang.apply(30.0, {"accel_g": 1.0, "steps": 0.0}, 1.0, 25.0)[0]
    assert walking["accel_g"] > p.still_high_g and walking["steps"] > 0
    resting = bang.apply(120.0, {"accel_g": 1.0, "steps": 0.0}, 1.0, 115.0)[0]
    assert p.still_low_g <= resting["accel_g"] <= p.still_high_g


def test_offline_copies_agree_with_the_core() -> None:
    from sensing.detect.offline import OfflinePolicy
    from sensing.pipeline import DEVICE_OFFLINE, GATEWAY_OFFLINE, OFFLINE_GRADE

    assert inc.DEVICE_OFFLINE_GRADE == OFFLINE_GRADE
    p = OfflinePolicy()
    assert (p.min_timeout_s, p.factor, p.lateness_s, p.idle_s, p.restart_s, p.batch_delay_s) == (
        inc.OFFLINE_MIN_TIMEOUT_S, inc.OFFLINE_FACTOR, inc.OFFLINE_LATENESS_S, inc.OFFLINE_IDLE_S,
        inc.OFFLINE_RESTART_S, inc.OFFLINE_BATCH_DELAY_S)
    assert p.intervals_s == inc.OFFLINE_INTERVALS_S
    for kind in inc.OFFLINE_INTERVALS_S:
        for interval in (2.0, 10.0, 45.0, 60.0, 120.0):
            assert inc.device_timeout_s(kind, interval) == pytest.approx(
                p.timeout_s(kind, interval_s=max(interval, p.interval_s(kind)))), (kind, interval)
    assert {"device.offline", "gateway.offline"} == {DEVICE_OFFLINE, GATEWAY_OFFLINE}
    form = inc.form_of("device.offline")
    assert form is not None and form.length_s >= inc.device_offline_needs_s(10.0)
    assert inc.device_offline_needs_s(30.0, "wearable") == (
        p.timeout_s("wearable") + p.lateness_s + p.idle_s + 30.0)
    assert INCIDENT_TYPES["gateway.offline"][1] is Grade.MAJOR
