"""The gateway's edge agent: polls drivers, buffers every reading durably, publishes at QoS 1.

Threads: paho's network loop (callbacks: connect, disconnect, PUBACK, the core's confirmations)
and one sampling thread (polls the drivers, commits their readings to the `ReadingBuffer`, cuts
batches from it and hands them to MQTT, deletes what is confirmed, re-sends what is overdue).

A reading leaves the buffer only when the core confirms it stored it (`confirm = "core"`, the
default): the core publishes what it stored on `sensing/v1/core/stored/{area}/{gateway}`
(`sensing.wire.confirm`), to which the agent subscribes in its persistent session. The broker's
PUBACK only moves a batch from "in flight to the broker" to "waiting for the core": Mosquitto
persists its queues only every `autosave_interval`, so a broker crash loses what it PUBACKed
since. A batch the core has not confirmed `confirm_timeout_s` after its PUBACK is sent again
(the timeout doubling per attempt up to `confirm_timeout_max_s`); the core's dedup window drops
the copy and confirms it again. While the core is silent (it confirmed no batch first sent after
the batch's last attempt: it is down, or does not confirm), overdue batches are not all re-sent:
one probes, at the same backoff and only into quiet (no confirmation for `confirm_timeout_s`),
so that an outage of hours costs the broker a few copies, not the whole window again and again.
The core handles a gateway's messages in order, so once it confirms a batch first sent later, an
overdue batch was refused or lost by the broker: it goes at once (after a core outage the
broker's queue still holds the originals, which are confirmed in order, so nothing is re-sent
for nothing). A batch the core keeps ignoring while confirming newer ones was refused (a payload
the core dead-letters whole: it never confirms it); after `confirm_give_up_after` such resends
its readings are deleted with an error log and counted (`readings_refused`). A silent core never
makes the agent give up.

At most `max_unconfirmed_readings` readings are handed out and not yet confirmed (the bound on
the agent's bookkeeping, about 170 bytes a reading: 8.5 MB at the default); beyond it no new
batch is handed, so a dead core leaves the backlog in the gateway's durable buffer rather than
in the broker, and what waits joins the backlog (below), to drain beside live readings when the
core is back. With `confirm = "broker"` (a core that does not confirm, or tests without a core)
the PUBACK deletes, as before: a broker crash may then lose what it held.

Two cursors run over the buffer's rows. *Live* readings (appended since the last connect) go out
in batches bounded by size and age, each cut into parts the core takes when its payload would
exceed `max_payload_bytes` or the contract's per-message counts (`batching.encode_fitting`). The
*backlog* (what was buffered before: an outage, or a previous run of the agent) drains oldest
first, at most `drain_readings_per_s`, beside them. At most `max_inflight` batches are handed
to the MQTT client at a time; a local alarm's batch goes out at once regardless (see
`sensing_edge.alarms`).
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
from sensing.wire.confirm import parse_stored
from sensing.wire.messages import GatewayStatus
from sensing.wire.topics import RESERVED_AREAS, readings_topic, status_topic, stored_topic

from .alarms import AlarmSettings, LocalAlarms
from .batching import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_MQTT_PAYLOAD_BYTES,
    MIN_PAYLOAD_BYTES,
    PayloadFormat,
    Segment,
    encode_batch,
    encode_fitting,
    over_message_limits,
)
from .buffer import ReadingBuffer, Row, WhenFull
from .drivers import Driver, SensorSample
from .security import BrokerSecurity, apply_security

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
PayloadHook = Callable[[str, bytes], None]


RECENT_MAX = 20_000
"""live rows kept in memory for their batches (about 2 MB); more are read back from the buffer"""
RESEND_SCAN_S = 0.25
"""how often the sampling thread looks for batches the core did not confirm in time"""
MAX_OPEN_BATCHES = 2_000
"""batches handed out and not fully confirmed, at most, beside max_unconfirmed_readings: a quiet
gateway's small batches would otherwise be tens of thousands to scan for resends"""

