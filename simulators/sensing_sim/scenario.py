"""Scenarios as TOML files: the fleet, the run and its labelled incidents.

    [fleet]
    gateways = 20
    devices = 6800
    areas = ["compound-01", "compound-02"]   # gateway i is in area i mod len(areas)
    mix = { smoke = 0.6, manhole = 0.15, wearable = 0.25 }
    interval_s = 5.0
    seed = 7

    [run]
    duration_s = 3600
    start_ms = 1795478400000                 # the simulated start (ms since the Unix epoch)
    demo_incidents = false                   # one incident of each type, spread over the run

    [[incidents]]                            # an incident on a device (ids as the fleet makes
    type = "smoke.fire"                      # them: smoke-000012), or on the first device of
    gateway = "gw-12"                        # the incident's kind under a gateway
    start_s = 600
    end_s = 660                              # default: the type's typical length
    level = 22.0                             # default: mid-range for the type

`sensing-sim offline --scenario FILE` runs one (shipped: simulators/scenarios/). The same file
gives the same fleet, signals and incidents. Unknown keys are errors.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sensing.wire import Grade
from sensing_sim.fleet import DEFAULT_AREAS, DEFAULT_MIX, Fleet, FleetSpec
from sensing_sim.incidents import INCIDENT_TYPES, Incident

_STRICT = ConfigDict(frozen=True, extra="forbid")


class FleetSection(BaseModel):
    model_config = _STRICT
    gateways: int = Field(default=1, ge=1, le=9999)
    devices: int = Field(default=100, ge=1, le=999_999)
    areas: tuple[str, ...] = DEFAULT_AREAS
    mix: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MIX))
    interval_s: float = 2.0
    seed: int = Field(default=1, ge=0)
    day_start_s: float = Field(default=36_000.0, ge=0, lt=86_400)


class RunSection(BaseModel):
    model_config = _STRICT
    duration_s: float = Field(default=600.0, gt=0)
    start_ms: int = Field(default=1_795_478_400_000, ge=946_684_800_000, le=4_102_444_800_000)
    demo_incidents: bool = False


class IncidentEntry(BaseModel):
    model_config = _STRICT
    type: str
    device: str | None = None
    gateway: str | None = None
    start_s: float = Field(ge=0)
    end_s: float | None = None
    level: float | None = None
    grade: Grade | None = None
    """default: the type's (a fire seen by two detectors under one gateway is critical)"""

    @model_validator(mode="after")
    def _where(self) -> IncidentEntry:
        if self.type not in INCIDENT_TYPES:
            raise ValueError(f"unknown incident type {self.type!r} "
                             f"(one of {', '.join(INCIDENT_TYPES)})")
        if (self.device is None) == (self.gateway is None):
            raise ValueError("give the incident a device or a gateway (one of them)")
        return self


class Scenario(BaseModel):
    model_config = _STRICT
    fleet: FleetSection = FleetSection()
    run: RunSection = RunSection()
    incidents: tuple[IncidentEntry, ...] = ()

    def build(self) -> Fleet:
        """The fleet with its incidents scheduled; raises ValueError naming a bad incident."""
        f = self.fleet
        fleet = Fleet(FleetSpec(n_gateways=f.gateways, n_devices=f.devices, mix=f.mix,
                                areas=f.areas, interval_s=f.interval_s, seed=f.seed,
                                day_start_s=f.day_start_s))
        for n, entry in enumerate(self.incidents):
            try:
                fleet.add_incident(self._incident(fleet, entry))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"incidents[{n}]: {exc}") from None
        if self.run.demo_incidents:
            fleet.schedule_demo_incidents(self.run.duration_s)
        return fleet

    def _incident(self, fleet: Fleet, entry: IncidentEntry) -> Incident:
        kind = INCIDENT_TYPES[entry.type][0]
        if entry.device is not None:
            device = fleet.device(entry.device)
        else:
            assert entry.gateway is not None
            fleet.gateway(entry.gateway)  # KeyError for an unknown gateway
            taken = {i.device for i in fleet.incidents}
            free = [d for d in fleet.devices_of(entry.gateway)
                    if kind in (None, d.kind) and d.id not in taken]
            if not free:
                raise ValueError(f"no free {kind or 'device'} under {entry.gateway}")
            device = free[0]
        incident = Incident.of(entry.type, device.id, device.gateway, device.area,
                               entry.start_s, entry.end_s, entry.level)
        return incident if entry.grade is None else replace(incident, grade=entry.grade)


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; raises OSError, tomllib.TOMLDecodeError or
    pydantic.ValidationError."""
    with path.open("rb") as f:
        return Scenario.model_validate(tomllib.load(f))
