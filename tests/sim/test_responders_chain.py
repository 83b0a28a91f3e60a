"""The pilot's incidents played through the shipped escalation policies (the real planner and
case state machine of sensing.dispatch) and the simulated responders, on the fleet's clock,
without a broker: a stand-in for the core's dispatch loop that checks what the responders do
against what the core allows, and that the run ends with every case disposed as the ground
truth says, after climbs up both the family chain and the command chain."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from sensing.dispatch.cases import Action, Case, CaseState, Refused
from sensing.dispatch.directory import Directory, parse_directory
from sensing.dispatch.policy import OpenCase, Routing, routing_of
from sensing.wire.messages import Grade
from sensing_sim.directory_gen import directory_doc
from sensing_sim.responders import (
    COMMAND_ROLES,
    FAMILY_ROLES,
    LATCHING,
    CaseMessage,
    DispatchMessage,
    ResponderSim,
    Truth,
    expected_outcome,
    role_of,
)
from sensing_sim.scenario import load_scenario
from sensing_sim.score_dispatch import dispatch_score

PILOT = Path(__file__).parents[2] / "simulators" / "scenarios" / "pilot.toml"
DETECT_S = 20
"""from an incident's start to its alert (the pilot's detectors take 1 s to 40 s)"""
CLEAR_S = 30
"""from an incident's end to its alert resolving (an SOS or fall stays open: latching)"""
HORIZON_S = 4 * 3600


@dataclass
class _Open:
    case: Case
    planned: OpenCase
    label: dict[str, Any]
    clear_ms: int | None


class MiniCore:
    """The core's dispatch as far as the responders see it: cases opened at the labels'
    alerts, notified by the planner, acted on through the state machine, told back."""

    def __init__(self, routing: Routing, sim: ResponderSim) -> None:
        self.routing, self.sim = routing, sim
        self.directory: Directory = routing.directory
        self.messages: list[dict[str, Any]] = []
        self.cases: dict[str, _Open] = {}
        self.refused = 0
        self.not_allowed: list[str] = []

    def emit(self, o: _Open, event: str, ts: int, by: str = "", **extra: Any) -> None:
        c = o.case
        msg = {"case_id": c.case_id, "event": event, "by": by, "ts": ts, "state": c.state.value,
               "type": c.type, "grade": c.grade, "area": c.area, "device": c.device,
               "gateway": c.gateway, "members": list(c.members), "taken_by": c.taken_by,
               "outcome": c.outcome, "note": c.note, "chain": c.chain, **extra}
        self.messages.append(msg)
        self.sim.on_case(CaseMessage.model_validate(msg), ts)

    def open(self, label: dict[str, Any], case_id: str, ts: int) -> None:
        area, device = str(label["area"]), str(label["device"])
        grade = Grade(label["grade"])
        chain = self.routing.planner.chain_of(label["type"], grade, area) or ""
        case = Case(case_id, label["type"], grade.value, area, device, label["gateway"], ts,
                    chain, (case_id,))
        planned = OpenCase(case_id, label["type"], grade, area, device, ts, chain)
        clear = None if label["type"] in LATCHING else int(label["ts_end"]) + CLEAR_S * 1000
        o = self.cases[case_id] = _Open(case, planned, label, clear)
        self.emit(o, "opened", ts)

    def tick(self, now: int) -> None:
        for o in self.cases.values():
            c = o.case
            if c.state.is_closed:
                continue
            if o.clear_ms is not None and now >= o.clear_ms and not c.cleared:
                o.case = replace(c, cleared=True)
                self.emit(o, "cleared", now)
            if not o.case.escalating:
                continue
            plan = self.routing.planner.plan(o.planned, now)
            for due in plan.due:
                people = [r.responder for r in due.recipients]
                self.emit(o, "notified", now, step=due.step, round=due.round,
                          role=due.whom, responders=people)  # as the core: the step's whom
                for r in due.recipients:
                    self.sim.on_dispatch(DispatchMessage(
                        case_id=c.case_id, alert_id=c.case_id, responder=r.responder,
                        role=r.role, step=due.step, round=due.round, type=c.type,
                        grade=c.grade, area=c.area, device=c.device,
                        ts_event=c.opened_ms, ts_raised=c.opened_ms,
                        notification_id=f"{c.case_id}/{due.step}/{due.round}/{r.responder}"),
                        now)
            o.planned = o.planned.with_sent(plan)
        for action in self.sim.due(now):
            o = self.cases[action.case_id]
            c = o.case
            told = action.responder in {p for m in self.messages if m["case_id"] == c.case_id
                                        for p in m.get("responders", ())}
            if not (told or self.directory.serves(action.responder, c.area, c.device)):
                self.not_allowed.append(f"{action.responder} on {c.case_id}")
            try:
                o.case = c.act(Action(action.action), action.responder,
                               outcome=action.outcome, note=action.note)
            except Refused:
                self.refused += 1
                self.sim.on_refusal("ack_refused")
                continue
            o.planned = replace(o.planned, taken=o.case.state != CaseState.OPEN,
                                closed=o.case.state.is_closed)
            event = {"take": "taken", "arrived": "arrived", "dispose": "disposed"}[action.action]
            self.emit(o, event, now, by=action.responder)


