"""Routing and escalation policies, and the planner that says who is due a notification now.

A rule matches an alert by type (`smoke.fire`, `smoke.*` or `*`), grade (a set, or any) and area
(a subtree of the directory, or everywhere) and names an escalation chain. The most specific
matching rule wins: a deeper area beats a shallower one, then an exact type beats `kind.*`,
which beats `*`, then a grade set beats any grade. Two rules of one file that are equally
specific and can match the same alert (same area and type, overlapping grades) are an error;
a directory's rule beats a shipped one of equal specificity. docs/dispatch.md, "Policies".

The planner is pure: the case, the directory, the policies and `now_ms` (a clock value the
caller passes: the wall clock live, the fleet's clock in a replay) give the notifications due
now and when the next one falls due. Round r of step i is due at
`raised_at_ms + after_s + r * renotify_s` while nobody has taken the case; a recipient who has
had round r (`OpenCase.notified`) is due again at round r + 1. After a pause (a restart) only
the latest round is due, never a backlog of them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, get_args

import structlog
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from sensing.dispatch.directory import (
    RESPONDER_ROLES,
    AreaId,
    Directory,
    DirectoryError,
    LevelName,
    MissLog,
    Name,
    Recipient,
    Target,
    error_lines,
    load_directory,
)
from sensing.wire.messages import Grade

log = structlog.get_logger("sensing.dispatch.policy")

KNOWN_ALERT_TYPES: Final[frozenset[str]] = frozenset({
    "smoke.fire", "smoke.co", "manhole.displaced", "manhole.overflow", "manhole.gas",
    "wearable.fall", "wearable.vitals", "wearable.sos", "wearable.inactivity",
    "device.offline", "gateway.offline", "device.fault", "device.battery"})
"""the contract's alert types: a rule naming another exact type is a typo (use a glob)"""
KNOWN_TYPE_KINDS: Final[frozenset[str]] = frozenset(t.split(".")[0] for t in KNOWN_ALERT_TYPES)

MAX_CHAINS: Final = 256
MAX_STEPS: Final = 32
MAX_RULES: Final = 4096
MAX_AFTER_S: Final = 7 * 86_400
MIN_RENOTIFY_S: Final = 10
MAX_RENOTIFY_S: Final = 86_400
MAX_CHOICES_CACHED: Final = 65_536

Whom = Literal["grid_worker", "duty_officer", "street_command", "district_command",
               "city_command", "maintenance", "volunteer", "relatives", "volunteers"]
"""a ResponderRole, or relatives or volunteers (one Literal: errors in one line)"""
ChainName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
TypePattern = Annotated[str, StringConstraints(
    pattern=r"^\*$|^[a-z][a-z0-9_]{0,31}\.(\*|[a-z][a-z0-9_]{0,63})$")]
"""an alert type (`smoke.fire`), every type of a kind (`smoke.*`), or any type (`*`)"""
Grades = Annotated[tuple[Grade, ...], Field(min_length=1, max_length=len(Grade))]


assert set(get_args(Whom)) == {*RESPONDER_ROLES, "relatives", "volunteers"}


