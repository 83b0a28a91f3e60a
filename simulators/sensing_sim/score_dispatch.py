"""How the cases went: per alert type, how fast people were told, took and disposed of them,
how far they climbed, and whether the disposals matched the ground truth.

From the core's case messages (`sensing/v1/cases/{area}`, one per change; `sensing-sim score
--listen --save` keeps them with the alerts). A case's times are its events' `ts`: the core's
wall clock live, the fleet's clock in a replay, so the figures are in simulated seconds either
way. Per case, from its `opened` event (or its earliest event): the first `notified`, the
first `taken` and the `disposed`. A case *climbed the command structure* when a `notified`
event's role is street_command, district_command or city_command, and *the family chain*
when one's is relative or volunteer (or the steps' "relatives" and "volunteers"). Its
expected outcome is the ground truth's (`sensing_sim.responders.expected_outcome` of the label
its device, type and opening time match, "false_alarm" when none does); a disposal matches
when its outcome is that.
`gateway.offline` cases opened once the run began stopping its gateways are the run's own
end, not incidents: they are left out (`left_out`), as `sensing-sim score` leaves out their
alerts.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sensing_sim.responders import (
    COMMAND_ROLES,
    FAMILY_ROLES,
    Truth,
    expected_outcome,
    role_of,
)
from sensing_sim.score import _p95


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """One case, from its messages."""

    case_id: str
    type: str
    area: str
    device: str
    opened_ms: int
    notified_ms: int | None
    taken_ms: int | None
    disposed_ms: int | None
    resolved: bool
    """closed by a person's `resolve`, not disposed"""
    outcome: str
    taken_by: str
    roles: tuple[str, ...]
    """the roles notified, in the order first notified"""

    @property
    def climbed_command(self) -> bool:
        return any(r in COMMAND_ROLES for r in self.roles)

    @property
    def climbed_family(self) -> bool:
        return any(r in FAMILY_ROLES for r in self.roles)


def cases_from_messages(messages: Iterable[Mapping[str, Any]]) -> list[CaseRecord]:
    """One CaseRecord per case_id, from its messages in any order (ordered by `ts`)."""
    by_case: dict[str, list[Mapping[str, Any]]] = {}
    for m in messages:
        by_case.setdefault(str(m["case_id"]), []).append(m)
    out = []
    for case_id, events in by_case.items():
        events.sort(key=lambda m: int(m["ts"]))

        def first(event: str, of: list[Mapping[str, Any]] = events) -> Mapping[str, Any] | None:
            return next((m for m in of if m.get("event") == event), None)

        opened = first("opened") or events[0]
        notified, taken, disposed = first("notified"), first("taken"), first("disposed")
        roles = tuple(dict.fromkeys(role_of(str(m.get("role") or "")) for m in events
                                    if m.get("event") == "notified"))
        out.append(CaseRecord(
            case_id=case_id, type=str(opened.get("type", "")), area=str(opened.get("area", "")),
            device=str(opened.get("device", "")), opened_ms=int(opened["ts"]),
            notified_ms=None if notified is None else int(notified["ts"]),
            taken_ms=None if taken is None else int(taken["ts"]),
            disposed_ms=None if disposed is None else int(disposed["ts"]),
            resolved=first("resolved") is not None and disposed is None,
            outcome=str(disposed.get("outcome") or "") if disposed is not None else "",
            taken_by=str((taken or {}).get("taken_by") or (taken or {}).get("by") or ""),
            roles=roles))
    return sorted(out, key=lambda c: (c.opened_ms, c.case_id))


@dataclass(frozen=True, slots=True)
class DispatchTypeScore:
    type: str
    """an alert type, or "all" for every case"""
    opened: int
    notified: int
    taken: int
    disposed: int
    resolved: int
    notify_p50_s: float | None
    notify_p95_s: float | None
    take_p50_s: float | None
    take_p95_s: float | None
    dispose_p50_s: float | None
    dispose_p95_s: float | None
    climbed_command: int
    climbed_family: int
    outcome_ok: int
    """disposals whose outcome is the expected one"""
    outcome_rate: float | None
    """outcome_ok / disposed"""


@dataclass(frozen=True, slots=True)
class DispatchScore:
    types: tuple[DispatchTypeScore, ...]
    total: DispatchTypeScore
    outcomes: dict[str, dict[str, int]]
    """expected outcome -> disposed outcome -> cases"""
    left_out: int
    """gateway.offline cases of the run's own end"""

    def as_json(self) -> dict[str, Any]:
        return {"types": [asdict(t) for t in self.types], "total": asdict(self.total),
                "outcomes": self.outcomes, "left_out": self.left_out}


def _since(cases: list[CaseRecord], attr: str) -> list[float]:
    out = []
    for c in cases:
        at = getattr(c, attr)
        if at is not None:
            out.append((at - c.opened_ms) / 1000)
    return out


def _p50(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _type_score(type_: str, cases: list[CaseRecord], expected: Mapping[str, str]
                ) -> DispatchTypeScore:
    notify, take, dispose = (_since(cases, a) for a in ("notified_ms", "taken_ms",
                                                        "disposed_ms"))
    disposed = [c for c in cases if c.disposed_ms is not None]
    ok = sum(1 for c in disposed if c.outcome == expected[c.case_id])
    return DispatchTypeScore(
        type=type_, opened=len(cases), notified=len(notify), taken=len(take),
        disposed=len(disposed), resolved=sum(1 for c in cases if c.resolved),
        notify_p50_s=_p50(notify), notify_p95_s=_p95(notify) if notify else None,
        take_p50_s=_p50(take), take_p95_s=_p95(take) if take else None,
        dispose_p50_s=_p50(dispose), dispose_p95_s=_p95(dispose) if dispose else None,
        climbed_command=sum(1 for c in cases if c.climbed_command),
        climbed_family=sum(1 for c in cases if c.climbed_family),
        outcome_ok=ok, outcome_rate=ok / len(disposed) if disposed else None)


def dispatch_score(messages: Iterable[Mapping[str, Any]], labels: Iterable[Mapping[str, Any]],
                   *, stopping_ms: int | None = None, grace_s: float = 600.0) -> DispatchScore:
    """The score of the case messages against the labels; see the module."""
    truth = Truth(labels, grace_s)
    cases = cases_from_messages(messages)
    shutdown = [c for c in cases if stopping_ms is not None and c.type == "gateway.offline"
                and c.opened_ms >= stopping_ms]
    cases = [c for c in cases if c not in shutdown]
    expected = {c.case_id: expected_outcome(truth.label_of(c.device, c.type, c.opened_ms))
                for c in cases}
    outcomes: dict[str, dict[str, int]] = {}
    for c in cases:
        if c.disposed_ms is not None:
            row = outcomes.setdefault(expected[c.case_id], {})
            row[c.outcome] = row.get(c.outcome, 0) + 1
    by_type: dict[str, list[CaseRecord]] = {}
    for c in cases:
        by_type.setdefault(c.type, []).append(c)
    return DispatchScore(
        types=tuple(_type_score(t, by_type[t], expected) for t in sorted(by_type)),
        total=_type_score("all", cases, expected), outcomes=outcomes, left_out=len(shutdown))
