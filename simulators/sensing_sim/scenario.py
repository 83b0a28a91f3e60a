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
    speed = 60                               # a replay of its recording runs 60x real time

    [faults]                                 # transport faults (sensing_sim.transport)
    duplicate_rate = 0.02                    # share of messages delivered twice
    late_rate = 0.01                         # share delayed by up to late_max_s (out of order)
    malformed = 12                           # broken messages spread over the run
    restarts = [{ gateway = "gw-03", at_s = 900, down_s = 5 }]   # new epoch, seqs from 0
    clock_skew = [{ gateway = "gw-05", skew_s = -90 }]
    link_flaps = [{ gateway = "gw-07", start_s = 600, count = 3, down_s = 20, every_s = 120 }]

    [[incidents]]                            # an incident on a device (ids as the fleet makes
    type = "smoke.fire"                      # them: smoke-000012), or on the first device of
    gateway = "gw-12"                        # the incident's kind under a gateway
    start_s = 600
    end_s = 660                              # default: typical length, >= 5 readings
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
from sensing_sim.incidents import INCIDENT_TYPES, Incident, kinds_of
from sensing_sim.signals import local_time_of_day_s
from sensing_sim.transport import ClockSkew, Restart, TransportFaults

_STRICT = ConfigDict(frozen=True, extra="forbid")


class FleetSection(BaseModel):
    model_config = _STRICT
    gateways: int = Field(default=1, ge=1, le=9999)
    devices: int = Field(default=100, ge=1, le=999_999)
    areas: tuple[str, ...] = DEFAULT_AREAS
    mix: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MIX))
    interval_s: float = 2.0
    seed: int = Field(default=1, ge=0)
    day_start_s: float | None = Field(default=None, ge=0, lt=86_400)
    """local time of day at the start, for daily cycles, walks and sleep; default (and best
    left so): the core's local time at [run] start_ms, so the fleet's days are the core's"""


class RunSection(BaseModel):
    model_config = _STRICT
    duration_s: float = Field(default=600.0, gt=0)
    start_ms: int = Field(default=1_795_478_400_000, ge=946_684_800_000, le=4_102_444_800_000)
    demo_incidents: bool = False
    speed: float = Field(default=1.0, gt=0, le=10_000)
    """time acceleration: how many simulated seconds a replay of the scenario's recording
    publishes per wall second by default (offline runs go as fast as they can; live runs are
    real time)"""


class RestartEntry(BaseModel):
    model_config = _STRICT
    gateway: str
    at_s: float = Field(ge=0)
    down_s: float = Field(default=0.0, ge=0)


class SkewEntry(BaseModel):
    model_config = _STRICT
    gateway: str
    skew_s: float = Field(ge=-86_400, le=86_400)


class LinkFlapEntry(BaseModel):
    """A gateway's link that drops `count` times: down for `down_s` every `every_s` from
    `start_s`. Each drop is a labelled `gateway.offline` incident."""

    model_config = _STRICT
    gateway: str
    start_s: float = Field(ge=0)
    count: int = Field(default=1, ge=1, le=10_000)
    down_s: float = Field(gt=0)
    every_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _spacing(self) -> LinkFlapEntry:
        if self.count > 1 and (self.every_s is None or self.every_s <= self.down_s):
            raise ValueError("a link that flaps more than once needs every_s > down_s")
        return self


