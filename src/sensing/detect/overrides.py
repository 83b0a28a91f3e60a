"""Per-kind, per-area and per-device detector parameters, from a TOML file.

The defaults come from the standards cited in `sensing.detect.rules` (threshold rules) and in
the checks' parameter classes (`sensing.detect.fault`, `.fall`, `.inactivity`). A file can
override them for all devices of a kind, for the devices of an area, and for one device; the
most specific wins, key by key::

    [kind.smoke.smoke-obscuration]
    thresholds = [5.0, 9.0]

    [area.shuangqiaozi.manhole-gas]
    thresholds = [8.0, 20.0]

    [device."smoke-000123".smoke-co]
    durations_s = [1800, 300, 20]

    [kind.wearable.wearable-fall]
    impact_g = 3.0

    [device."wb-0042".wearable-inactivity]
    limit_s = 7200

    [kind.manhole.device-offline]
    interval_s = 300        # these manhole sensors report every 5 minutes

A threshold rule takes `thresholds`, `resets`, `min_counts`, `durations_s`, each a list with one
entry per level of the rule (least severe first). A check takes the fields of its parameters
(`ImpossibleParams`, `StuckParams`, `DriftParams`, `FallParams`, `InactivityParams`), one
value each. `device-offline` (any kind) takes `interval_s`, the cadence the devices report at
(`sensing.detect.offline`). Unknown sections, detectors or keys, wrong lengths or types and
parameters the detector rejects are errors. A device gets its parameters when the core first
sees it (`assign`).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from sensing.detect.catalog import default_checks
from sensing.detect.checks import Check, CheckBank
from sensing.detect.offline import MAX_INTERVAL_S, OFFLINE_DETECTOR
from sensing.detect.rules import DEFAULT_RULES, Level, Rule
from sensing.detect.threshold import ThresholdBank
from sensing.registry import Registry
from sensing.wire.kinds import KINDS
from sensing.wire.topics import is_valid_name

SCOPES = ("kind", "area", "device")
"""least specific first"""
KEYS: dict[str, str] = {
    "thresholds": "threshold",
    "resets": "reset",
    "min_counts": "min_count",
    "durations_s": "duration_s",
}
"""file key -> the `Level` field it sets"""

Entry = Mapping[str, Any]
"""key -> one value per level (a rule) or one value (a check)"""
Scope = Mapping[str, Mapping[str, Entry]]
"""target (kind, area or device id) -> detector name -> entry"""


class OverridesError(ValueError):
    """A detectors file that cannot be used; the message names the file and section."""


def _section(scope: str, target: str, rule: str | None = None) -> str:
    quoted = target if is_valid_name(target) else f'"{target}"'
    return f"[{scope}.{quoted}{'' if rule is None else '.' + rule}]"


def _values(key: str, raw: object, rule: Rule, where: str) -> tuple[float, ...] | tuple[int, ...]:
    n = len(rule.levels)
    if not isinstance(raw, list) or len(raw) != n:
        raise OverridesError(f"{where} {key}: expected a list of {n} value(s), one per level of "
                             f"{rule.name}, got {raw!r}")
    if key == "min_counts":
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in raw):
            raise OverridesError(f"{where} {key}: expected integers >= 1, got {raw!r}")
        return tuple(raw)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
               for v in raw):
        raise OverridesError(f"{where} {key}: expected finite numbers, got {raw!r}")
    if key == "durations_s" and min(raw) < 0:
        raise OverridesError(f"{where} {key}: durations cannot be negative, got {raw!r}")
    return tuple(float(v) for v in raw)


def _offline_entry(entry: object, where: str) -> Entry:
    """`device-offline`'s keys, for devices of any kind (`sensing.detect.offline`)."""
    if not isinstance(entry, dict):
        raise OverridesError(f"{where} must be a table of interval_s")
    for key, raw in entry.items():
        if key != "interval_s":
            raise OverridesError(f"{where}: unknown key {key!r} (expected interval_s)")
        if (not isinstance(raw, int | float) or isinstance(raw, bool) or not math.isfinite(raw)
                or not 0 < raw <= MAX_INTERVAL_S):
            raise OverridesError(f"{where} interval_s: expected seconds in (0, "
                                 f"{MAX_INTERVAL_S:.0f}], got {raw!r}")
    return {k: float(v) for k, v in entry.items()}