ConfirmBy = Literal["core", "broker"]


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
    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD_BYTES, ge=MIN_PAYLOAD_BYTES,
                                   le=MAX_MQTT_PAYLOAD_BYTES)
    """the core's `max_payload_bytes` (1 MiB by default): a batch whose payload would be larger,
    or break the contract's per-message counts (readings, values, devices, channels), goes
    out cut in parts that fit; a reading too large alone is dropped, logged and counted"""
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
    confirm: ConfirmBy = "core"
    """who confirms a reading before it leaves the buffer: the core, once it stored it (on
    sensing/v1/core/stored/{area}/{gateway}), or the broker's PUBACK (a core that does not
    confirm; a broker crash may then lose what it held)"""
    max_unconfirmed_readings: int = Field(default=50_000, ge=1)
    """readings handed out and not yet confirmed, at most (plus one batch, and local alarms):
    beyond it no new batch is handed and the rest waits in the buffer"""
    confirm_timeout_s: float = Field(default=30.0, gt=0)
    confirm_timeout_max_s: float = Field(default=300.0, gt=0)
    """a batch the core has not confirmed this long after its PUBACK is sent again; the
    timeout doubles per attempt from confirm_timeout_s up to confirm_timeout_max_s"""
    confirm_give_up_after: int = Field(default=5, ge=1)
    """resends of a batch the core ignored while confirming newer ones (it refused its
    readings) after which they are deleted, logged as an error and counted"""
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
        if self.confirm_timeout_max_s < self.confirm_timeout_s:
            raise ValueError("confirm_timeout_max_s must be at least confirm_timeout_s")
        return self

    def confirm_timeout(self, attempts: int) -> float:
        """How long a batch sent `attempts` times waits for the core before it is re-sent."""
        return min(self.confirm_timeout_max_s,
                   self.confirm_timeout_s * 2.0 ** min(max(attempts - 1, 0), 60))


@dataclass(frozen=True, slots=True)
class AgentStats:
    """Counters of one agent since it was created."""

    readings_sampled: int
    """numbered readings from drivers and publish_now"""
    readings_published: int
    """readings in batches handed to the MQTT client (resends included)"""
    readings_acked: int
    """readings in batches the broker acknowledged (PUBACK; resends included)"""
    readings_confirmed: int
    """readings deleted from the buffer because they are safe: the core confirmed storing them
    (confirm = "core"), or the broker acknowledged them (confirm = "broker")"""
    readings_awaiting_core: int
    """readings the broker acknowledged and the core has not confirmed yet"""
    readings_resent: int
    """readings sent again because the core did not confirm them in time"""
    readings_refused: int
    """readings given up on: the core kept ignoring them while confirming newer ones (logged)"""
    readings_dropped: int
    """readings that could not be encoded, or dropped by a full buffer (both logged)"""
    readings_buffered: int
    """readings in the buffer: not yet confirmed"""
    batches: int
    """batches handed to the MQTT client (resends included)"""
    batches_split: int
    """batches cut in parts to fit max_payload_bytes and the per-message counts (logged)"""
    batches_acked: int
    pending_batches: int
    """batches handed to the MQTT client and not yet acknowledged by the broker"""
    confirmations: int
    """confirmation messages received from the core (malformed ones are logged, not counted)"""
    connected: bool
    connects: int
    epoch: int
    local_alarms: int
    """readings that met a local alarm rule"""

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


