"""The directory: who serves where, who lives with which device, and how to reach them.

One TOML file (docs/dispatch.md, "Directory"; examples/directory.toml), validated with pydantic
(unknown keys are errors, every list and string bounded), then compiled into an immutable
`Directory` with the lookups that routing needs:

- areas form a tree of any depth (city -> district -> street -> community -> compound), each
  with a *flat* id: the contract's `{area}` is one topic level (`[A-Za-z0-9_-]{1,64}`), so ids
  such as `compound-12` carry no hierarchy; `parent` does. A topic's area may be a leaf or any
  node.
- An area the directory does not know still routes: by the home area of the resident whose
  device raised the alert if there is one, else by `default_area` (by default the one root).
  Each missed id is logged once (`directory_miss`), remembering at most MAX_MISSES_LOGGED ids.
- responders(role, area) walks up from the area to the nearest area where someone of that
  role serves: a grid worker of community `c2` serves every compound under it.
- A file that fails to load raises DirectoryError, one line per problem naming the key and
  why; `reload_directory` leaves the current directory as it was (the caller keeps it).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from sensing.wire.limits import DEVICE_ID_PATTERN
from sensing.wire.topics import NAME_PATTERN, RESERVED_AREAS

log = structlog.get_logger("sensing.dispatch.directory")

ResponderRole = Literal["grid_worker", "duty_officer", "street_command", "district_command",
                        "city_command", "maintenance", "volunteer"]
Role = ResponderRole | Literal["relative"]
RESPONDER_ROLES: Final[tuple[str, ...]] = get_args(ResponderRole)
ROLES: Final[tuple[str, ...]] = (*RESPONDER_ROLES, "relative")

MAX_FILE_BYTES: Final = 64 * 1024 * 1024
MAX_AREAS: Final = 50_000
MAX_DEPTH: Final = 16
"""levels from a root to its deepest area (city, district, sub-centre, street, community,
compound, building: 7 in practice)"""
MAX_RESPONDERS: Final = 50_000
MAX_RESIDENTS: Final = 250_000
"""one resident per device at most: sensing.wire.limits.MAX_DEVICES"""
MAX_RELATIVES: Final = 16
MAX_DEVICES_PER_RESIDENT: Final = 32
MAX_CONTACTS: Final = 8
MAX_QUIET_RANGES: Final = 8
MAX_AREAS_PER_RESPONDER: Final = 1024
MAX_NAME: Final = 200
MAX_URL: Final = 2048
MAX_MISSES_LOGGED: Final = 4096
"""unknown area and device ids remembered for logging each once; later new ones are counted
in `MissLog.unlogged`, not logged"""
MAX_ERROR_LINES: Final = 20

_ID = NAME_PATTERN.pattern
AreaId = Annotated[str, StringConstraints(pattern=f"^{_ID}$")]
PersonId = Annotated[str, StringConstraints(pattern=f"^{_ID}$")]
"""responders and relatives: ids `by` names in acks, and a topic level in
`sensing/v1/ack/{responder}`, so the contract's name alphabet"""
DeviceId = Annotated[str, StringConstraints(pattern=f"^{DEVICE_ID_PATTERN.pattern}$")]
Name = Annotated[str, StringConstraints(max_length=MAX_NAME)]
LevelName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
ClockTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")]
"""local time of day, HH:MM; 24:00 ends a range at midnight"""


class DirectoryError(ValueError):
    """A directory file that cannot be used: one line per problem, `key: why`."""


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as "
                         "'Asia/Shanghai')") from None
    return name


