"""Policies and the planner: the shipped defaults' schedule, most specific rule wins, quiet
hours, re-notification, determinism, one-line errors."""

from __future__ import annotations

import random
import time
from datetime import datetime
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from sensing.dispatch.directory import parse_directory
from sensing.dispatch.policy import (
    KNOWN_ALERT_TYPES,
    NOTHING_DUE,
    OpenCase,
    Plan,
    PolicyError,
    Routing,
    build_policies,
    load_routing,
    routing_of,
)
from sensing.wire.messages import Grade
from tests.dispatch.directory_docs import small, to_toml

EXAMPLE = Path(__file__).parents[2] / "examples" / "directory.toml"
T0 = 1_795_485_600_000
"""the pilot scenario's start: 10:00 in the pilot city"""
S = 1000


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


@pytest.fixture(scope="module")
def pilot() -> Routing:
    return load_routing(EXAMPLE)


def case(alert_type: str, grade: Grade, area: str, device: str, raised: int = T0,
         **kw: Any) -> OpenCase:
    return OpenCase(f"case-{alert_type}-{device}", alert_type, grade, area, device, raised, **kw)


def run(routing: Routing, c: OpenCase, until_s: int, every_s: int = 1
        ) -> list[tuple[int, str, int, tuple[str, ...]]]:
    """(seconds since raised, whom, round, recipients) of every notification, ticking each
    `every_s` and sending all that is due."""
    sent = []
    for t in range(0, until_s + 1, every_s):
        plan = routing.planner.plan(c, c.raised_at_ms + t * S)
        for d in plan.due:
            sent.append((t, d.whom, d.round, tuple(r.responder for r in d.recipients)))
        c = c.with_sent(plan)
    return sent


def first_times(sent: list[tuple[int, str, int, tuple[str, ...]]]) -> dict[str, int]:
    firsts: dict[str, int] = {}
    for t, whom, _, _ in sent:
        firsts.setdefault(whom, t)
    return firsts


EXPECTED_CHAINS = {
    ("smoke.fire", Grade.CRITICAL): "life_safety", ("smoke.fire", Grade.MAJOR): "life_safety",
    ("smoke.fire", Grade.MINOR): "advisory", ("smoke.co", Grade.CRITICAL): "life_safety",
    ("smoke.co", Grade.MAJOR): "life_safety", ("smoke.co", Grade.MINOR): "advisory",
    ("wearable.fall", Grade.CRITICAL): "life_safety", ("wearable.sos", Grade.CRITICAL):
    "life_safety", ("wearable.vitals", Grade.CRITICAL): "life_safety",
    ("wearable.vitals", Grade.MAJOR): "care", ("wearable.inactivity", Grade.MAJOR): "care",
    ("manhole.displaced", Grade.CRITICAL): "public_hazard",
    ("manhole.displaced", Grade.MAJOR): "public_hazard",
    ("manhole.gas", Grade.CRITICAL): "public_hazard", ("manhole.gas", Grade.MAJOR):
    "public_hazard", ("manhole.overflow", Grade.CRITICAL): "public_hazard",
    ("manhole.overflow", Grade.MAJOR): "public_hazard",
    ("manhole.overflow", Grade.MINOR): "maintenance", ("device.fault", Grade.MINOR):
    "maintenance", ("device.battery", Grade.MINOR): "maintenance",
    ("device.battery", Grade.MAJOR): "maintenance", ("device.offline", Grade.MAJOR):
    "maintenance", ("gateway.offline", Grade.MAJOR): "outage",
    ("incident.new_type", Grade.MAJOR): "fallback", ("incident.new_type", Grade.INFO):
    "record_only",
}


def test_shipped_defaults_route_every_contract_type_at_every_grade() -> None:
    policies = build_policies()
    line = ("k1", "c1", "city")
    for alert_type, grade in product(sorted(KNOWN_ALERT_TYPES), Grade):
        assert policies.choose(alert_type, grade, line) in policies.chains
    for (alert_type, grade), chain in EXPECTED_CHAINS.items():
        assert policies.choose(alert_type, grade, line) == chain, (alert_type, grade)
    assert policies.chains["record_only"].steps == ()


