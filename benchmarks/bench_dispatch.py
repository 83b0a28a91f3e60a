"""Dispatch under load (issue 14, point 9), through Mosquitto, `sensing run` and VictoriaMetrics
with a generated directory (areas, a grid worker, a volunteer and a duty officer per community,
street, district and city command, residents with one device and a relative each).

1. simultaneous: `--alerts` residents (half wristbands, half smoke detectors) across
   `--communities` communities, each community's grid worker reached over MQTT and by webhook
   (one loopback receiver). Every device has reported (a smoke detector twice, the second time
   already smoky), then every device alarms in one burst (an SOS; a detector's second smoky
   reading, which makes the fire). Per alert: the time from the publish of its alarm reading to
   its first dispatch message naming a responder on sensing/v1/dispatch/#, and to its webhook
   at the receiver (p50 / p99 / max, and how many arrived).
2. escalation: a fleet (bench_e2e's) ingests 100-reading JSON arrays at a fixed offered rate
   for a fixed time, once without open cases, then `--cases` wristbands press SOS and the
   cases nobody takes climb a chain whose steps come every few seconds and repeat every
   `--renotify-s`; the same load again. stored/s (counted in VictoriaMetrics) and the core's
   CPU per reading, each time; the escalation's lateness (a case's `notified` message's `ts`
   minus when its step fell due), rounds skipped, notifications sent; the core's CPU with the
   cases open and nothing ingested.

    .venv/bin/python benchmarks/bench_dispatch.py [--only simultaneous,escalation] [--quick]
        [--json] [--alerts 1000] [--cases 10000] [--ingest-rate 50000] ...

Beside each run: the machine's other load (CPU of processes the benchmark did not start, from
/proc) and the load average. About four minutes with the defaults on the 2-core development
machine; figures, not verdicts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from e2e.fleet import PER_MESSAGE, ROUND_MS, Fleet, FleetError, Message, Phase
from e2e.mqtt_frames import DISCONNECT
from e2e.pipelines import BENCH_CORE_ENV, READING_SEQ
from e2e.procstat import cpu_seconds
from e2e.publisher import DEFAULT_WINDOW, _connect, build_stream, send
from e2e.publishing import Offer, PublisherGroup
from e2e.store import count_samples
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.table import Table

from sensing.services import LOOPBACK, Mosquitto, VictoriaMetrics
from sensing.testing.processes import CoreProcess
from sensing.testing.webhook_receiver import WebhookReceiver
from sensing.wire import topics

SCENARIOS = ("simultaneous", "escalation")
COMMUNITIES_PER_STREET = 5
QUICK = {"alerts": 60, "communities": 6, "cases": 300, "fleet_devices": 3_000,
         "fleet_gateways": 30, "ingest_rate": 4_000.0, "ingest_seconds": 4.0,
         "open_seconds": 2.0, "idle_seconds": 5.0}
POLL_S = 0.25
STALLED_CORES = 0.3
"""a core behind its load uses more CPU than this: with less, it waits on something"""
STOP_S = 15.0
"""a core that does not stop on SIGTERM in this long is killed (a stalled one does not)"""
Progress = Callable[[str], None]


# -- the directory -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    whom: str
    after_s: float


@dataclass(frozen=True, slots=True)
class Town:
    """`residents` residents, one device each, spread evenly over `communities` communities
    of COMMUNITIES_PER_STREET to a street, one gateway each; every community has devices of
    each kind."""

    communities: int
    residents: int
    kinds: tuple[str, ...]

    @staticmethod
    def community(c: int) -> str:
        return f"community-{c:03d}"

    @staticmethod
    def gateway(c: int) -> str:
        return f"gw-community-{c:03d}"

    def community_of(self, i: int) -> int:
        return i % self.communities

    def kind(self, i: int) -> str:
        return self.kinds[i // self.communities % len(self.kinds)]

    def device(self, i: int) -> str:
        return f"{self.kind(i)}-r{i:06d}"

    def topic(self, c: int) -> bytes:
        return topics.readings_topic(self.community(c), self.gateway(c)).encode()


def _contacts(*urls: str) -> str:
    """A TOML inline array of contacts: MQTT, and a webhook per URL."""
    hooks = "".join(f', {{ channel = "webhook", url = {json.dumps(u)} }}' for u in urls)
    return f'[{{ channel = "mqtt" }}{hooks}]'


def directory_toml(town: Town, hook_url: str | None, steps: tuple[Step, ...] = (),
                   renotify_s: float = 10.0) -> str:
    """The town's directory; with `steps`, a chain for wearable.sos that beats the shipped
    one (every step re-notified every `renotify_s` until somebody takes the case)."""
    streets = -(-town.communities // COMMUNITIES_PER_STREET)
    out = ['timezone = "UTC"', 'default_area = "bench-district"', "areas = [",
           '  { id = "bench-city", level = "city" },',
           '  { id = "bench-district", level = "district", parent = "bench-city" },']
    out += [f'  {{ id = "street-{s:02d}", level = "street", parent = "bench-district" }},'
            for s in range(streets)]
    out += [f'  {{ id = "{town.community(c)}", level = "community", '
            f'parent = "street-{c // COMMUNITIES_PER_STREET:02d}" }},'
            for c in range(town.communities)]
    out.append("]")

    def responder(pid: str, role: str, area: str, contacts: str) -> None:
        out.extend(["[[responders]]", f'id = "{pid}"', f'roles = ["{role}"]',
                    f'areas = ["{area}"]', f"contacts = {contacts}"])

    responder("city-cc", "city_command", "bench-city", _contacts())
    responder("district-cc", "district_command", "bench-district", _contacts())
    for s in range(streets):
        responder(f"street-{s:02d}-cc", "street_command", f"street-{s:02d}", _contacts())
    for c in range(town.communities):
        area = town.community(c)
        hooks = (f"{hook_url}/grid-{c:03d}",) if hook_url else ()
        responder(f"grid-{c:03d}", "grid_worker", area, _contacts(*hooks))
        responder(f"volunteer-{c:03d}", "volunteer", area, _contacts())
        responder(f"duty-{c:03d}", "duty_officer", area, _contacts())
    for i in range(town.residents):
        out.extend(["[[residents]]", f'id = "res-{i:06d}"',
                    f'area = "{town.community(town.community_of(i))}"',
                    f'devices = ["{town.device(i)}"]',
                    f'relatives = [{{ id = "rel-{i:06d}", contacts = {_contacts()} }}]'])
    if steps:
        out += ["[policy.chains.bench_escalation]",
                'description = "the benchmark: nobody takes, every step repeats"', "steps = ["]
        out += [f'  {{ whom = "{s.whom}", after_s = {s.after_s:g}, renotify_s = '
                f"{renotify_s:g} }}," for s in steps]
        out += ["]", "[[policy.rules]]", 'type = "wearable.sos"', 'chain = "bench_escalation"']
    return "\n".join(out) + "\n"


# -- readings ------------------------------------------------------------------------------

QUIET = {"wearable": {"heart_rate": 72.0, "spo2": 97.0, "accel_g": 1.0, "steps": 5.0,
                      "sos": 0.0},
         "smoke": {"obscuration": 0.15, "temp_c": 22.0, "co_ppm": 2.0}}
SOS = {**QUIET["wearable"], "sos": 1.0}
SMOKY = {**QUIET["smoke"], "obscuration": 12.0}
"""over the major level (8 %/m) of smoke.fire, which needs two readings in a row"""


def _reading(town: Town, i: int, seq: int, ts: int, values: dict[str, float]) -> bytes:
    return orjson.dumps({"device": town.device(i), "kind": town.kind(i), "seq": seq,
                         "ts": ts, "values": values, "battery": 0.9})


def warm_up_rounds(town: Town, now_ms: int) -> list[list[Message]]:
    """Two rounds of every device, as JSON arrays per community: quiet (seq 0, 20 s ago),
    then quiet again but smoky for the smoke detectors (seq 1, 10 s ago: not yet an alarm).
    Sent one after the other, so the second takes the core's JSON lane as the alarms do
    (the first teaches the core the gateways) and nothing is left to compile for them."""
    out = []
    for seq, ts in ((0, now_ms - 20_000), (1, now_ms - 10_000)):
        msgs = []
        for c in range(town.communities):
            mine = [_reading(town, i, seq, ts, SMOKY if seq and town.kind(i) == "smoke"
                             else QUIET[town.kind(i)])
                    for i in range(c, town.residents, town.communities)]
            if mine:
                msgs.append(Message(town.topic(c), b"[" + b",".join(mine) + b"]", len(mine)))
        out.append(msgs)
    return out


def alarm_messages(town: Town, now_ms: int) -> list[Message]:
    """One message per device, its alarm: an SOS, or a detector's second smoky reading."""
    return [Message(town.topic(town.community_of(i)), _reading(
        town, i, 2, now_ms, SMOKY if town.kind(i) == "smoke" else SOS), 1, town.device(i))
        for i in range(town.residents)]


