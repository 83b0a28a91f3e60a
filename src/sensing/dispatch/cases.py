"""Cases: what the people who must act work on, from the first alert to its disposal.

A case holds one alert or an incident of related alerts (its members). Its state machine (see
docs/dispatch.md):

    open --take--> taken --arrived--> arrived --dispose--> disposed
      |              |                   |
      +----dispose---+-------dispose-----+      (dispose from open: checked remotely)
      +----resolve (a person, any open state) --> resolved
    reassign (an operator): taken / arrived --> taken by another responder

`ack` records who has seen it and changes no state: escalation runs until somebody takes the
case. Every change is an event of the case's timeline. Nothing here reads a clock or the
directory: callers pass the time and decide who may act (`sensing.dispatch.engine`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

import orjson

Outcome = Literal["fire", "false_alarm", "device_fault", "resident_ok", "other"]
OUTCOMES: tuple[Outcome, ...] = ("fire", "false_alarm", "device_fault", "resident_ok", "other")
MAX_NOTE = 1000
"""characters of a disposal note kept"""
MAX_LISTED = 16
"""member alert ids a case lists in its messages (all of them are in `case_members`): a
gateway's 10,000 silent devices are one incident, not a 340 kB message on every change"""


class CaseState(StrEnum):
    OPEN = "open"
    TAKEN = "taken"
    ARRIVED = "arrived"
    DISPOSED = "disposed"
    RESOLVED = "resolved"

    @property
    def is_closed(self) -> bool:
        return self in (CaseState.DISPOSED, CaseState.RESOLVED)


class Action(StrEnum):
    ACK = "ack"
    TAKE = "take"
    ARRIVED = "arrived"
    DISPOSE = "dispose"
    REASSIGN = "reassign"
    RESOLVE = "resolve"


class Refused(ValueError):
    """An action the case's state does not allow (the message says why, in one line)."""


@dataclass(frozen=True, slots=True)
class Case:
    case_id: str
    type: str
    grade: str
    area: str
    device: str
    gateway: str
    opened_ms: int
    chain: str
    """the escalation chain its policy chose"""
    members: tuple[str, ...]
    """the first MAX_LISTED alert ids; the first opened the case"""
    incident: str = ""
    """the key related alerts share (`sensing.dispatch.incidents`); "" for a lone alert"""
    state: CaseState = CaseState.OPEN
    taken_by: str = ""
    seen_by: tuple[str, ...] = ()
    notified: dict[tuple[int, str], int] = field(default_factory=dict)
    """(step of the chain, person told) -> the last round they were sent ("" for a step that
    reached nobody the directory names: only the contract's dispatch topic)"""
    next_due_ms: int | None = None
    """when the next step or re-notification is due; None: nothing more to send"""
    cleared: bool = False
    """every member alert has resolved (the devices are back to normal)"""
    outcome: str = ""
    note: str = ""
    member_count: int = 1
    open_members: int = 1
    """members not resolved yet: at 0 the case is cleared"""

    def with_member(self, alert_id: str) -> Case:
        """The case with one more (open) alert."""
        listed = self.members if len(self.members) >= MAX_LISTED else (*self.members, alert_id)
        return replace(self, members=listed, member_count=self.member_count + 1,
                       open_members=self.open_members + 1, cleared=False)

    @property
    def escalating(self) -> bool:
        """Notifications still go out: nobody has taken it and it is not closed. A case whose
        alerts have all cleared stops escalating; those already told can still dispose it."""
        return self.state == CaseState.OPEN and not self.cleared

    def act(self, action: Action, by: str, *, outcome: str = "", note: str = "",
            to: str = "") -> Case:
        """The case after `by` did `action` (who may act is the caller's decision)."""
        if self.state.is_closed:
            raise Refused(f"case {self.case_id} is already {self.state.value}")
        match action:
            case Action.ACK:
                if by in self.seen_by:
                    return self
                return replace(self, seen_by=(*self.seen_by, by)[-16:])
            case Action.TAKE:
                if self.state != CaseState.OPEN and self.taken_by != by:
                    raise Refused(f"case {self.case_id} is taken by {self.taken_by}")
                if self.state != CaseState.OPEN:
                    return self
                return replace(self, state=CaseState.TAKEN, taken_by=by, next_due_ms=None)
            case Action.ARRIVED:
                if self.state == CaseState.OPEN or self.taken_by != by:
                    raise Refused(f"only who took case {self.case_id} can arrive"
                                  + (f" ({self.taken_by})" if self.taken_by else ""))
                return replace(self, state=CaseState.ARRIVED)
            case Action.DISPOSE:
                if outcome not in OUTCOMES:
                    raise Refused(f"outcome must be one of {', '.join(OUTCOMES)}")
                return replace(self, state=CaseState.DISPOSED, taken_by=self.taken_by or by,
                               outcome=outcome, note=note[:MAX_NOTE], next_due_ms=None)
            case Action.REASSIGN:
                if not to:
                    raise Refused("reassign needs `to`, the responder who takes the case")
                return replace(self, state=CaseState.TAKEN, taken_by=to, next_due_ms=None)
            case Action.RESOLVE:
                return replace(self, state=CaseState.RESOLVED, next_due_ms=None)
        raise Refused(f"unknown action {action!r}")  # pragma: no cover - Action is closed


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY,
    incident TEXT NOT NULL,
    state TEXT NOT NULL,
    is_open INTEGER NOT NULL,
    next_due_ms INTEGER,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_due ON cases (next_due_ms) WHERE next_due_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS cases_incident ON cases (incident, is_open);