class PolicyError(DirectoryError):
    """Policies that cannot be used: one line per problem, `key: why`."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Step(_Model):
    whom: Whom
    """a role (at the alert's area or the nearest area above it where one serves),
    `relatives` of the device's resident, or `volunteers` of the area"""
    after_s: float = Field(ge=0, le=MAX_AFTER_S)
    """since the case was raised, while nobody has taken it"""
    renotify_s: float | None = Field(default=None, ge=MIN_RENOTIFY_S, le=MAX_RENOTIFY_S)
    """tell them again this often until someone takes the case; None: once"""
    grades: Grades | None = None
    """only for cases of these grades (critical cases climb further)"""
    level: LevelName | None = None
    """look for the role from the nearest area of this level at or above the alert's"""


class Chain(_Model):
    description: Name = ""
    respect_quiet_hours: bool = False
    """never notify someone in their quiet hours: they are due when those end"""
    steps: tuple[Step, ...] = Field(default=(), max_length=MAX_STEPS)


class Rule(_Model):
    type: TypePattern
    grades: Grades | None = None
    area: AreaId | None = None
    """this area and everything below it; None: everywhere"""
    chain: ChainName


class PolicyFile(_Model):
    replace_defaults: bool = False
    """drop the shipped chains and rules: these are all there is"""
    chains: dict[ChainName, Chain] = Field(default_factory=dict, max_length=MAX_CHAINS)
    rules: tuple[Rule, ...] = Field(default=(), max_length=MAX_RULES)


@dataclass(frozen=True, slots=True)
class _Placed:
    """A rule with its place: where it came from and what its specificity is."""

    rule: Rule
    where: str
    source: int
    """0 shipped, 1 the directory's: breaks ties between files"""
    type_rank: int
    grades: frozenset[Grade] | None


@dataclass(frozen=True, slots=True)
class _CompiledStep:
    index: int
    step: Step
    after_ms: int
    renotify_ms: int
    """0: never again"""
    grades: frozenset[Grade] | None
    role: str


def _type_rank(pattern: str) -> int:
    return 0 if pattern == "*" else 1 if pattern.endswith(".*") else 2


def _grades_overlap(a: frozenset[Grade] | None, b: frozenset[Grade] | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and bool(a & b))


class Policies:
    """Chains and rules, checked; `choose` finds the chain of an alert."""

    def __init__(self, chains: Mapping[str, Chain], rules: Iterable[_Placed]) -> None:
        self.chains = MappingProxyType(dict(chains))
        self.rules = tuple(rules)
        self._by_type: dict[str, list[_Placed]] = {}
        for placed in self.rules:
            self._by_type.setdefault(placed.rule.type, []).append(placed)
        self._steps = {name: tuple(sorted(_compile(chain), key=lambda s: s.after_ms))
                       for name, chain in self.chains.items()}

    def steps(self, chain: str) -> tuple[_CompiledStep, ...]:
        """The chain's steps, earliest first."""
        return self._steps[chain]

    def choose(self, alert_type: str, grade: Grade, line: tuple[str, ...]) -> str | None:
        """The chain of the most specific rule matching the alert; `line`: the alert's area
        and its ancestors up to the root (Directory.ancestors)."""
        kind = alert_type.partition(".")[0]
        best: tuple[int, int, int, int] | None = None
        chosen: str | None = None
        for pattern in (alert_type, f"{kind}.*", "*"):
            for placed in self._by_type.get(pattern, ()):
                rule = placed.rule
                if placed.grades is not None and grade not in placed.grades:
                    continue
                if rule.area is None:
                    depth = -1
                elif rule.area in line:
                    depth = len(line) - 1 - line.index(rule.area)
                else:
                    continue
                rank = (depth, placed.type_rank, placed.grades is not None, placed.source)
                if best is None or rank > best:
                    best, chosen = rank, rule.chain
        return chosen

    def check(self, directory: Directory) -> None:
        """Every area a rule names and every level a step names exists in `directory`."""
        for placed in self.rules:
            area = placed.rule.area
            if area is not None and not directory.knows(area):
                raise PolicyError(f"{placed.where}.area: unknown area {area!r}")
        for name, chain in self.chains.items():
            for i, step in enumerate(chain.steps):
                if step.level is not None and step.level not in directory.levels:
                    raise PolicyError(f"policy.chains.{name}.steps[{i}].level: no area of level "
                                      f"{step.level!r} in the directory")


def _compile(chain: Chain) -> Iterable[_CompiledStep]:
    for i, step in enumerate(chain.steps):
        role = ("relative" if step.whom == "relatives" else
                "volunteer" if step.whom == "volunteers" else step.whom)
        yield _CompiledStep(
            i, step, round(step.after_s * 1000),
            round(step.renotify_s * 1000) if step.renotify_s is not None else 0,
            frozenset(step.grades) if step.grades is not None else None, role)


def _parse_file(doc: Mapping[str, Any], where: str) -> PolicyFile:
    try:
        return PolicyFile.model_validate(doc)
    except ValidationError as exc:
        raise PolicyError("\n".join(f"{where}{'.' if not line.startswith('(') else ' '}{line}"
                                    for line in error_lines(exc, doc))) from None


def _place(policy: PolicyFile, where: str, source: int) -> list[_Placed]:
    placed: list[_Placed] = []
    alike: dict[tuple[str | None, str], list[_Placed]] = {}
    for i, rule in enumerate(policy.rules):
        at = f"{where}.rules[{i}]"
        kind, _, name = rule.type.partition(".")
        if rule.type != "*" and kind not in KNOWN_TYPE_KINDS:
            raise PolicyError(f"{at}.type: unknown kind {kind!r} (known: "
                              f"{', '.join(sorted(KNOWN_TYPE_KINDS))})")
        if name not in ("", "*") and rule.type not in KNOWN_ALERT_TYPES:
            raise PolicyError(f"{at}.type: unknown alert type {rule.type!r} (known: "
                              f"{', '.join(sorted(KNOWN_ALERT_TYPES))}; or {kind}.*)")
        grades = frozenset(rule.grades) if rule.grades is not None else None
        if grades is not None and len(grades) != len(rule.grades or ()):
            raise PolicyError(f"{at}.grades: repeats a grade")
        new = _Placed(rule, at, source, _type_rank(rule.type), grades)
        same_place = alike.setdefault((rule.area, rule.type), [])
        for other in same_place:
            if _grades_overlap(other.grades, grades):
                raise PolicyError(f"{at}: as specific as {other.where} and matches the same "
                                  "alerts (same type and area, overlapping grades): narrow the "
                                  "grades or merge the two")
        same_place.append(new)
        placed.append(new)
    return placed


def shipped_policy() -> PolicyFile:
    """The shipped defaults (sensing/dispatch/defaults.toml)."""
    text = resources.files("sensing.dispatch").joinpath("defaults.toml").read_text()
    return _parse_file(tomllib.loads(text), "defaults.toml")


def build_policies(site: Mapping[str, Any] | None = None, where: str = "policy") -> Policies:
    """The shipped policies with a directory's `[policy]` table on top; PolicyError."""
    shipped = shipped_policy()
    mine = _parse_file(site or {}, where)
    chains: dict[str, Chain] = {}
    rules: list[_Placed] = []
    if not mine.replace_defaults:
        chains.update(shipped.chains)
        rules += _place(shipped, "defaults.toml", 0)
    chains.update(mine.chains)
    rules += _place(mine, where, 1)
    for placed in rules:
        if placed.rule.chain not in chains:
            raise PolicyError(f"{placed.where}.chain: no chain {placed.rule.chain!r} (known: "
                              f"{', '.join(sorted(chains)[:20])})")
    if not any(p.rule.type == "*" and p.grades is None and p.rule.area is None for p in rules):
        raise PolicyError(f"{where}.rules: no catch-all rule (type = \"*\", no grades, no area): "
                          "an alert no rule matches would reach nobody")
    return Policies(chains, rules)


@dataclass(frozen=True, slots=True)
class OpenCase:
    """What the planner needs to know of a case."""

    case_id: str
    alert_type: str
    grade: Grade
    area: str
    device: str
    raised_at_ms: int
    chain: str | None = None
    """the chain the case follows, as a first plan chose it (`Plan.chain`); None: choose by
    the alert now. Pin it: the step indices of `notified` refer to it."""
    taken: bool = False
    closed: bool = False
    """disposed or resolved"""
    notified: Mapping[tuple[int, str], int] = field(default_factory=lambda: _NOTHING_SENT)
    """(step index, person id) -> the last round they were sent"""

    def with_sent(self, plan: Plan) -> OpenCase:
        """This case after the notifications due in `plan` were sent (its chain pinned)."""
        notified = dict(self.notified)
        for d in plan.due:
            for r in d.recipients:
                notified[(d.step, r.responder)] = d.round
        return replace(self, chain=plan.chain, notified=notified)


_NOTHING_SENT: Final[Mapping[tuple[int, str], int]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Due:
    """Round `round` of step `step` of `chain`, for `recipients`, scheduled at `at_ms`."""

    chain: str
    step: int
    whom: str
    round: int
    at_ms: int
    recipients: tuple[Recipient, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    chain: str | None
    """the chain the case follows; None when no rule matches or nothing can be due"""
    due: tuple[Due, ...] = ()
    next_due_ms: int | None = None
    """when the planner should be asked again (None: nothing more, unless the case changes);
    assumes everything in `due` is sent"""
    unstaffed: tuple[int, ...] = ()
    """steps due by time that nobody in the directory can take (the same on every call)"""


NOTHING_DUE: Final = Plan(None)


class Planner:
    """Pure planning over one directory and one set of policies (memoises its lookups)."""

    def __init__(self, directory: Directory, policies: Policies) -> None:
        self.directory = directory
        self.policies = policies
        self._choices: dict[tuple[str, Grade, str], str | None] = {}
        self._staff: dict[tuple[str, str, str],
                          tuple[tuple[_CompiledStep, tuple[Target, ...]], ...]] = {}

    def chain_of(self, alert_type: str, grade: Grade, area: str) -> str | None:
        """The chain for an alert of a known area (Directory.locate)."""
        key = (alert_type, grade, area)
        try:
            return self._choices[key]
        except KeyError:
            chosen = self.policies.choose(alert_type, grade, self.directory.ancestors(area))
            if len(self._choices) >= MAX_CHOICES_CACHED:
                self._choices.clear()
            self._choices[key] = chosen
            return chosen

    def _staffed(self, chain: str, area: str, device: str
                 ) -> tuple[tuple[_CompiledStep, tuple[Target, ...]], ...]:
        """The chain's steps, earliest first, each with whom it reaches."""
        steps = self.policies.steps(chain)
        key = (chain, area, device if any(cs.role == "relative" for cs in steps) else "")
        found = self._staff.get(key)
        if found is None:
            found = tuple((cs, self.directory.targets(cs.role, area, device, cs.step.level))
                          for cs in steps)
            if len(self._staff) >= MAX_CHOICES_CACHED:
                self._staff.clear()
            self._staff[key] = found
        return found

    def plan(self, case: OpenCase, now_ms: int) -> Plan:
        if case.taken or case.closed:
            return NOTHING_DUE
        directory = self.directory
        area = directory.locate(case.area, case.device)
        name = case.chain
        if name is None or name not in self.policies.chains:
            if name is not None:  # a reload removed it
                directory.misses.note("chain", name, routed_to="a chain chosen anew")
            name = self.chain_of(case.alert_type, case.grade, area)
        if name is None:
            return NOTHING_DUE
        respect_quiet = self.policies.chains[name].respect_quiet_hours
        notified = case.notified
        due: list[Due] = []
        unstaffed: list[int] = []
        next_ms: int | None = None
        for cs, people in self._staffed(name, area, case.device):
            if cs.grades is not None and case.grade not in cs.grades:
                continue
            start = case.raised_at_ms + cs.after_ms
            if now_ms < start:
                if not people:
                    continue
                if next_ms is None or start < next_ms:
                    next_ms = start
                break  # later steps start later still
            if not people:
                unstaffed.append(cs.index)
                continue
            if cs.renotify_ms:
                rnd = (now_ms - start) // cs.renotify_ms
                following: int | None = start + (rnd + 1) * cs.renotify_ms
            else:
                rnd, following = 0, None
            ready: list[Recipient] = []
            for person in people:
                wake = following
                if notified.get((cs.index, person.id), -1) < rnd:
                    quiet_until = person.quiet_until(now_ms) if person.quiet else None
                    if quiet_until is not None and respect_quiet:
                        wake = quiet_until
                    else:
                        ready.append(Recipient(person.id, cs.role, person.contacts,
                                               quiet_until is not None))
                if wake is not None and (next_ms is None or wake < next_ms):
                    next_ms = wake
            if ready:
                due.append(Due(name, cs.index, cs.step.whom, rnd,
                               start + rnd * cs.renotify_ms, tuple(ready)))
        return Plan(name, tuple(due), next_ms, tuple(unstaffed))


@dataclass(frozen=True)
class Routing:
    """A directory with its policies: what one file configures, reloaded as one."""

    directory: Directory
    policies: Policies
    planner: Planner


def routing_of(directory: Directory, where: str = "policy") -> Routing:
    """The directory's policies (its `[policy]` table over the shipped ones), checked."""
    policies = build_policies(directory.source.policy, where)
    policies.check(directory)
    return Routing(directory, policies, Planner(directory, policies))


def load_routing(path: Path, misses: MissLog | None = None) -> Routing:
    """Directory and policies from one file; DirectoryError / PolicyError, one line each."""
    directory = load_directory(path, misses)
    try:
        return routing_of(directory)
    except PolicyError as exc:
        raise PolicyError("\n".join(f"{path}: {line}" for line in str(exc).splitlines())
                          ) from None


def reload_routing(path: Path, current: Routing) -> Routing:
    """New routing from `path`, or DirectoryError / PolicyError with `current` untouched (the
    caller keeps using it)."""
    new = load_routing(path, current.directory.misses)
    log.info("routing_reloaded", path=str(path), rules=len(new.policies.rules),
             chains=len(new.policies.chains))
    return new

