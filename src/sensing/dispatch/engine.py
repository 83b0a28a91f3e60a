"""The dispatch engine: alerts become cases, cases reach people, people's actions end them.

The core's step calls it with each alert transition (`on_alert`), once a step (`tick`) and with
each responder's action (`act`); it answers with what to publish and the alert transitions
that follow (an escalation, an acknowledgement, the resolution that a disposal brings). Cases,
silences and notifications to webhooks and Apprise go to the alert store in the step's own
transaction, so a crash keeps all of them or none, and a notification planned again after a
restart has the id it had (the outbox ignores it). Everything here runs on the dispatch clock
the caller passes: the wall clock live, the fleet's clock in a replay (docs/dispatch.md,
"Time").
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson
import structlog

from sensing.alerts.book import AlertBook, UnknownAlert
from sensing.dispatch.cases import MAX_LISTED, Action, Case, CaseState, CaseStore, Refused
from sensing.dispatch.directory import Contact, Directory, parse_directory
from sensing.dispatch.incidents import incident_key
from sensing.dispatch.notification import make_notification
from sensing.dispatch.outbox import Outbox
from sensing.dispatch.policy import OpenCase, Plan, Routing, routing_of
from sensing.dispatch.silences import Silence, SilenceBook
from sensing.wire import topics
from sensing.wire.errors import Code
from sensing.wire.messages import Alert, AlertState, Grade

log = structlog.get_logger("sensing.dispatch")

TIER_OF_ROLE: Final = {"grid_worker": "grid", "relative": "relatives", "volunteer": "volunteers"}
"""the contract's tiers for the roles it named first; the other roles are their own tier"""
OPERATOR_ROLES: Final = frozenset({"duty_officer", "street_command", "district_command",
                                   "city_command"})
"""who may reassign a case and set silences"""
COMMAND_ROLES: Final = frozenset({"street_command", "district_command", "city_command"})
MAX_DUE_PER_TICK: Final = 10_000
"""cases advanced in one tick at most (the rest are still due at the next)"""
DUE_BATCH: Final = 32
"""due cases read from the store at a time"""
MIN_TICK_S: Final = 0.005
"""a tick works on due cases for as long as the step loop did everything else since the
last one, and at least this long: escalations may run late under a flood of them (10,000
cases re-notified every 10 s), ingestion never stops for them (the loop's time is shared
half and half, and all of it goes to escalation when no reading comes)"""
_GRADE_RANK: Final = {Grade.INFO: 0, Grade.MINOR: 1, Grade.MAJOR: 2, Grade.CRITICAL: 3}

NO_DIRECTORY: Final = {"areas": [{"id": "all", "name": "everywhere", "level": "city"}]}
"""routing without a directory file: every alert routes by this one area and reaches the
contract's dispatch topics only (nobody is named), on the shipped policies' schedule"""


def tier_of(role: str) -> str:
    return TIER_OF_ROLE.get(role, role)


class ActionRefused(Exception):
    """An action or silence refused: `code` for the dead letter, the message for people."""

    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass
class DispatchOut:
    """What a call asks the core to do: publish `announce` (dispatch and case messages) and
    record `alerts` (transitions the engine caused) as it records any transition."""

    announce: list[tuple[str, bytes]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def extend(self, other: DispatchOut) -> None:
        self.announce.extend(other.announce)
        self.alerts.extend(other.alerts)


@dataclass(frozen=True, slots=True)
class ActionRequest:
    action: Action
    by: str
    target: str
    """an alert id or a case id"""
    outcome: str = ""
    note: str = ""
    to: str = ""


class DispatchEngine:
    """Cases, escalation and notifications over the alert store's connection (`book`)."""

    def __init__(self, book: AlertBook, routing: Routing | None = None,
                 outbox: Outbox | None = None) -> None:
        self.book = book
        db: sqlite3.Connection = book.connection
        self.cases = CaseStore(db)
        self.silences = SilenceBook(db)
        self.outbox = outbox if outbox is not None else Outbox(db)
        self.checks_people = routing is not None
        """a directory names who may act; without one, `by` is taken at its word (as the
        contract's acks always were)"""
        self.routing = routing if routing is not None else routing_of(
            parse_directory(NO_DIRECTORY))
        self._replan = False
        self._joins: dict[str, list[str]] = {}
        """alerts that joined an open case since the last tick, by case"""
        self._tick_end = time.perf_counter()

    @property
    def directory(self) -> Directory:
        return self.routing.directory

    def reload(self, routing: Routing) -> None:
        """A new directory and policies: open cases keep their chains and what was sent, and
        are planned again at the next tick (someone new may be due)."""
        self.routing = routing
        self.checks_people = True
        self._replan = True

    # -- alerts ----------------------------------------------------------------------------

    def on_alert(self, alert: Alert, ts: int) -> DispatchOut:
        """An alert transition the core recorded (not those the engine caused itself)."""
        if alert.state == AlertState.RAISED:
            return self._raised(alert, ts)
        case = self.cases.of_alert(alert.alert_id)
        if case is None:
            return DispatchOut()
        if alert.state == AlertState.RESOLVED and alert.by is not None:
            # a person resolved it (`act` has recorded the case): everyone told hears it
            return DispatchOut(self._to_those_told(case, alert))
        if case.state.is_closed:
            return DispatchOut()
        if alert.state == AlertState.UPDATED:
            return self._updated(case, alert, ts)
        if alert.state == AlertState.RESOLVED:
            return self._member_resolved(case, alert, ts)
        return DispatchOut()

    def _raised(self, alert: Alert, ts: int) -> DispatchOut:
        resident = self.directory.resident_of(alert.device)
        key = incident_key(alert.type, alert.gateway, resident.id if resident else "")
        joined = self.cases.open_incident(key)
        if joined is not None:
            case = joined.with_member(alert.alert_id)
            self.cases.add_member(case.case_id, alert.alert_id)
            self._joins.setdefault(case.case_id, []).append(alert.alert_id)
            worse = _GRADE_RANK[alert.grade] > _GRADE_RANK[Grade(case.grade)]
            again = joined.cleared and case.state == CaseState.OPEN
            if worse:
                case = self._graver(case, alert.grade)
            if again:
                case = replace(case, next_due_ms=ts)  # cleared, now burning again
            self.cases.save(case, None)
            # the joins of a step are one event at its tick; only a worse grade or a case
            # burning again may change who is due now
            return self._advance(case, ts) if worse or again else DispatchOut()
        area = self.directory.locate(alert.area, alert.device)
        chain = self.routing.planner.chain_of(alert.type, alert.grade, area) or ""
        case = Case(case_id=alert.alert_id, type=alert.type, grade=alert.grade.value,
                    area=alert.area, device=alert.device, gateway=alert.gateway,
                    opened_ms=ts, chain=chain, members=(alert.alert_id,), incident=key,
                    next_due_ms=ts if chain else None)
        self.cases.save(case, "opened", "core", ts, alert_id=alert.alert_id)
        out = DispatchOut([self._case_message(case, "opened", "core", ts)])
        out.extend(self._advance(case, ts))
        return out

    def _updated(self, case: Case, alert: Alert, ts: int) -> DispatchOut:
        """A member's grade or reason changed: those already told hear it on their tiers; a
        worse grade may call for another chain (vitals turning critical: care, then life
        safety)."""
        out = DispatchOut(self._to_those_told(case, alert))
        if _GRADE_RANK[alert.grade] > _GRADE_RANK[Grade(case.grade)]:
            case = self._graver(case, alert.grade)
            self.cases.save(case, "updated", "core", ts, alert_id=alert.alert_id,
                            grade=alert.grade.value, chain=case.chain)
            out.announce.append(self._case_message(case, "updated", "core", ts))
            out.extend(self._advance(case, ts))
        return out

    def _graver(self, case: Case, grade: Grade) -> Case:
        """The case at a worse grade, on the chain the policies give that grade. A new chain
        starts from the case's opening: its steps already due by then go out at once, to
        everyone, with the worse grade (those told under the old chain are told again)."""
        area = self.directory.locate(case.area, case.device)
        chain = self.routing.planner.chain_of(case.type, grade, area) or case.chain
        if chain == case.chain:
            return replace(case, grade=grade.value)
        return replace(case, grade=grade.value, chain=chain, notified={},
                       next_due_ms=case.next_due_ms if case.escalating else None)

    def _member_resolved(self, case: Case, alert: Alert, ts: int) -> DispatchOut:
        case = replace(case, open_members=max(0, case.open_members - 1))
        if case.open_members:
            self.cases.save(case, None)
            return DispatchOut()
        case = replace(case, cleared=True, next_due_ms=None)
        self.cases.save(case, "cleared", "core", ts, alert_id=alert.alert_id)
        out = DispatchOut([self._case_message(case, "cleared", "core", ts)])
        out.announce.extend(self._to_those_told(case, alert))
        return out

    # -- time ------------------------------------------------------------------------------

    def tick(self, ts: int) -> DispatchOut:
        """Send what has fallen due by `ts`: next steps, re-notifications, silences ended."""
        self.silences.expire(ts)
        if self._replan:
            self._replan = False
            self.cases.all_due(ts)
        out = DispatchOut()
        joins, self._joins = self._joins, {}
        for case_id, alert_ids in joins.items():
            joined = self.cases.get(case_id)
            if joined is None:
                continue
            self.cases.save(joined, "joined", "core", ts, alerts=alert_ids[:MAX_LISTED],
                            count=len(alert_ids))
            out.announce.append(self._case_message(joined, "joined", "core", ts,
                                                   joined_count=len(alert_ids)))
        started = time.perf_counter()
        budget = max(MIN_TICK_S, started - self._tick_end)
        advanced = 0
        while advanced < MAX_DUE_PER_TICK and time.perf_counter() - started <= budget:
            # a few at a time, the earliest first: each one advanced is due later (or never)
            batch = self.cases.due(ts, DUE_BATCH)
            for case in batch:
                out.extend(self._advance(case, ts))
            advanced += len(batch)
            if len(batch) < DUE_BATCH:
                break
        self._tick_end = time.perf_counter()
        return out

    def _advance(self, case: Case, ts: int) -> DispatchOut:
        """Notify whoever is due on `case` at `ts`, and save when it is due next."""
        if not case.escalating or not case.chain:
            if case.next_due_ms is not None:  # nothing more to send: never due again
                self.cases.save(replace(case, next_due_ms=None), None)
            return DispatchOut()
        line = self.directory.ancestors(self.directory.locate(case.area, case.device))
        held = self.silences.next_end(case.type, case.device, line, ts)
        if held is not None:
            if case.next_due_ms != held:
                case = replace(case, next_due_ms=held)
                self.cases.save(case, "held", "core", ts, until_ms=held)
                return DispatchOut([self._case_message(case, "held", "core", ts)])
            return DispatchOut()
        plan = self.routing.planner.plan(self._open_case(case), ts)
        out = DispatchOut()
        notified = dict(case.notified)
        lead = self._lead_alert(case)
        for due in plan.due:
            people = [r.responder for r in due.recipients]
            for r in due.recipients:
                out.announce.extend(self._notify(case, lead, due.step, due.round, r.role,
                                                 r.responder, r.contacts, ts))
                notified[(due.step, r.responder)] = due.round
            case = replace(case, notified=notified)
            self.cases.save(case, "notified", "core", ts, step=due.step, round=due.round,
                            role=due.recipients[0].role, responders=people)
            out.announce.append(self._case_message(
                case, "notified", "core", ts, step=due.step, round=due.round,
                role=due.recipients[0].role,
                responders=people))
            if due.step > 0 and due.round == 0:
                out.alerts.append(self._escalated(lead, tier_of(due.recipients[0].role), ts))
        for step in plan.unstaffed:
            if (step, "") in notified:
                continue
            role = self._step_role(case.chain, step)
            out.announce.extend(self._notify(case, lead, step, 0, role, "", (), ts))
            notified[(step, "")] = 0
            case = replace(case, notified=notified)
            self.cases.save(case, "notified", "core", ts, step=step, round=0, role=role,
                            responders=[])
            out.announce.append(self._case_message(case, "notified", "core", ts, step=step,
                                                   round=0, role=role, responders=[]))
            if step > 0:
                out.alerts.append(self._escalated(lead, tier_of(role), ts))
        self.cases.save(replace(case, next_due_ms=_earliest(
            plan.next_due_ms, self._next_unstaffed(case, ts))), None)
        return out

    def _next_unstaffed(self, case: Case, ts: int) -> int | None:
        """When the next step that names nobody falls due: it still goes to the contract's
        dispatch topic of its role (once), which the planner, planning for people, skips."""
        area = self.directory.locate(case.area, case.device)
        grade = Grade(case.grade)
        for cs in self.routing.policies.steps(case.chain):
            start = case.opened_ms + cs.after_ms
            if start <= ts or (cs.grades is not None and grade not in cs.grades):
                continue
            if not self.directory.targets(cs.role, area, case.device, cs.step.level):
                return start
        return None

    def _step_role(self, chain: str, step: int) -> str:
        for cs in self.routing.policies.steps(chain):
            if cs.index == step:
                return str(cs.role)
        return "grid_worker"

    def _open_case(self, case: Case) -> OpenCase:
        return OpenCase(case_id=case.case_id, alert_type=case.type, grade=Grade(case.grade),
                        area=case.area, device=case.device, raised_at_ms=case.opened_ms,
                        chain=case.chain or None, taken=case.state != CaseState.OPEN,
                        closed=case.state.is_closed,
                        notified={k: v for k, v in case.notified.items() if k[1]})

    def _lead_alert(self, case: Case) -> Alert:
        """The alert a case's messages carry: its most severe open member, else its first."""
        best: Alert | None = None
        for alert_id in case.members:
            try:
                alert = self.book.get(alert_id)
            except UnknownAlert:
                continue
            if best is None or (alert.state != AlertState.RESOLVED and (
                    best.state == AlertState.RESOLVED
                    or _GRADE_RANK[alert.grade] > _GRADE_RANK[best.grade])):
                best = alert
        if best is None:
            raise UnknownAlert(case.case_id)
        return best

    def _escalated(self, lead: Alert, tier: str, ts: int) -> Alert:
        if lead.state == AlertState.RESOLVED:
            return lead
        return self.book.escalate(lead.alert_id, tier, ts)

    # -- messages --------------------------------------------------------------------------

    def _dispatch_doc(self, case: Case, alert: Alert, step: int, rnd: int, role: str,
                      responder: str) -> dict[str, Any]:
        doc: dict[str, Any] = alert.model_dump(mode="json", exclude_none=True)
        doc.update(tier=tier_of(role), role=role, case_id=case.case_id,
                   members=list(case.members), member_count=case.member_count, step=step,
                   round=rnd)
        if responder:
            doc["responder"] = responder
        return doc

    def _notify(self, case: Case, alert: Alert, step: int, rnd: int, role: str,
                responder: str, contacts: Iterable[Contact], ts: int
                ) -> list[tuple[str, bytes]]:
        """The contract's dispatch message for an MQTT contact (or a person with none, or
        nobody); the others go to the outbox, for the delivery loop."""
        contacts = tuple(contacts) or (Contact(channel="mqtt"),)
        mqtt: list[tuple[str, bytes]] = []
        published, queued = [], []
        doc = self._dispatch_doc(case, alert, step, rnd, role, responder)
        for contact in contacts:
            n = make_notification(case_id=case.case_id, step=step, responder=responder or "-",
                                  role=role, contact=contact, payload=b"", round_=rnd,
                                  chain=case.chain)
            doc["notification_id"] = n.notification_id
            n = replace(n, payload=orjson.dumps(doc))
            if contact.channel == "mqtt":
                mqtt.append((topics.dispatch_topic(tier_of(role), alert.area), n.payload))
                published.append(n)
            else:
                queued.append(n)
        self.outbox.published(published, ts)
        if queued:
            self.outbox.enqueue(queued, ts, commit=False)
        return mqtt

    def _to_those_told(self, case: Case, alert: Alert) -> list[tuple[str, bytes]]:
        """`alert` (an update, a resolution) once on each tier the case has reached."""
        roles = {self._step_role(case.chain, step) for step, _who in case.notified}
        return [(topics.dispatch_topic(tier_of(role), alert.area),
                 orjson.dumps(self._dispatch_doc(case, alert, -1, 0, role, "")))
                for role in sorted(roles)]

    def _case_message(self, case: Case, event: str, by: str, ts: int,
                      **extra: Any) -> tuple[str, bytes]:
        doc = {"case_id": case.case_id, "event": event, "by": by, "ts": ts,
               "state": case.state.value, "type": case.type, "grade": case.grade,
               "area": case.area, "device": case.device, "gateway": case.gateway,
               "members": list(case.members), "member_count": case.member_count,
               "taken_by": case.taken_by,
               "outcome": case.outcome, "note": case.note, "chain": case.chain, **extra}
        return topics.cases_topic(case.area), orjson.dumps(doc)

    # -- people ----------------------------------------------------------------------------

    def case_of(self, target: str) -> Case:
        case = self.cases.of_alert(target)
        if case is None:
            raise ActionRefused(Code.ACK_UNKNOWN_ALERT, f"no case or alert {target[:128]}")
        return case

    def check_person(self, by: str, case: Case, action: Action) -> None:
        """Refuse an action by somebody the directory does not know or who may not act on
        this case (with no directory file, everybody may)."""
        if not self.checks_people:
            return
        person = self.directory.person(by)
        if person is None:
            raise ActionRefused(Code.ACK_UNKNOWN_RESPONDER,
                                f"{by[:128]!r} is nobody the directory knows")
        if action == Action.REASSIGN:
            roles = set(getattr(person, "roles", ()))
            if not roles & OPERATOR_ROLES or not self.directory.serves(by, case.area,
                                                                       case.device):
                raise ActionRefused(Code.ACK_NOT_AUTHORIZED,
                                    f"{by} may not reassign cases of {case.area}")
            return
        if self.directory.serves(by, case.area, case.device):
            return
        if any(who == by for _step, who in case.notified):
            return  # a volunteer who was told
        raise ActionRefused(Code.ACK_NOT_AUTHORIZED,
                            f"{by} does not serve {case.area} and was not told of the case")

    def act(self, request: ActionRequest, ts: int) -> tuple[Case, DispatchOut]:
        """Apply a person's action to the case `request.target` names (ActionRefused)."""
        case = self.case_of(request.target)
        self.check_person(request.by, case, request.action)
        if request.action == Action.REASSIGN and self.checks_people and \
                self.directory.person(request.to) is None:
            raise ActionRefused(Code.ACK_UNKNOWN_RESPONDER,
                                f"cannot reassign to {request.to[:128]!r}: nobody the "
                                "directory knows")
        try:
            after = case.act(request.action, request.by, outcome=request.outcome,
                             note=request.note, to=request.to)
        except Refused as exc:
            raise ActionRefused(Code.ACK_REFUSED, str(exc)) from None
        out = DispatchOut()
        if after is case:
            return case, out
        event = {Action.ACK: "seen", Action.TAKE: "taken", Action.ARRIVED: "arrived",
                 Action.DISPOSE: "disposed", Action.REASSIGN: "reassigned",
                 Action.RESOLVE: "resolved"}[request.action]
        detail: dict[str, Any] = {}
        if request.action == Action.DISPOSE:
            detail = {"outcome": after.outcome, "note": after.note}
        elif request.action == Action.REASSIGN:
            detail = {"from": case.taken_by, "to": request.to}
        self.cases.save(after, event, request.by, ts, **detail)
        out.announce.append(self._case_message(after, event, request.by, ts))
        if after.state != CaseState.OPEN:
            self.outbox.cancel_case(after.case_id, ts, f"case {event} by {request.by}",
                                    commit=False)
        if request.action == Action.REASSIGN:
            # step -1: no step of the chain; the action's time tells reassignments apart
            person = self.directory.person(request.to)
            contacts = person.contacts if person is not None else ()
            role = next(iter(getattr(person, "roles", ())), "grid_worker")
            out.announce.extend(self._notify(after, self._lead_alert(after), -1, ts,
                                             str(role), request.to, contacts, ts))
        return after, out

    # -- silences --------------------------------------------------------------------------

    def add_silence(self, silence: Silence, ts: int) -> Silence:
        self._check_operator(silence.author, silence.area)
        try:
            return self.silences.add(silence, ts)
        except ValueError as exc:
            raise ActionRefused(Code.SILENCE_INVALID, str(exc)) from None

    def remove_silence(self, silence_id: str, by: str) -> None:
        found = next((s for s in self.silences.active if s.silence_id == silence_id), None)
        if found is None:
            raise ActionRefused(Code.SILENCE_INVALID, f"no silence {silence_id[:64]} in force")
        self._check_operator(by, found.area)
        self.silences.remove(silence_id, by)
        self._replan = True  # the cases it held are due now, not when it would have ended

    def _check_operator(self, by: str, area: str) -> None:
        if not self.checks_people:
            return
        person = self.directory.person(by)
        roles = set(getattr(person, "roles", ()))
        if person is None:
            raise ActionRefused(Code.ACK_UNKNOWN_RESPONDER,
                                f"{by[:128]!r} is nobody the directory knows")
        if not roles & OPERATOR_ROLES:
            raise ActionRefused(Code.ACK_NOT_AUTHORIZED, f"{by} is no operator")
        # a silence of no area holds everywhere: only who serves the root may set it
        where = area or self.directory.ancestors(self.directory.default_area)[-1]
        if not self.directory.serves(by, where):
            raise ActionRefused(Code.ACK_NOT_AUTHORIZED, f"{by} does not serve {where}")

    # -- reading ---------------------------------------------------------------------------

    def plan_of(self, case: Case, ts: int) -> Plan:
        """What the planner would send for `case` at `ts` (for tests and the console)."""
        return self.routing.planner.plan(self._open_case(case), ts)


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)