def warm_up(town: Town, port: int, store: VictoriaMetrics, core: CoreProcess) -> None:
    expected = 0
    for msgs in warm_up_rounds(town, int(time.time() * 1000)):
        publish(port, msgs)
        expected += sum(m.readings for m in msgs)
        if not _wait(lambda n=expected: _stored(store) >= n, 120):  # type: ignore[misc]
            raise RuntimeError(f"the warm-up was not stored: {core.log_tail()}")


def publish(port: int, msgs: list[Message], rate: float | None = None) -> dict[str, int]:
    """Publish `msgs` at QoS 1 on one raw connection (every frame built first), as fast as
    the broker takes them or at `rate` readings/s, until every PUBACK is in; the wall time
    (ms) each alarm's frame was let go, by device."""
    stream = build_stream(msgs)
    sock = _connect(port, f"bench-dispatch-{os.getpid()}-{time.monotonic_ns()}")
    try:
        *_, alarms = send(sock, stream, rate, time.time(), DEFAULT_WINDOW)
        sock.setblocking(True)
        sock.sendall(DISCONNECT)
    finally:
        sock.close()
    return alarms


# -- what the responders and operators hear ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notified:
    case_id: str
    step: int
    round: int
    ts: int
    at: float
    """wall time (s) it arrived here"""


