"""The gateway's edge agent: polls drivers, buffers every reading durably, publishes at QoS 1.

Threads: paho's network loop (callbacks: connect, disconnect, PUBACK) and one sampling thread
(polls the drivers, commits their readings to the `ReadingBuffer`, cuts batches from it and hands
them to MQTT, deletes what the broker acknowledged). A reading leaves the buffer only after the
PUBACK of the batch that carried it.

Two cursors run over the buffer's rows. *Live* readings (appended since the last connect) go out
in batches bounded by size and age. The *backlog* (what was buffered before: an outage, or a
previous run of the agent) drains oldest first, at most `drain_readings_per_s`, beside them. At
most `max_inflight` batches are handed to the MQTT client at a time; a local alarm's batch goes
out at once regardless (see `sensing_edge.alarms`).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
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

from .alarms import AlarmSettings, LocalAlarms
from .batching import PayloadFormat, encode_batch
from .buffer import ReadingBuffer, Row, WhenFull
from .drivers import Driver, SensorSample
from .security import BrokerSecurity, apply_security

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
PayloadHook = Callable[[str, bytes], None]


RECENT_MAX = 20_000
"""live rows kept in memory for their batches (about 2 MB); more are read back from the buffer"""


def backoff_delay(failures: int, min_s: float, max_s: float,
                  rng: random.Random | None = None) -> float:
    """Capped exponential backoff with jitter: after `failures` failed attempts in a row, a
    random time in [d/2, d] with d = min(max_s, min_s * 2**failures), so that gateways that
    lost the broker together do not all come back at the same instant."""
    cap = min(max_s, min_s * 2.0 ** min(failures, 60))
    return (rng or _jitter).uniform(cap / 2, cap)


_jitter = random.Random()


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
    epoch: int | None = Field(default=None, ge=0, le=2**32 - 1)
    """None: the buffer's (one more than the previous run's, at least the Unix time in s)"""
    keepalive_s: int = Field(default=30, ge=5, le=65535)
    buffer_path: Path | None = None
    """the durable buffer's SQLite file; None keeps it in memory (lost with the process)"""
    buffer_max_readings: int = Field(default=1_000_000, ge=1)
    buffer_when_full: WhenFull = WhenFull.DROP_OLDEST
    drain_readings_per_s: float = Field(default=50_000.0, gt=0)
    """how fast the backlog of an outage or an earlier run goes out, beside live readings"""
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    """reconnect delays double from min to max, each drawn at random in [half, all] of it"""
    alarms: AlarmSettings = AlarmSettings()
    security: BrokerSecurity = BrokerSecurity()
    """credentials and TLS for the broker (see sensing_edge.security)"""

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

    @model_validator(mode="after")
    def _delays_in_order(self) -> AgentSettings:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        return self


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
    """readings that could not be encoded, or dropped by a full buffer (both logged)"""
    readings_buffered: int
    """readings in the buffer: not yet acknowledged"""
    batches: int
    """batches handed to the MQTT client"""
    batches_acked: int
    pending_batches: int
    """batches handed to the MQTT client and not yet acknowledged"""
    connected: bool
    connects: int
    epoch: int
    local_alarms: int
    """readings that met a local alarm rule"""

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