def play(seed: int = 12) -> tuple[MiniCore, list[dict[str, Any]]]:
    scenario = load_scenario(PILOT)
    fleet = scenario.build()
    directory = parse_directory(directory_doc(fleet))
    labels = [i.to_dict(scenario.run.start_ms) for i in fleet.incidents]
    truth = Truth(labels)
    core = MiniCore(routing_of(directory), ResponderSim(directory, truth, seed=seed))
    firsts: dict[str, dict[str, Any]] = {}
    for lb in labels:  # one case per incident (the core joins the detectors of a fire)
        firsts.setdefault(truth.incident_key(lb), lb)
    opening = sorted((int(lb["ts_start"]) + DETECT_S * 1000, f"case-{n:02d}", lb)
                     for n, lb in enumerate(firsts.values()))
    now = opening[0][0]
    while now <= scenario.run.start_ms + HORIZON_S * 1000:
        while opening and opening[0][0] <= now:
            _, case_id, lb = opening.pop(0)
            core.open(lb, case_id, now)
        core.tick(now)
        if not opening and all(o.case.state.is_closed for o in core.cases.values()):
            break
        now += 1000
    return core, labels


@pytest.fixture(scope="module")
def pilot() -> tuple[MiniCore, list[dict[str, Any]]]:
    return play()


def test_every_case_of_the_pilot_ends_disposed_as_the_truth_says(
        pilot: tuple[MiniCore, list[dict[str, Any]]]) -> None:
    core, _ = pilot
    assert len(core.cases) == 15  # 18 labels: the fire's two detectors and gw-07's flaps
    for o in core.cases.values():
        assert o.case.state == CaseState.DISPOSED, (o.case.case_id, o.case.type, o.case.state)
        assert o.case.outcome == expected_outcome(o.label), o.case.type
    assert core.not_allowed == []


def test_escalation_climbs_the_family_chain_and_the_command_chain(
        pilot: tuple[MiniCore, list[dict[str, Any]]]) -> None:
    core, _ = pilot
    roles_of: dict[str, set[str]] = {}
    for m in core.messages:
        if m["event"] == "notified":
            roles_of.setdefault(m["case_id"], set()).add(role_of(m["role"]))
    family = [c for c, roles in roles_of.items() if roles & set(FAMILY_ROLES)]
    command = [c for c, roles in roles_of.items() if roles & set(COMMAND_ROLES)]
    assert len(family) >= 2
    sos = next(o for o in core.cases.values() if o.case.type == "wearable.sos")
    assert sos.case.case_id in command and sos.case.case_id in family
    assert sos.case.taken_by.startswith("cc-")  # nobody local answered: a command centre
    takers = {o.case.taken_by.split("-")[0] for o in core.cases.values()}
    assert {"grid", "cc"} <= takers


def test_the_dispatch_score_of_the_run(pilot: tuple[MiniCore, list[dict[str, Any]]]) -> None:
    core, labels = pilot
    ds = dispatch_score(core.messages, labels)
    total = ds.total
    assert total.opened == total.disposed == 15
    assert total.outcome_ok == 15 and total.outcome_rate == 1.0
    assert total.climbed_command >= 1 and total.climbed_family >= 2
    assert total.notify_p95_s is not None and total.notify_p95_s <= 1.0  # at once
    assert total.take_p50_s is not None and total.dispose_p50_s is not None
    assert total.take_p50_s < total.dispose_p50_s


def test_the_same_seed_plays_the_same_record() -> None:
    a, _ = play(seed=5)
    b, _ = play(seed=5)
    assert a.messages == b.messages
    c, _ = play(seed=6)
    assert c.messages != a.messages