@dataclass(slots=True)
class Heard:
    first: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    """device -> (arrival, message) of its first dispatch message naming a responder"""
    notices: list[float] = field(default_factory=list)
    """arrival of each dispatch message naming a responder"""
    opened: dict[str, int] = field(default_factory=dict)
    """case id -> the `ts` of its `opened` message"""
    notified: list[Notified] = field(default_factory=list)


class Watch:
    """An operator's client on sensing/v1/dispatch/# and sensing/v1/cases/#; it keeps only
    what the figures need (a run sends hundreds of thousands of messages)."""

    def __init__(self, port: int, first_by_device: bool) -> None:
        """`first_by_device`: read every dispatch message for its device (else only count
        them: a watch that falls behind makes every arrival late)."""
        self.heard = Heard()
        self._by_device = first_by_device
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"bench-dispatch-watch-{os.getpid()}")
        self._client.on_connect = lambda c, *_: c.subscribe(
            [(topics.DISPATCH_FILTER, 1), (topics.CASES_FILTER, 1)])
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(LOOPBACK, port)
        self._client.loop_start()
        if not self._subscribed.wait(15):
            self.stop()
            raise RuntimeError("the watch did not subscribe in 15 s")

    def _on_message(self, client: mqtt.Client, userdata: object,
                    msg: mqtt.MQTTMessage) -> None:
        at = time.time()
        payload = msg.payload
        if msg.topic.startswith(topics.DISPATCH_FILTER[:-1]):
            if b'"responder"' not in payload:
                return
            doc = orjson.loads(payload) if self._by_device else None
            with self._lock:
                self.heard.notices.append(at)
                if doc is not None:
                    self.heard.first.setdefault(str(doc.get("device")), (at, doc))
            return
        if b'"opened"' not in payload and b'"notified"' not in payload:
            return
        doc = orjson.loads(payload)
        with self._lock:
            if doc.get("event") == "opened":
                self.heard.opened[str(doc["case_id"])] = int(doc["ts"])
            elif doc.get("event") == "notified":
                self.heard.notified.append(Notified(str(doc["case_id"]), int(doc["step"]),
                                                    int(doc["round"]), int(doc["ts"]), at))

    def count(self, what: str) -> int:
        with self._lock:
            return len(getattr(self.heard, what))

    def snapshot(self) -> Heard:
        with self._lock:
            h = self.heard
            return Heard(dict(h.first), list(h.notices), dict(h.opened), list(h.notified))

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# -- the machine ---------------------------------------------------------------------------


