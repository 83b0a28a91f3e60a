"""Run a fleet live against a broker: one real edge agent per gateway, in this process.

    report = run_live(fleet, LiveOptions(port=1883, duration_s=60, duplicate_rate=0.02,
                                         malformed=6))

Faults are injected beside the agents by a separate MQTT client: duplicates re-publish a
fraction of the agents' batches on the same topic, malformed messages are spread over the
run on the gateways' readings topics. Every injected fault is counted in the `LiveReport`.
"""

from __future__ import annotations

import contextlib
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
from sensing_edge.agent import AgentSettings, GatewayAgent, wall_clock_ms
from sensing_edge.batching import PayloadFormat

from sensing.wire import decode_readings
from sensing.wire.topics import parse_gateway_topic, readings_topic
from sensing_sim.faults import MALFORMED_REASONS, malformed_payload
from sensing_sim.fleet import Fleet
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


class _Duplicator:
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


def _malformed_schedule(fleet: Fleet, n: int, duration_s: float) -> list[tuple[float, str, int]]:
    """(time s, reason, gateway index) of each malformed message, evenly over the run."""
    return [
        (duration_s * (k + 1) / (n + 1), MALFORMED_REASONS[k % len(MALFORMED_REASONS)],
         k % len(fleet.gateways))
        for k in range(n)
    ]


def run_live(
    fleet: Fleet,
    options: LiveOptions,
    *,
    stop: threading.Event | None = None,
    progress: Callable[[LiveProgress], None] | None = None,
) -> LiveReport:
    """Run the fleet for `options.duration_s` (or until `stop` is set) and report.

    Raises LiveError if the agents cannot connect to the broker.
    """
    stop = stop or threading.Event()
    epoch = int(time.time()) if options.epoch is None else options.epoch
    seed = fleet.spec.seed
    needs_faults = options.duplicate_rate > 0 or options.malformed > 0
    faults = _FaultClient(options.host, options.port) if needs_faults else None
    if faults is not None:
        faults.connect(options.connect_timeout_s)
    hook = _Duplicator(faults, options.duplicate_rate, seed)
    start_ms = wall_clock_ms()
    agents = [
        GatewayAgent(
            AgentSettings.model_validate({
                "gateway": gw.id, "area": gw.area, "broker_host": options.host,
                "broker_port": options.port, "client_id": f"sensing-sim-{gw.area}-{gw.id}",
                "epoch": epoch, "payload_format": options.payload_format,
                "batch_max_readings": options.batch_max_readings,
                "batch_max_age_s": options.batch_max_age_s,
            }),
            [fleet.driver(gw.id, start_ms)],
            on_payload=hook,
        )
        for gw in fleet.gateways
    ]
    malformed_sent = dict.fromkeys(MALFORMED_REASONS, 0)
    all_acked = False
    t0 = time.monotonic()
    try:
        for agent in agents:
            agent.start()
        deadline = t0 + options.connect_timeout_s
        if not all(a.wait_connected(max(0.0, deadline - time.monotonic())) for a in agents):
            raise LiveError(
                f"the edge agents could not connect to the broker at {options.host}:{options.port}"
            )
        schedule = _malformed_schedule(fleet, options.malformed, options.duration_s)
        next_progress = options.progress_every_s
        n_malformed = 0
        while not stop.is_set():
            elapsed = time.monotonic() - t0
            if elapsed >= options.duration_s:
                break
            while faults is not None and schedule and schedule[0][0] <= elapsed:
                _, reason, g = schedule.pop(0)
                gw = fleet.gateways[g]
                other = fleet.gateways[(g + 1) % len(fleet.gateways)].id
                other = other if other != gw.id else f"{gw.id}-other"
                payload = malformed_payload(reason, n_malformed, wall_clock_ms(), other)
                faults.publish(readings_topic(gw.area, gw.id), payload, reason, 1)
                n_malformed += 1
            if progress is not None and elapsed >= next_progress:
                next_progress += options.progress_every_s
                progress(_progress(elapsed, agents, hook, faults))
            stop.wait(min(0.1, options.duration_s - elapsed))
    finally:
        stopped_early = stop.is_set()
        with ThreadPoolExecutor(max_workers=max(1, len(agents))) as pool:
            results = list(pool.map(lambda a: a.stop(options.stop_timeout_s), agents))
        all_acked = all(results)
        if faults is not None:
            faults.close(options.stop_timeout_s)
    end_ms = wall_clock_ms()
    stats = [a.stats() for a in agents]
    delivered = faults.delivered() if faults is not None else []
    for what, _ in delivered:
        if what in malformed_sent:
            malformed_sent[what] += 1
    dups = [n for what, n in delivered if what == "duplicate"]
    return LiveReport(
        broker=f"{options.host}:{options.port}",
        gateways=len(fleet.gateways),
        devices=len(fleet.devices),
        interval_s=fleet.spec.interval_s,
        seed=seed,
        epoch=epoch,
        payload_format=options.payload_format,
        start_ms=start_ms,
        end_ms=end_ms,
        duration_s=round(time.monotonic() - t0, 3),
        stopped_early=stopped_early,
        all_acked=all_acked,
        readings_sampled=sum(s.readings_sampled for s in stats),
        readings_sent_unique=hook.unique.unique,
        readings_acked=sum(s.readings_acked for s in stats),
        batches_published=sum(s.batches for s in stats),
        duplicate_batches_injected=len(dups),
        duplicate_readings_injected=sum(dups),
        malformed_sent=malformed_sent,
        incidents=[i.to_dict(start_ms) for i in fleet.incidents],
    )


def _progress(
    elapsed: float, agents: list[GatewayAgent], hook: _Duplicator, faults: _FaultClient | None
) -> LiveProgress:
    stats = [a.stats() for a in agents]
    delivered = faults.delivered() if faults is not None else []
    return LiveProgress(
        elapsed_s=round(elapsed, 1),
        readings_sampled=sum(s.readings_sampled for s in stats),
        readings_sent_unique=hook.unique.unique,
        readings_acked=sum(s.readings_acked for s in stats),
        duplicate_readings=sum(n for what, n in delivered if what == "duplicate"),
        malformed_sent=sum(1 for what, _ in delivered if what != "duplicate"),
    )
