"""A dispatch directory for a simulated fleet: who serves its areas, who lives with its devices.

    doc = directory_doc(fleet)                    # what sensing.dispatch.directory reads
    write_directory(fleet, Path("pilot-directory.toml"))

The fleet's areas become the communities of an area tree: `city` -> districts (up to
`streets_per_district` streets each) -> streets (up to `communities_per_street` communities
each) -> the fleet's areas, in the order the fleet names them. Per community a grid worker, a
duty officer, a maintenance desk and one to three volunteers (some asleep at night); per street
a street command centre, per district a district command centre, and the city's. A resident
per wristband (some living alone, who also have the smoke detector at home) and a household per
remaining smoke detector, each with one or two relatives; manhole covers have nobody. Every
contact is "mqtt": the contract's dispatch topic, so a run needs no network.

Everything is deterministic from the seed (the fleet's by default). Ids are MQTT topic levels
(`[A-Za-z0-9_-]{1,64}`): an area's or device's id that would not fit is shortened with a hash.
Whether someone answers is not the directory's business: `sensing_sim.responders` decides
that from the same seed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson

from sensing.wire.topics import RESERVED_AREAS, is_valid_name
from sensing_sim.fleet import Fleet

_STREAM_DIRECTORY: Final = 14
"""the directory's random stream of the fleet's seed (the fleet uses 0-5)"""
_MQTT: Final[tuple[dict[str, str], ...]] = ({"channel": "mqtt"},)
_RELATIONS: Final = ("daughter", "son", "niece", "nephew", "grandson", "granddaughter",
                     "neighbour")
_NIGHT: Final = ({"start": "22:30", "end": "07:00"},)
_ABROAD: Final = ({"timezone": "Europe/Berlin", "quiet_hours": ({"start": "23:00",
                                                                  "end": "07:00"},)})
_MAX_ID: Final = 64
_INVALID_ID_CHARS: Final = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class DirectoryShape:
    """How the generated directory is laid out and staffed."""

    timezone: str = "Asia/Shanghai"
    communities_per_street: int = 7
    streets_per_district: int = 11
    """"1 + 6 + 11 + 83": a district's command over 11 streets and 83 communities"""
    volunteers: tuple[int, int] = (1, 3)
    """volunteers per community, inclusive range"""
    alone_share: float = 0.4
    """wristband wearers who live alone (their home's smoke detector is theirs too)"""
    two_relatives_share: float = 0.5
    abroad_share: float = 0.05
    """relatives in another time zone, with quiet hours of their own"""
    night_volunteer_share: float = 0.5
    """volunteers with quiet hours at night"""

    def __post_init__(self) -> None:
        if self.communities_per_street < 1 or self.streets_per_district < 1:
            raise ValueError("communities_per_street and streets_per_district must be >= 1")
        lo, hi = self.volunteers
        if not 0 <= lo <= hi <= 16:
            raise ValueError("volunteers must be a range within 0..16")
        shares = (self.alone_share, self.two_relatives_share, self.abroad_share,
                  self.night_volunteer_share)
        if not all(0.0 <= s <= 1.0 for s in shares):
            raise ValueError("shares must be between 0 and 1")


def person_id(prefix: str, name: str) -> str:
    """`prefix-name` as a topic level: characters outside `[A-Za-z0-9_-]` become `_`, and an
    id that changed so or is too long ends in a hash of `name` (so two names never meet)."""
    clean = _INVALID_ID_CHARS.sub("_", name)
    whole = f"{prefix}-{clean}"
    if clean == name and len(whole) <= _MAX_ID:
        return whole
    digest = hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
    room = _MAX_ID - len(prefix) - len(digest) - 2
    return f"{prefix}-{clean[:room]}-{digest}"