class _Sent:
    """A batch handed to MQTT: its buffer rows."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[int]) -> None:
        self.rows = rows


class GatewayAgent:
    """One gateway's agent. `start()`, let it run, `stop()`; `stats()` at any time.

    `buffer` defaults to the one `settings` describe (a file, or memory); an agent closes the
    buffer it opened itself when it stops."""

    def __init__(
        self,
        settings: AgentSettings,
        drivers: Sequence[Driver],
        clock: Callable[[], int] = wall_clock_ms,
        *,
        buffer: ReadingBuffer | None = None,
        on_payload: PayloadHook | None = None,
    ) -> None:
        self.settings = settings
        self.on_payload: PayloadHook | None = on_payload
        """Called with (topic, payload) once for each batch handed to MQTT."""
        self._drivers = tuple(drivers)
        self._clock = clock
        self._owns_buffer = buffer is None
        self._buffer = buffer if buffer is not None else ReadingBuffer(
            settings.buffer_path or ":memory:", max_readings=settings.buffer_max_readings,
            when_full=settings.buffer_when_full, epoch=settings.epoch)
        self.epoch = self._buffer.epoch
        self._alarms = LocalAlarms(settings.alarms, settings.gateway, settings.area)
        self._readings_topic = readings_topic(settings.area, settings.gateway)
        self._status_topic = status_topic(settings.area, settings.gateway)
        self._log = structlog.get_logger(__name__).bind(
            gateway=settings.gateway, area=settings.area
        )

        # Cursors over the buffer's rows (sampling thread, under _send_lock): everything up to
        # `_boundary` when the agent started or last connected is backlog.
        self._boundary = self._buffer.last_row()
        self._backlog_after = 0
        self._live_after = self._boundary
        self._live_since: float | None = None  # monotonic time of the oldest unsent live row
        self._live_pending = 0  # live rows not handed yet (kept here: a COUNT per pump costs)
        # The live rows not handed yet, as appended, while there are few (reading them back
        # from the buffer costs more than the rest of publishing them); when `_recent_ok` is
        # off (too many, or the buffer dropped some), live batches are read from the buffer.
        self._recent: deque[Row] = deque()
        self._recent_ok = True
        self._dropped_seen = self._buffer.dropped
        self._tokens = 0.0
        self._tokens_at = time.monotonic()
        self._flush_wanted = False
        self._reconnected = False
        # Serialises the buffer's cursors and hand-overs to paho. Never taken in a paho
        # callback: paho calls on_publish holding its message lock, which publish() needs too.
        self._send_lock = threading.Lock()
        # Bookkeeping shared with paho's callbacks; `_acked` is notified on every PUBACK.
        self._lock = threading.Lock()
        self._acked = threading.Condition(self._lock)
        self._inflight: dict[int, _Sent | None] = {}  # mid -> batch (None: status)
        self._early_acks: set[int] = set()  # PUBACKs that beat publish() returning
        self._handed_rows: set[int] = set()  # rows handed to paho, not yet acknowledged
        self._acked_rows: set[int] = set()  # acknowledged, to delete from the buffer
        self._sampled = self._published = self._acked_readings = self._dropped = 0
        self._batches = self._batches_acked = self._connects = 0
        self._failed_connects = 0

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
            format=s.payload_format, epoch=self.epoch, buffered=len(self._buffer),
            buffer=str(s.buffer_path or ":memory:"),
        )
        self._client.connect_async(s.broker_host, s.broker_port, keepalive=s.keepalive_s)
        self._client.loop_start()
        self._sampler = threading.Thread(
            target=self._run, name=f"edge-sampler-{s.gateway}", daemon=True
        )
        self._sampler.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop sampling, publish what is buffered, wait up to `timeout` s for PUBACKs, publish
        the retained offline status and disconnect. True if every reading was acknowledged
        (what was not stays in a durable buffer for the next run)."""
        if self._sampler is None or self._stopped:
            return len(self._buffer) == 0
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
        with self._send_lock:
            self._delete_acked()
        self._log.info("agent_stopped", all_acked=all_acked, **self.stats().as_dict())
        if self._owns_buffer:
            self._buffer.close()
        return all_acked

    def stats(self) -> AgentStats:
        with self._lock:
            return AgentStats(
                readings_sampled=self._sampled,
                readings_published=self._published,
                readings_acked=self._acked_readings,
                readings_dropped=self._dropped + self._buffer.dropped,
                readings_buffered=len(self._buffer),
                batches=self._batches,
                batches_acked=self._batches_acked,
                pending_batches=sum(1 for e in self._inflight.values() if e is not None),
                connected=self._connected.is_set(),
                connects=self._connects,
                epoch=self.epoch,
                local_alarms=self._alarms.raised,
            )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the broker accepted the connection; False on timeout."""
        return self._connected.wait(timeout)

    def wait_acked(self, timeout: float) -> bool:
        """Wait until every reading buffered so far is acknowledged; False on timeout. Young
        live readings are sent at once (as by `flush`)."""
        deadline = time.monotonic() + timeout
        mark = self._buffer.last_row()
        while True:
            self._flush_wanted = True
            self._pump()  # after stop() no sampling thread moves the buffer
            if self._buffer.count_after(0, through=mark) == 0:
                return True
            with self._acked:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._acked.wait(min(remaining, 0.05))

    def flush(self) -> None:
        """Publish the live readings now, however few or young."""
        self._flush_wanted = True
        self._pump()

    def publish_now(self, samples: Sequence[SensorSample]) -> None:
        """Buffer `samples` and publish them at once, with any live readings before them,
        regardless of the batch's age and of the in-flight bound (for local alarms)."""
        rows = self._buffer.append(samples)
        with self._lock:
            self._sampled += len(samples)
        self._note_live(rows)
        self._pump(urgent=True)

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
                self._alarms.reap()
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
        if not samples:
            return
        rows = self._buffer.append(samples)
        with self._lock:
            self._sampled += len(samples)  # numbered, whether the buffer kept them or not
        self._note_live(rows)
        if self._live_since is None and rows:
            self._live_since = time.monotonic()
        if self._alarms.check(samples):
            self._pump(urgent=True)

    # -- buffer -> MQTT --------------------------------------------------------------------

    def _pump(self, urgent: bool = False) -> None:
        """Delete what was acknowledged; hand live batches that are due (all of them when
        `urgent`, regardless of the in-flight bound) and backlog batches the drain rate allows,
        while fewer than max_inflight batches are out."""
        s = self.settings
        sent: list[tuple[list[int], bytes]] = []
        with self._send_lock:
            self._delete_acked()
            if self._reconnected:  # what was not handed yet joins the backlog
                self._reconnected = False
                self._boundary = self._buffer.last_row()
                self._live_after = self._boundary
                self._live_since = None
                self._live_pending = 0
                self._recent.clear()
                self._recent_ok = True
            flush, self._flush_wanted = self._flush_wanted, False
            room = s.max_inflight - self._batches_out()
            live = self._live_pending
            if live <= 0:
                self._live_since = None
            else:
                # a full batch goes when it is full, the rest when it is old enough (or now)
                partial_due = urgent or flush or (
                    self._live_since is not None
                    and time.monotonic() - self._live_since >= s.batch_max_age_s)
                while live > 0 and (room > 0 or urgent):
                    if live < s.batch_max_readings and not partial_due:
                        break
                    rows, cached = self._take_live(s.batch_max_readings)
                    if not rows:  # a full buffer deleted them (drop-oldest)
                        live = self._live_pending = 0
                        break
                    if not self._hand(rows, sent):
                        break
                    for _ in range(len(rows) if cached else 0):
                        self._recent.popleft()
                    self._live_after = rows[-1][0]
                    live -= len(rows)
                    self._live_pending -= len(rows)
                    room -= 1
                    # what is left waits its own batch_max_age from now (an approximation)
                    self._live_since = time.monotonic() if live > 0 else None
            self._refill_tokens()
            while room > 0 and self._backlog_after < self._boundary and self._tokens >= 1:
                limit = min(s.batch_max_readings, int(self._tokens))
                rows = self._buffer.take(self._backlog_after, limit, through=self._boundary)
                if not rows:
                    self._backlog_after = self._boundary
                    break
                self._backlog_after = rows[-1][0]
                with self._lock:  # not in flight, and not acknowledged since the deletion
                    fresh = [r for r in rows if r[0] not in self._handed_rows
                             and r[0] not in self._acked_rows]
                if fresh and not self._hand(fresh, sent):
                    self._backlog_after = rows[0][0] - 1
                    break
                self._tokens -= len(rows)
                room -= 1
        for _, payload in sent:
            self._call_hook(payload)

    def _note_live(self, rows: list[Row]) -> None:
        with self._send_lock:
            self._live_pending += len(rows)
            if not self._recent_ok:
                return
            if len(self._recent) + len(rows) > RECENT_MAX:
                self._recent_ok = False
                self._recent.clear()
            else:
                self._recent.extend(rows)

    def _take_live(self, limit: int) -> tuple[list[Row], bool]:
        """The oldest live rows not handed yet (at most `limit`), and whether they came from
        `_recent` (under _send_lock)."""
        if self._buffer.dropped != self._dropped_seen:  # some may be gone from the buffer
            self._dropped_seen = self._buffer.dropped
            self._recent_ok = False
            self._recent.clear()
        if self._recent_ok:
            while self._recent and self._recent[0][0] <= self._live_after:
                self._recent.popleft()
            if self._recent:
                return list(itertools.islice(self._recent, limit)), True
        rows = self._buffer.take(self._live_after, limit)
        if not self._recent_ok and len(rows) < limit:  # caught up: the cache can start again
            self._recent_ok = True
            self._recent.clear()
        return rows, False

    def _refill_tokens(self) -> None:
        now = time.monotonic()
        rate = self.settings.drain_readings_per_s
        burst = max(float(self.settings.batch_max_readings), rate * self.settings.poll_interval_s)
        self._tokens = min(burst, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now

    def _batches_out(self) -> int:
        with self._lock:
            return sum(1 for e in self._inflight.values() if e is not None)

    def _hand(self, rows: list[Row], sent: list[tuple[list[int], bytes]]) -> bool:
        """Encode and publish one batch; False if paho refused it (retried later)."""
        ids = [r for r, _ in rows]
        try:
            payload = encode_batch([n for _, n in rows], self.settings.payload_format)
        except WireError as exc:
            self._log.error("batch_dropped", readings=len(rows), reason=str(exc))
            with self._lock:
                self._dropped += len(rows)
                self._acked_rows.update(ids)  # nothing can ever send them: out of the buffer
            return True
        if self._publish(self._readings_topic, payload, False, _Sent(ids)) is None:
            return False
        sent.append((ids, payload))
        return True

    def _delete_acked(self) -> None:
        with self._lock:
            rows, self._acked_rows = self._acked_rows, set()
        if rows:
            self._buffer.remove(rows)

    def _publish(
        self, topic: str, payload: bytes, retain: bool, batch: _Sent | None
    ) -> mqtt.MQTTMessageInfo | None:
        """QoS 1 publish, recording its mid so the PUBACK finds it. None if paho refused."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._log.warning("publish_refused", topic=topic, rc=mqtt.error_string(info.rc))
            return None
        with self._lock:
            if batch is not None:
                self._handed_rows.update(batch.rows)
                self._published += len(batch.rows)
                self._batches += 1
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                if batch is not None:
                    self._settle_locked(batch)
            else:
                self._inflight[info.mid] = batch
        return info

    def _settle_locked(self, batch: _Sent) -> None:
        self._handed_rows.difference_update(batch.rows)
        self._acked_rows.update(batch.rows)
        self._acked_readings += len(batch.rows)
        self._batches_acked += 1
        self._acked.notify_all()

    def _call_hook(self, payload: bytes) -> None:
        hook = self.on_payload
        if hook is None:
            return
        try:
            hook(self._readings_topic, payload)
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
        apply_security(client, s.security)
        self._next_reconnect_delay(client)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._set_will(client)
        return client

    def _next_reconnect_delay(self, client: mqtt.Client) -> None:
        """paho waits its `min_delay` after `reconnect_delay_set`: the agent sets it to the
        next `backoff_delay` before each wait."""
        s = self.settings
        delay = backoff_delay(self._failed_connects, s.reconnect_min_s, s.reconnect_max_s)
        client.reconnect_delay_set(min_delay=delay, max_delay=max(delay, s.reconnect_max_s))  # type: ignore[arg-type]

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
            self._failed_connects += 1
            self._next_reconnect_delay(client)
            return
        with self._lock:
            self._connects += 1
            reconnect = self._connects > 1
        self._failed_connects = 0
        self._next_reconnect_delay(client)
        self._log.info("connected", session_present=flags.session_present,
                       buffered=len(self._buffer))
        self._publish_status("online")
        if reconnect:
            self._reconnected = True
        self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        s = self.settings
        self._failed_connects += 1
        self._next_reconnect_delay(client)
        self._log.warning("connect_failed", broker=f"{s.broker_host}:{s.broker_port}",
                          attempts=self._failed_connects)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode, properties: Properties | None,
    ) -> None:
        self._connected.clear()
        self._next_reconnect_delay(client)
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
            batch = self._inflight.pop(mid)
            if batch is not None:
                self._settle_locked(batch)
        self._wake.set()