TimeZoneName = Annotated[str, StringConstraints(max_length=64), AfterValidator(_check_timezone)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Contact(_Model):
    """How to reach someone. `mqtt`: the contract's dispatch topic
    `sensing/v1/dispatch/{role}/{area}` (no url); `webhook`: an http(s) URL that receives the
    alert as POSTed JSON; `apprise`: any Apprise URL (tgram://, mailto://, ntfy://, json://,
    dingtalk://, ...)."""

    channel: Literal["mqtt", "webhook", "apprise"]
    url: str = Field(default="", max_length=MAX_URL)

    @model_validator(mode="after")
    def _url_fits_channel(self) -> Contact:
        url = self.url
        if any(c.isspace() or not c.isprintable() for c in url):
            raise ValueError("url: no spaces or control characters")
        if self.channel == "mqtt":
            if url:
                raise ValueError("url: an mqtt contact has none (it is the dispatch topic of "
                                 "the step's role and the alert's area)")
        elif self.channel == "webhook":
            scheme, sep, rest = url.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or rest.startswith("/"):
                raise ValueError("url: a webhook is an http:// or https:// URL with a host")
        else:
            scheme, sep, rest = url.partition("://")
            if not sep or not rest or not scheme.isascii() or not scheme.isalnum():
                raise ValueError("url: an Apprise URL is scheme://... (tgram://, mailto://, "
                                 "json://, ...)")
        return self


class QuietHours(_Model):
    """A range of local time, [start, end); it crosses midnight when end <= start (22:00 to
    07:00)."""

    start: ClockTime
    end: ClockTime
    _start_s: int = PrivateAttr(0)
    _end_s: int = PrivateAttr(0)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        self._start_s, self._end_s = _seconds_of(self.start), _seconds_of(self.end)
        if self._start_s == self._end_s:
            raise ValueError("start and end are equal: the range is empty")
        return self

    @property
    def start_s(self) -> int:
        """seconds after local midnight"""
        return self._start_s

    @property
    def end_s(self) -> int:
        """seconds after local midnight (86400 for 24:00)"""
        return self._end_s


def _seconds_of(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60


class Person(_Model):
    """Anyone the dispatcher may notify (responders and relatives)."""

    id: PersonId
    name: Name = ""
    contacts: tuple[Contact, ...] = Field(default=(), max_length=MAX_CONTACTS)
    quiet_hours: tuple[QuietHours, ...] = Field(default=(), max_length=MAX_QUIET_RANGES)
    timezone: TimeZoneName | None = None
    """their local time for quiet_hours; default: the directory's"""
    api_token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """SHA-256 (hex) of their token for `sensing api` (`sensing api token` makes one): the
    token, never stored, is 32 random bytes, so a plain hash is enough"""

    @model_validator(mode="after")
    def _some_waking_hours(self) -> Person:
        if self.quiet_hours and _covers_whole_day(self.quiet_hours):
            raise ValueError("quiet_hours cover the whole day: nobody could ever be told")
        return self


def _covers_whole_day(ranges: Iterable[QuietHours]) -> bool:
    covered = [False] * 1440
    for r in ranges:
        start, end = r.start_s // 60, r.end_s // 60
        span = range(start, end) if start < end else [*range(start, 1440), *range(0, end)]
        for minute in span:
            covered[minute] = True
    return all(covered)


def _unique(values: Sequence[str], what: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} repeats an entry")


class Responder(Person):
    roles: tuple[ResponderRole, ...] = Field(min_length=1, max_length=len(RESPONDER_ROLES))
    areas: tuple[AreaId, ...] = Field(min_length=1, max_length=MAX_AREAS_PER_RESPONDER)
    """the areas they serve (with everything below them)"""

    @model_validator(mode="after")
    def _no_repeats(self) -> Responder:
        _unique(self.roles, "roles")
        _unique(self.areas, "areas")
        return self


class Relative(Person):
    relation: Name = ""


class Resident(_Model):
    """Someone a device watches: the wearer of a wristband, the household of a detector."""

    id: PersonId
    name: Name = ""
    area: AreaId | None = None
    """their home; routes their devices' alerts when the alert's area is unknown"""
    devices: tuple[DeviceId, ...] = Field(min_length=1, max_length=MAX_DEVICES_PER_RESIDENT)
    relatives: tuple[Relative, ...] = Field(default=(), max_length=MAX_RELATIVES)


class Area(_Model):
    id: AreaId
    name: Name = ""
    level: LevelName
    """city, district, street, community, compound, ... (step `level`s name these)"""
    parent: AreaId | None = None


class DirectoryFile(_Model):
    """The whole file, as written."""

    timezone: TimeZoneName = "UTC"
    """local time of quiet hours for anyone without a timezone of their own"""
    default_area: AreaId | None = None
    """where alerts of unknown areas route; default: the one root area"""
    areas: tuple[Area, ...] = Field(min_length=1, max_length=MAX_AREAS)
    responders: tuple[Responder, ...] = Field(default=(), max_length=MAX_RESPONDERS)
    residents: tuple[Resident, ...] = Field(default=(), max_length=MAX_RESIDENTS)
    policy: dict[str, Any] = Field(default_factory=dict)
    """routing and escalation rules, checked by sensing.dispatch.policy"""


@dataclass(frozen=True, slots=True)
class Recipient:
    """A person resolved for one step of a case. `quiet`: in quiet hours at the time asked."""

    responder: str
    role: str
    contacts: tuple[Contact, ...]
    quiet: bool


class MissLog:
    """Logs each unknown area or device id once, remembering at most `limit` ids."""

    def __init__(self, limit: int = MAX_MISSES_LOGGED) -> None:
        self.limit = limit
        self._seen: set[tuple[str, str]] = set()
        self.unlogged = 0
        """misses not logged because `limit` ids were remembered already (an id beyond them
        counts each time it is missed)"""

    def note(self, what: str, key: str, **context: str) -> None:
        if (what, key) in self._seen:
            return
        if len(self._seen) >= self.limit:
            if self.unlogged == 0:
                log.warning("directory_miss_log_full", limit=self.limit,
                            hint="later unknown ids are not logged")
            self.unlogged += 1
            return
        self._seen.add((what, key))
        log.warning("directory_miss", what=what, id=key[:MAX_NAME], **context)


class Directory:
    """The compiled directory. Immutable: a reload builds a new one. Lookups are pure apart
    from logging misses once (and memoising)."""

    def __init__(self, source: DirectoryFile, misses: MissLog | None = None) -> None:
        self.source = source
        self.misses = misses if misses is not None else MissLog()
        self.timezone = ZoneInfo(source.timezone)
        self._area = {a.id: a for a in source.areas}
        self._ancestors = _ancestor_lines(source.areas)
        self.default_area = _default_area(source, self._ancestors)
        self.levels = frozenset(a.level for a in source.areas)
        attached: dict[tuple[str, str], list[Responder]] = {}
        for r in source.responders:
            for role in r.roles:
                for area in r.areas:
                    attached.setdefault((role, area), []).append(r)
        self._attached = {k: tuple(v) for k, v in attached.items()}
        self._resident_by_device = {d: res for res in source.residents for d in res.devices}
        self._person: dict[str, Responder | Relative] = {r.id: r for r in source.responders}
        for res in source.residents:
            self._person.update((rel.id, rel) for rel in res.relatives)
        self._by_token = {p.api_token_sha256: p for p in self._person.values()
                          if p.api_token_sha256 is not None}
        if len(self._by_token) < sum(p.api_token_sha256 is not None
                                     for p in self._person.values()):
            raise DirectoryError("api_token_sha256: two people have the same token")
        self._nearest: dict[tuple[str, str, str | None], tuple[Responder, ...]] = {}
        self._targets: dict[tuple[str, str, str | None], tuple[Target, ...]] = {}
        self._target: dict[str, Target] = {}

    # areas

    def knows(self, area: str) -> bool:
        return area in self._area

    def area(self, area: str) -> Area | None:
        return self._area.get(area)

    def ancestors(self, area: str) -> tuple[str, ...]:
        """The area itself, then its parent, ... up to its root; () for an unknown area."""
        return self._ancestors.get(area, ())

    def depth(self, area: str) -> int:
        """0 for a root; -1 for an unknown area."""
        return len(self._ancestors.get(area, ())) - 1

    def locate(self, area: str, device: str = "") -> str:
        """The known area an alert of `area` from `device` routes by: the area itself, or
        for an unknown one the device's resident's home, else `default_area`."""
        if area in self._area:
            return area
        resident = self._resident_by_device.get(device)
        routed = resident.area if resident is not None and resident.area else self.default_area
        self.misses.note("area", area, routed_to=routed)
        return routed

    # people

    def person(self, person_id: str) -> Responder | Relative | None:
        return self._person.get(person_id)

    def bearer(self, token_sha256: str) -> Responder | Relative | None:
        """The person whose API token has this hash, if any."""
        return self._by_token.get(token_sha256)

    def resident_of(self, device: str) -> Resident | None:
        return self._resident_by_device.get(device)

    def relatives_of(self, device: str) -> tuple[Relative, ...]:
        """The relatives of the device's resident; a device no resident wears is logged once."""
        resident = self._resident_by_device.get(device)
        if resident is None:
            self.misses.note("device", device, routed_to="no relatives")
            return ()
        return resident.relatives

    def responders(self, role: str, area: str, level: str | None = None) -> tuple[Responder, ...]:
        """Those of `role` at the nearest area, from `area` up, where anyone of it serves.
        `level`: start at the nearest area of that level above (or at) `area`. An unknown
        area routes by `default_area`."""
        key = (role, area, level)
        found = self._nearest.get(key)
        if found is None:
            line = self._ancestors.get(area) or self._ancestors[self.locate(area)]
            if level is not None:
                start = next((i for i, a in enumerate(line) if self._area[a].level == level), 0)
                line = line[start:]
            found = next((self._attached[(role, a)] for a in line if (role, a) in self._attached),
                         ())
            if len(self._nearest) < 4 * MAX_AREAS:
                self._nearest[key] = found
        return found

    def volunteers(self, area: str) -> tuple[Responder, ...]:
        return self.responders("volunteer", area)

    def serves(self, person_id: str, area: str, device: str = "") -> bool:
        """Whether the person may act on a case of `area` and `device`: a responder serving
        the area or one above it, or a relative of the device's resident."""
        person = self._person.get(person_id)
        if isinstance(person, Responder):
            line = self._ancestors.get(self.locate(area, device), ())
            return any(a in line for a in person.areas)
        resident = self._resident_by_device.get(device)
        return (person is not None and resident is not None
                and any(rel.id == person_id for rel in resident.relatives))

    def targets(self, role: str, area: str, device: str = "", level: str | None = None
                ) -> tuple[Target, ...]:
        """Whom a step of `role` reaches for an alert of (known) `area` and `device`: the
        device's resident's relatives for `relative`, else `responders(role, area, level)`."""
        if role == "relative":
            key: tuple[str, str, str | None] = ("relative", device, None)
            found = self._targets.get(key)
            if found is None:
                found = tuple(self.target(p) for p in self.relatives_of(device))
                if found and len(self._targets) < 8 * MAX_AREAS:
                    self._targets[key] = found
            return found
        key = (role, area, level)
        found = self._targets.get(key)
        if found is None:
            found = tuple(self.target(p) for p in self.responders(role, area, level))
            if len(self._targets) < 8 * MAX_AREAS:
                self._targets[key] = found
        return found

    def target(self, person: Person) -> Target:
        found = self._target.get(person.id)
        if found is None:
            zone = self.timezone if person.timezone is None else ZoneInfo(person.timezone)
            found = self._target[person.id] = Target(
                person.id, person.contacts,
                tuple((r.start_s, r.end_s) for r in person.quiet_hours), zone)
        return found

    # quiet hours

    def quiet_until(self, who: Person | Target, now_ms: int) -> int | None:
        """When their quiet hours end (ms), if they are in them at `now_ms`; else None."""
        target = who if isinstance(who, Target) else self.target(who)
        return target.quiet_until(now_ms)

    def is_quiet(self, who: Person | Target, now_ms: int) -> bool:
        return self.quiet_until(who, now_ms) is not None


@dataclass(frozen=True, slots=True)
class Target:
    """A person as the planner reaches them: quiet hours in seconds after local midnight."""

    id: str
    contacts: tuple[Contact, ...]
    quiet: tuple[tuple[int, int], ...]
    zone: ZoneInfo

    def quiet_until(self, now_ms: int) -> int | None:
        """When their quiet hours end (ms), if they are in them at `now_ms`; else None."""
        if not self.quiet:
            return None
        end: float | None = None
        at = now_ms / 1000
        # Ranges may touch or overlap: follow them to the first moment outside all of them
        # (they never cover the whole day).
        for _ in range(2 * MAX_QUIET_RANGES + 1):
            later = _range_end(self.quiet, at, self.zone)
            if later is None:
                break
            end = at = later
        return None if end is None else int(end * 1000)


def _range_end(ranges: Sequence[tuple[int, int]], at: float, zone: ZoneInfo) -> float | None:
    """The end (s since the epoch) of the range that `at` falls in; None if in none."""
    local = datetime.fromtimestamp(at, zone)
    second = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    for start, end in ranges:
        if start < end:
            if start <= second < end:
                return _instant(local.date(), end, zone)
        elif second >= start:
            return _instant(local.date() + timedelta(days=1), end, zone)
        elif second < end:
            return _instant(local.date(), end, zone)
    return None


def _instant(day: date, second_of_day: int, zone: ZoneInfo) -> float:
    """The first moment (s since the epoch) the local clock reads `second_of_day` on `day` or
    later: when the clocks jump over that time, the moment they jump."""
    if second_of_day == 86_400:
        day, second_of_day = day + timedelta(days=1), 0
    wall = datetime.combine(day, time(second_of_day // 3600, second_of_day % 3600 // 60))
    late = wall.replace(tzinfo=zone).timestamp()
    if datetime.fromtimestamp(late, zone).replace(tzinfo=None) == wall:
        return late
    # A time the clocks skip: the jump lies between the two readings of it.
    early = wall.replace(tzinfo=zone, fold=1).timestamp()
    while late - early > 1:
        middle = (early + late) / 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            late = middle
        else:
            early = middle
    return float(math.floor(late))


def _ancestor_lines(areas: Sequence[Area]) -> dict[str, tuple[str, ...]]:
    parent = {a.id: a.parent for a in areas}
    lines: dict[str, tuple[str, ...]] = {}
    for index, area in enumerate(areas):
        path: list[str] = []
        node: str | None = area.id
        while node is not None and node not in lines:
            if node in path:
                raise DirectoryError(f"areas[{index}]({area.id}).parent: a cycle "
                                     f"({' -> '.join([*path[path.index(node):], node])})")
            if len(path) == MAX_DEPTH:
                raise DirectoryError(f"areas[{index}]({area.id}).parent: more than "
                                     f"{MAX_DEPTH} levels deep, or a cycle")
            path.append(node)
            node = parent[node]
        tail = lines[node] if node is not None else ()
        if len(path) + len(tail) > MAX_DEPTH:
            raise DirectoryError(f"areas[{index}]({area.id}).parent: more than {MAX_DEPTH} "
                                 "levels deep")
        for i, a in enumerate(path):
            lines[a] = (*path[i:], *tail)
    return lines


def _default_area(source: DirectoryFile, lines: Mapping[str, tuple[str, ...]]) -> str:
    if source.default_area is not None:
        return source.default_area
    roots = sorted({line[-1] for line in lines.values()})
    if len(roots) > 1:
        raise DirectoryError(f"default_area: several roots ({', '.join(roots[:5])}): name the "
                             "area alerts of unknown areas route to")
    return roots[0]


def _check_references(source: DirectoryFile) -> None:
    """Ids unique, every named area known: the first problem as one line."""
    areas: set[str] = set()
    for i, a in enumerate(source.areas):
        if a.id in RESERVED_AREAS:
            raise DirectoryError(f"areas[{i}]({a.id}).id: {a.id!r} is reserved in topics "
                                 f"({', '.join(sorted(RESERVED_AREAS))})")
        if a.id in areas:
            raise DirectoryError(f"areas[{i}]({a.id}).id: appears twice")
        areas.add(a.id)
    for i, a in enumerate(source.areas):
        if a.parent is not None and a.parent not in areas:
            raise DirectoryError(f"areas[{i}]({a.id}).parent: unknown area {a.parent!r}")
    if source.default_area is not None and source.default_area not in areas:
        raise DirectoryError(f"default_area: unknown area {source.default_area!r}")
    people: dict[str, str] = {}

    def person(pid: str, where: str) -> None:
        if pid in people:
            raise DirectoryError(f"{where}.id: also the id of {people[pid]}")
        people[pid] = where

    for i, r in enumerate(source.responders):
        person(r.id, f"responders[{i}]({r.id})")
        unknown = next((a for a in r.areas if a not in areas), None)
        if unknown is not None:
            raise DirectoryError(f"responders[{i}]({r.id}).areas: unknown area {unknown!r}")
    residents: set[str] = set()
    devices: dict[str, str] = {}
    for i, res in enumerate(source.residents):
        if res.id in residents:
            raise DirectoryError(f"residents[{i}]({res.id}).id: appears twice")
        residents.add(res.id)
        if res.area is not None and res.area not in areas:
            raise DirectoryError(f"residents[{i}]({res.id}).area: unknown area {res.area!r}")
        for d in res.devices:
            if d in devices:
                raise DirectoryError(f"residents[{i}]({res.id}).devices: {d!r} is also a device of "
                                     f"{devices[d]}")
            devices[d] = f"residents[{i}]({res.id})"
        for j, rel in enumerate(res.relatives):
            person(rel.id, f"residents[{i}]({res.id}).relatives[{j}]({rel.id})")


def error_lines(exc: ValidationError, doc: Mapping[str, Any], limit: int = MAX_ERROR_LINES
                ) -> list[str]:
    """One line per error, `key: why`, never quoting the rejected value (a URL may hold a
    token); list entries named by their id where they have one."""
    lines = []
    errors = exc.errors()
    # A list whose entry failed is also reported too short "after validation": say it once.
    failed_inside = {err["loc"][:-1] for err in errors if err["loc"]}
    errors = [e for e in errors if not (e["type"] == "too_short" and e["loc"] in failed_inside)]
    for err in errors[:limit]:
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key missing"
        lines.append(f"{_key_of(err['loc'], doc)}: {msg}")
    if len(errors) > limit:
        lines.append(f"... and {len(errors) - limit} more")
    return lines


def _key_of(loc: Sequence[int | str], doc: Any) -> str:
    key, node = "", doc
    for part in loc:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            key += f"[{part}]"
            named = node.get("id") if isinstance(node, dict) else None
            if isinstance(named, str) and NAME_PATTERN.fullmatch(named):
                key += f"({named})"
        else:
            node = node.get(part) if isinstance(node, dict) else None
            key += f".{part}" if key else str(part)
    return key or "(top level)"


def parse_directory(doc: Mapping[str, Any], misses: MissLog | None = None) -> Directory:
    """A Directory from a parsed TOML document; DirectoryError on any problem."""
    try:
        source = DirectoryFile.model_validate(doc)
    except ValidationError as exc:
        raise DirectoryError("\n".join(error_lines(exc, doc))) from None
    _check_references(source)
    return Directory(source, misses)


def read_toml(path: Path, error: type[ValueError]) -> dict[str, Any]:
    """A TOML file of at most MAX_FILE_BYTES, or `error` naming the file and why."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise error(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        return tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not TOML: {exc}") from None


def load_directory(path: Path, misses: MissLog | None = None) -> Directory:
    """The directory in `path`; DirectoryError (each line prefixed with the path) if unusable."""
    doc = read_toml(path, DirectoryError)
    try:
        return parse_directory(doc, misses)
    except DirectoryError as exc:
        raise DirectoryError("\n".join(f"{path}: {line}" for line in str(exc).splitlines())
                             ) from None


def reload_directory(path: Path, current: Directory) -> Directory:
    """A new directory from `path`, sharing `current`'s miss log (an id already logged is not
    logged again); raises DirectoryError and changes nothing when the file is unusable."""
    new = load_directory(path, current.misses)
    log.info("directory_reloaded", path=str(path), areas=len(new.source.areas),
             responders=len(new.source.responders), residents=len(new.source.residents))
    return new
