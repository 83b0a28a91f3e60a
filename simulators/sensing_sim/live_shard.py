"""The part of a live run one process carries: the edge agents of some gateways, the
duplicates they are sent with, their link relays, and the counters of all that.

`sensing_sim.live` runs one `Shard` with every gateway in its own process, or has worker
processes (`sensing_sim.live_workers`) run one each.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sensing.wire.snb1 import COLUMNS, HEADER, HEADER_SIZE, is_batch
from sensing.wire.topics import parse_gateway_topic
from sensing_edge.agent import AgentSettings, AgentStats, GatewayAgent, wall_clock_ms
from sensing_sim.faults import MALFORMED_REASONS
from sensing_sim.fleet import Fleet, FleetDriver, Gateway
from sensing_sim.live_relay import RelayHub
from sensing_sim.tally import UniqueReadings

if TYPE_CHECKING:
    from sensing_sim.live import LiveOptions

FD_LIMIT = 1024
"""paho's network loop uses select(), which cannot watch a file descriptor >= 1024: an agent
whose socket gets one loses its connection at once, over and over"""
FDS_PER_AGENT = 3
"""its MQTT socket and paho's wake-up socket pair"""
FDS_PER_RELAY = 3
"""a relay's listening socket and the two ends of its relayed connection"""
STATS_SWEEP_S = 1.0
"""pause between two sweeps of the agents' stats (see Shard.counters)"""
FDS_BASE = 64
"""the process's own: stdio, the interpreter's, the fault client, pipes to the parent"""


class LiveError(RuntimeError):
    """The run could not start (e.g. the broker is unreachable)."""


def fds_needed(fleet: Fleet, gateways: Sequence[Gateway]) -> int:
    """File descriptors a shard of these gateways opens (see FD_LIMIT)."""
    relayed = sum(1 for gw in gateways if fleet.gateway_outages(gw.id))
    return FDS_BASE + FDS_PER_AGENT * len(gateways) + FDS_PER_RELAY * relayed


def auto_poll_interval(interval_s: float) -> float:
    """How often an agent polls its devices by default: a tenth of their sampling interval,
    between 0.1 and 1 s. Each poll is one durable transaction of the agent's buffer, the
    largest cost of an agent; a reading's ts is the poll's time, so it lags its slot by less
    than the poll interval."""
    return min(1.0, max(0.1, interval_s / 10.0))


