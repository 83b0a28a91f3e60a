"""Run a fleet live against a broker: one real edge agent per gateway, in this process.

    report = run_live(fleet, LiveOptions(port=1883, duration_s=60, duplicate_rate=0.02,
                                         malformed=6))

Faults are injected beside the agents by a separate MQTT client: duplicates re-publish a
fraction of the agents' batches on the same topic, malformed messages are spread over the
run on the gateways' readings topics. Every injected fault is counted in the `LiveReport`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sensing.wire import decode_readings
from sensing.wire.topics import parse_gateway_topic, readings_topic
from sensing_edge.agent import AgentSettings, GatewayAgent, wall_clock_ms
from sensing_edge.batching import PayloadFormat
from sensing_sim.faults import MALFORMED_REASONS, malformed_payload
from sensing_sim.fleet import Fleet, Gateway
from sensing_sim.tally import UniqueReadings

DECODE_LIMIT = 1 << 24


class LiveError(RuntimeError):
    """The run could not start (e.g. the broker is unreachable)."""


@dataclass(frozen=True, slots=True)
class LiveOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    duration_s: float = 60.0
    duplicate_rate: float = 0.0
    """fraction of published batches re-published once more"""
    malformed: int = 0
    """malformed messages, spread over the run, cycling through MALFORMED_REASONS"""
    payload_format: PayloadFormat = "snb1"
    epoch: int | None = None
    """epoch of every device's readings; None: seconds since the Unix epoch at the start,
    so each run is a fresh restart of the fleet and never repeats an earlier run's names"""
    batch_max_readings: int = 200
    batch_max_age_s: float = 0.5
    connect_timeout_s: float = 10.0
    stop_timeout_s: float = 10.0
    progress_every_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.duplicate_rate <= 1.0:
            raise ValueError("duplicate_rate must be between 0 and 1")
        if self.malformed < 0:
            raise ValueError("malformed must be >= 0")
        if not self.duration_s > 0:
            raise ValueError("duration_s must be positive")


@dataclass(frozen=True, slots=True)
class LiveProgress:
    elapsed_s: float
    readings_sampled: int
    readings_sent_unique: int
    readings_acked: int
    duplicate_readings: int
    malformed_sent: int


@dataclass(slots=True)
class LiveReport:
    """What a live run did; `to_json()` for files and `--json`."""

    broker: str
    gateways: int
    devices: int
    interval_s: float
    seed: int
    epoch: int
    payload_format: str
    start_ms: int
    end_ms: int
    duration_s: float
    stopped_early: bool
    all_acked: bool
    """every batch of every agent was acknowledged by the broker before it stopped"""
    readings_sampled: int
    readings_sent_unique: int
    """distinct (device, epoch, seq) the agents published"""
    readings_acked: int
    batches_published: int
    duplicate_batches_injected: int
    duplicate_readings_injected: int
    malformed_sent: dict[str, int]
    incidents: list[dict[str, object]] = field(default_factory=list)
    """the labels; `start_s`/`end_s` from `start_ms`, `ts_start`/`ts_end` in ms"""

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed_sent.values())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["malformed_total"] = self.malformed_total
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)


class _FaultClient:
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

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            infos = [info for info, _, _ in self._sent]
        for info in infos:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.01, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()


class _PayloadTap:
    """The agents' payload hook: tallies unique readings, re-publishes some batches."""

    def __init__(self, faults: _FaultClient | None, rate: float, seed: int) -> None:
        self.unique = UniqueReadings()
        self._faults = faults
        self._rate = rate
        self._rng = np.random.default_rng([seed, 9])
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes) -> None:
        parsed = parse_gateway_topic(topic)
        if parsed is None:
            return
        batch = decode_readings(payload, parsed.gateway, parsed.area, DECODE_LIMIT).batch
        self.unique.add_batch(batch)
        if self._faults is None or self._rate <= 0.0:
            return
        with self._lock:
            duplicate = bool(self._rng.random() < self._rate)
        if duplicate:
            self._faults.publish(topic, payload, "duplicate", len(batch))