def test_a_residents_fall_climbs_the_family_then_the_command_chain(pilot: Routing) -> None:
    c = case("wearable.fall", Grade.CRITICAL, "compound-05", "wearable-000018")
    sent = run(pilot, c, 1900)
    assert first_times(sent) == {"grid_worker": 0, "relatives": 60, "volunteers": 120,
                                 "duty_officer": 180, "street_command": 600,
                                 "district_command": 1200, "city_command": 1800}
    assert [(t, rnd) for t, whom, rnd, _ in sent if whom == "grid_worker"] == \
        [(t, t // 120) for t in range(0, 1901, 120)]
    by_whom = {whom: who for _, whom, _, who in sent}
    assert by_whom == {
        "grid_worker": ("grid-a2",),  # the compound's own grid worker, not the community's
        "relatives": ("rel-05-0018-a", "rel-05-0018-b"), "volunteers": ("vol-a1",),
        "duty_officer": ("duty-a",), "street_command": ("street-north-cc",),
        "district_command": ("district-east-cc",), "city_command": ("city-cc",)}


def test_a_major_fire_stops_at_the_street_command(pilot: Routing) -> None:
    sent = run(pilot, case("smoke.fire", Grade.MAJOR, "compound-03", "smoke-000086"), 3600, 5)
    assert first_times(sent) == {"grid_worker": 0, "relatives": 60, "volunteers": 120,
                                 "duty_officer": 180, "street_command": 600}


def test_manhole_hazards_go_to_maintenance_and_the_grid_worker_then_street_command(
        pilot: Routing) -> None:
    sent = run(pilot, case("manhole.gas", Grade.MAJOR, "compound-15", "manhole-000021"),
               4000, 10)
    assert first_times(sent) == {"maintenance": 0, "grid_worker": 0, "street_command": 1800}
    assert {whom: who for _, whom, _, who in sent}["maintenance"] == \
        ("maintenance-queue", "utility-c")
    critical = run(pilot, case("manhole.displaced", Grade.CRITICAL, "compound-07",
                               "manhole-000014"), 6000, 10)
    assert first_times(critical) == {"maintenance": 0, "grid_worker": 0, "street_command": 1800,
                                     "district_command": 3600, "city_command": 5400}


def test_a_directory_rule_for_one_compound_beats_the_shipped_one(pilot: Routing) -> None:
    fire12 = case("smoke.fire", Grade.CRITICAL, "compound-12", "smoke-000006")
    assert pilot.planner.plan(fire12, T0).chain == "high_rise_fire"
    assert first_times(run(pilot, fire12, 0)) == {"grid_worker": 0, "street_command": 0}
    fire11 = case("smoke.fire", Grade.CRITICAL, "compound-11", "smoke-000999")
    assert pilot.planner.plan(fire11, T0).chain == "life_safety"


def test_faults_reach_the_queue_at_once_and_people_only_after_their_quiet_hours(
        pilot: Routing) -> None:
    night = ms("2026-11-24T23:00:00+08:00")
    c = case("device.fault", Grade.MINOR, "compound-05", "smoke-000014", raised=night)
    plan = pilot.planner.plan(c, night)
    assert [(d.whom, [(r.responder, r.quiet) for r in d.recipients]) for d in plan.due] == \
        [("maintenance", [("maintenance-queue", False)])]
    morning = ms("2026-11-25T07:00:00+08:00")
    assert plan.next_due_ms == morning
    c = c.with_sent(plan)
    assert pilot.planner.plan(c, morning - 1).due == ()
    plan = pilot.planner.plan(c, morning)
    assert [(d.whom, d.round, [r.responder for r in d.recipients]) for d in plan.due] == \
        [("maintenance", 0, ["property-ab"])]
    assert pilot.planner.plan(c.with_sent(plan), morning).next_due_ms == night + 86_400_000


def test_life_safety_reaches_people_in_their_quiet_hours_marked_quiet(pilot: Routing) -> None:
    night = ms("2026-11-25T02:00:00+08:00")
    c = case("wearable.fall", Grade.CRITICAL, "compound-14", "wearable-000085", raised=night)
    plan = pilot.planner.plan(c, night)
    assert [(r.responder, r.role, r.quiet) for d in plan.due for r in d.recipients] == \
        [("grid-c1", "grid_worker", True)]


def test_nothing_is_due_once_taken_or_closed(pilot: Routing) -> None:
    c = case("wearable.sos", Grade.CRITICAL, "compound-09", "wearable-000002")
    assert pilot.planner.plan(c, T0 + 3600 * S).due
    for closed in (dict(taken=True), dict(closed=True)):
        c2 = case("wearable.sos", Grade.CRITICAL, "compound-09", "wearable-000002", **closed)
        assert pilot.planner.plan(c2, T0 + 3600 * S) == NOTHING_DUE


def test_after_a_pause_only_the_latest_round_is_due_once(pilot: Routing) -> None:
    c = case("wearable.sos", Grade.CRITICAL, "compound-09", "wearable-000002")
    c = c.with_sent(pilot.planner.plan(c, T0))
    plan = pilot.planner.plan(c, T0 + 1000 * S)
    assert [(d.whom, d.round, d.at_ms - T0) for d in plan.due] == [
        ("grid_worker", 8, 960 * S), ("relatives", 3, 960 * S), ("volunteers", 2, 720 * S),
        ("duty_officer", 2, 780 * S), ("street_command", 0, 600 * S)]
    assert pilot.planner.plan(c.with_sent(plan), T0 + 1000 * S).due == ()


def test_a_step_nobody_can_take_is_reported_and_its_device_logged_once(pilot: Routing) -> None:
    c = case("wearable.fall", Grade.CRITICAL, "compound-01", "wearable-999999")
    with capture_logs() as logs:
        for _ in range(3):
            plan = pilot.planner.plan(c, T0 + 60 * S)
    assert plan.unstaffed == (1,)
    assert [(e["event"], e["what"], e["id"]) for e in logs] == \
        [("directory_miss", "device", "wearable-999999")]


def test_an_unknown_area_routes_by_the_default_area(pilot: Routing) -> None:
    c = case("manhole.displaced", Grade.CRITICAL, "compound-99", "manhole-000001")
    with capture_logs() as logs:
        sent = run(pilot, c, 6000, 50)
        # district-east is the default: maintenance, grid workers and streets are below it
        assert pilot.planner.plan(c, T0 + 1800 * S).unstaffed == (0, 1, 2)
    assert first_times(sent) == {"district_command": 3600, "city_command": 5400}
    assert [(e["what"], e["id"], e["routed_to"]) for e in logs] == \
        [("area", "compound-99", "district-east")]


def test_a_pinned_chain_is_kept_and_a_removed_one_chosen_anew(pilot: Routing) -> None:
    c = case("wearable.vitals", Grade.CRITICAL, "compound-02", "wearable-000022",
             chain="care")
    assert pilot.planner.plan(c, T0 + 600 * S).chain == "care"
    gone = case("wearable.vitals", Grade.CRITICAL, "compound-02", "wearable-000022",
                chain="retired")
    with capture_logs() as logs:
        assert pilot.planner.plan(gone, T0).chain == "life_safety"
        assert pilot.planner.plan(gone, T0).chain == "life_safety"
    assert [(e["what"], e["id"]) for e in logs] == [("chain", "retired")]


TYPES = ("smoke.fire", "wearable.fall", "manhole.gas", "device.fault", "gateway.offline")


@settings(max_examples=200, deadline=None)
@given(alert_type=st.sampled_from(TYPES), grade=st.sampled_from(list(Grade)),
       area=st.sampled_from([f"compound-{n:02d}" for n in (1, 5, 9, 12, 14, 20)] + ["nowhere"]),
       raised_back_s=st.integers(0, 7200), ticks=st.lists(st.integers(1, 900), max_size=6))
def test_plans_are_deterministic_and_next_due_is_exact(pilot: Routing, alert_type: str,
                                                       grade: Grade, area: str,
                                                       raised_back_s: int, ticks: list[int]
                                                       ) -> None:
    other = load_routing(EXAMPLE)
    now = T0
    c = case(alert_type, grade, area, "wearable-000018", raised=T0 - raised_back_s * S)
    with capture_logs():
        for tick in [0, *ticks]:
            now += tick * S
            plan = pilot.planner.plan(c, now)
            assert plan == other.planner.plan(c, now) == pilot.planner.plan(c, now)
            c = c.with_sent(plan)
            if plan.next_due_ms is not None:
                # never late, and no idle wake-ups: something is due then
                assert plan.next_due_ms > now
                assert pilot.planner.plan(c, plan.next_due_ms - 1).due == ()
                assert pilot.planner.plan(c, plan.next_due_ms).due != ()
            else:
                assert pilot.planner.plan(c, now + 30 * 86_400 * S).due == ()


# --- most specific wins -------------------------------------------------------------------

AREAS = (None, "city", "d1", "s1", "c1", "k1", "k2")
PATTERNS = ("*", "smoke.*", "smoke.fire", "wearable.*", "wearable.fall")
GRADE_SETS = (None, ("critical",), ("major",), ("critical", "major"), ("minor", "info"))
rules_strategy = st.lists(st.tuples(st.sampled_from(AREAS), st.sampled_from(PATTERNS),
                                    st.sampled_from(GRADE_SETS)), max_size=12, unique=True)


def site(rules: list[tuple[str | None, str, tuple[str, ...] | None]]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "replace_defaults": True,
        "chains": {f"c{i}": {"steps": []} for i in range(len(rules))} | {"all": {"steps": []}},
        "rules": [{"type": "*", "chain": "all"}]}
    for i, (area, pattern, grades) in enumerate(rules):
        rule: dict[str, Any] = {"type": pattern, "chain": f"c{i}"}
        if area is not None:
            rule["area"] = area
        if grades is not None:
            rule["grades"] = list(grades)
        doc["rules"].append(rule)
    return doc


def reference_choice(rules: list[tuple[str | None, str, tuple[str, ...] | None]],
                     alert_type: str, grade: Grade, line: tuple[str, ...]) -> str:
    """Every matching rule, ranked by (area depth, type exactness, grades named)."""
    ranked = [((-1, 0, 0), "all")]
    for i, (area, pattern, grades) in enumerate(rules):
        if area is not None and area not in line:
            continue
        if pattern not in ("*", alert_type, alert_type.split(".")[0] + ".*"):
            continue
        if grades is not None and grade.value not in grades:
            continue
        depth = -1 if area is None else len(line) - 1 - line.index(area)
        exact = 0 if pattern == "*" else 1 if pattern.endswith("*") else 2
        ranked.append(((depth, exact, int(grades is not None)), f"c{i}"))
    best = max(rank for rank, _ in ranked)
    winners = [name for rank, name in ranked if rank == best]
    assert len(winners) == 1
    return winners[0]


def valid(rules: list[tuple[str | None, str, tuple[str, ...] | None]]) -> bool:
    try:
        build_policies(site(rules))
    except PolicyError as exc:
        assert "as specific as" in str(exc)
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(rules=rules_strategy, extra=st.tuples(st.sampled_from(AREAS), st.sampled_from(PATTERNS),
                                             st.sampled_from(GRADE_SETS)),
       alert_type=st.sampled_from(("smoke.fire", "smoke.co", "wearable.fall", "device.fault")),
       grade=st.sampled_from(list(Grade)), area=st.sampled_from(AREAS[1:]))
def test_the_most_specific_rule_wins_and_a_less_specific_one_changes_nothing(
        rules: list[tuple[str | None, str, tuple[str, ...] | None]],
        extra: tuple[str | None, str, tuple[str, ...] | None], alert_type: str, grade: Grade,
        area: str) -> None:
    assume(valid(rules))
    directory = parse_directory(small())
    line = directory.ancestors(area)
    chosen = build_policies(site(rules)).choose(alert_type, grade, line)
    assert chosen == reference_choice(rules, alert_type, grade, line)
    # a rule no more specific than the chosen one (or one that does not match) adds nothing
    x_area, x_pattern, x_grades = extra
    assume(extra not in rules and valid([*rules, extra]))
    matches = ((x_area is None or x_area in line)
               and x_pattern in ("*", alert_type, alert_type.split(".")[0] + ".*")
               and (x_grades is None or grade.value in x_grades))
    def rank(rule: tuple[str | None, str, tuple[str, ...] | None]) -> tuple[int, int, int]:
        r_area, r_pattern, r_grades = rule
        return (-1 if r_area is None else len(line) - 1 - line.index(r_area),
                0 if r_pattern == "*" else 1 if r_pattern.endswith("*") else 2,
                int(r_grades is not None))

    winner = rank(rules[int(chosen[1:])]) if chosen != "all" else (-1, 0, 0)
    if not matches or rank(extra) < winner:
        assert build_policies(site([*rules, extra])).choose(alert_type, grade, line) == chosen
    else:
        assert build_policies(site([*rules, extra])).choose(alert_type, grade, line) == \
            f"c{len(rules)}"


# --- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "expected"), [
    ({"rules": [{"type": "smoke.fire", "chain": "nope"}]},
     "policy.rules[0].chain: no chain 'nope'"),
    ({"rules": [{"type": "smoke.fir", "chain": "care"}]},
     "policy.rules[0].type: unknown alert type 'smoke.fir'"),
    ({"rules": [{"type": "smok.*", "chain": "care"}]},
     "policy.rules[0].type: unknown kind 'smok'"),
    ({"rules": [{"type": "smoke fire", "chain": "care"}]},
     "policy.rules[0].type: String should match pattern"),
    ({"rules": [{"type": "smoke.fire", "chain": "care", "grade": ["major"]}]},
     "policy.rules[0].grade: unknown key"),
    ({"rules": [{"type": "smoke.fire", "chain": "care", "grades": ["major", "major"]}]},
     "policy.rules[0].grades: repeats a grade"),
    ({"rules": [{"type": "smoke.fire", "chain": "care", "grades": ["major"]},
                {"type": "smoke.fire", "chain": "advisory", "grades": ["major", "minor"]}]},
     "policy.rules[1]: as specific as policy.rules[0]"),
    ({"chains": {"x": {"steps": [{"whom": "mayor", "after_s": 0}]}}},
     "policy.chains.x.steps[0].whom: Input should be"),
    ({"chains": {"x": {"steps": [{"whom": "relatives", "after_s": 0, "renotify_s": 1}]}}},
     "policy.chains.x.steps[0].renotify_s: Input should be greater than or equal to 10"),
    ({"chains": {"x": {"steps": [{"whom": "relatives", "after_s": -1}]}}},
     "policy.chains.x.steps[0].after_s: Input should be greater than or equal to 0"),
    ({"replace_defaults": True, "chains": {"x": {"steps": []}},
      "rules": [{"type": "smoke.*", "chain": "x"}]},
     "policy.rules: no catch-all rule"),
    ({"rules": [{"type": "smoke.fire", "chain": "care", "area": "k9"}]},
     "policy.rules[0].area: unknown area 'k9'"),
    ({"chains": {"x": {"steps": [{"whom": "duty_officer", "after_s": 0, "level": "street"},
                                 {"whom": "duty_officer", "after_s": 0, "level": "block"}]}}},
     "policy.chains.x.steps[1].level: no area of level 'block' in the directory"),
])
def test_bad_policies_are_refused_in_one_line_naming_the_key(policy: dict[str, Any],
                                                             expected: str) -> None:
    doc = small()
    doc["policy"] = policy
    with pytest.raises(PolicyError) as exc:
        routing_of(parse_directory(doc))
    assert len(str(exc.value).splitlines()) == 1, str(exc.value)
    assert str(exc.value).startswith(expected), str(exc.value)