class _Batch:
    """Readings handed to MQTT together, until every one is confirmed (or given up).

    `rows` are its buffer rows as first handed; those still unconfirmed are the ones that
    `GatewayAgent._row_batch` maps to this batch (`remaining` of them). A resend carries those,
    as the same batch."""

    __slots__ = ("attempts", "due", "first_no", "heard", "in_flight", "refusals", "remaining",
                 "rows", "sent_no")

    def __init__(self, rows: list[int]) -> None:
        self.rows = rows
        self.remaining = len(rows)
        self.attempts = 0
        self.sent_no = 0  # the agent's send counter at the last attempt
        self.first_no = 0  # ... and at the first
        self.in_flight = True  # handed to paho, no PUBACK yet
        self.due = 0.0  # monotonic time to re-send it unless confirmed
        self.refusals = 0  # resends while the core confirmed newer batches
        self.heard = False  # some of its readings were confirmed since its last attempt


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
        self._stored_topic = stored_topic(settings.area, settings.gateway)
        self._by_core = settings.confirm == "core"
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
        # Bookkeeping shared with paho's callbacks; `_acked` is notified on every PUBACK and
        # confirmation.
        self._lock = threading.Lock()
        self._acked = threading.Condition(self._lock)
        # mid -> (batch, readings of that attempt), or None for a status
        self._inflight: dict[int, tuple[_Batch, int] | None] = {}
        self._early_acks: set[int] = set()  # PUBACKs that beat publish() returning
        self._batches_open: dict[_Batch, None] = {}  # not fully confirmed, oldest first
        self._row_batch: dict[int, _Batch] = {}  # rows handed and not confirmed -> batch
        # (device, epoch) -> seq -> row, for the rows of _row_batch (confirm = "core")
        self._awaiting: dict[tuple[str, int], dict[int, int]] = {}
        self._acked_rows: set[int] = set()  # confirmed, to delete from the buffer
        self._send_no = 0  # counts attempts (hands and resends)
        self._confirmed_send_no = 0  # the latest first attempt of a batch the core confirmed
        self._probe: _Batch | None = None  # the batch re-sent while the core was silent
        self._next_probe = 0.0  # monotonic time the next probe may go
        self._last_heard = 0.0  # monotonic time of the last confirmation that deleted rows
        self._next_scan = 0.0
        self._sampled = self._published = self._acked_readings = self._dropped = 0
        self._batches = self._batches_acked = self._connects = 0
        self._confirmed = self._resent = self._refused = self._confirmations = 0
        self._failed_connects = 0
        self._splits = 0

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
        """Stop sampling, publish what is buffered, wait up to `timeout` s for confirmations,
        publish the retained offline status and disconnect. True if every reading was confirmed
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
                readings_confirmed=self._confirmed,
                readings_awaiting_core=sum(
                    b.remaining for b in self._batches_open if not b.in_flight),
                readings_resent=self._resent,
                readings_refused=self._refused,
                readings_dropped=self._dropped + self._buffer.dropped,
                readings_buffered=len(self._buffer),
                batches=self._batches,
                batches_split=self._splits,
                batches_acked=self._batches_acked,
                pending_batches=sum(1 for e in self._inflight.values() if e is not None),
                confirmations=self._confirmations,
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
        """Wait until every reading buffered so far is confirmed (by the core, or the broker
        with confirm = "broker"); False on timeout. Young live readings are sent at once (as by
        `flush`)."""
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
        """Delete what was confirmed; re-send what the core did not confirm in time; hand live
        batches that are due (all of them when `urgent`, regardless of the bounds) and backlog
        batches the drain rate allows, while fewer than max_inflight batches are out and fewer
        than max_unconfirmed_readings readings await confirmation."""
        s = self.settings
        sent: list[bytes] = []
        with self._send_lock:
            self._delete_acked()
            if self._reconnected:  # what was not handed yet joins the backlog
                self._reconnected = False
                self._live_joins_backlog()
            flush, self._flush_wanted = self._flush_wanted, False
            room = s.max_inflight - self._batches_out()
            room -= self._resend_overdue(room, sent)
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
                    if not urgent and self._unconfirmed_full():
                        # the core is slow or away: what waits drains as backlog beside the
                        # live readings of the time the core is back
                        self._live_joins_backlog()
                        break
                    rows, cached = self._take_live(s.batch_max_readings)
                    if not rows:  # a full buffer deleted them (drop-oldest)
                        live = self._live_pending = 0
                        break
                    done, handed = self._hand(rows, sent)
                    if done:
                        for _ in range(done if cached else 0):
                            self._recent.popleft()
                        self._live_after = rows[done - 1][0]
                        live -= done
                        self._live_pending -= done
                        room -= max(1, handed)
                        # what is left waits its own batch_max_age from now (an approximation)
                        self._live_since = time.monotonic() if live > 0 else None
                    if done < len(rows):  # paho refused a batch: the rest goes later
                        break
            self._refill_tokens()
            while (room > 0 and self._backlog_after < self._boundary and self._tokens >= 1
                   and not self._unconfirmed_full()):
                limit = min(s.batch_max_readings, int(self._tokens))
                rows = self._buffer.take(self._backlog_after, limit, through=self._boundary)
                if not rows:
                    self._backlog_after = self._boundary
                    break
                self._backlog_after = rows[-1][0]
                with self._lock:  # not handed already, and not confirmed since the deletion
                    fresh = [r for r in rows if r[0] not in self._row_batch
                             and r[0] not in self._acked_rows]
                done, handed = self._hand(fresh, sent) if fresh else (0, 0)
                if done < len(fresh):  # what was handed is not fresh any more when retried
                    self._backlog_after = rows[0][0] - 1
                    break
                self._tokens -= len(rows)
                room -= max(1, handed)
        for payload in sent:
            self._call_hook(payload)

    def _live_joins_backlog(self) -> None:
        """Everything not handed yet becomes backlog (under _send_lock)."""
        self._boundary = self._buffer.last_row()
        self._live_after = self._boundary
        self._live_since = None
        self._live_pending = 0
        self._recent.clear()
        self._recent_ok = True

    def _unconfirmed_full(self) -> bool:
        return (len(self._row_batch) >= self.settings.max_unconfirmed_readings
                or len(self._batches_open) >= MAX_OPEN_BATCHES)

    def _resend_overdue(self, room: int, sent: list[bytes]) -> int:
        """Re-send batches the core has not confirmed in time (under _send_lock); returns how
        many were handed. A batch is overdue `confirm_timeout(attempts)` after its PUBACK. If
        the core has confirmed a reading sent after the batch, the batch was refused (or lost
        by the broker): it goes again, and after confirm_give_up_after such resends it is given
        up. If the core has been silent since, one overdue batch probes, at its own growing
        timeout (the same one again while it stays unconfirmed), and only once no confirmation
        came for confirm_timeout_s."""
        if not self._by_core or room <= 0:
            return 0
        now = time.monotonic()
        if now < self._next_scan:
            return 0
        self._next_scan = now + RESEND_SCAN_S
        with self._lock:
            overdue = [b for b in self._batches_open if not b.in_flight and b.due <= now]
            confirmed_since = self._confirmed_send_no
            last_heard = self._last_heard
            probe = self._probe
        if not overdue:
            return 0
        refused: list[_Batch] = []
        silent: list[_Batch] = []
        for b in overdue:  # the core confirmed something sent later, or part of this attempt
            (refused if b.sent_no < confirmed_since or b.heard else silent).append(b)
        chosen = list(refused)
        # While confirmations flow the core is working through its queue: it will reach the
        # silent batches (or confirm one first sent after them). Probe only into quiet.
        quiet = now - last_heard >= self.settings.confirm_timeout_s
        probing = probe is not None and probe.remaining > 0 and probe not in silent
        if silent and quiet and now >= self._next_probe and not probing:
            self._probe = probe if probe in silent else silent[0]
            self._next_probe = now + self.settings.confirm_timeout(self._probe.attempts + 1)
            chosen.append(self._probe)
        handed = resent = 0
        for b in chosen:
            if handed >= room:
                break
            if b in refused:
                b.refusals += 1
                if b.refusals > self.settings.confirm_give_up_after:
                    self._give_up(b)
                    continue
            n = self._resend(b, sent)
            if n < 0:  # paho refused: try again at the next scan, no refusal by the core
                b.refusals -= 1 if b in refused else 0
                break
            resent += n
            handed += 1 if n else 0
        if resent:
            self._log.info("readings_resent", readings=resent, batches=handed,
                           unconfirmed_while_core_confirmed_newer=len(refused),
                           core_silent_probe=len(chosen) > len(refused))
        return handed

    def _unconfirmed_rows(self, batch: _Batch) -> list[int]:
        with self._lock:
            return [r for r in batch.rows if self._row_batch.get(r) is batch]

    def _resend(self, batch: _Batch, sent: list[bytes]) -> int:
        """Publish the batch's unconfirmed readings again; how many (0: none left in the
        buffer, -1: paho refused)."""
        rows = self._unconfirmed_rows(batch)
        found = self._buffer.get(rows)
        if len(found) < len(rows):  # a full buffer deleted some (drop-oldest): counted there
            kept = {r for r, _ in found}
            with self._lock:
                self._forget_locked([r for r in rows if r not in kept])
        if not found:
            return 0
        readings = [n for _, n in found]
        try:  # some of a batch that fitted: they fit (checked all the same)
            payload = encode_batch(readings, self.settings.payload_format)
            unfit = over_message_limits(readings) or (
                "too large" if len(payload) > self.settings.max_payload_bytes else None)
        except WireError as exc:
            unfit = str(exc)
        if unfit is not None:  # cannot happen, but never hand the core what it refuses
            self._log.error("resend_unsendable", reason=unfit)
            self._give_up(batch)
            return 0
        if self._publish(self._readings_topic, payload, False, batch, len(found)) is None:
            return -1
        with self._lock:
            self._resent += len(found)
        sent.append(payload)
        return len(found)

    def _give_up(self, batch: _Batch) -> None:
        """The core kept ignoring these readings while confirming newer ones: delete them."""
        rows = self._unconfirmed_rows(batch)
        if not rows:  # confirmed meanwhile
            return
        found = self._buffer.get(rows[:5])
        with self._lock:
            self._forget_locked(rows)
            self._acked_rows.update(rows)
            self._refused += len(rows)
        self._log.error(
            "readings_refused_by_core", readings=len(rows), attempts=batch.attempts,
            examples=[f"{n.sample.device}/{n.epoch}/{n.seq}" for _, n in found],
            hint="the core confirmed newer readings but never these: see its dead letters")

    def _forget_locked(self, rows: list[int]) -> None:
        """Stop waiting for these rows' confirmation (under _lock; a rare path: it scans)."""
        gone = set(rows)
        for row in gone:
            batch = self._row_batch.pop(row, None)
            if batch is not None:
                batch.remaining -= 1
                if batch.remaining <= 0:
                    self._batches_open.pop(batch, None)
        if self._by_core and gone:
            for key, seqs in list(self._awaiting.items()):
                for seq in [q for q, r in seqs.items() if r in gone]:
                    del seqs[seq]
                if not seqs:
                    del self._awaiting[key]

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

    def _hand(self, rows: list[Row], sent: list[bytes]) -> tuple[int, int]:
        """Encode and publish new batches of `rows`, cut to fit the core's limits; returns how
        many of the rows were disposed of (handed, or dropped as unsendable: all of them, or a
        prefix if paho refused a batch, the rest to retry later) and how many batches went."""
        segments = encode_fitting([n for _, n in rows], self.settings.payload_format,
                                  self.settings.max_payload_bytes)
        if len(segments) > 1:
            self._note_split(len(rows), segments)
        done = handed = 0
        for seg in segments:
            part = rows[seg.start:seg.stop]
            if seg.payload is None:
                self._drop_unsendable(part, seg.reason)
            elif self._hand_one(part, seg.payload, sent):
                handed += 1
            else:
                break
            done = seg.stop
        return done, handed

    def _note_split(self, readings: int, segments: list[Segment]) -> None:
        with self._lock:
            self._splits += 1
            first = self._splits == 1
        sizes = [len(seg.payload) for seg in segments if seg.payload is not None]
        log = self._log.warning if first else self._log.debug
        log("batch_split_to_fit", readings=readings, batches=len(sizes),
            largest_bytes=max(sizes, default=0), max_payload_bytes=self.settings.max_payload_bytes,
            hint="a smaller batch_max_readings (or the snb1 format) avoids encoding twice")

    def _drop_unsendable(self, rows: list[Row], reason: str) -> None:
        n = rows[0][1]
        self._log.error("reading_dropped_unsendable", readings=len(rows), reason=reason,
                        example=f"{n.sample.device}/{n.epoch}/{n.seq}")
        with self._lock:
            self._dropped += len(rows)
            self._acked_rows.update(r for r, _ in rows)  # nothing can send them: out of the buffer

    def _hand_one(self, rows: list[Row], payload: bytes, sent: list[bytes]) -> bool:
        """Publish one new batch; False if paho refused it (retried later)."""
        batch = _Batch([r for r, _ in rows])
        with self._lock:  # before publishing: a confirmation may follow at once
            self._batches_open[batch] = None
            for row, n in rows:
                self._row_batch[row] = batch
                if self._by_core:
                    self._awaiting.setdefault((n.sample.device, n.epoch), {})[n.seq] = row
        if self._publish(self._readings_topic, payload, False, batch, len(rows)) is None:
            with self._lock:
                self._batches_open.pop(batch, None)
                for row, n in rows:
                    self._row_batch.pop(row, None)
                    seqs = self._awaiting.get((n.sample.device, n.epoch))
                    if seqs is not None:
                        seqs.pop(n.seq, None)
                        if not seqs:
                            del self._awaiting[(n.sample.device, n.epoch)]
            return False
        sent.append(payload)
        return True

    def _delete_acked(self) -> None:
        with self._lock:
            rows, self._acked_rows = self._acked_rows, set()
        if rows:
            self._buffer.remove(rows)

    def _publish(
        self, topic: str, payload: bytes, retain: bool, batch: _Batch | None, readings: int = 0
    ) -> mqtt.MQTTMessageInfo | None:
        """QoS 1 publish, recording its mid so the PUBACK finds it. None if paho refused."""
        if batch is not None:
            with self._lock:
                self._send_no += 1
                batch.sent_no = self._send_no
                batch.first_no = batch.first_no or self._send_no
                batch.in_flight = True
                batch.heard = False
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._log.warning("publish_refused", topic=topic, rc=mqtt.error_string(info.rc))
            if batch is not None:
                with self._lock:
                    batch.in_flight = False
                    batch.due = time.monotonic()
            return None
        with self._lock:
            if batch is not None:
                batch.attempts += 1
                self._published += readings
                self._batches += 1
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                if batch is not None:
                    self._settle_locked(batch, readings)
            else:
                self._inflight[info.mid] = None if batch is None else (batch, readings)
        return info

    def _settle_locked(self, batch: _Batch, readings: int) -> None:
        """The broker acknowledged an attempt of `batch` carrying `readings` readings."""
        batch.in_flight = False
        self._acked_readings += readings
        self._batches_acked += 1
        if self._by_core:
            batch.due = time.monotonic() + self.settings.confirm_timeout(batch.attempts)
        else:  # the PUBACK is the confirmation
            for row in batch.rows:
                if self._row_batch.get(row) is batch:
                    del self._row_batch[row]
                    self._acked_rows.add(row)
                    self._confirmed += 1
            batch.remaining = 0
            self._batches_open.pop(batch, None)
        self._acked.notify_all()

    def _confirm_locked(self, ranges: list[tuple[str, int, int, int]]) -> int:
        """Rows the core confirmed go to deletion; returns how many (under _lock). Work is
        bounded by the readings awaited, whatever the ranges claim."""
        done = 0
        for device, epoch, first, last in ranges:
            seqs = self._awaiting.get((device, epoch))
            if not seqs:
                continue
            if last - first < len(seqs):
                hits = [q for q in range(first, last + 1) if q in seqs]
            else:
                hits = [q for q in seqs if first <= q <= last]
            for q in hits:
                row = seqs.pop(q)
                self._acked_rows.add(row)
                done += 1
                batch = self._row_batch.pop(row, None)
                if batch is not None:
                    batch.remaining -= 1
                    batch.heard = True
                    # which attempt the core answered is unknown: count the first, so that
                    # the original of a batch probed during an outage proves nothing about
                    # batches sent after it
                    self._confirmed_send_no = max(self._confirmed_send_no, batch.first_no)
                    if batch.remaining <= 0:
                        self._batches_open.pop(batch, None)
            if not seqs:
                del self._awaiting[(device, epoch)]
        self._confirmed += done
        if done:
            self._last_heard = time.monotonic()
        return done

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
        client.on_message = self._on_message
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
        if self._by_core:  # again on every connect: a broker that lost its state lost it too
            client.subscribe(self._stored_topic, qos=1)
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
            attempt = self._inflight.pop(mid)
            if attempt is not None:
                self._settle_locked(*attempt)
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self._stored_topic or not self._by_core:
            return
        payload = bytes(msg.payload)
        try:
            ranges = parse_stored(payload)
        except WireError as exc:
            self._log.warning("confirmation_malformed", reason=str(exc),
                              code=getattr(exc, "code", None), bytes=len(payload))
            return
        with self._lock:
            self._confirmations += 1
            confirmed = self._confirm_locked(ranges)
            if confirmed:
                self._acked.notify_all()
        if confirmed:
            self._wake.set()
