"""The gateway's edge agent: polls drivers, numbers and batches readings, publishes at QoS 1.

Threads: paho's network loop (callbacks: connect, disconnect, PUBACK) and one sampling thread
(polls the drivers, builds batches, hands batches from the outbox to MQTT). Every batch goes
into the `Outbox` first and leaves it only on its PUBACK; at most `max_inflight` batches are
handed to the MQTT client at a time, the rest wait in the outbox.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import structlog
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sensing.wire import WireError
from sensing.wire.messages import GatewayStatus
from sensing.wire.topics import RESERVED_AREAS, readings_topic, status_topic

from .batching import NumberedSample, PayloadFormat, Sequencer, encode_batch
from .drivers import Driver, SensorSample
from .outbox import MemoryOutbox, Outbox, OutboxEntry

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
PayloadHook = Callable[[str, bytes], None]


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch (UTC)."""
    return time.time_ns() // 1_000_000


class AgentSettings(BaseModel):
    """What one gateway's agent needs to know. Frozen; validated on construction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gateway: str = Field(pattern=NAME_PATTERN)
    area: str = Field(pattern=NAME_PATTERN)
    broker_host: str = Field(default="127.0.0.1", min_length=1)
    broker_port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(default="", max_length=256)
    """MQTT client id; defaults to `edge-{area}-{gateway}`. Stable, so the session persists."""
    batch_max_readings: int = Field(default=200, ge=1, le=65535)
    batch_max_age_s: float = Field(default=0.5, gt=0)
    payload_format: PayloadFormat = "snb1"
    poll_interval_s: float = Field(default=0.1, gt=0)
    max_inflight: int = Field(default=100, ge=1, le=60000)
    """Batches handed to MQTT and not yet acknowledged, at most (publish_now may exceed it)."""
    epoch: int = Field(default=0, ge=0, le=2**32 - 1)
    keepalive_s: int = Field(default=30, ge=5, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _default_client_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("client_id"):
            data = {**data, "client_id": f"edge-{data.get('area')}-{data.get('gateway')}"}
        return data

    @field_validator("area")
    @classmethod
    def _not_reserved(cls, area: str) -> str:
        if area in RESERVED_AREAS:
            raise ValueError(f"area {area!r} is reserved for topics of the core")
        return area


@dataclass(frozen=True, slots=True)
class AgentStats:
    """Counters of one agent since it was created."""

    readings_sampled: int
    """numbered readings from drivers and publish_now"""
    readings_published: int
    """readings in batches handed to the MQTT client"""
    readings_acked: int
    """readings in batches the broker acknowledged (PUBACK)"""
    readings_dropped: int
    """readings that could not be encoded (logged)"""
    batches: int
    """batches handed to the MQTT client"""
    batches_acked: int
    pending_batches: int
    """batches in the outbox: built, not yet acknowledged"""
    connected: bool
    connects: int

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


class GatewayAgent:
    """One gateway's agent. `start()`, let it run, `stop()`; `stats()` at any time."""

    def __init__(
        self,
        settings: AgentSettings,
        drivers: Sequence[Driver],
        clock: Callable[[], int] = wall_clock_ms,
        *,
        outbox: Outbox | None = None,
        on_payload: PayloadHook | None = None,
    ) -> None:
        self.settings = settings
        self.on_payload: PayloadHook | None = on_payload
        """Called with (topic, payload) once for each batch handed to MQTT."""
        self._drivers = tuple(drivers)
        self._clock = clock
        self._outbox: Outbox = MemoryOutbox() if outbox is None else outbox
        self._readings_topic = readings_topic(settings.area, settings.gateway)
        self._status_topic = status_topic(settings.area, settings.gateway)
        self._sequencer = Sequencer(settings.epoch)
        self._log = structlog.get_logger(__name__).bind(
            gateway=settings.gateway, area=settings.area
        )

        # The batch being built (sampling thread; flush() and stop() from others).
        self._batch_lock = threading.Lock()
        self._batch: list[NumberedSample] = []
        self._batch_started_ms = 0
        # Serialises hand-overs to paho. Never taken in a paho callback: paho calls
        # on_publish holding its message lock, which client.publish() needs too.
        self._send_lock = threading.Lock()
        # Bookkeeping shared with paho's callbacks; `_acked` is notified on every PUBACK.
        self._lock = threading.Lock()
        self._acked = threading.Condition(self._lock)
        self._inflight: dict[int, OutboxEntry | None] = {}  # mid -> batch (None: status)
        self._early_acks: set[int] = set()  # PUBACKs that beat publish() returning
        self._handed: set[int] = set()  # outbox ids handed to paho, not yet acked
        # wait_acked() covers batches a durable outbox brought back from before a restart.
        self._last_entry_id = max((e.id for e in self._outbox.pending()), default=-1)
        self._sampled = self._published = self._acked_readings = self._dropped = 0
        self._batches = self._batches_acked = self._connects = 0

        self._connected = threading.Event()
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self._sampler: threading.Thread | None = None
        self._stopped = False
        self._client = self._make_client()

    # -- public API ------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start sampling."""
        if self._sampler is not None:
            raise RuntimeError("agent already started")
        s = self.settings
        self._log.info(
            "agent_starting", broker=f"{s.broker_host}:{s.broker_port}", client_id=s.client_id,
            format=s.payload_format, epoch=s.epoch,
        )
        self._client.connect_async(s.broker_host, s.broker_port, keepalive=s.keepalive_s)
        self._client.loop_start()
        self._sampler = threading.Thread(
            target=self._run, name=f"edge-sampler-{s.gateway}", daemon=True
        )
        self._sampler.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop sampling, publish the last batch, wait up to `timeout` s for PUBACKs, publish
        the retained offline status and disconnect. True if every batch was acknowledged."""
        if self._sampler is None or self._stopped:
            return len(self._outbox) == 0
        self._stopped = True
        deadline = time.monotonic() + timeout
        self._stop_event.set()
        self._wake.set()
        self._sampler.join()
        self.flush()
        all_acked = self.wait_acked(max(0.0, deadline - time.monotonic()))
        if self._connected.is_set():
            info = self._publish_status("offline")
            if info is not None:
                with contextlib.suppress(RuntimeError, ValueError):  # not sent: the will stays
                    info.wait_for_publish(max(0.5, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._log.info("agent_stopped", all_acked=all_acked, **self.stats().as_dict())
        return all_acked

    def stats(self) -> AgentStats:
        with self._lock:
            return AgentStats(
                readings_sampled=self._sampled,
                readings_published=self._published,
                readings_acked=self._acked_readings,
                readings_dropped=self._dropped,
                batches=self._batches,
                batches_acked=self._batches_acked,
                pending_batches=len(self._outbox),
                connected=self._connected.is_set(),
                connects=self._connects,
            )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the broker accepted the connection; False on timeout."""
        return self._connected.wait(timeout)

    def wait_acked(self, timeout: float) -> bool:
        """Wait until every batch built so far is acknowledged; False on timeout.

        The batch still being built is not included; `flush()` first to include it.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            mark = self._last_entry_id
        while True:
            self._pump()  # after stop() no sampling thread moves the backlog
            with self._acked:
                oldest = self._outbox.pending(limit=1)
                if not oldest or oldest[0].id > mark:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._acked.wait(min(remaining, 0.1))

    def flush(self) -> None:
        """Publish the batch being built now, however small or young."""
        with self._batch_lock:
            readings, self._batch = self._batch, []
        if readings:
            self._enqueue(readings)
        self._pump()

    def publish_now(self, samples: Sequence[SensorSample]) -> None:
        """Number `samples` and publish them at once as their own batch, ahead of the
        outbox backlog and regardless of the in-flight bound (for local alarms)."""
        if not samples:
            return
        numbered = self._sequencer.number(samples)
        with self._lock:
            self._sampled += len(numbered)
        with self._send_lock:  # else a pump could hand the new entry over first: twice
            entry = self._enqueue(numbered)
            handed = entry is not None and self._publish(
                entry.topic, entry.payload, retain=False, entry=entry
            ) is not None
        if entry is not None and handed:
            self._call_hook(entry)

    # -- sampling thread -------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.settings.poll_interval_s
        next_poll = time.monotonic()
        while not self._stop_event.is_set():
            try:
                now = time.monotonic()
                if now >= next_poll:
                    self._sample_once()
                    next_poll += interval
                    if next_poll < now:  # fell behind: skip the missed ticks
                        next_poll = now + interval
                self._pump()
            except Exception:
                self._log.exception("sampling_step_failed")
            self._wake.wait(max(0.0, next_poll - time.monotonic()))
            self._wake.clear()

    def _sample_once(self) -> None:
        now_ms = self._clock()
        samples: list[SensorSample] = []
        for driver in self._drivers:
            try:
                samples.extend(driver.poll(now_ms))
            except Exception:
                self._log.exception("driver_failed", driver=type(driver).__name__)
        full: list[list[NumberedSample]] = []
        if samples:
            numbered = self._sequencer.number(samples)
            with self._lock:
                self._sampled += len(numbered)
            limit = self.settings.batch_max_readings
            with self._batch_lock:
                for n in numbered:
                    if not self._batch:
                        self._batch_started_ms = now_ms
                    self._batch.append(n)
                    if len(self._batch) >= limit:
                        full.append(self._batch)
                        self._batch = []
        with self._batch_lock:
            max_age_ms = self.settings.batch_max_age_s * 1000.0
            if self._batch and now_ms - self._batch_started_ms >= max_age_ms:
                full.append(self._batch)
                self._batch = []
        for readings in full:
            self._enqueue(readings)

    # -- outbox -> MQTT --------------------------------------------------------------------

    def _enqueue(self, readings: list[NumberedSample]) -> OutboxEntry | None:
        try:
            payload = encode_batch(readings, self.settings.payload_format)
        except WireError as exc:
            self._log.error("batch_dropped", readings=len(readings), reason=str(exc))
            with self._lock:
                self._dropped += len(readings)
            return None
        entry = self._outbox.put(self._readings_topic, payload, len(readings))
        with self._lock:
            self._last_entry_id = max(self._last_entry_id, entry.id)
        return entry

    def _pump(self) -> None:
        """Hand the oldest waiting batches to MQTT while fewer than max_inflight are out."""
        sent: list[OutboxEntry] = []
        with self._send_lock:
            with self._lock:
                handed = set(self._handed)
            room = self.settings.max_inflight - len(handed)
            if room > 0:
                for entry in self._outbox.pending(limit=room + len(handed)):
                    if entry.id in handed:
                        continue
                    if self._publish(entry.topic, entry.payload, False, entry) is None:
                        break  # paho refused it; retried on the next pump
                    sent.append(entry)
                    if len(sent) == room:
                        break
        for entry in sent:
            self._call_hook(entry)

    def _publish(
        self, topic: str, payload: bytes, retain: bool, entry: OutboxEntry | None
    ) -> mqtt.MQTTMessageInfo | None:
        """QoS 1 publish, recording its mid so the PUBACK finds it. None if paho refused."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._log.warning("publish_refused", topic=topic, rc=mqtt.error_string(info.rc))
            return None
        with self._lock:
            if entry is not None:
                self._handed.add(entry.id)
                self._published += entry.readings
                self._batches += 1
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                if entry is not None:
                    self._settle_locked(entry)
            else:
                self._inflight[info.mid] = entry
        return info

    def _settle_locked(self, entry: OutboxEntry) -> None:
        self._outbox.ack(entry.id)
        self._handed.discard(entry.id)
        self._acked_readings += entry.readings
        self._batches_acked += 1
        self._acked.notify_all()

    def _call_hook(self, entry: OutboxEntry) -> None:
        hook = self.on_payload
        if hook is None:
            return
        try:
            hook(entry.topic, entry.payload)
        except Exception:
            self._log.exception("on_payload_hook_failed")

    def _status_payload(self, state: Literal["online", "offline"]) -> bytes:
        return GatewayStatus(state=state, ts=self._clock()).to_json()

    def _publish_status(self, state: Literal["online", "offline"]) -> mqtt.MQTTMessageInfo | None:
        return self._publish(self._status_topic, self._status_payload(state), True, None)

    # -- paho ------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            clean_session=False,  # QoS 1 publishes in flight survive a reconnect
            protocol=mqtt.MQTTv311,
        )
        client.max_inflight_messages_set(0)  # unlimited in paho: the agent bounds it itself
        client.reconnect_delay_set(min_delay=0.5, max_delay=30)  # type: ignore[arg-type]
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._set_will(client)
        return client

    def _set_will(self, client: mqtt.Client) -> None:
        client.will_set(self._status_topic, self._status_payload("offline"), qos=1, retain=True)

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        # The will's ts is the last connection attempt: the gateway cannot know when it dies.
        self._set_will(client)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
        reason_code: ReasonCode, properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._log.warning("broker_refused_connection", reason=str(reason_code))
            return
        with self._lock:
            self._connects += 1
        self._log.info("connected", session_present=flags.session_present)
        self._publish_status("online")
        self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        s = self.settings
        self._log.warning("connect_failed", broker=f"{s.broker_host}:{s.broker_port}")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode, properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if self._stopped:
            self._log.info("disconnected")
        else:
            self._log.warning("connection_lost", reason=str(reason_code))

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int,
        reason_code: ReasonCode, properties: Properties,
    ) -> None:
        with self._lock:
            if mid not in self._inflight:
                self._early_acks.add(mid)
                return
            entry = self._inflight.pop(mid)
            if entry is not None:
                self._settle_locked(entry)
        self._wake.set()