CREATE TABLE IF NOT EXISTS case_members (
    alert_id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS case_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    event TEXT NOT NULL,
    by TEXT NOT NULL,
    detail BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id, id);
"""


def _doc(case: Case) -> bytes:
    return orjson.dumps({
        "case_id": case.case_id, "type": case.type, "grade": case.grade, "area": case.area,
        "device": case.device, "gateway": case.gateway, "opened_ms": case.opened_ms,
        "chain": case.chain, "members": list(case.members), "incident": case.incident,
        "state": case.state.value, "taken_by": case.taken_by, "seen_by": list(case.seen_by),
        "notified": [[step, who, rnd] for (step, who), rnd in case.notified.items()],
        "next_due_ms": case.next_due_ms, "cleared": case.cleared, "outcome": case.outcome,
        "note": case.note, "member_count": case.member_count,
        "open_members": case.open_members})


def _case(raw: bytes | str) -> Case:
    d: dict[str, Any] = orjson.loads(raw)
    return Case(
        case_id=d["case_id"], type=d["type"], grade=d["grade"], area=d["area"],
        device=d["device"], gateway=d["gateway"], opened_ms=d["opened_ms"], chain=d["chain"],
        members=tuple(d["members"]), incident=d["incident"], state=CaseState(d["state"]),
        taken_by=d["taken_by"], seen_by=tuple(d["seen_by"]),
        notified={(int(step), str(who)): int(rnd) for step, who, rnd in d["notified"]},
        next_due_ms=d["next_due_ms"], cleared=d["cleared"], outcome=d["outcome"],
        note=d["note"], member_count=d["member_count"], open_members=d["open_members"])


@dataclass(frozen=True, slots=True)
class CaseEvent:
    case_id: str
    ts: int
    event: str
    by: str
    detail: dict[str, Any]


class CaseStore:
    """Cases and their timelines in the alert store's SQLite database.

    It never commits: its writes belong to the caller's transaction (the core's step, with
    the alert transitions and the notifications they cause), so a crash keeps all or none."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)

    def save(self, case: Case, event: str | None, by: str = "", ts: int = 0,
             **detail: Any) -> Case:
        """Write `case` and add `event` to its timeline (None: a new schedule, no event)."""
        self._db.execute(
            "INSERT INTO cases (case_id, incident, state, is_open, next_due_ms, doc)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (case_id) DO UPDATE SET"
            " state = excluded.state, is_open = excluded.is_open,"
            " next_due_ms = excluded.next_due_ms, doc = excluded.doc",
            (case.case_id, case.incident, case.state.value, int(not case.state.is_closed),
             case.next_due_ms if not case.state.is_closed else None, _doc(case)))
        self._db.executemany(
            "INSERT OR IGNORE INTO case_members (alert_id, case_id) VALUES (?, ?)",
            [(a, case.case_id) for a in case.members])
        if event is not None:
            self._db.execute(
                "INSERT INTO case_events (case_id, ts, event, by, detail) VALUES (?, ?, ?, ?, ?)",
                (case.case_id, ts, event, by, orjson.dumps(detail)))
        return case

    def add_member(self, case_id: str, alert_id: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO case_members (alert_id, case_id) VALUES (?, ?)",
                         (alert_id, case_id))

    def member_ids(self, case_id: str) -> list[str]:
        """Every alert of the case (its first, then the others in no set order)."""
        return [case_id, *(a for (a,) in self._db.execute(
            "SELECT alert_id FROM case_members WHERE case_id = ? AND alert_id != ?",
            (case_id, case_id)))]

    def get(self, case_id: str) -> Case | None:
        row = self._db.execute("SELECT doc FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        return _case(row[0]) if row else None

    def of_alert(self, alert_id: str) -> Case | None:
        """The case an alert belongs to (an alert id names its case too)."""
        row = self._db.execute(
            "SELECT c.doc FROM case_members m JOIN cases c ON c.case_id = m.case_id"
            " WHERE m.alert_id = ?", (alert_id,)).fetchone()
        return _case(row[0]) if row else self.get(alert_id)

    def open_incident(self, incident: str) -> Case | None:
        """The open case of an incident key, if any."""
        if not incident:
            return None
        row = self._db.execute("SELECT doc FROM cases WHERE incident = ? AND is_open = 1"
                               " LIMIT 1", (incident,)).fetchone()
        return _case(row[0]) if row else None

    def due(self, now_ms: int, limit: int = 10_000) -> list[Case]:
        """Open cases whose next notification is due at `now_ms`, the earliest first."""
        return [_case(raw) for (raw,) in self._db.execute(
            "SELECT doc FROM cases WHERE next_due_ms IS NOT NULL AND next_due_ms <= ?"
            " ORDER BY next_due_ms LIMIT ?", (now_ms, limit))]

    def all_due(self, ts: int) -> None:
        """Make every case that has a next notification due at `ts` (plan them all again)."""
        self._db.execute("UPDATE cases SET next_due_ms = ? WHERE next_due_ms IS NOT NULL",
                         (ts,))

    def open_cases(self) -> Iterator[Case]:
        for (raw,) in self._db.execute("SELECT doc FROM cases WHERE is_open = 1"):
            yield _case(raw)

    def timeline(self, case_id: str) -> list[CaseEvent]:
        return [CaseEvent(case_id, ts, event, by, orjson.loads(detail))
                for ts, event, by, detail in self._db.execute(
                    "SELECT ts, event, by, detail FROM case_events WHERE case_id = ?"
                    " ORDER BY id", (case_id,))]

    def counts(self) -> dict[str, int]:
        """Cases by state."""
        return {state: int(n) for state, n in
                self._db.execute("SELECT state, count(*) FROM cases GROUP BY state")}