class FaultsSection(BaseModel):
    model_config = _STRICT
    duplicate_rate: float = Field(default=0.0, ge=0, le=1)
    late_rate: float = Field(default=0.0, ge=0, le=1)
    late_max_s: float = Field(default=30.0, gt=0, le=86_400)
    malformed: int = Field(default=0, ge=0, le=1_000_000)
    restarts: tuple[RestartEntry, ...] = ()
    clock_skew: tuple[SkewEntry, ...] = ()
    link_flaps: tuple[LinkFlapEntry, ...] = ()

    def transport(self) -> TransportFaults:
        return TransportFaults(
            duplicate_rate=self.duplicate_rate, late_rate=self.late_rate,
            late_max_s=self.late_max_s, malformed=self.malformed,
            restarts=tuple(Restart(r.gateway, r.at_s, r.down_s) for r in self.restarts),
            clock_skew=tuple(ClockSkew(c.gateway, c.skew_s) for c in self.clock_skew))


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
    variant: str = ""
    """default: the type's (sensing_sim.incidents.VARIANTS: wearable.vitals "spo2", "hr_high",
    "hr_low"; device.fault "impossible", "stuck", "drift")"""

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
    faults: FaultsSection = FaultsSection()

    def build(self) -> Fleet:
        """The fleet with its incidents scheduled; raises ValueError naming a bad incident."""
        f = self.fleet
        fleet = Fleet(FleetSpec(n_gateways=f.gateways, n_devices=f.devices, mix=f.mix,
                                areas=f.areas, interval_s=f.interval_s, seed=f.seed,
                                day_start_s=local_time_of_day_s(self.run.start_ms)
                                if f.day_start_s is None else f.day_start_s))
        for n, entry in enumerate(self.incidents):
            try:
                fleet.add_incident(self._incident(fleet, entry))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"incidents[{n}]: {exc}") from None
        for n, flap in enumerate(self.faults.link_flaps):
            try:
                fleet.gateway(flap.gateway)
                for k in range(flap.count):
                    start = flap.start_s + k * (flap.every_s or 0.0)
                    fleet.add_incident(Incident.of("gateway.offline", flap.gateway,
                                                   flap.gateway, fleet.gateway(flap.gateway).area,
                                                   start, start + flap.down_s))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"faults.link_flaps[{n}]: {exc}") from None
        named: list[tuple[str, int, str]] = [
            *(("restarts", n, r.gateway) for n, r in enumerate(self.faults.restarts)),
            *(("clock_skew", n, c.gateway) for n, c in enumerate(self.faults.clock_skew))]
        for what, n, gateway in named:
            try:
                fleet.gateway(gateway)
            except KeyError:
                raise ValueError(f"faults.{what}[{n}]: no gateway {gateway!r}") from None
        if self.run.demo_incidents:
            fleet.schedule_demo_incidents(self.run.duration_s)
        late = [i for i in fleet.incidents if i.start_s >= self.run.duration_s]
        if late:
            raise ValueError(f"{late[0].type} on {late[0].device} starts at {late[0].start_s:g} s, "
                             f"after the run ends ({self.run.duration_s:g} s)")
        return fleet

    def _incident(self, fleet: Fleet, entry: IncidentEntry) -> Incident:
        if entry.type == "gateway.offline":
            gateway = fleet.gateway(entry.gateway or fleet.device(str(entry.device)).gateway)
            return Incident.of(entry.type, gateway.id, gateway.id, gateway.area, entry.start_s,
                               entry.end_s, entry.level, variant=entry.variant)
        kinds = kinds_of(entry.type, entry.variant)
        if entry.device is not None:
            device = fleet.device(entry.device)
        else:
            assert entry.gateway is not None
            fleet.gateway(entry.gateway)  # KeyError for an unknown gateway
            taken = {i.device for i in fleet.incidents}
            free = [d for d in fleet.devices_of(entry.gateway)
                    if d.kind in kinds and d.id not in taken]
            if not free:
                raise ValueError(f"no free {' or '.join(kinds)} device under {entry.gateway}")
            device = free[0]
        end_s = entry.end_s if entry.end_s is not None else entry.start_s + (
            fleet.length_needed_s(entry.type, entry.variant, device.kind))
        incident = Incident.of(entry.type, device.id, device.gateway, device.area,
                               entry.start_s, end_s, entry.level, variant=entry.variant,
                               kind=device.kind)
        return incident if entry.grade is None else replace(incident, grade=entry.grade)


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; raises OSError, tomllib.TOMLDecodeError or
    pydantic.ValidationError."""
    with path.open("rb") as f:
        return Scenario.model_validate(tomllib.load(f))
