"""A fleet of simulated devices behind gateways, and the per-gateway driver the edge agent polls.

    fleet = Fleet(FleetSpec(n_gateways=2, n_devices=20, seed=1))
    labels = fleet.schedule_demo_incidents(duration_s=60)
    driver = fleet.driver("gw-01", start_ms=now_ms)   # a sensing_edge Driver

Everything is deterministic from `FleetSpec.seed`: the devices, their phases and signals, and
the demo incidents. A `FleetSpec` is a plain value, the seam for scenarios read from files.

The demo incidents (`DEMO_INCIDENTS`) are those the core raises at their grade within a
demo-length run (the live demo runs 60 s, sampling every 2 s): fire, CO, a displaced cover,
overflow, gas, SpO2 and heart rate (high and low) out of range, SOS, a fall, a flat battery
and impossible sensor values (`device.fault`, "impossible"). Left out, as they take longer
than a demo: `device.offline` (minutes of silence, `device_offline_needs_s`; scheduled
when asked for by `types` and the run is long enough), `wearable.inactivity` (3 h of
daytime stillness), `device.fault` "stuck" (30 min for a heart rate, 6 h for a room's
temperature) and "drift" (a day of baseline, then hours), and `gateway.offline` (the
transport's to simulate; see `Fleet.gateway_outages`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np

from sensing.wire import KINDS, Grade
from sensing.wire.topics import is_valid_name
from sensing_edge.drivers import SensorSample
from sensing_sim.cases import Cadence, LateReadings, Reboot, WristBang
from sensing_sim.incidents import (
    Incident,
    default_variant,
    device_offline_needs_s,
    form_of,
    kinds_of,
)
from sensing_sim.signals import HOUR_S, Signal, make_signal

DEFAULT_MIX: Final[Mapping[str, float]] = {"smoke": 0.5, "manhole": 0.25, "wearable": 0.25}
DEFAULT_AREAS: Final[tuple[str, ...]] = ("demo-a", "demo-b")
_SCHEDULE_ORDER: Final[tuple[tuple[str, str], ...]] = (
    # (type, variant), those that take longest to reach their grade (silence, ramps, hold
    # times) first: each needs, sampling every 2 s, about
    ("wearable.inactivity", ""),  # 3 h (daytime only)
    ("device.offline", ""),  # 3-6 min
    ("smoke.co", ""),  # 40 s
    ("wearable.vitals", "hr_high"),  # 35 s
    ("wearable.vitals", "hr_low"),  # 35 s
    ("manhole.overflow", ""),  # 30 s
    ("wearable.vitals", "spo2"),  # 30 s
    ("wearable.fall", ""),  # 20 s
    ("smoke.fire", ""),  # 15 s (its partner 3 s later)
    ("manhole.gas", ""),  # 15 s
    ("device.battery", ""),  # 3 readings
    ("manhole.displaced", ""),  # 5 s
    ("device.fault", "impossible"),  # 2 readings
    ("wearable.sos", ""),  # 1 reading
)
DEMO_INCIDENTS: Final[tuple[tuple[str, str], ...]] = tuple(
    (t, v) for t, v in _SCHEDULE_ORDER if t not in ("wearable.inactivity", "device.offline"))
"""(type, variant) of the demo incidents, in the order they start"""
DEMO_INCIDENT_TYPES: Final[tuple[str, ...]] = tuple(dict.fromkeys(t for t, _ in DEMO_INCIDENTS))

MIN_READINGS_IN_INCIDENT: Final = 5
"""readings of a device an incident spans at the least (the core confirms over several)"""
_QUICK_S: Final = 60.0
"""incidents needing longer than this are left out of runs too short for them (shorter ones
are cut to the run, as ever)"""

# Independent random streams of one seed (4 is the transport's).
_STREAM_LAYOUT, _STREAM_SIGNAL, _STREAM_INCIDENTS, _STREAM_CADENCE = 0, 1, 2, 5


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """What a fleet is made of. Validates itself."""

    n_gateways: int = 1
    n_devices: int = 100
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    """kind -> share of the devices (normalised)"""
    areas: tuple[str, ...] = DEFAULT_AREAS
    """gateway i is in area i mod len(areas)"""
    interval_s: float = 2.0
    """sampling interval of every device"""
    seed: int = 1
    day_start_s: float = 10 * HOUR_S
    """time of day at the run start (daily temperature cycle, daytime walks)"""
    cadences: tuple[Cadence, ...] = ()
    """gateways whose devices sample at a cadence of their own (`sensing_sim.cases.Cadence`)
    instead of `interval_s`"""

    def __post_init__(self) -> None:
        if not 1 <= self.n_gateways <= 9999:
            raise ValueError("n_gateways must be 1..9999")
        if not self.n_gateways <= self.n_devices <= 999_999:
            raise ValueError("n_devices must be at least n_gateways and at most 999999")
        unknown = set(self.mix) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kind(s) in mix: {', '.join(sorted(unknown))}")
        if any(not math.isfinite(s) or s < 0 for s in self.mix.values()) or not any(
            s > 0 for s in self.mix.values()
        ):
            raise ValueError("mix shares must be non-negative numbers, at least one positive")
        if not self.areas or not all(is_valid_name(a) for a in self.areas):
            raise ValueError("areas must be names of [A-Za-z0-9_-]{1,64}")
        if not (math.isfinite(self.interval_s) and 0.05 <= self.interval_s <= 86_400):
            raise ValueError("interval_s must be between 0.05 and 86400 seconds")
        if self.seed < 0:
            raise ValueError("seed must be non-negative")
        named = [c.gateway for c in self.cadences]
        if len(set(named)) != len(named):
            raise ValueError("a gateway has two cadences")
        known = {f"gw-{j + 1:02d}" for j in range(self.n_gateways)}
        unknown_gw = [g for g in named if g not in known]
        if unknown_gw:
            raise ValueError(f"cadences: no gateway {unknown_gw[0]!r}")

    def cadence_of(self, gateway: str) -> Cadence | None:
        return next((c for c in self.cadences if c.gateway == gateway), None)


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    kind: str
    gateway: str
    area: str
    index: int
    """position in the fleet; seeds the device's own random stream"""
    phase_s: float
    """time of the first sample after the run start; later ones follow every interval"""
    interval_s: float
    """its sampling interval: the fleet's, or its gateway's cadence's"""