def test_a_directory_rule_as_specific_as_a_shipped_one_wins_and_errors_name_the_file(
        tmp_path: Path) -> None:
    doc = small()
    doc["policy"] = {"chains": {"quiet_fall": {"respect_quiet_hours": True, "steps": [
        {"whom": "relatives", "after_s": 0}]}},
        "rules": [{"type": "wearable.fall", "chain": "quiet_fall"}]}
    path = tmp_path / "d.toml"
    path.write_text(to_toml(doc))
    routing = load_routing(path)
    plan = routing.planner.plan(case("wearable.fall", Grade.CRITICAL, "k1", "wearable-000001"),
                                T0)
    assert plan.chain == "quiet_fall"
    assert [r.responder for d in plan.due for r in d.recipients] == ["rel-1"]
    doc["policy"]["rules"][0]["chain"] = "missing"
    path.write_text(to_toml(doc))
    with pytest.raises(PolicyError) as exc:
        load_routing(path)
    assert str(exc.value).startswith(f"{path}: policy.rules[0].chain: no chain 'missing'")


def test_planning_ten_thousand_open_cases_takes_well_under_a_second(pilot: Routing) -> None:
    """The bound is loose (a shared machine); the figure measured alone is in the report."""
    rng = random.Random(1)
    devices = ("wearable-000018", "smoke-000006", "wearable-000002", "manhole-000003")
    cases = [case(rng.choice(TYPES), rng.choice(list(Grade)), f"compound-{rng.randint(1, 20):02d}",
                  rng.choice(devices), raised=T0 - rng.randint(0, 3_600_000))
             for _ in range(10_000)]
    with capture_logs():
        cases = [c.with_sent(pilot.planner.plan(c, T0)) for c in cases]
        start = time.perf_counter()
        plans: list[Plan] = [pilot.planner.plan(c, T0 + 30 * S) for c in cases]
        took = time.perf_counter() - start
    assert len(plans) == 10_000 and any(p.due for p in plans)
    assert took < 1.0
