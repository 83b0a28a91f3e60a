"""Scenarios as TOML files: the fleet, the run and its labelled incidents.

    [fleet]
    gateways = 20
    devices = 6800
    areas = ["compound-01", "compound-02"]   # gateway i is in area i mod len(areas)
    mix = { smoke = 0.6, manhole = 0.15, wearable = 0.25 }
    interval_s = 5.0
    seed = 7
    cadences = [{ gateway = "gw-19", interval_s = [45, 60], batch_s = 20 }]   # slower devices

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
    reboots = [{ gateway = "gw-19", at_s = 300, down_s = 100 }]   # a device restarts: new epoch

    [[incidents]]                            # an incident on a device (ids as the fleet makes
    type = "smoke.fire"                      # them: smoke-000012), or on the first device of
    gateway = "gw-12"                        # the incident's kind under a gateway
    start_s = 600
    end_s = 660                              # default: typical length, >= 5 readings
    level = 22.0                             # default: mid-range for the type
    late = { from_s = 480, to_s = 600, arrive_s = 630 }   # its readings of 480-600 s arrive
                                             # at 630 s, inside it (a backlog): stays open

    [[incidents]]
    type = "device.fault"
    variant = "stuck"                        # "impossible", "stuck", "drift"
    channel = "gas_lel"                      # default: the variant's channel for the kind
    gateway = "gw-08"
    start_s = 900

    [[nuisances]]                            # no label: an alert it causes is a false positive
    type = "wrist_bang"                      # a 3 g knock, walking on for walk_s, then rest
    gateway = "gw-09"
    start_s = 1200

`sensing-sim offline --scenario FILE` runs one (shipped: simulators/scenarios/). The same file
gives the same fleet, signals and incidents. Unknown keys are errors.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sensing.wire import KINDS, Grade
from sensing_sim.cases import (
    BANG_LEVEL_G,
    BANG_WALK_S,
    NUISANCE_TYPES,
    REBOOT_MAX_S,
    Cadence,
    LateReadings,
    Reboot,
    WristBang,
)
from sensing_sim.fleet import DEFAULT_AREAS, DEFAULT_MIX, Device, Fleet, FleetSpec
from sensing_sim.incidents import (
    INCIDENT_TYPES,
    Incident,
    device_timeout_s,
    kinds_of,
)
from sensing_sim.signals import local_time_of_day_s
from sensing_sim.transport import ClockSkew, Restart, TransportFaults

_STRICT = ConfigDict(frozen=True, extra="forbid")


def _known(what: str, name: str, names: Iterable[str]) -> None:
    if name not in names:
        raise ValueError(f"unknown {what} {name!r} (one of {', '.join(names)})")


def _one_place(what: str, device: str | None, gateway: str | None) -> None:
    if (device is None) == (gateway is None):
        raise ValueError(f"give the {what} a device or a gateway (one of them)")


class CadenceEntry(BaseModel):
    """The devices under `gateway` sample every `interval_s` (each its own interval, drawn
    from the range) from their first reading; the gateway forwards every `batch_s`."""

    model_config = _STRICT
    gateway: str
    interval_s: tuple[float, float] = (45.0, 60.0)
    batch_s: float = Field(default=0.0, ge=0, le=3600)


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
    cadences: tuple[CadenceEntry, ...] = ()


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


class RebootEntry(BaseModel):
    """A device (named, or the first free one under `gateway`) silent from `at_s` for
    `down_s`, then under a new epoch. No label."""

    model_config = _STRICT
    device: str | None = None
    gateway: str | None = None
    at_s: float = Field(ge=0)
    down_s: float = Field(default=REBOOT_MAX_S, gt=0, le=REBOOT_MAX_S)

    @model_validator(mode="after")
    def _where(self) -> RebootEntry:
        _one_place("reboot", self.device, self.gateway)
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
    reboots: tuple[RebootEntry, ...] = ()

    def transport(self) -> TransportFaults:
        return TransportFaults(
            duplicate_rate=self.duplicate_rate, late_rate=self.late_rate,
            late_max_s=self.late_max_s, malformed=self.malformed,
            restarts=tuple(Restart(r.gateway, r.at_s, r.down_s) for r in self.restarts),
            clock_skew=tuple(ClockSkew(c.gateway, c.skew_s) for c in self.clock_skew))


class LateEntry(BaseModel):
    """The incident's device's readings sampled in [from_s, to_s) reach the broker only at
    `arrive_s` (a backlog)."""

    model_config = _STRICT
    from_s: float = Field(ge=0)
    to_s: float
    arrive_s: float

    @model_validator(mode="after")
    def _order(self) -> LateEntry:
        if not self.from_s < self.to_s <= self.arrive_s:
            raise ValueError("late readings need from_s < to_s <= arrive_s")
        return self


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
    channel: str = ""
    """default: the variant's channel for the device's kind; device.fault "stuck" and
    "impossible" can be put on any channel of `sensing_sim.incidents.CHANNEL_FORMS` (a
    gateway's entry then picks a device of a kind that has the channel)"""
    late: LateEntry | None = None
    """some of the device's readings arrive late (sensing_sim.cases.LateReadings)"""
    stays_open: bool | None = None
    """the alert must stay open until the incident's end; default: true with `late`"""

    @model_validator(mode="after")
    def _where(self) -> IncidentEntry:
        _known("incident type", self.type, INCIDENT_TYPES)
        _one_place("incident", self.device, self.gateway)
        return self


class NuisanceEntry(BaseModel):
    """A nuisance (sensing_sim.cases) on a device, named or the first free one of its kind
    under `gateway`. No label: an alert it causes is a false positive."""

    model_config = _STRICT
    type: str
    device: str | None = None
    gateway: str | None = None
    start_s: float = Field(ge=0)
    end_s: float | None = None
    """default: the knock, `walk_s` of walking, then two minutes of rest"""
    level: float = Field(default=BANG_LEVEL_G, gt=0, le=16)
    """the knock's peak, g"""
    walk_s: float = Field(default=BANG_WALK_S, ge=0)

    @model_validator(mode="after")
    def _where(self) -> NuisanceEntry:
        _known("nuisance", self.type, NUISANCE_TYPES)
        _one_place("nuisance", self.device, self.gateway)
        return self


class Scenario(BaseModel):
    model_config = _STRICT
    fleet: FleetSection = FleetSection()
    run: RunSection = RunSection()
    incidents: tuple[IncidentEntry, ...] = ()
    nuisances: tuple[NuisanceEntry, ...] = ()
    faults: FaultsSection = FaultsSection()

    def build(self) -> Fleet:
        """The fleet with its incidents scheduled; raises ValueError naming a bad incident."""
        f = self.fleet
        try:
            cadences = tuple(Cadence(c.gateway, c.interval_s, c.batch_s) for c in f.cadences)
        except ValueError as exc:
            raise ValueError(f"fleet.cadences: {exc}") from None
        fleet = Fleet(FleetSpec(n_gateways=f.gateways, n_devices=f.devices, mix=f.mix,
                                areas=f.areas, interval_s=f.interval_s, seed=f.seed,
                                day_start_s=local_time_of_day_s(self.run.start_ms)
                                if f.day_start_s is None else f.day_start_s,
                                cadences=cadences))
        for n, entry in enumerate(self.incidents):
            try:
                incident = fleet.add_incident(self._incident(fleet, entry))
                if entry.late is not None:
                    late = entry.late
                    if late.arrive_s >= self.run.duration_s:
                        raise ValueError(f"its late readings arrive at {late.arrive_s:g} s, "
                                         f"after the run ends")
                    interval = fleet.device(incident.device).interval_s
                    timeout = device_timeout_s(incident.device_kind, interval)
                    if late.to_s - late.from_s + interval >= timeout:
                        raise ValueError(
                            f"while its late readings are held, {incident.device} is silent "
                            f"for {late.to_s - late.from_s + interval:g} s: offline by the "
                            f"core's rule ({timeout:g} s); hold a shorter window")
                    fleet.add_late_readings(LateReadings(incident.device, incident.gateway,
                                                         late.from_s, late.to_s,
                                                         late.arrive_s))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"incidents[{n}]: {exc}") from None
        for n, nuisance in enumerate(self.nuisances):
            try:
                device = _pick(fleet, nuisance.device, nuisance.gateway,
                               (NUISANCE_TYPES[nuisance.type],))
                fleet.add_nuisance(WristBang.of(device.id, device.gateway, device.area,
                                                nuisance.start_s, nuisance.end_s,
                                                nuisance.level, nuisance.walk_s))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"nuisances[{n}]: {exc}") from None
        for n, reboot in enumerate(self.faults.reboots):
            try:
                device = _pick(fleet, reboot.device, reboot.gateway, KINDS)
                fleet.add_reboot(Reboot(device.id, device.gateway, reboot.at_s, reboot.down_s))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"faults.reboots[{n}]: {exc}") from None
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
        beyond = [i for i in fleet.incidents if i.start_s >= self.run.duration_s]
        if beyond:
            raise ValueError(f"{beyond[0].type} on {beyond[0].device} starts at "
                             f"{beyond[0].start_s:g} s, after the run ends "
                             f"({self.run.duration_s:g} s)")
        after = [f"{c.type} on {c.device} starts at {c.start_s:g} s" for c in fleet.nuisances
                 if c.start_s >= self.run.duration_s] + [
            f"a reboot of {r.device} at {r.at_s:g} s" for r in fleet.reboots
            if r.at_s >= self.run.duration_s]
        if after:
            raise ValueError(f"{after[0]}, after the run ends ({self.run.duration_s:g} s)")
        return fleet

    def _incident(self, fleet: Fleet, entry: IncidentEntry) -> Incident:
        if entry.type == "gateway.offline":
            gateway = fleet.gateway(entry.gateway or fleet.device(str(entry.device)).gateway)
            return Incident.of(entry.type, gateway.id, gateway.id, gateway.area, entry.start_s,
                               entry.end_s, entry.level, variant=entry.variant)
        kinds = kinds_of(entry.type, entry.variant, entry.channel)
        if not kinds:
            # Incident.of names the channels the type and variant have
            Incident.of(entry.type, "", "", "", entry.start_s, variant=entry.variant,
                        channel=entry.channel)
        device = _pick(fleet, entry.device, entry.gateway, kinds)
        end_s = entry.end_s if entry.end_s is not None else entry.start_s + (
            fleet.length_needed_s(entry.type, entry.variant, device.kind, entry.channel,
                                  interval_s=device.interval_s))
        stays_open = entry.stays_open if entry.stays_open is not None else (
            entry.late is not None)
        incident = Incident.of(entry.type, device.id, device.gateway, device.area,
                               entry.start_s, end_s, entry.level, variant=entry.variant,
                               kind=device.kind, channel=entry.channel, stays_open=stays_open)
        return incident if entry.grade is None else replace(incident, grade=entry.grade)


def _pick(fleet: Fleet, device_id: str | None, gateway: str | None,
          kinds: tuple[str, ...]) -> Device:
    """The named device, or the first device of `kinds` under `gateway` that has nothing
    scripted on it yet; raises KeyError for an unknown name, ValueError if none is free."""
    if device_id is not None:
        return fleet.device(device_id)
    assert gateway is not None
    fleet.gateway(gateway)  # KeyError for an unknown gateway
    taken = fleet.busy_devices()
    free = [d for d in fleet.devices_of(gateway) if d.kind in kinds and d.id not in taken]
    if not free:
        raise ValueError(f"no free {' or '.join(kinds)} device under {gateway}")
    return free[0]


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; raises OSError, tomllib.TOMLDecodeError or
    pydantic.ValidationError."""
    with path.open("rb") as f:
        return Scenario.model_validate(tomllib.load(f))