@dataclass(frozen=True, slots=True)
class Gateway:
    id: str
    area: str


def kind_counts(n_devices: int, mix: Mapping[str, float]) -> dict[str, int]:
    """Split `n_devices` by the shares of `mix` (largest remainder), in KINDS order."""
    kinds = [k for k in KINDS if mix.get(k, 0.0) > 0]
    total = sum(mix[k] for k in kinds)
    exact = {k: n_devices * mix[k] / total for k in kinds}
    counts = {k: int(exact[k]) for k in kinds}
    by_remainder = sorted(kinds, key=lambda k: (-(exact[k] - counts[k]), KINDS.index(k)))
    for k in by_remainder[: n_devices - sum(counts.values())]:
        counts[k] += 1
    return counts


class Fleet:
    """Devices and gateways of a `FleetSpec`, plus the incidents scheduled on them."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng([spec.seed, _STREAM_LAYOUT])
        self.gateways: tuple[Gateway, ...] = tuple(
            Gateway(f"gw-{j + 1:02d}", spec.areas[j % len(spec.areas)])
            for j in range(spec.n_gateways)
        )
        kinds: list[str] = []
        for kind, count in kind_counts(spec.n_devices, spec.mix).items():
            kinds += [kind] * count
        order = rng.permutation(len(kinds)).tolist()
        phases = rng.uniform(0.0, spec.interval_s, len(kinds)).tolist()
        numbers = dict.fromkeys(KINDS, 0)
        devices: list[Device] = []
        slow = np.random.default_rng([spec.seed, _STREAM_CADENCE])
        for i, pick in enumerate(order):
            kind = kinds[pick]
            gw = self.gateways[i % len(self.gateways)]
            device_id = f"{kind}-{numbers[kind]:06d}"
            phase, interval = phases[i], spec.interval_s
            cadence = spec.cadence_of(gw.id) if spec.cadences else None
            if cadence is not None:
                interval = round(float(slow.uniform(*cadence.interval_s)), 1)
                phase = float(slow.uniform(0.0, interval))
            devices.append(Device(device_id, kind, gw.id, gw.area, i, phase, interval))
            numbers[kind] += 1
        self.devices: tuple[Device, ...] = tuple(devices)
        self._by_id = {d.id: d for d in devices}
        self._by_gateway: dict[str, list[Device]] = {gw.id: [] for gw in self.gateways}
        for d in devices:
            self._by_gateway[d.gateway].append(d)
        self._incidents: list[Incident] = []
        self._incidents_by_device: dict[str, list[Incident]] = {}
        self._outages: dict[str, list[Incident]] = {}
        self._nuisances: list[WristBang] = []
        self._effects_by_device: dict[str, list[Incident | WristBang]] = {}
        self._reboots: list[Reboot] = []
        self._late: list[LateReadings] = []

    def __repr__(self) -> str:
        return f"Fleet({self.spec!r}, incidents={len(self._incidents)})"

    def device(self, device_id: str) -> Device:
        return self._by_id[device_id]

    def devices_of(self, gateway: str) -> list[Device]:
        return list(self._by_gateway.get(gateway, ()))

    def gateway(self, gateway_id: str) -> Gateway:
        for gw in self.gateways:
            if gw.id == gateway_id:
                return gw
        raise KeyError(gateway_id)

    def signal(self, device: Device) -> Signal:
        """A fresh quiet signal of the device, at its start."""
        rng = np.random.default_rng([self.spec.seed, _STREAM_SIGNAL, device.index])
        return make_signal(device.kind, rng, self.spec.day_start_s)

    # -- incidents (the labels) ----------------------------------------------------------------

    @property
    def incidents(self) -> tuple[Incident, ...]:
        return tuple(self._incidents)

    def incidents_of(self, device_id: str) -> Sequence[Incident]:
        return self._incidents_by_device.get(device_id, ())

    def gateway_outages(self, gateway_id: str) -> Sequence[Incident]:
        """The `gateway.offline` incidents of a gateway: when its link is down."""
        return self._outages.get(gateway_id, ())

    def effects_of(self, device_id: str) -> Sequence[Incident | WristBang]:
        """What changes the device's readings: its incidents and nuisances."""
        return self._effects_by_device.get(device_id, ())

    def busy_devices(self) -> set[str]:
        """Devices an incident, a nuisance or a reboot is scripted on."""
        return ({i.device for i in self._incidents} | {n.device for n in self._nuisances}
                | {r.device for r in self._reboots} | {late.device for late in self._late})

    # -- field cases that are no incident (sensing_sim.cases) ----------------------------------

    @property
    def nuisances(self) -> tuple[WristBang, ...]:
        return tuple(self._nuisances)

    @property
    def reboots(self) -> tuple[Reboot, ...]:
        return tuple(self._reboots)

    @property
    def late_readings(self) -> tuple[LateReadings, ...]:
        return tuple(self._late)

    def _own(self, device_id: str, gateway: str, kinds: Sequence[str] = KINDS) -> Device:
        device = self._by_id.get(device_id)
        if device is None:
            raise ValueError(f"no device {device_id!r} in the fleet")
        if device.kind not in kinds:
            raise ValueError(f"{device.id} is a {device.kind} device, not {' or '.join(kinds)}")
        if device.gateway != gateway:
            raise ValueError(f"{device.id} is on {device.gateway}")
        return device

    def add_nuisance(self, nuisance: WristBang) -> WristBang:
        """Script a nuisance (no label: an alert it causes is a false positive)."""
        device = self._own(nuisance.device, nuisance.gateway, (nuisance.kind,))
        if nuisance.area != device.area:
            raise ValueError(f"{device.id} is in {device.area}")
        self._nuisances.append(nuisance)
        self._effects_by_device.setdefault(device.id, []).append(nuisance)
        return nuisance

    def add_reboot(self, reboot: Reboot) -> Reboot:
        """Script a device's reboot (no label: its silence is no outage)."""
        device = self._own(reboot.device, reboot.gateway)
        reboot.check_interval(device.kind, device.interval_s)
        self._reboots.append(reboot)
        return reboot

    def add_late_readings(self, late: LateReadings) -> LateReadings:
        """Hold a device's readings of a window back until `late.arrive_s`."""
        self._own(late.device, late.gateway)
        self._late.append(late)
        return late

    def reboots_of(self, gateway_id: str) -> list[Reboot]:
        return [r for r in self._reboots if r.gateway == gateway_id]

    def late_readings_of(self, gateway_id: str) -> list[LateReadings]:
        return [late for late in self._late if late.gateway == gateway_id]

    def add_incident(self, incident: Incident) -> Incident:
        """Schedule an incident; its device must be in the fleet and of a kind the incident
        can happen on. What depends on the device's kind is settled (`Incident.for_kind`).

        A `gateway.offline` incident is on a gateway: its device is the gateway's id (given a
        device under the gateway instead, the incident is moved to its gateway).
        Returns the incident as scheduled."""
        if incident.type == "gateway.offline":
            return self._add_outage(incident)
        device = self._by_id.get(incident.device)
        if device is None:
            raise ValueError(f"no device {incident.device!r} in the fleet")
        if device.kind not in incident.kinds:
            raise ValueError(f"{incident.label} cannot happen on {device.kind} {device.id}")
        if (incident.gateway, incident.area) != (device.gateway, device.area):
            raise ValueError(f"{device.id} is on {device.gateway} in {device.area}")
        incident = incident.for_kind(device.kind)
        self._incidents.append(incident)
        self._incidents_by_device.setdefault(device.id, []).append(incident)
        self._effects_by_device.setdefault(device.id, []).append(incident)
        return incident

    def _add_outage(self, incident: Incident) -> Incident:
        device = self._by_id.get(incident.device)
        if device is not None and device.gateway == incident.gateway:
            incident = replace(incident, device=device.gateway)
        if incident.device != incident.gateway:
            raise ValueError(f"a gateway.offline incident is on a gateway: its device "
                             f"{incident.device!r} must be its gateway {incident.gateway!r}")
        try:
            gw = self.gateway(incident.gateway)
        except KeyError:
            raise ValueError(f"no gateway {incident.gateway!r} in the fleet") from None
        if incident.area != gw.area:
            raise ValueError(f"{gw.id} is in {gw.area}")
        self._incidents.append(incident)
        self._outages.setdefault(gw.id, []).append(incident)
        return incident

    def length_needed_s(self, type_: str, variant: str = "", kind: str | None = None,
                        channel: str = "", interval_s: float | None = None) -> float:
        """How long an incident must last for the core to raise it, at this fleet's interval
        (or `interval_s`, a device's own): the type's typical length, but at least
        `MIN_READINGS_IN_INCIDENT` readings of it (a detector reading every minute sees a
        one-minute fire once), or for `device.offline` its silence (whichever is longest).
        """
        variant = variant or default_variant(type_)
        interval = self.spec.interval_s if interval_s is None else interval_s
        forms = [form_of(type_, variant, k, channel) for k in (
            (kind,) if kind else kinds_of(type_, variant, channel))]
        length = max(f.length_s for f in forms if f is not None)
        if type_ != "gateway.offline":
            length = max(length, MIN_READINGS_IN_INCIDENT * interval)
        if type_ == "device.offline":
            length = max(length, device_offline_needs_s(interval, kind))
        return length

    def schedule_demo_incidents(
        self, duration_s: float, types: Iterable[str] = DEMO_INCIDENT_TYPES
    ) -> list[Incident]:
        """One incident of each type in `types` (of each variant in DEMO_INCIDENTS: heart rate
        high and low besides SpO2), each on its own device, spread over the run.

        They start after ~5 s (less in runs under a minute) and end before the run ends.
        Types whose kind of device the fleet lacks are left out, and so are those the core
        cannot raise before the run ends (a `device.offline` needs minutes of silence).
        Returns the new labels.
        """
        lead = min(5.0, 0.1 * duration_s)
        last_end = duration_s - min(2.0, 0.05 * duration_s)
        if last_end - lead < 1.0:
            raise ValueError("the run is too short for demo incidents (under ~1.2 s)")
        wanted = list(dict.fromkeys(types))
        order = [(t, v) for t, v in _SCHEDULE_ORDER if t in wanted and (
            (t, v) in DEMO_INCIDENTS or t not in DEMO_INCIDENT_TYPES)]
        order += [(t, default_variant(t)) for t in wanted if t not in {t for t, _ in order}]
        rng = np.random.default_rng([self.spec.seed, _STREAM_INCIDENTS])
        used = self.busy_devices()
        free = [d for d in self.devices if d.id not in used]
        placeable: list[tuple[str, str, Device]] = []
        for type_, variant in order:
            if type_ == "gateway.offline":
                continue  # on a gateway, with no reading of its own to show
            kinds = kinds_of(type_, variant)
            candidates = [d for d in free if d.kind in kinds]
            if not candidates:
                continue
            device = candidates[int(rng.integers(len(candidates)))]
            needed = self.length_needed_s(type_, variant, device.kind,
                                          interval_s=device.interval_s)
            if needed > _QUICK_S and lead + needed > last_end:
                continue  # the core could not raise it before the run ends
            free.remove(device)
            placeable.append((type_, variant, device))
        spread = 0.6 * (last_end - lead)
        new: list[Incident] = []
        for n, (type_, variant, device) in enumerate(placeable):
            start = round(lead + spread * n / max(1, len(placeable)), 3)
            end = round(min(start + self.length_needed_s(
                type_, variant, device.kind, interval_s=device.interval_s), last_end), 3)
            form = form_of(type_, variant, device.kind)
            assert form is not None
            lo, hi = form.levels
            incident = Incident.of(
                type_, device.id, device.gateway, device.area, start, end,
                level=round(float(rng.uniform(lo, hi)), 1) if hi > lo else lo,
                variant=variant, kind=device.kind,
            )
            if type_ == "smoke.fire":
                # A second detector under the same gateway catches the same fire a little
                # later: the core confirms it, and both alerts are critical.
                partner = next((d for d in free if d.kind == "smoke"
                                and d.gateway == device.gateway), None)
                if partner is not None:
                    free.remove(partner)
                    incident = replace(incident, grade=Grade.CRITICAL)
                    second = replace(incident, device=partner.id,
                                     start_s=min(round(start + 3.0, 3), end - 1.0))
                    new.append(self.add_incident(second))
            new.append(self.add_incident(incident))
        return new

    # -- driving -------------------------------------------------------------------------------

    def driver(self, gateway: str, start_ms: int | None = None) -> FleetDriver:
        """A fresh driver for the devices of one gateway; see `FleetDriver`."""
        self.gateway(gateway)
        return FleetDriver(self, gateway, start_ms)


