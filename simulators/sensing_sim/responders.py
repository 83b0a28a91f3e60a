"""Simulated responders: the directory's people answering the core's dispatch, as pure logic.

    sim = ResponderSim(directory, Truth(labels), Behaviour(), seed=12)
    sim.on_dispatch(DispatchMessage.model_validate(doc), now_ms)    # sensing/v1/dispatch/#
    sim.on_case(CaseMessage.model_validate(doc), now_ms)            # sensing/v1/cases/#
    for action in sim.due(now_ms): publish(*action.message())       # sensing/v1/ack/{by}

Nothing here reads a clock or the network (`sensing_sim.responders_live` does): the caller
passes the time, the wall clock live and the fleet's clock in a replay, in ms.

How the people behave (`Behaviour`, per role a `RoleBehaviour`):

- Told of a case (a dispatch message naming them), a person takes it with the role's chance
  (`take_p`), after a delay drawn from `take_s`: grid workers usually within 30-90 s,
  relatives sometimes, volunteers rarely, duty officers, maintenance desks and command
  centres always. A share of the people of some roles never answer at all
  (`unreachable_share`: a phone left at home). Every re-notification is a new chance.
- In a share of the life-safety cases (`unanswered_share`, and always the run's first SOS or
  fall, else its first life-safety incident) nobody local answers (grid worker, family,
  volunteers, duty officer), so the escalation runs up the family chain and then the command
  chain, whose centres take. (An SOS or a fall stays open until a person closes it, so its
  case climbs for as long as nobody takes it; a fire's case stops escalating once the smoke
  clears.)
- Whoever took the case reports `arrived` after a travel time and `dispose`s it after a while
  on site, with the outcome the ground truth gives (`expected_outcome`): a real fire "fire", a
  sensor fault "device_fault", a nuisance or any alert no incident explains "false_alarm", a
  resident's fall, vitals or SOS "resident_ok" when the resident turns out fine, else "other".
- Only one person takes a case: once the case message says `taken`, the others' planned takes
  are dropped (one sent meanwhile is refused by the core with `ack_refused`: normal).
- A case whose alerts all cleared before anyone took it is disposed remotely by someone told,
  the grid worker first; a case still open `sweep_s` after it opened is taken on by the area's
  duty officer (who sees every case of the area on a screen). So a run ends with every case
  disposed.
- `gateway.offline` cases opened once the run stopped its gateways (`shutdown_from`) are the
  simulator's own doing: someone serving the area disposes them at once ("other").

Every draw is a hash of the seed and what it is about (the case's incident, the person, the
step and round), never of the order messages arrive in: the same run gives the same choices.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from sensing.dispatch.directory import Directory
from sensing.wire import topics
from sensing_sim.score import label_speed

Outcome = Literal["fire", "false_alarm", "device_fault", "resident_ok", "other"]
ActionName = Literal["take", "arrived", "dispose"]

LIFE_SAFETY: Final = frozenset({"smoke.fire", "smoke.co", "wearable.fall", "wearable.sos"})
"""types whose cases climb to the command structure when nobody takes them"""
LATCHING: Final = frozenset({"wearable.fall", "wearable.sos"})
"""life-safety alerts that stay open until a person closes them: their cases escalate until
somebody takes them (a fire's alert resolves when the smoke clears, stopping the escalation)"""
COMMAND_ROLES: Final = ("street_command", "district_command", "city_command")
FAMILY_ROLES: Final = ("relative", "volunteer")
_ROLE_OF_WHOM: Final[Mapping[str, str]] = MappingProxyType({"relatives": "relative",
                                                             "volunteers": "volunteer"})


def role_of(whom: str) -> str:
    """The role a chain step's `whom` names: the core's `notified` events carry the step's
    "relatives" and "volunteers" where dispatch messages say "relative" and "volunteer"."""
    return _ROLE_OF_WHOM.get(whom, whom)
OUTCOME_OF_TYPE: Final[Mapping[str, Outcome]] = MappingProxyType({
    "smoke.fire": "fire", "smoke.co": "other", "manhole.displaced": "other",
    "manhole.overflow": "other", "manhole.gas": "other", "device.fault": "device_fault",
    "device.battery": "device_fault", "device.offline": "device_fault",
    "gateway.offline": "device_fault"})
"""what the people on site find for an incident of each type (the resident's types below)"""
RESIDENT_FINE_SHARE: Final[Mapping[str, float]] = MappingProxyType({
    "wearable.fall": 0.5, "wearable.vitals": 0.7, "wearable.sos": 0.5,
    "wearable.inactivity": 0.8})
"""incidents of a resident after which the resident is fine ("resident_ok"; else "other")"""
TRUTH_LEAD_S: Final = 60.0
"""an alert up to this long before its incident's start still belongs to it"""
MAX_CASES: Final = 100_000
"""cases remembered; beyond, new ones are counted and left alone"""
MAX_CASE_RECORDS: Final = 10_000
"""cases described one by one in `report()`"""

_Name = Annotated[str, StringConstraints(pattern=f"^{topics.NAME_PATTERN.pattern}$")]
_Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
_Short = Annotated[str, StringConstraints(max_length=128)]


def draw(seed: int, *parts: object) -> float:
    """A number in [0, 1) fixed by the seed and `parts` (the same on every run)."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def within(bounds: tuple[float, float], u: float) -> float:
    lo, hi = bounds
    return lo + (hi - lo) * u


@dataclass(frozen=True, slots=True)
class RoleBehaviour:
    """How the people of one role answer; times in seconds."""

    take_p: float
    """chance that a reachable person takes the case when told (each notification)"""
    take_s: tuple[float, float]
    """from being told to taking it, uniform"""
    travel_s: tuple[float, float]
    """from taking it to `arrived`"""
    on_site_s: tuple[float, float]
    """from `arrived` to `dispose`"""
    unreachable_share: float = 0.0
    """people of the role who never answer"""
    local: bool = True
    """silent in a case nobody local answers (`Behaviour.unanswered_share`)"""

    def __post_init__(self) -> None:
        if not (0.0 <= self.take_p <= 1.0 and 0.0 <= self.unreachable_share <= 1.0):
            raise ValueError("take_p and unreachable_share must be between 0 and 1")
        for lo, hi in (self.take_s, self.travel_s, self.on_site_s):
            if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo <= hi <= 86_400):
                raise ValueError("times must be ranges within 0..86400 s")


_COMMAND = RoleBehaviour(1.0, (10, 60), (300, 900), (120, 600), local=False)
DEFAULT_ROLES: Final[Mapping[str, RoleBehaviour]] = MappingProxyType({
    "grid_worker": RoleBehaviour(0.8, (30, 90), (60, 240), (60, 300), unreachable_share=0.2),
    "relative": RoleBehaviour(0.4, (20, 150), (300, 900), (60, 300), unreachable_share=0.3),
    "volunteer": RoleBehaviour(0.15, (60, 240), (60, 300), (60, 300), unreachable_share=0.5),
    "duty_officer": RoleBehaviour(1.0, (30, 120), (120, 480), (60, 300)),
    "maintenance": RoleBehaviour(1.0, (60, 600), (300, 900), (120, 600), local=False),
    "street_command": _COMMAND, "district_command": _COMMAND, "city_command": _COMMAND,
})
_STRANGER = RoleBehaviour(0.5, (30, 300), (120, 600), (60, 300))
"""a role the defaults do not know"""


@dataclass(frozen=True, slots=True)
class Behaviour:
    roles: Mapping[str, RoleBehaviour] = field(default_factory=lambda: DEFAULT_ROLES)
    unanswered_share: float = 0.15
    """life-safety cases in which nobody local answers"""
    first_unanswered: bool = True
    """... and always the run's first SOS or fall (else its first life-safety incident), so
    every run with one shows the climb"""
    remote_check_s: tuple[float, float] = (30.0, 180.0)
    """a cleared case nobody took: from `cleared` to its remote disposal"""
    shutdown_check_s: tuple[float, float] = (5.0, 30.0)
    sweep_s: float = 1800.0
    """a case still open this long after it opened is taken on by the area's duty officer
    (after the shipped chains' street command at 600 s; not scaled by `time_scale`, as it
    stands beside the core's escalation, which runs on its own time)"""
    time_scale: float = 1.0
    """the people's delays above (take, travel, on site, checks) are multiplied by this (0.1:
    people ten times as quick)"""

    def __post_init__(self) -> None:
        if not 0.0 <= self.unanswered_share <= 1.0:
            raise ValueError("unanswered_share must be between 0 and 1")
        if not (0.0 < self.time_scale <= 100.0 and 0.0 < self.sweep_s <= 7 * 86_400):
            raise ValueError("time_scale must be in (0, 100], sweep_s in (0, 7 days]")

    def role(self, role: str) -> RoleBehaviour:
        return self.roles.get(role, _STRANGER)


def unreachable(behaviour: Behaviour, seed: int, person: str, role: str) -> bool:
    """Whether the person never answers as `role`."""
    return draw(seed, "unreachable", person, role) < behaviour.role(role).unreachable_share


def take_delay_s(behaviour: Behaviour, seed: int, incident: str, person: str, role: str,
                 step: int, round_: int, unanswered: bool) -> float | None:
    """Seconds from being told to taking the case, or None if the person does not take it
    this time (unreachable, silent in a case nobody local answers, or declining)."""
    b = behaviour.role(role)
    if (unanswered and b.local) or unreachable(behaviour, seed, person, role):
        return None
    if draw(seed, "take", incident, person, role, step, round_) >= b.take_p:
        return None
    return within(b.take_s, draw(seed, "take_s", incident, person, step, round_)) \
        * behaviour.time_scale


def travel_s(behaviour: Behaviour, seed: int, incident: str, person: str, role: str) -> float:
    return within(behaviour.role(role).travel_s, draw(seed, "travel", incident, person)) \
        * behaviour.time_scale


def on_site_s(behaviour: Behaviour, seed: int, incident: str, person: str, role: str) -> float:
    return within(behaviour.role(role).on_site_s, draw(seed, "on_site", incident, person)) \
        * behaviour.time_scale


# -- ground truth --------------------------------------------------------------------------


def label_key(label: Mapping[str, Any]) -> str:
    """A label's identity across runs: device, type, variant and start in the run."""
    return f"{label.get('device')}|{label.get('type')}|{label.get('variant', '')}|" \
           f"{label.get('start_s', label.get('ts_start'))}"


def resident_fine(label: Mapping[str, Any]) -> bool:
    """Whether the resident of a fall, vitals, SOS or inactivity incident is fine."""
    share = RESIDENT_FINE_SHARE.get(str(label.get("type")), 0.0)
    return draw(0, "fine", label_key(label)) < share


def expected_outcome(label: Mapping[str, Any] | None) -> Outcome:
    """The disposal an incident calls for; None (no incident: a nuisance or a false
    positive) calls for "false_alarm"."""
    if label is None:
        return "false_alarm"
    type_ = str(label.get("type"))
    if type_ in RESIDENT_FINE_SHARE:
        return "resident_ok" if resident_fine(label) else "other"
    return OUTCOME_OF_TYPE.get(type_, "other")


class Truth:
    """The labels of a run, and which of them an alert of (device, type, time) stands for.

    An alert is an incident's when the label is of its device and type and the alert's time
    lies between TRUTH_LEAD_S before the label's start and `grace_s` (in the label's own
    speed) after its end; failing that, a label of its device of another type in that window
    (a broken smoke sensor's fire alarm is its fault); failing that, a label of its device and
    type at any time (a replay's labels are on another clock than the core's cases). Labels of
    one type under one gateway whose windows overlap are one incident (two detectors of one
    fire): `incident_key` names the earliest. `first_life_safety` is the incident of the
    first SOS or fall, else of the first life-safety label."""

    def __init__(self, labels: Iterable[Mapping[str, Any]], grace_s: float = 600.0) -> None:
        self.labels = sorted((dict(lb) for lb in labels), key=lambda lb: int(lb["ts_start"]))
        self.grace_s = grace_s
        self._by_device: dict[str, list[dict[str, Any]]] = {}
        for lb in self.labels:
            self._by_device.setdefault(str(lb["device"]), []).append(lb)
        self._incident: dict[str, str] = {}
        groups: dict[tuple[str, str], tuple[int, str]] = {}
        for lb in self.labels:
            group = (str(lb["type"]), str(lb.get("gateway", lb["device"])))
            end, key = groups.get(group, (-1, ""))
            if int(lb["ts_start"]) > end:
                key = label_key(lb)
            groups[group] = (max(end, self._until(lb)), key)
            self._incident[label_key(lb)] = key
        first = next((lb for lb in self.labels if lb["type"] in LATCHING), None) or next(
            (lb for lb in self.labels if lb["type"] in LIFE_SAFETY), None)
        self.first_life_safety = None if first is None else self._incident[label_key(first)]

    def _until(self, label: Mapping[str, Any]) -> int:
        return int(label["ts_end"]) + round(self.grace_s * 1000 / label_speed(label))

    def label_of(self, device: str, type_: str, ts_ms: int | None) -> dict[str, Any] | None:
        mine = self._by_device.get(device, [])

        def near(lb: Mapping[str, Any]) -> bool:
            return ts_ms is None or (int(lb["ts_start"]) - TRUTH_LEAD_S * 1000 <= ts_ms
                                     <= self._until(lb))

        return (next((lb for lb in mine if lb["type"] == type_ and near(lb)), None)
                or next((lb for lb in mine if near(lb)), None)
                or next((lb for lb in mine if lb["type"] == type_), None))

    def incident_key(self, label: Mapping[str, Any]) -> str:
        return self._incident.get(label_key(label), label_key(label))


# -- messages (the contract's, validated at the boundary; fields the core adds are ignored) --


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class DispatchMessage(_Message):
    """`sensing/v1/dispatch/{tier}/{area}`: an alert object with the case's fields."""

    case_id: _Id
    alert_id: _Id
    responder: _Name | None = None
    role: _Short = ""
    step: int = Field(default=0, ge=-1, le=10_000)
    """-1: no step of the chain (an update to those told, a reassignment)"""
    round: int = Field(default=0, ge=0, le=2**53)
    notification_id: _Short = ""
    type: _Short = ""
    grade: _Short = ""
    area: _Short = ""
    device: _Short = ""
    ts_event: int | None = Field(default=None, ge=0, le=2**53)
    ts_raised: int | None = Field(default=None, ge=0, le=2**53)


class CaseMessage(_Message):
    """`sensing/v1/cases/{area}`: one change of a case."""

    case_id: _Id
    event: _Short
    ts: int = Field(ge=0, le=2**53)
    by: _Short = ""
    state: _Short = ""
    type: _Short = ""
    grade: _Short = ""
    area: _Short = ""
    device: _Short = ""
    taken_by: _Short | None = ""
    outcome: _Short | None = ""
    role: _Short | None = ""
    responders: tuple[_Short, ...] = Field(default=(), max_length=1024)


CLOSED_STATES: Final = frozenset({"disposed", "resolved"})


@dataclass(frozen=True, slots=True, order=True)
class Planned:
    """An action due at `due_ms` (its `seq` breaks ties in the order it was planned)."""

    due_ms: int
    seq: int
    case_id: str = field(compare=False)
    responder: str = field(compare=False)
    action: ActionName | Literal["sweep"] = field(compare=False)
    outcome: str = field(compare=False, default="")
    note: str = field(compare=False, default="")

    def message(self) -> tuple[str, bytes]:
        """The topic and payload to publish (`sensing/v1/ack/{responder}`)."""
        doc: dict[str, str] = {"alert_id": self.case_id, "by": self.responder,
                               "action": self.action}
        if self.action == "dispose":
            doc |= {"outcome": self.outcome, "note": self.note}
        return topics.ack_topic(self.responder), orjson.dumps(doc)


@dataclass(slots=True)
class CaseView:
    """A case as the responders know it from what they were told and the case messages."""

    case_id: str
    type: str
    area: str
    device: str
    seen_ms: int
    incident: str
    """the incident's key (its label's), or the case id when no incident explains it"""
    expected: Outcome
    unanswered: bool
    shutdown: bool = False
    state: str = "open"
    taken_by: str = ""
    cleared: bool = False
    told: dict[str, str] = field(default_factory=dict)
    """person -> the role they were told as, in the order they were told"""
    take_planned: dict[str, int] = field(default_factory=dict)
    """person -> seq of their planned take"""
    follow_up: int | None = None
    """seq of the planned arrived or dispose"""
    sweep: int | None = None
    """seq of the planned sweep"""
    disposing: bool = False
    """a dispose is planned or sent"""
    outcome_sent: str = ""
    actions: list[tuple[int, str, str]] = field(default_factory=list)
    """(ms, person, action) this simulator sent"""

    @property
    def closed(self) -> bool:
        return self.state in CLOSED_STATES


@dataclass(slots=True)
class Tally:
    notifications: dict[str, int] = field(default_factory=dict)
    """distinct notifications received, by role"""
    silent: dict[str, int] = field(default_factory=dict)
    """notifications not answered, by role"""
    sent: dict[str, int] = field(default_factory=dict)
    """actions published, by action"""
    outcomes: dict[str, int] = field(default_factory=dict)
    """disposals published, by outcome"""
    refused: dict[str, int] = field(default_factory=dict)
    """this simulator's actions the core dead-lettered, by code"""
    repeats: int = 0
    """copies of a notification already received"""
    unaddressed: int = 0
    """dispatch messages naming nobody"""
    cases_dropped: int = 0
    """cases beyond MAX_CASES, left alone"""


def _bump(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


class ResponderSim:
    """Everyone of the directory, answering dispatch and case messages; see the module."""

    def __init__(self, directory: Directory | None, truth: Truth,
                 behaviour: Behaviour | None = None, seed: int = 0) -> None:
        self.directory = directory
        self.truth = truth
        self.behaviour = behaviour or Behaviour()
        self.seed = seed
        self.cases: dict[str, CaseView] = {}
        self.tally = Tally()
        self.shutdown_ms: int | None = None
        self._heap: list[Planned] = []
        self._live: set[int] = set()
        self._seq = 0
        self._notifications: set[str] = set()
        self._told: set[str] = set()

    # -- what the core says ------------------------------------------------------------------

    def shutdown_from(self, ms: int) -> None:
        """From `ms` the run stops its gateways: their gateway.offline cases are its own."""
        self.shutdown_ms = ms

    def on_dispatch(self, msg: DispatchMessage, now_ms: int) -> None:
        if msg.responder is None:
            self.tally.unaddressed += 1
            return
        key = msg.notification_id or f"{msg.case_id}/{msg.step}/{msg.round}/{msg.responder}"
        if key in self._notifications:
            self.tally.repeats += 1
            return
        if len(self._notifications) < 10 * MAX_CASES:
            self._notifications.add(key)
        case = self._case(msg.case_id, msg.type, msg.area, msg.device,
                          msg.ts_event or msg.ts_raised, now_ms)
        if case is None:
            return
        person, role = msg.responder, role_of(msg.role)
        self._tell(case, person, role)
        _bump(self.tally.notifications, role)
        if case.closed or case.state != "open" or case.cleared or case.disposing:
            return
        if person in case.take_planned:
            return
        delay = take_delay_s(self.behaviour, self.seed, case.incident, person, role, msg.step,
                             msg.round, case.unanswered)
        if delay is None:
            _bump(self.tally.silent, role)
            return
        case.take_planned[person] = self._plan(now_ms + round(delay * 1000), case, person,
                                               "take")

    def on_case(self, msg: CaseMessage, now_ms: int) -> None:
        case = self._case(msg.case_id, msg.type, msg.area, msg.device, None, now_ms)
        if case is None:
            return
        event = msg.event
        if event == "notified":
            for person in msg.responders:
                self._tell(case, person, role_of(msg.role or ""))
        elif event in ("taken", "reassigned"):
            self._taken(case, msg.taken_by or msg.by, now_ms)
        elif event == "arrived":
            case.state = "arrived"
            self._arrived(case, msg.taken_by or msg.by, now_ms)
        elif event == "cleared":
            case.cleared = True
            if case.state == "open":
                self._dispose_remotely(case, now_ms)
        if event in ("disposed", "resolved") or msg.state in CLOSED_STATES:
            case.state = msg.state if msg.state in CLOSED_STATES else (
                "disposed" if event == "disposed" else "resolved")
            self._cancel(case, takes=True, follow_up=True)
            if case.sweep is not None:
                self._live.discard(case.sweep)
                case.sweep = None

    def on_refusal(self, code: str) -> None:
        """One of this simulator's actions was dead-lettered with `code`."""
        _bump(self.tally.refused, code[:64] or "?")

    # -- what the people do ------------------------------------------------------------------

    def next_due_ms(self) -> int | None:
        while self._heap and self._heap[0].seq not in self._live:
            heapq.heappop(self._heap)
        return self._heap[0].due_ms if self._heap else None

    def due(self, now_ms: int) -> list[Planned]:
        """The actions due at `now_ms`, to publish now, in order."""
        out: list[Planned] = []
        while (due := self.next_due_ms()) is not None and due <= now_ms:
            p = heapq.heappop(self._heap)
            self._live.discard(p.seq)
            case = self.cases[p.case_id]
            if p.action == "sweep":
                self._sweep(case, p.due_ms)
            elif self._still_fits(case, p):
                self._sent(case, p, now_ms)
                out.append(p)
        return out

    def pending(self) -> int:
        """Actions planned and not yet due (sweeps of open cases included)."""
        return len(self._live)

    def open_cases(self) -> int:
        return sum(1 for c in self.cases.values() if not c.closed)

    # -- inside --------------------------------------------------------------------------------

    def _case(self, case_id: str, type_: str, area: str, device: str, ts_ms: int | None,
              now_ms: int) -> CaseView | None:
        case = self.cases.get(case_id)
        if case is not None:
            return case
        if len(self.cases) >= MAX_CASES:
            self.tally.cases_dropped += 1
            return None
        label = self.truth.label_of(device, type_, ts_ms if ts_ms is not None else now_ms)
        incident = case_id if label is None else self.truth.incident_key(label)
        unanswered = type_ in LIFE_SAFETY and label is not None and (
            (self.behaviour.first_unanswered and incident == self.truth.first_life_safety)
            or draw(self.seed, "unanswered", incident) < self.behaviour.unanswered_share)
        shutdown = (type_ == "gateway.offline" and self.shutdown_ms is not None
                    and now_ms >= self.shutdown_ms)
        case = self.cases[case_id] = CaseView(
            case_id, type_, area, device, now_ms, incident,
            expected_outcome(label), unanswered, shutdown)
        if shutdown:
            self._dispose_remotely(case, now_ms, self.behaviour.shutdown_check_s,
                                   "the simulator stopped its gateways", "other")
        case.sweep = self._plan(self._sweep_due(now_ms), case, "", "sweep")
        return case

    def _tell(self, case: CaseView, person: str, role: str) -> None:
        case.told.setdefault(person, role)
        if len(self._told) < 10 * MAX_CASES:
            self._told.add(person)

    def _plan(self, due_ms: int, case: CaseView, person: str,
              action: ActionName | Literal["sweep"], outcome: str = "", note: str = "") -> int:
        self._seq += 1
        heapq.heappush(self._heap, Planned(due_ms, self._seq, case.case_id, person, action,
                                           outcome, note))
        self._live.add(self._seq)
        return self._seq

    def _cancel(self, case: CaseView, *, takes: bool, follow_up: bool) -> None:
        if takes:
            self._live.difference_update(case.take_planned.values())
            case.take_planned.clear()
        if follow_up and case.follow_up is not None:
            self._live.discard(case.follow_up)
            case.follow_up = None

    def _ours(self, person: str) -> bool:
        """Whether the simulator acts for `person`: anyone the directory knows, or the core
        told of a case."""
        return bool(person) and (person in self._told or (
            self.directory is not None and self.directory.person(person) is not None))

    def _role_of(self, case: CaseView, person: str) -> str:
        if person in case.told:
            return case.told[person]
        found = self.directory.person(person) if self.directory is not None else None
        roles = getattr(found, "roles", None)
        return str(roles[0]) if roles else "relative" if found is not None else ""

    def _taken(self, case: CaseView, person: str, now_ms: int) -> None:
        case.state, case.taken_by = "taken", person
        # a remote disposal already planned (the alerts cleared) goes ahead all the same
        self._cancel(case, takes=True, follow_up=not case.disposing)
        if case.disposing or not self._ours(person):
            return
        role = self._role_of(case, person)
        delay = travel_s(self.behaviour, self.seed, case.incident, person, role)
        case.follow_up = self._plan(now_ms + round(delay * 1000), case, person, "arrived")

    def _arrived(self, case: CaseView, person: str, now_ms: int) -> None:
        case.taken_by = person or case.taken_by
        self._cancel(case, takes=True, follow_up=not case.disposing)
        if case.disposing or not self._ours(case.taken_by):
            return
        role = self._role_of(case, case.taken_by)
        delay = on_site_s(self.behaviour, self.seed, case.incident, case.taken_by, role)
        case.disposing = True
        case.follow_up = self._plan(now_ms + round(delay * 1000), case, case.taken_by,
                                    "dispose", case.expected, _note(case, "on site"))

    def _dispose_remotely(self, case: CaseView, now_ms: int,
                          after_s: tuple[float, float] | None = None,
                          why: str = "the alerts cleared; checked remotely",
                          outcome: str | None = None) -> None:
        if case.disposing:
            return
        person = self._checker(case)
        if not person:
            return
        self._cancel(case, takes=True, follow_up=True)
        bounds = after_s or self.behaviour.remote_check_s
        delay = within(bounds, draw(self.seed, "remote", case.incident, person)) \
            * self.behaviour.time_scale
        case.disposing = True
        case.follow_up = self._plan(now_ms + round(delay * 1000), case, person, "dispose",
                                    outcome or case.expected, _note(case, why))

    def _checker(self, case: CaseView) -> str:
        """Who disposes of a case nobody took: a reachable grid worker told of it, else anyone
        reachable told of it, else the area's duty officer or grid worker, else whoever was
        told first."""
        reachable = [p for p, role in case.told.items()
                     if not unreachable(self.behaviour, self.seed, p, role)]
        grid = [p for p in reachable if case.told[p] == "grid_worker"]
        if grid or reachable:
            return (grid or reachable)[0]
        staff = self._staff(case, ("duty_officer", "grid_worker"))
        return staff or next(iter(case.told), "")

    def _staff(self, case: CaseView, roles: Sequence[str]) -> str:
        if self.directory is None:
            return ""
        for role in roles:
            found = self.directory.responders(role, case.area)
            if found:
                return found[0].id
        return ""

    def _sweep_due(self, now_ms: int) -> int:
        return now_ms + round(self.behaviour.sweep_s * 1000)

    def _sweep(self, case: CaseView, now_ms: int) -> None:
        """The duty officer takes on a case that has stayed open too long."""
        if case.closed or case.disposing or case.state != "open":
            return
        if case.cleared:
            self._dispose_remotely(case, now_ms)
            return
        officer = self._staff(case, ("duty_officer",)) or self._checker(case)
        if officer and officer not in case.take_planned:
            case.told.setdefault(officer, "duty_officer")
            case.take_planned[officer] = self._plan(now_ms, case, officer, "take")
        # and again later, should the take not hold (refused, or taken by nobody it knows)
        case.sweep = self._plan(self._sweep_due(now_ms), case, "", "sweep")

    def _still_fits(self, case: CaseView, p: Planned) -> bool:
        if case.closed:
            return False
        if p.action == "take":
            return case.state == "open" and not case.cleared and not case.disposing
        if p.action == "arrived":
            return case.state == "taken" and case.taken_by == p.responder
        return True  # dispose: from any open state

    def _sent(self, case: CaseView, p: Planned, now_ms: int) -> None:
        _bump(self.tally.sent, p.action)
        if p.action == "take":
            case.take_planned.pop(p.responder, None)
        elif p.action == "dispose":
            _bump(self.tally.outcomes, p.outcome)
            case.outcome_sent = p.outcome
            case.follow_up = None
        else:
            case.follow_up = None
        if len(case.actions) < 64:
            case.actions.append((now_ms, p.responder, p.action))

    # -- report --------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """What the responders did, JSON-ready."""
        t = self.tally
        states: dict[str, int] = {}
        for c in self.cases.values():
            _bump(states, c.state)
        return {
            "seed": self.seed,
            "cases": len(self.cases), "cases_by_state": states,
            "cases_open": self.open_cases(),
            "cases_unanswered": sum(1 for c in self.cases.values() if c.unanswered),
            "notifications": dict(t.notifications), "silent": dict(t.silent),
            "sent": dict(t.sent), "outcomes": dict(t.outcomes), "refused": dict(t.refused),
            "repeats": t.repeats, "unaddressed": t.unaddressed,
            "cases_dropped": t.cases_dropped,
            "case_records": [_record(c) for c in list(self.cases.values())[:MAX_CASE_RECORDS]],
        }


def _note(case: CaseView, why: str) -> str:
    return f"sensing-sim responder: {why}; found {case.expected}"[:1000]


def _record(c: CaseView) -> dict[str, Any]:
    return {"case_id": c.case_id, "type": c.type, "area": c.area, "device": c.device,
            "state": c.state, "taken_by": c.taken_by, "expected": c.expected,
            "outcome_sent": c.outcome_sent, "unanswered": c.unanswered, "shutdown": c.shutdown,
            "told": list(c.told)[:32], "actions": [list(a) for a in c.actions]}