def _check_value(key: str, raw: object, default: object, where: str) -> object:
    """A check's parameter value of the type its default has."""
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise OverridesError(f"{where} {key}: expected true or false, got {raw!r}")
    elif isinstance(default, int):
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise OverridesError(f"{where} {key}: expected an integer, got {raw!r}")
    elif not isinstance(raw, int | float) or isinstance(raw, bool) or math.isnan(raw):
        raise OverridesError(f"{where} {key}: expected a number, got {raw!r}")
    else:
        return float(raw)
    return raw


def _check_entry(entry: Mapping[str, object], check: Check[Any], where: str) -> Entry:
    known = {f.name: getattr(check.params, f.name) for f in fields(check.params)}
    for key in entry:
        if key not in known:
            raise OverridesError(f"{where}: unknown key {key!r} (expected "
                                 f"{', '.join(known)})")
    return {k: _check_value(k, v, known[k], where) for k, v in entry.items()}


@dataclass(frozen=True)
class Overrides:
    rules: tuple[Rule, ...] = DEFAULT_RULES
    kind: Scope = field(default_factory=dict)
    area: Scope = field(default_factory=dict)
    device: Scope = field(default_factory=dict)
    checks: tuple[Check[Any], ...] = field(default_factory=lambda: tuple(default_checks()))

    @classmethod
    def load(cls, path: Path, rules: Sequence[Rule] = DEFAULT_RULES,
             checks: Sequence[Check[Any]] | None = None) -> Overrides:
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise OverridesError(f"{path}: {exc}") from None
        try:
            return cls.parse(doc, rules, checks)
        except OverridesError as exc:
            raise OverridesError(f"{path}: {exc}") from None

    @classmethod
    def parse(cls, doc: Mapping[str, object], rules: Sequence[Rule] = DEFAULT_RULES,
              checks: Sequence[Check[Any]] | None = None) -> Overrides:
        """Check a parsed TOML document against `rules` and `checks` (by default the default
        checks); raises OverridesError."""
        checks = tuple(default_checks() if checks is None else checks)
        by_name = {r.name: r for r in rules}
        check_by_name = {c.spec.name: c for c in checks}
        for top in doc:
            if top not in SCOPES:
                raise OverridesError(f"unknown section [{top}] (expected one of "
                                     f"{', '.join(SCOPES)})")
        scopes: dict[str, dict[str, dict[str, Entry]]] = {}
        for scope in SCOPES:
            table = doc.get(scope, {})
            if not isinstance(table, dict):
                raise OverridesError(f"[{scope}] must be a table")
            parsed = scopes[scope] = {}
            for target, per_rule in table.items():
                if scope == "kind" and target not in KINDS:
                    raise OverridesError(f"[kind.{target}]: unknown kind (expected one of "
                                         f"{', '.join(KINDS)})")
                if scope == "area" and not is_valid_name(target):
                    raise OverridesError(f"[area.{target}]: an area is [A-Za-z0-9_-]{{1,64}}")
                if not isinstance(per_rule, dict):
                    raise OverridesError(f"{_section(scope, target)} must hold one table per "
                                         f"rule, e.g. {_section(scope, target, '<rule>')}")
                parsed[target] = {}
                for name, entry in per_rule.items():
                    where = _section(scope, target, name)
                    if name == OFFLINE_DETECTOR:
                        parsed[target][name] = _offline_entry(entry, where)
                        continue
                    rule, check = by_name.get(name), check_by_name.get(name)
                    if rule is not None:
                        kind = rule.kind
                    elif check is not None:
                        kind = check.spec.kind
                    else:
                        raise OverridesError(f"{where}: unknown detector {name!r} (known: "
                                             f"{', '.join([*by_name, *check_by_name])}, "
                                             f"{OFFLINE_DETECTOR})")
                    if scope == "kind" and kind != target:
                        raise OverridesError(f"{where}: {name} watches {kind} devices, "
                                             f"not {target}")
                    if not isinstance(entry, dict):
                        raise OverridesError(f"{where} must be a table of "
                                             + (", ".join(KEYS) if rule else "parameters"))
                    if check is not None:
                        parsed[target][name] = _check_entry(entry, check, where)
                        continue
                    assert rule is not None
                    for key in entry:
                        if key not in KEYS:
                            raise OverridesError(f"{where}: unknown key {key!r} (expected "
                                                 f"{', '.join(KEYS)})")
                    parsed[target][name] = {k: _values(k, v, rule, where)
                                            for k, v in entry.items()}
        made = cls(tuple(rules), scopes["kind"], scopes["area"], scopes["device"], checks)
        made._try_checks()
        return made

    def _try_checks(self) -> None:
        """Every combination of the file's kind, area and device entries of a check gives
        parameters the check accepts (so that no device can meet a bad one later)."""
        for check in self.checks:
            name = check.spec.name
            areas = [a for a, e in self.area.items() if name in e] + [None]
            devices = [d for d, e in self.device.items() if name in e] + [None]
            for area, device in product(areas, devices):
                try:
                    self.check_params(check, area, device)
                except (ValueError, TypeError) as exc:
                    where = " + ".join(
                        _section(scope, target, name) for scope, target, entries in
                        (("kind", check.spec.kind, self.kind), ("area", area, self.area),
                         ("device", device, self.device))
                        if target is not None and name in entries.get(target, {}))
                    raise OverridesError(f"{where}: {exc}") from None

    def check_params(self, check: Check[Any], area: str | None = None,
                     device: str | None = None) -> Any:
        """The check's parameters for a device of its kind in `area`: defaults, then the
        kind's, the area's and the device's overrides, key by key."""
        merged: dict[str, Any] = {}
        for scope, target in ((self.kind, check.spec.kind), (self.area, area),
                              (self.device, device)):
            if target is not None:
                merged.update(scope.get(target, {}).get(check.spec.name, {}))
        return replace(check.params, **merged) if merged else check.params

    def __bool__(self) -> bool:
        return bool(self.kind or self.area or self.device)

    def levels(self, rule: Rule, area: str | None = None, device: str | None = None
               ) -> tuple[Level, ...]:
        """The rule's levels for a device of its kind in `area`: defaults, then the kind's,
        the area's and the device's overrides, key by key."""
        levels = list(rule.levels)
        for scope, target in ((self.kind, rule.kind), (self.area, area), (self.device, device)):
            entry = scope.get(target, {}).get(rule.name) if target is not None else None
            for key, values in (entry or {}).items():
                levels = [replace(lv, **{KEYS[key]: v})
                          for lv, v in zip(levels, values, strict=True)]
        return tuple(levels)

    def assign(self, bank: ThresholdBank | CheckBank, registry: Registry, first: int,
               stop: int) -> None:
        """Give devices `first..stop-1` (just seen) their parameters in `bank`, from the kind
        and area the registry has for them; a dict hit per device only with [device] sections.
        """
        if stop <= first or not self:
            return
        kinds = registry.device_kind[first:stop].astype(np.int64)
        if self.kind or self.area:
            areas = registry.device_area[first:stop].astype(np.int64)
            groups, where = np.unique(kinds * (len(registry.areas) + 1) + areas + 1,
                                      return_inverse=True)
            for g, key in enumerate(groups.tolist()):
                k, a = divmod(key - 1, len(registry.areas) + 1)
                if k < 0:
                    continue  # a kind the contract does not know: nothing to set
                area = registry.areas.names[a] if a >= 0 else None
                devices = first + np.flatnonzero(where == g)
                self._assign(bank, KINDS[k], area, None, devices)
        if self.device:
            names = registry.devices.names
            if stop - first <= len(self.device):
                named = [d for d in range(first, stop) if names[d] in self.device]
            else:
                index = registry.devices.index
                named = [d for d in (index.get(n) for n in self.device)
                         if d is not None and first <= d < stop]
            for d in named:
                if registry.device_kind[d] < 0:
                    continue
                area_i = int(registry.device_area[d])
                area = registry.areas.names[area_i] if area_i >= 0 else None
                self._assign(bank, KINDS[int(registry.device_kind[d])], area, names[d],
                             np.array([d]))

    def _assign(self, bank: ThresholdBank | CheckBank, kind: str, area: str | None,
                device: str | None, devices: np.ndarray) -> None:
        touched = {**self.kind.get(kind, {}), **self.area.get(area or "", {}),
                   **self.device.get(device or "", {})}
        if isinstance(bank, CheckBank):
            for q, check in enumerate(bank.checks):
                if check.spec.kind == kind and check.spec.name in touched:
                    bank.set_profile(q, devices, bank.profile_index(
                        q, self.check_params(check, area, device)))
            return
        for r, rule in enumerate(bank.rules):
            if rule.kind == kind and rule.name in touched:
                bank.set_profile(r, devices, bank.profile_index(r, self.levels(rule, area,
                                                                              device)))


def load_overrides(path: Path | None, rules: Sequence[Rule] = DEFAULT_RULES,
                   checks: Sequence[Check[Any]] | None = None) -> Overrides | None:
    """The overrides in `path`, or None without a file."""
    return None if path is None else Overrides.load(path, rules, checks)