class FleetDriver:
    """The `sensing_edge.drivers.Driver` of one gateway's simulated devices.

    Time runs from `start_ms` (the first poll's `now_ms` if not given): a device samples at
    `phase + k * interval` seconds from then. A poll returns one sample per device that was
    due, stamped `ts = now_ms`; a device whose slots were all missed by a late poll samples
    once and carries on with its next future slot, as a real sensor would. A device silenced
    by a `device.offline` incident sends nothing while it lasts.
    """

    def __init__(self, fleet: Fleet, gateway: str, start_ms: int | None = None) -> None:
        self.fleet = fleet
        self.gateway = gateway
        self.start_ms = start_ms
        self.samples_taken = 0
        self._devices = fleet.devices_of(gateway)
        self._signals = [fleet.signal(d) for d in self._devices]
        self._last_t: list[float | None] = [None] * len(self._devices)
        self._intervals = [d.interval_s for d in self._devices]
        self._due: list[tuple[float, int]] = [(d.phase_s, i) for i, d in enumerate(self._devices)]
        heapq.heapify(self._due)

    @property
    def devices(self) -> Sequence[Device]:
        return self._devices

    def poll(self, now_ms: int) -> list[SensorSample]:
        if self.start_ms is None:
            self.start_ms = now_ms
        t_now = (now_ms - self.start_ms) / 1000.0
        out: list[SensorSample] = []
        while self._due and self._due[0][0] <= t_now:
            t_slot, i = heapq.heappop(self._due)
            effects = self.fleet.effects_of(self._devices[i].id)
            if any(e.silences(t_slot) for e in effects):
                self._signals[i].sample(t_slot)  # measures on, sends nothing
            else:
                out.append(self._sample(i, t_slot, now_ms, effects))
            interval = self._intervals[i]
            missed = math.floor((t_now - t_slot) / interval)
            heapq.heappush(self._due, (t_slot + (missed + 1) * interval, i))
        self.samples_taken += len(out)
        return out

    def _sample(self, i: int, t_s: float, now_ms: int,
                effects: Sequence[Incident | WristBang]) -> SensorSample:
        device = self._devices[i]
        values, battery = self._signals[i].sample(t_s)
        since, self._last_t[i] = self._last_t[i], t_s
        for effect in effects:
            values, battery = effect.apply(t_s, values, battery, since)
        return SensorSample(device.id, device.kind, now_ms, values, battery)