def _letters(n: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa, ...: names of streets and districts that never look like
    the numbered areas fleets use."""
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(ord("a") + r) + out
    return out


class _Ids:
    """Area ids of the tree that no community (a fleet area) already has."""

    def __init__(self, taken: Sequence[str]) -> None:
        self.taken = set(taken)

    def new(self, base: str) -> str:
        candidate, n = base, 1
        while candidate in self.taken or candidate in RESERVED_AREAS:
            n += 1
            candidate = f"{base}-{n}"
        self.taken.add(candidate)
        return candidate


def _area_tree(communities: Sequence[str], shape: DirectoryShape
               ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The areas (city first) and the district of each street, streets in order."""
    ids = _Ids(communities)
    city = ids.new("city")
    areas: list[dict[str, Any]] = [{"id": city, "level": "city", "name": "Simulated city"}]
    per_street = shape.communities_per_street
    n_streets = -(-len(communities) // per_street)
    streets = [ids.new(f"street-{_letters(i)}") for i in range(n_streets)]
    n_districts = -(-n_streets // shape.streets_per_district)
    districts = [ids.new(f"district-{_letters(i)}") for i in range(n_districts)]
    title = {a: a.replace("-", " ").capitalize() for a in (*streets, *districts)}
    district_of = {s: districts[i // shape.streets_per_district] for i, s in enumerate(streets)}
    street_of = {c: streets[i // per_street] for i, c in enumerate(communities)}
    areas += [{"id": d, "level": "district", "parent": city, "name": title[d]}
              for d in districts]
    areas += [{"id": s, "level": "street", "parent": district_of[s], "name": title[s]}
              for s in streets]
    areas += [{"id": c, "level": "community", "parent": street_of[c], "name": f"Community {c}"}
              for c in communities]
    return areas, district_of


def _responder(pid: str, name: str, role: str, area: str, **extra: Any) -> dict[str, Any]:
    return {"id": pid, "name": name, "roles": [role], "areas": [area],
            "contacts": list(_MQTT), **extra}


def _responders(communities: Sequence[str], district_of: Mapping[str, str], city: str,
                shape: DirectoryShape, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The command centres (city, districts, streets: `district_of`'s keys in order), then
    each community's people."""
    out = [_responder(person_id("cc", city), "City command centre", "city_command", city)]
    for d in dict.fromkeys(district_of.values()):
        out.append(_responder(person_id("cc", d), f"Command and dispatch centre of {d}",
                              "district_command", d))
    for s in district_of:
        out.append(_responder(person_id("cc", s), f"Command centre of {s}", "street_command", s))
    lo, hi = shape.volunteers
    for c in communities:
        out.append(_responder(person_id("grid", c), f"Grid worker of {c}", "grid_worker", c))
        out.append(_responder(person_id("duty", c), f"Duty officer of {c}", "duty_officer", c))
        out.append(_responder(person_id("maint", c), f"Maintenance desk of {c}", "maintenance",
                              c))
        for k in range(int(rng.integers(lo, hi + 1))):
            night = rng.random() < shape.night_volunteer_share
            out.append(_responder(person_id(f"vol{k + 1}", c), f"Volunteer {k + 1} of {c}",
                                  "volunteer", c, **({"quiet_hours": list(_NIGHT)}
                                                     if night else {})))
    return out


def _relatives(first_device: str, resident: str, shape: DirectoryShape,
               rng: np.random.Generator) -> list[dict[str, Any]]:
    n = 2 if rng.random() < shape.two_relatives_share else 1
    out = []
    for k in range(n):
        relation = _RELATIONS[int(rng.integers(len(_RELATIONS)))]
        abroad = rng.random() < shape.abroad_share
        rel: dict[str, Any] = {
            "id": person_id(f"rel{k + 1}", first_device),
            "name": f"{relation.capitalize()} of {resident}", "relation": relation,
            "contacts": list(_MQTT)}
        if abroad:
            rel |= {"relation": f"{relation}, abroad", "timezone": _ABROAD["timezone"],
                    "quiet_hours": list(_ABROAD["quiet_hours"])}
        out.append(rel)
    return out


def _residents(fleet: Fleet, shape: DirectoryShape, rng: np.random.Generator
               ) -> list[dict[str, Any]]:
    smoke_by_area: dict[str, list[str]] = {}
    for d in fleet.devices:
        if d.kind == "smoke":
            smoke_by_area.setdefault(d.area, []).append(d.id)
    for ids in smoke_by_area.values():
        rng.shuffle(ids)  # which detector is in a lone wearer's home
    out: list[dict[str, Any]] = []
    for d in fleet.devices:
        if d.kind != "wearable":
            continue
        age = int(rng.integers(68, 96))
        alone = rng.random() < shape.alone_share and bool(smoke_by_area.get(d.area))
        devices = [d.id, smoke_by_area[d.area].pop()] if alone else [d.id]
        name = f"Wearer of {d.id}, {age}" + (", lives alone" if alone else "")
        rid = person_id("res", d.id)
        out.append({"id": rid, "name": name, "area": d.area, "devices": devices,
                    "relatives": _relatives(d.id, rid, shape, rng)})
    homes = {i for ids in smoke_by_area.values() for i in ids}
    for d in fleet.devices:
        if d.id in homes:
            rid = person_id("res", d.id)
            out.append({"id": rid, "name": f"Household of {d.id}", "area": d.area,
                        "devices": [d.id], "relatives": _relatives(d.id, rid, shape, rng)})
    return out


def directory_doc(fleet: Fleet, shape: DirectoryShape | None = None, seed: int | None = None
                  ) -> dict[str, Any]:
    """The directory of `fleet` as a document `sensing.dispatch.directory.parse_directory`
    takes (and `directory_toml` writes). Raises ValueError for a fleet area the topics
    reserve."""
    shape = shape or DirectoryShape()
    communities = list(dict.fromkeys(gw.area for gw in fleet.gateways))
    reserved = [a for a in communities if a in RESERVED_AREAS or not is_valid_name(a)]
    if reserved:
        raise ValueError(f"area {reserved[0]!r} cannot be a directory area (reserved in topics)")
    rng = np.random.default_rng([fleet.spec.seed if seed is None else seed, _STREAM_DIRECTORY])
    areas, district_of = _area_tree(communities, shape)
    return {"timezone": shape.timezone, "areas": areas,
            "responders": _responders(communities, district_of, areas[0]["id"], shape, rng),
            "residents": _residents(fleet, shape, rng)}


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        # a JSON string is a TOML basic string (orjson writes no `\/` and escapes controls)
        return orjson.dumps(v).decode()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {type(v).__name__}")


def toml_lines(doc: Mapping[str, Any]) -> Iterator[str]:
    """The document as TOML: plain keys first, `areas` one inline table a line, then each
    entry of the other lists of tables as a `[[table]]` of its own."""
    tables = {k: v for k, v in doc.items() if k != "areas" and isinstance(v, list)
              and v and all(isinstance(x, Mapping) for x in v)}
    for key, value in doc.items():
        if key not in tables and key != "areas":
            yield f"{key} = {_value(value)}"
    if "areas" in doc:
        yield "areas = ["
        yield from (f"    {_value(a)}," for a in doc["areas"])
        yield "]"
    for key, entries in tables.items():
        for entry in entries:
            yield ""
            yield f"[[{key}]]"
            yield from (f"{k} = {_value(v)}" for k, v in entry.items())


def write_directory(path: Path, doc: Mapping[str, Any], header: str = "") -> None:
    """Write the document as TOML (a `header` comment first), replacing `path` whole."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for line in header.splitlines():
            f.write(f"# {line}".rstrip() + "\n")
        for line in toml_lines(doc):
            f.write(line + "\n")
    tmp.replace(path)


def summary(doc: Mapping[str, Any]) -> dict[str, int]:
    """Counts of the document: areas by level, responders by role, residents, relatives."""
    out: dict[str, int] = {}
    for a in doc["areas"]:
        out[f"areas.{a['level']}"] = out.get(f"areas.{a['level']}", 0) + 1
    for r in doc["responders"]:
        for role in r["roles"]:
            out[f"responders.{role}"] = out.get(f"responders.{role}", 0) + 1
    out["residents"] = len(doc["residents"])
    out["residents.alone"] = sum(1 for r in doc["residents"] if len(r["devices"]) > 1)
    out["relatives"] = sum(len(r["relatives"]) for r in doc["residents"])
    return out
