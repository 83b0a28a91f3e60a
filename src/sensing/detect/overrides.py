"""Per-kind, per-area and per-device threshold parameters, from a TOML file.

The defaults come from the standards in `sensing.detect.rules`. A file can override them for
all devices of a kind, for the devices of an area, and for one device; the most specific wins,
key by key::

    [kind.smoke.smoke-obscuration]
    thresholds = [5.0, 9.0]

    [area.shuangqiaozi.manhole-gas]
    thresholds = [8.0, 20.0]

    [device."smoke-000123".smoke-co]
    durations_s = [1800, 300, 20]

Keys: `thresholds`, `resets`, `min_counts`, `durations_s`, each a list with one entry per level
of the rule (least severe first). Unknown sections, rules or keys and wrong lengths or types
are errors. A device gets its parameters when the core first sees it (`assign`).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

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

Entry = Mapping[str, tuple[float, ...] | tuple[int, ...]]
Scope = Mapping[str, Mapping[str, Entry]]
"""target (kind, area or device id) -> rule name -> key -> one value per level"""


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


@dataclass(frozen=True)
class Overrides:
    rules: tuple[Rule, ...] = DEFAULT_RULES
    kind: Scope = field(default_factory=dict)
    area: Scope = field(default_factory=dict)
    device: Scope = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, rules: Sequence[Rule] = DEFAULT_RULES) -> Overrides:
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise OverridesError(f"{path}: {exc}") from None
        try:
            return cls.parse(doc, rules)
        except OverridesError as exc:
            raise OverridesError(f"{path}: {exc}") from None

    @classmethod
    def parse(cls, doc: Mapping[str, object], rules: Sequence[Rule] = DEFAULT_RULES
              ) -> Overrides:
        """Check a parsed TOML document against `rules`; raises OverridesError."""
        by_name = {r.name: r for r in rules}
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
                    rule = by_name.get(name)
                    if rule is None:
                        raise OverridesError(f"{where}: unknown rule {name!r} (known: "
                                             f"{', '.join(by_name)})")
                    if scope == "kind" and rule.kind != target:
                        raise OverridesError(f"{where}: {name} watches {rule.kind} devices, "
                                             f"not {target}")
                    if not isinstance(entry, dict):
                        raise OverridesError(f"{where} must be a table of "
                                             f"{', '.join(KEYS)}")
                    for key in entry:
                        if key not in KEYS:
                            raise OverridesError(f"{where}: unknown key {key!r} (expected "
                                                 f"{', '.join(KEYS)})")
                    parsed[target][name] = {k: _values(k, v, rule, where)
                                            for k, v in entry.items()}
        return cls(tuple(rules), scopes["kind"], scopes["area"], scopes["device"])

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
                levels = [replace(lv, **{KEYS[key]: v})  # type: ignore[arg-type]
                          for lv, v in zip(levels, values, strict=True)]
        return tuple(levels)

    def assign(self, bank: ThresholdBank, registry: Registry, first: int, stop: int) -> None:
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
                area_i = int(registry.device_area[d])
                area = registry.areas.names[area_i] if area_i >= 0 else None
                self._assign(bank, KINDS[int(registry.device_kind[d])], area, names[d],
                             np.array([d]))

    def _assign(self, bank: ThresholdBank, kind: str, area: str | None, device: str | None,
                devices: np.ndarray) -> None:
        touched = {**self.kind.get(kind, {}), **self.area.get(area or "", {}),
                   **self.device.get(device or "", {})}
        for r, rule in enumerate(bank.rules):
            if rule.kind == kind and rule.name in touched:
                bank.set_profile(r, devices, bank.profile_index(r, self.levels(rule, area,
                                                                              device)))


def load_overrides(path: Path | None, rules: Sequence[Rule] = DEFAULT_RULES) -> Overrides | None:
    """The overrides in `path`, or None without a file."""
    return None if path is None else Overrides.load(path, rules)