def _busy_cpu_s() -> float:
    """CPU time the whole machine has been busy (not idle, not waiting for I/O), seconds."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Mark:
    t: float
    busy: float
    ours: float
    """this process and everything it started (broker, store, core, publishers)"""
    core: float


class Meter:
    def __init__(self, core: Callable[[], list[int]]) -> None:
        self._core = core

    def mark(self) -> Mark:
        return Mark(time.time(), _busy_cpu_s(), cpu_seconds([os.getpid()]),
                    cpu_seconds(self._core()))

    @staticmethod
    def other_cores(a: Mark, b: Mark) -> float:
        """Cores busy with processes the benchmark did not start, on average."""
        return max(0.0, (b.busy - a.busy) - (b.ours - a.ours)) / max(b.t - a.t, 1e-6)


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _pcts(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    p50, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 99])
    return {"p50_ms": round(float(p50), 1), "p99_ms": round(float(p99), 1),
            "max_ms": round(float(max(values)), 1)}


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(POLL_S)
    return predicate()


def _core(broker: Mosquitto, store: VictoriaMetrics, root: Path, directory: Path
          ) -> CoreProcess:
    env = dict(BENCH_CORE_ENV) | {"SENSING_DIRECTORY_FILE": str(directory)}
    core = CoreProcess(broker.port, store.url, root / "core-state", client_id="sensing-core",
                       env=env)
    core.start(timeout=300)
    return core


def _stored(store: VictoriaMetrics) -> int:
    return count_samples(store, READING_SEQ)


# -- 1. simultaneous critical alerts -------------------------------------------------------


def simultaneous(args: argparse.Namespace, root: Path, progress: Progress) -> dict[str, Any]:
    town = Town(args.communities, args.alerts, ("wearable", "smoke"))
    root.mkdir(parents=True, exist_ok=True)
    with Mosquitto.start(root) as broker, VictoriaMetrics.start(root) as store, \
            WebhookReceiver() as hook:
        directory = root / "directory.toml"
        directory.write_text(directory_toml(town, hook.url("")))
        watch = Watch(broker.port, first_by_device=True)
        progress("simultaneous: starting the core")
        core = _core(broker, store, root, directory)
        try:
            meter = Meter(lambda: [core.pid] if core.running else [])
            progress("simultaneous: every device reports")
            warm_up(town, broker.port, store, core)
            progress(f"simultaneous: {town.residents:,} alarms at once")
            before = meter.mark()
            alarms = publish(broker.port, alarm_messages(town, int(time.time() * 1000)))
            _wait(lambda: watch.count("first") >= town.residents
                  and len(hook.requests()) >= town.residents, args.timeout)
            after = meter.mark()
            requests = hook.requests()
            heard = watch.snapshot()
        finally:
            core.stop(timeout=STOP_S)
            watch.stop()
    return _simultaneous_figures(town, alarms, heard, requests, before, after)


def _simultaneous_figures(town: Town, alarms: dict[str, int], heard: Heard,
                          requests: list[Any], before: Mark, after: Mark) -> dict[str, Any]:
    wall = time.time() - time.monotonic()
    hooks: dict[str, float] = {}
    for r in requests:
        hooks.setdefault(str(orjson.loads(r.body).get("device")), r.at + wall)
    first = {d: heard.first[d] for d in alarms if d in heard.first}
    dispatch = [at * 1000 - alarms[d] for d, (at, _) in first.items()]
    raised = [int(doc["ts_raised"]) - alarms[d] for d, (_, doc) in first.items()]
    webhook = [hooks[d] * 1000 - alarms[d] for d in alarms if d in hooks]
    keys = Counter(r.key for r in requests)
    return {
        "alerts": len(alarms), "communities": town.communities,
        "kinds": dict(Counter(d.split("-")[0] for d in alarms)),
        "dispatch": {"arrived": len(dispatch), **_pcts(dispatch)},
        "webhook": {"arrived": len(webhook), **_pcts(webhook),
                    "repeated_keys": sum(n - 1 for n in keys.values() if n > 1)},
        "raised": _pcts([float(x) for x in raised]),
        "first_roles": dict(Counter(str(doc.get("role")) for _, doc in first.values())),
        "first_grades": dict(Counter(str(doc.get("grade")) for _, doc in first.values())),
        "core_cpu_s": round(after.core - before.core, 2),
        "seconds": round(after.t - before.t, 2),
        "other_load_cores": round(Meter.other_cores(before, after), 2),
    }


# -- 2. open cases escalating while the core ingests ---------------------------------------


@dataclass(frozen=True, slots=True)
class Ingest:
    offer: Offer
    t_done: float
    """when the store held every reading of the phase (first poll that saw it)"""
    stored: int
    start: Mark
    end: Mark

    def figures(self, readings: int) -> dict[str, Any]:
        seconds = max(self.t_done - self.offer.t_first, 1e-6)
        cpu = self.end.core - self.start.core
        return {"offered_per_s": round(self.offer.offered_per_s),
                "stored": self.stored, "complete": self.stored >= readings,
                "seconds": round(seconds, 2), "stored_per_s": round(self.stored / seconds),
                "core_cpu_s": round(cpu, 2), "core_cpu_cores": round(cpu / seconds, 3),
                "core_cpu_us_per_reading": round(cpu / self.stored * 1e6, 2)
                if self.stored else None,
                "other_load_cores": round(Meter.other_cores(self.start, self.end), 2)}


def _last_gateway(phase: Phase) -> tuple[str, int]:
    """The gateway whose message the phase sends last, and how many readings it sends in the
    phase: the core stores in the order it receives, so once these are in the store, all
    are (counting one gateway's series is cheap; counting all takes the store seconds)."""
    fleet = phase.fleet
    per_device = phase.readings_per_device().reshape(fleet.gateways, -1)
    in_last_round = (per_device > phase.rounds - 1).sum(axis=1)
    messages = -(-in_last_round // PER_MESSAGE[phase.payload])
    g = int(np.flatnonzero(messages == messages.max())[-1])
    return fleet.gateway_name(g), int(per_device[g].sum())


def _ingest(group: PublisherGroup, store: VictoriaMetrics, meter: Meter,
            timeout: float) -> Ingest:
    """Offer the group's phase and wait until the store holds it (or `timeout`); the exact
    count is taken after the clock stopped."""
    gateway, expected = _last_gateway(group.phase)
    last = f'{{__name__="reading_seq",gateway="{gateway}"}}'
    before, before_last = _stored(store), count_samples(store, last)
    start = meter.mark()
    group.go()
    offer: Offer | None = None
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(POLL_S)
        if offer is None and group.poll_done():
            offer = group.results(60)
        if offer is not None and count_samples(store, last) - before_last >= expected:
            break
    end = meter.mark()
    if offer is None:
        offer = group.results(60)
    return Ingest(offer, end.t, _stored(store) - before, start, end)


@dataclass(frozen=True, slots=True)
class Schedule:
    steps: tuple[Step, ...]
    renotify_ms: int

    def due_ms(self, opened: int, step: int, rnd: int) -> int:
        return opened + int(self.steps[step].after_s * 1000) + rnd * self.renotify_ms

    def rounds_due(self, opened: int, step: int, t0: int, t1: int) -> range:
        """The rounds of `step` falling due in [t0, t1)."""
        first = opened + int(self.steps[step].after_s * 1000)
        lo = max(0, -(-(t0 - first) // self.renotify_ms))
        hi = max(0, -(-(t1 - first) // self.renotify_ms))
        return range(lo, hi)


def lateness(schedule: Schedule, heard: Heard, t0: float, t1: float) -> dict[str, Any]:
    """Steps that fell due in [t0, t1) (wall s): how late their `notified` messages were (by
    their ts, and by their arrival here), and how many rounds were never notified (the planner
    sends only the latest round of a step that fell behind)."""
    lo, hi = int(t0 * 1000), int(t1 * 1000)
    by_ts: list[float] = []
    by_arrival: list[float] = []
    seen: set[tuple[str, int, int]] = set()
    for n in heard.notified:
        opened = heard.opened.get(n.case_id)
        if opened is None:
            continue
        seen.add((n.case_id, n.step, n.round))
        due = schedule.due_ms(opened, n.step, n.round)
        if lo <= due < hi:
            by_ts.append(float(n.ts - due))
            by_arrival.append(n.at * 1000 - due)
    expected = skipped = 0
    for case_id, opened in heard.opened.items():
        for step in range(len(schedule.steps)):
            for rnd in schedule.rounds_due(opened, step, lo, hi):
                expected += 1
                skipped += (case_id, step, rnd) not in seen
    return {"rounds_due": expected, "notified": len(by_ts), "skipped": skipped,
            "late": _pcts(by_ts), "late_on_arrival": _pcts(by_arrival)}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _idle(schedule: Schedule, heard: Heard, start: Mark, end: Mark) -> dict[str, Any]:
    """The cases escalating with nothing ingested: the core's CPU for it, per round."""
    seconds = max(end.t - start.t, 1e-6)
    late = lateness(schedule, heard, start.t, end.t)
    cpu = end.core - start.core
    return {"seconds": round(seconds, 2), "core_cpu_cores": round(cpu / seconds, 3),
            "notified_per_s": round(late["notified"] / seconds),
            "core_cpu_ms_per_round": round(cpu / late["notified"] * 1000, 3)
            if late["notified"] else None,
            "other_load_cores": round(Meter.other_cores(start, end), 2), **late}


def escalation(args: argparse.Namespace, root: Path, progress: Progress) -> dict[str, Any]:
    town = Town(args.communities, args.cases, ("wearable",))
    schedule = Schedule(args.steps, int(args.renotify_s * 1000))
    fleet = args.fleet
    n = int(args.ingest_rate * args.ingest_seconds)
    rounds = -(-n // fleet.devices)
    t0 = int(time.time() * 1000) - (3 + 2 * rounds) * ROUND_MS
    root.mkdir(parents=True, exist_ok=True)
    with Mosquitto.start(root) as broker, VictoriaMetrics.start(root) as store, \
            WebhookReceiver() as hook:
        directory = root / "directory.toml"
        directory.write_text(directory_toml(
            town, hook.url("") if args.escalation_webhooks else None, args.steps,
            args.renotify_s))
        watch = Watch(broker.port, first_by_device=False)
        progress("escalation: starting the core; building the payloads")
        groups = [PublisherGroup(Phase(fleet, "array", fleet.devices, 0, t0), broker.port, 1)]
        groups += [PublisherGroup(Phase(fleet, "array", n, 1 + k * rounds, t0), broker.port, 1,
                                  rate=args.ingest_rate) for k in range(2)]
        core: CoreProcess | None = None
        try:
            core = _core(broker, store, root, directory)
            running = core
            meter = Meter(lambda: [running.pid] if running.running else [])
            for g in groups:
                g.wait_ready()
            progress("escalation: every device reports")
            warm_up(town, broker.port, store, core)
            warm = _ingest(groups[0], store, meter, args.timeout)
            if not warm.stored >= fleet.devices:
                raise RuntimeError(f"the warm-up was not stored: {core.log_tail()}")
            progress(f"escalation: ingest {n:,} readings at {args.ingest_rate:,.0f}/s, "
                     "no cases open")
            without = _ingest(groups[1], store, meter, args.timeout)
            progress(f"escalation: {town.residents:,} SOS over {args.open_seconds:g} s")
            publish(broker.port, alarm_messages(town, int(time.time() * 1000)),
                    rate=town.residents / args.open_seconds)
            if not _wait(lambda: watch.count("opened") >= town.residents, args.timeout):
                raise RuntimeError(f"only {watch.count('opened'):,} of {town.residents:,} "
                                   "cases opened")
            progress(f"escalation: {town.residents:,} cases open, no ingest")
            idle_start = meter.mark()
            time.sleep(args.idle_seconds)
            idle_end = meter.mark()
            progress(f"escalation: ingest {n:,} readings at {args.ingest_rate:,.0f}/s, "
                     f"{town.residents:,} cases open")
            loaded = _ingest(groups[2], store, meter, args.timeout)
            # a round not notified within one re-notify interval never will be: the next
            # round supersedes it
            time.sleep(args.renotify_s)
            heard = watch.snapshot()
            hooks = len(hook.requests())
        finally:
            for g in groups:
                g.close()
            if core is not None:
                core.stop(timeout=STOP_S)
            watch.stop()
    a, b = without.figures(n), loaded.figures(n)
    notices = np.asarray(heard.notices)
    in_load = int(((notices >= loaded.offer.t_first) & (notices < loaded.t_done)).sum())
    return {
        "cases": len(heard.opened), "readings_per_phase": n,
        "fleet": {"devices": fleet.devices, "gateways": fleet.gateways},
        "chain": [{"whom": s.whom, "after_s": s.after_s, "renotify_s": args.renotify_s}
                  for s in args.steps],
        "without_cases": a, "with_cases": b,
        "stored_ratio": round(b["stored_per_s"] / max(a["stored_per_s"], 1), 3),
        "cpu_per_reading_ratio": _ratio(b["core_cpu_us_per_reading"],
                                        a["core_cpu_us_per_reading"]),
        "idle": _idle(schedule, heard, idle_start, idle_end),
        "during_ingest": lateness(schedule, heard, loaded.offer.t_first, loaded.t_done),
        "notifications": {"total": len(heard.notices), "during_ingest": in_load,
                          "per_s_during_ingest": round(in_load / max(
                              loaded.t_done - loaded.offer.t_first, 1e-6)),
                          "webhooks": hooks},
    }


# -- the report ----------------------------------------------------------------------------


def _f(x: Any, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}" if isinstance(x, int | float) else str(x)


def print_report(console: Console, doc: dict[str, Any]) -> None:
    console.print(f"load average at start {doc['machine']['loadavg_start']}, at end "
                  f"{doc['machine']['loadavg_end']}; {doc['machine']['cpus']} CPUs; "
                  f"{doc['settings']['seconds']} s")
    s = doc.get("simultaneous")
    if s:
        t = Table(title=f"{s['alerts']:,} simultaneous critical alerts, {s['communities']} "
                  f"communities ({', '.join(f'{v} {k}' for k, v in s['kinds'].items())})",
                  title_justify="left")
        for col in ("publish of the alarm to", "arrived", "p50 ms", "p99 ms", "max ms"):
            t.add_column(col, justify="left" if col.startswith("publish") else "right")
        for name, key in (("first dispatch naming a responder", "dispatch"),
                          ("its webhook at the receiver", "webhook")):
            row = s[key]
            t.add_row(name, f"{row['arrived']:,}", _f(row["p50_ms"], 1), _f(row["p99_ms"], 1),
                      _f(row["max_ms"], 1))
        r = s["raised"]
        t.add_row("(the core raised the alert: ts_raised)", "", _f(r["p50_ms"], 1),
                  _f(r["p99_ms"], 1), _f(r["max_ms"], 1))
        console.print(t)
        console.print(f"first told: {s['first_roles']}, grades {s['first_grades']}; webhook "
                      f"keys repeated {s['webhook']['repeated_keys']}; core CPU "
                      f"{s['core_cpu_s']} s over {s['seconds']} s; other load "
                      f"{s['other_load_cores']} cores")
    e = doc.get("escalation")
    if e:
        t = Table(title=f"ingest of 100-reading arrays, {e['fleet']['devices']:,} devices, "
                  f"{e['readings_per_phase']:,} readings per run", title_justify="left")
        for col in ("open cases", "offered/s", "stored/s", "seconds", "core CPU µs/reading",
                    "core CPU (cores)", "other load (cores)"):
            t.add_column(col, justify="right")
        for cases, row in ((0, e["without_cases"]), (e["cases"], e["with_cases"])):
            t.add_row(f"{cases:,}", _f(row["offered_per_s"]), _f(row["stored_per_s"])
                      + ("" if row["complete"] else " (incomplete)"), _f(row["seconds"], 1),
                      _f(row["core_cpu_us_per_reading"], 2), _f(row["core_cpu_cores"], 2),
                      _f(row["other_load_cores"], 2))
        console.print(t)
        console.print(f"with / without: stored/s × {e['stored_ratio']}, CPU per reading × "
                      f"{e['cpu_per_reading_ratio']}")
        for cases, row in ((0, e["without_cases"]), (e["cases"], e["with_cases"])):
            if not row["complete"]:
                stalled = (": it stalled, it did not run out of CPU"
                           if row["core_cpu_cores"] < STALLED_CORES else "")
                console.print(f"[yellow]incomplete[/] with {cases:,} cases open: "
                              f"{row['stored']:,} of {e['readings_per_phase']:,} stored in "
                              f"{row['seconds']:g} s while the core used "
                              f"{row['core_cpu_cores']} cores{stalled}")
        chain = ", ".join(f"{s['whom']} {s['after_s']:g} s" for s in e["chain"])
        t = Table(title=f"{e['cases']:,} open cases escalating ({chain}; every step again "
                  f"every {e['chain'][0]['renotify_s']:g} s)", title_justify="left")
        for col in ("while", "rounds due", "notified", "skipped", "late p50 / p99 / max ms",
                    "on arrival p50 / p99 / max ms"):
            t.add_column(col, justify="left" if col == "while" else "right")
        for name, row in ((f"no ingest ({e['idle']['seconds']:g} s)", e["idle"]),
                          ("ingesting", e["during_ingest"])):
            late, arr = row["late"], row["late_on_arrival"]
            t.add_row(name, f"{row['rounds_due']:,}", f"{row['notified']:,}",
                      f"{row['skipped']:,}",
                      " / ".join(_f(late[k], 0) for k in ("p50_ms", "p99_ms", "max_ms")),
                      " / ".join(_f(arr[k], 0) for k in ("p50_ms", "p99_ms", "max_ms")))
        console.print(t)
        note = e["notifications"]
        idle = e["idle"]
        console.print(f"notifications naming a responder: {note['total']:,} in all, "
                      f"{note['per_s_during_ingest']:,}/s while ingesting, webhooks "
                      f"{note['webhooks']:,}; with nothing ingested the core notified "
                      f"{idle['notified_per_s']:,} rounds/s on {idle['core_cpu_cores']} cores "
                      f"({_f(idle['core_cpu_ms_per_round'], 3)} ms of CPU a round; other load "
                      f"{idle['other_load_cores']} cores)")


# -- the command ---------------------------------------------------------------------------


def _steps(text: str) -> tuple[Step, ...]:
    out = []
    for part in text.split(","):
        whom, _, after = part.strip().partition(":")
        try:
            out.append(Step(whom, float(after)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--steps: {part!r} is not whom:after_s") from None
    return tuple(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help="scenarios, comma-separated: " + ", ".join(SCENARIOS))
    ap.add_argument("--alerts", type=int, default=1_000, help="simultaneous alarms")
    ap.add_argument("--communities", type=int, default=20,
                    help="communities sharing the residents (one grid worker each)")
    ap.add_argument("--cases", type=int, default=10_000, help="open cases escalating")
    ap.add_argument("--steps", type=_steps, default=_steps("grid_worker:0,relatives:5"),
                    help="the escalation chain: whom:after_s, ... (whom: a role or relatives)")
    ap.add_argument("--renotify-s", type=float, default=10.0,
                    help="every step again this often (10 s is the least the policies allow)")
    ap.add_argument("--open-seconds", type=float, default=10.0,
                    help="the SOS that open the cases are spread over this long")
    ap.add_argument("--idle-seconds", type=float, default=15.0,
                    help="the cases escalate this long with nothing ingested, before the load")
    ap.add_argument("--fleet-devices", type=int, default=100_000, help="the ingesting fleet")
    ap.add_argument("--fleet-gateways", type=int, default=100)
    ap.add_argument("--ingest-rate", type=float, default=50_000.0,
                    help="readings/s offered, in 100-reading JSON arrays")
    ap.add_argument("--ingest-seconds", type=float, default=20.0)
    ap.add_argument("--escalation-webhooks", action="store_true",
                    help="grid workers have a webhook in the escalation run too")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="give up waiting for a phase after this many seconds")
    ap.add_argument("--quick", action="store_true", help="a small run for tests: " + ", ".join(
        f"{k}={v}" for k, v in QUICK.items()))
    ap.add_argument("--workdir", type=Path, help="keep the services' folders and logs here")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead")
    args = ap.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if not args.only or any(s not in SCENARIOS for s in args.only):
        ap.error(f"--only: choose from {', '.join(SCENARIOS)}")
    if not 1 <= args.communities <= 1_000 or not 1 <= args.alerts <= 50_000 \
            or not 1 <= args.cases <= 100_000:
        ap.error("--communities 1 ..= 1,000, --alerts 1 ..= 50,000, --cases 1 ..= 100,000")
    if not 0 < args.ingest_rate <= 2_000_000 or not 0 < args.ingest_seconds <= 600:
        ap.error("--ingest-rate 0 ..= 2,000,000 and --ingest-seconds 0 ..= 600")
    if not 0 < args.open_seconds <= 600 or not 0 <= args.idle_seconds <= 600 \
            or args.renotify_s < 10 or not 0 < args.timeout <= 3600:
        ap.error("--open-seconds, --idle-seconds up to 600, --renotify-s at least 10, "
                 "--timeout up to an hour")
    try:
        args.fleet = Fleet(args.fleet_devices, args.fleet_gateways)
    except FleetError as exc:
        ap.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    started = time.time()
    doc: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "loadavg_start": _load()}}
    runs = {"simultaneous": simultaneous, "escalation": escalation}
    with contextlib.ExitStack() as stack:
        root = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="bench-dispatch-", ignore_cleanup_errors=True)))
        for name in args.only:
            doc[name] = runs[name](args, root / name, lambda what: console.log(what))
    doc["machine"]["loadavg_end"] = _load()
    doc["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                       if k not in ("fleet", "json", "steps")} | {
        "steps": [[s.whom, s.after_s] for s in args.steps],
        "seconds": round(time.time() - started, 1)}
    if args.json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        print_report(Console() if sys.stdout.isatty() else Console(width=170), doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