def process_usage() -> tuple[float, float]:
    """(CPU seconds, user and system, and peak RSS in MiB) of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0


@dataclass(slots=True)
class ShardCounters:
    """What one shard did so far; shards' counters add up (`merge`)."""

    gateways: int = 0
    devices: int = 0
    connected: int = 0
    """agents connected to the broker now"""
    connects: int = 0
    readings_sampled: int = 0
    readings_sent_unique: int = 0
    readings_published: int = 0
    readings_acked: int = 0
    batches_published: int = 0
    duplicate_batches: int = 0
    duplicate_readings: int = 0
    malformed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MALFORMED_REASONS, 0))
    all_acked: bool = True
    outages: list[dict[str, Any]] = field(default_factory=list)
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0
    processes: int = 0

    def merge(self, other: ShardCounters) -> ShardCounters:
        out = ShardCounters()
        for name in ("gateways", "devices", "connected", "connects", "readings_sampled",
                     "readings_sent_unique", "readings_published", "readings_acked",
                     "batches_published", "duplicate_batches", "duplicate_readings",
                     "cpu_s", "max_rss_mb", "processes"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.malformed = {k: self.malformed.get(k, 0) + other.malformed.get(k, 0)
                         for k in MALFORMED_REASONS}
        out.all_acked = self.all_acked and other.all_acked
        out.outages = self.outages + other.outages
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ShardCounters:
        return cls(**doc)


class FaultClient:
    """One paho client publishing duplicates and malformed messages, counting what reached
    the broker (PUBACK)."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"sensing-sim-faults-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
        )
        self._client.max_inflight_messages_set(0)
        self._client.on_connect = self._on_connect
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._sent: list[tuple[mqtt.MQTTMessageInfo, str, int]] = []

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
        reason_code: ReasonCode, properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            self._connected.set()

    def connect(self, timeout: float) -> None:
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            raise LiveError(
                f"cannot connect to the broker at {self._host}:{self._port}: {exc}"
            ) from exc
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self.close(0.0)
            raise LiveError(f"the broker at {self._host}:{self._port} did not accept a connection")

    def publish(self, topic: str, payload: bytes, what: str, count: int) -> None:
        info = self._client.publish(topic, payload, qos=1)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            with self._lock:
                self._sent.append((info, what, count))

    def delivered(self) -> list[tuple[str, int]]:
        """(what, count) of every publish the broker acknowledged."""
        with self._lock:
            return [(what, n) for info, what, n in self._sent if info.is_published()]

    def tally(self, counters: ShardCounters) -> None:
        """Add what the broker acknowledged to `counters`."""
        for what, n in self.delivered():
            if what == "duplicate":
                counters.duplicate_batches += 1
                counters.duplicate_readings += n
            elif what in counters.malformed:
                counters.malformed[what] += 1

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            infos = [info for info, _, _ in self._sent]
        for info in infos:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.01, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()


def payload_names(payload: bytes) -> list[tuple[str, int, int]]:
    """(device, epoch, seq) of each reading of an agent's batch, SNB1 or JSON.

    Reads only what names the readings, and checks nothing: the agent encoded the batch a
    moment ago. (The core's decoder checks everything, and loads numba for SNB1: seconds in
    each worker process, with every agent's thread waiting for its import.)"""
    if not is_batch(payload):
        doc = orjson.loads(payload)
        return [(str(r["device"]), int(r.get("epoch", 0)), int(r["seq"]))
                for r in (doc if isinstance(doc, list) else [doc])]
    _, _, _, n_dev, _, _, n_read, n_val, tables_len = HEADER.unpack_from(payload)
    devices: list[str] = []
    pos = HEADER_SIZE
    for _ in range(n_dev):  # each device's id, then its kind
        n = payload[pos]
        devices.append(payload[pos + 1:pos + 1 + n].decode())
        pos += 1 + n
        pos += 1 + payload[pos]
    offset = HEADER_SIZE + tables_len
    columns: dict[str, list[int]] = {}
    for name, dtype, per_reading in COLUMNS:
        count = n_read if per_reading else n_val
        if name in ("device", "epoch", "seq"):
            columns[name] = np.frombuffer(payload, dtype=dtype, count=count,
                                          offset=offset).tolist()
        offset += count * np.dtype(dtype).itemsize
    return [(devices[d], e, s) for d, e, s in
            zip(columns["device"], columns["epoch"], columns["seq"], strict=True)]


class PayloadTap:
    """An agent's payload hook: tallies unique readings (`payload_names`), re-publishes
    some batches as duplicates."""

    def __init__(self, faults: FaultClient | None, rate: float, seed: Sequence[int]) -> None:
        self.unique = UniqueReadings()
        self.readings = 0
        """readings in the batches seen (the agent's readings_published)"""
        self.batches = 0
        self._faults = faults
        self._rate = rate
        self._rng = np.random.default_rng(list(seed))
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes) -> None:
        if parse_gateway_topic(topic) is None:
            return
        names = payload_names(payload)
        self.readings += len(names)
        self.batches += 1
        for device, epoch, seq in names:
            self.unique.add(device, epoch, seq)
        if self._faults is None or self._rate <= 0.0:
            return
        with self._lock:
            duplicate = bool(self._rng.random() < self._rate)
        if duplicate:
            self._faults.publish(topic, payload, "duplicate", len(names))


def check_reachable(host: str, port: int, timeout: float) -> None:
    """Fail fast when nothing listens (the agents themselves would retry forever)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise LiveError(f"cannot connect to the broker at {host}:{port}: {exc}") from exc


class Shard:
    """The edge agents of `gateways` in this process, each polling a fresh `FleetDriver`;
    duplicates of their batches; a relay for each gateway with link outages in the fleet.

    `start(start_ms)`, `counters()` at any time, `stop()` once."""

    def __init__(self, fleet: Fleet, gateways: Sequence[Gateway], options: LiveOptions,
                 epoch: int, index: int = 0) -> None:
        self.fleet, self.options, self.epoch, self.index = fleet, options, epoch, index
        self.gateways = tuple(gateways)
        needed = fds_needed(fleet, self.gateways)
        if needed > FD_LIMIT:
            raise LiveError(
                f"{len(self.gateways)} gateways in one process need about {needed} file "
                f"descriptors; paho's select() takes them below {FD_LIMIT} only: use more "
                "processes")
        o = options
        self.faults = FaultClient(o.host, o.port) if o.duplicate_rate > 0 else None
        self.taps: list[PayloadTap] = []
        self.relays = RelayHub(o.host, o.port)
        self.drivers: list[FleetDriver] = []
        self.agents: list[GatewayAgent] = []
        self.poll_interval_s = (o.poll_interval_s if o.poll_interval_s is not None
                                else auto_poll_interval(fleet.spec.interval_s))
        for n, gw in enumerate(self.gateways):
            outages = fleet.gateway_outages(gw.id)
            port = (self.relays.add(gw.id, [(i.start_s, i.end_s) for i in outages])
                    if outages else o.port)
            driver = fleet.driver(gw.id)
            # one tap per agent: a shared one would serialise every agent's hook on its lock
            tap = PayloadTap(self.faults, o.duplicate_rate, (fleet.spec.seed, 9, index, n))
            self.drivers.append(driver)
            self.taps.append(tap)
            self.agents.append(self._agent(gw, driver, port, tap))
        self.devices = sum(len(d.devices) for d in self.drivers)
        self.all_acked = True
        self._stopped: ShardCounters | None = None
        self._stats: list[AgentStats | None] = [None] * len(self.agents)
        self._sweeping_done = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep, name="sim-stats-sweep",
                                         daemon=True)

    def _agent(self, gw: Gateway, driver: FleetDriver, port: int,
               tap: PayloadTap) -> GatewayAgent:
        o = self.options
        doc: dict[str, Any] = {
            "gateway": gw.id, "area": gw.area, "broker_host": o.host, "broker_port": port,
            "client_id": f"sensing-sim-{gw.area}-{gw.id}", "epoch": self.epoch,
            "payload_format": o.payload_format, "batch_max_readings": o.batch_max_readings,
            "batch_max_age_s": o.batch_max_age_s, "poll_interval_s": self.poll_interval_s,
            "confirm": o.confirm,
        }
        if o.reconnect_max_s is not None:
            doc["reconnect_max_s"] = o.reconnect_max_s
            doc["reconnect_min_s"] = min(0.5, o.reconnect_max_s)
        if port != o.port:
            doc["broker_host"] = "127.0.0.1"
        return GatewayAgent(AgentSettings.model_validate(doc), [driver], on_payload=tap)

    def start(self, start_ms: int) -> None:
        """Connect the fault client, start the relays' clock and every agent, from
        `start_ms` (the run's time zero: devices' phases and incidents count from it)."""
        if self.faults is not None:
            self.faults.connect(self.options.connect_timeout_s)
        for driver in self.drivers:
            driver.start_ms = start_ms
        if len(self.relays):
            self.relays.start(time.monotonic() - (wall_clock_ms() - start_ms) / 1000.0)
        for agent in self.agents:
            agent.start()
        self._sweeper.start()

    def _sweep(self) -> None:
        """Keep `_stats` fresh, one agent at a time, until the shard stops."""
        while not self._sweeping_done.is_set():
            for i, agent in enumerate(self.agents):
                self._stats[i] = agent.stats()
            self._sweeping_done.wait(STATS_SWEEP_S)

    def counters(self) -> ShardCounters:
        """Counters now, read without waiting: readings sampled from the drivers, sent from
        the taps, whether each agent is connected; the rest from the agents' stats of the
        last sweep (at most STATS_SWEEP_S plus a sweep old). Each agent's stats() takes two
        of its locks, contended by its own threads: with hundreds of agents in a process, a
        sweep of them takes seconds (each wait for a lock is also a wait for the GIL)."""
        if self._stopped is not None:
            return self._stopped
        return self._counters([s for s in self._stats if s is not None])

    def _counters(self, stats: Sequence[AgentStats]) -> ShardCounters:
        cpu, rss = process_usage()
        out = ShardCounters(
            gateways=len(self.agents), devices=self.devices,
            connected=sum(a.connected for a in self.agents),
            connects=sum(s.connects for s in stats),
            readings_sampled=sum(d.samples_taken for d in self.drivers),
            readings_sent_unique=sum(t.unique.unique for t in self.taps),
            readings_published=sum(t.readings for t in self.taps),
            readings_acked=sum(s.readings_acked for s in stats),
            batches_published=sum(t.batches for t in self.taps),
            all_acked=self.all_acked,
            outages=[r.to_dict() for r in self.relays.outages()],
            cpu_s=round(cpu, 3), max_rss_mb=round(rss, 1), processes=1,
        )
        if self.faults is not None:
            self.faults.tally(out)
        return out

    def stop(self, timeout: float) -> ShardCounters:
        """Stop every agent at once (each flushes and waits for its PUBACKs), then the fault
        client and the relays; the final counters."""
        if self._stopped is not None:
            return self._stopped
        if self.agents:
            with ThreadPoolExecutor(max_workers=len(self.agents)) as pool:
                self.all_acked = all(pool.map(lambda a: a.stop(timeout), self.agents))
        self._sweeping_done.set()
        if self._sweeper.is_alive():
            self._sweeper.join()
        if self.faults is not None:
            self.faults.close(timeout)
        self.relays.close()
        stats = [a.stats() for a in self.agents]
        final = self._counters(stats)
        # the agents' own counts, now that nothing moves
        final.readings_sampled = sum(s.readings_sampled for s in stats)
        final.readings_published = sum(s.readings_published for s in stats)
        final.batches_published = sum(s.batches for s in stats)
        self._stopped = final
        return final