def _check_reachable(host: str, port: int, timeout: float) -> None:
    """Fail fast when nothing listens (the agents themselves would retry forever)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise LiveError(f"cannot connect to the broker at {host}:{port}: {exc}") from exc


class _LiveRun:
    """One live run: agents, fault injection, the clock of the run and its counters."""

    def __init__(self, fleet: Fleet, options: LiveOptions, stop: threading.Event) -> None:
        self.fleet, self.options, self.stop = fleet, options, stop
        self.epoch = int(time.time()) if options.epoch is None else options.epoch
        needs_faults = options.duplicate_rate > 0 or options.malformed > 0
        self.faults = _FaultClient(options.host, options.port) if needs_faults else None
        self.tap = _PayloadTap(self.faults, options.duplicate_rate, fleet.spec.seed)
        self.start_ms = wall_clock_ms()
        self.t0 = time.monotonic()
        self.agents = [self._agent(gw) for gw in fleet.gateways]
        n = options.malformed
        self.malformed_due = [  # (seconds into the run, reason, gateway), evenly spread
            (options.duration_s * (k + 1) / (n + 1), MALFORMED_REASONS[k % len(MALFORMED_REASONS)],
             fleet.gateways[k % len(fleet.gateways)])
            for k in range(n)
        ]
        self.malformed_made = 0
        self.all_acked = False

    def _agent(self, gw: Gateway) -> GatewayAgent:
        o = self.options
        settings = AgentSettings.model_validate({
            "gateway": gw.id, "area": gw.area, "broker_host": o.host, "broker_port": o.port,
            "client_id": f"sensing-sim-{gw.area}-{gw.id}", "epoch": self.epoch,
            "payload_format": o.payload_format, "batch_max_readings": o.batch_max_readings,
            "batch_max_age_s": o.batch_max_age_s,
        })
        return GatewayAgent(settings, [self.fleet.driver(gw.id, self.start_ms)],
                            on_payload=self.tap)

    def run(self, progress: Callable[[LiveProgress], None] | None) -> None:
        o = self.options
        try:
            if self.faults is not None:
                self.faults.connect(o.connect_timeout_s)
            for agent in self.agents:
                agent.start()
            deadline = time.monotonic() + o.connect_timeout_s
            if not all(a.wait_connected(max(0.0, deadline - time.monotonic()))
                       for a in self.agents):
                raise LiveError(f"the edge agents could not connect to {o.host}:{o.port}")
            next_progress = o.progress_every_s
            while not self.stop.is_set():
                elapsed = time.monotonic() - self.t0
                if elapsed >= o.duration_s:
                    break
                self._send_due_malformed(elapsed)
                if progress is not None and elapsed >= next_progress:
                    next_progress += o.progress_every_s
                    progress(self.progress(elapsed))
                self.stop.wait(min(0.1, o.duration_s - elapsed))
        finally:
            self._stop_all()

    def _send_due_malformed(self, elapsed: float) -> None:
        gateways, due = self.fleet.gateways, self.malformed_due
        while self.faults is not None and due and due[0][0] <= elapsed:
            _, reason, gw = due.pop(0)
            other = gateways[(gateways.index(gw) + 1) % len(gateways)].id
            other = other if other != gw.id else f"{gw.id}-other"
            payload = malformed_payload(reason, self.malformed_made, wall_clock_ms(), other)
            self.faults.publish(readings_topic(gw.area, gw.id), payload, reason, 1)
            self.malformed_made += 1

    def _stop_all(self) -> None:
        """Stop every agent at once (each flushes and waits for its PUBACKs), then faults."""
        timeout = self.options.stop_timeout_s
        with ThreadPoolExecutor(max_workers=len(self.agents)) as pool:
            self.all_acked = all(pool.map(lambda a: a.stop(timeout), self.agents))
        if self.faults is not None:
            self.faults.close(timeout)

    def _delivered(self) -> tuple[int, int, dict[str, int]]:
        """(duplicate batches, duplicate readings, malformed messages by reason) acked so far."""
        delivered = self.faults.delivered() if self.faults is not None else []
        dups = [n for what, n in delivered if what == "duplicate"]
        malformed = dict.fromkeys(MALFORMED_REASONS, 0)
        for what, _ in delivered:
            if what in malformed:
                malformed[what] += 1
        return len(dups), sum(dups), malformed

    def progress(self, elapsed: float) -> LiveProgress:
        stats = [a.stats() for a in self.agents]
        _, dup_readings, malformed = self._delivered()
        return LiveProgress(
            elapsed_s=round(elapsed, 1),
            readings_sampled=sum(s.readings_sampled for s in stats),
            readings_sent_unique=self.tap.unique.unique,
            readings_acked=sum(s.readings_acked for s in stats),
            duplicate_readings=dup_readings,
            malformed_sent=sum(malformed.values()),
        )

    def report(self) -> LiveReport:
        stats = [a.stats() for a in self.agents]
        dup_batches, dup_readings, malformed = self._delivered()
        o, spec = self.options, self.fleet.spec
        return LiveReport(
            broker=f"{o.host}:{o.port}",
            gateways=len(self.fleet.gateways),
            devices=len(self.fleet.devices),
            interval_s=spec.interval_s,
            seed=spec.seed,
            epoch=self.epoch,
            payload_format=o.payload_format,
            start_ms=self.start_ms,
            end_ms=wall_clock_ms(),
            duration_s=round(time.monotonic() - self.t0, 3),
            stopped_early=self.stop.is_set(),
            all_acked=self.all_acked,
            readings_sampled=sum(s.readings_sampled for s in stats),
            readings_sent_unique=self.tap.unique.unique,
            readings_acked=sum(s.readings_acked for s in stats),
            batches_published=sum(s.batches for s in stats),
            duplicate_batches_injected=dup_batches,
            duplicate_readings_injected=dup_readings,
            malformed_sent=malformed,
            incidents=[i.to_dict(self.start_ms) for i in self.fleet.incidents],
        )


def run_live(
    fleet: Fleet,
    options: LiveOptions,
    *,
    stop: threading.Event | None = None,
    progress: Callable[[LiveProgress], None] | None = None,
) -> LiveReport:
    """Run the fleet for `options.duration_s` (or until `stop` is set), stop every agent
    cleanly (waiting for PUBACKs) and report. Blocks; `progress` is called every
    `options.progress_every_s` from this thread.

    Raises LiveError if the broker cannot be reached.
    """
    _check_reachable(options.host, options.port, options.connect_timeout_s)
    live = _LiveRun(fleet, options, stop or threading.Event())
    live.run(progress)
    return live.report()
