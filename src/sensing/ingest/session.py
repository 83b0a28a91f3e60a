"""The core's MQTT session of its own: large reads parsed in bulk, PUBACKs sent in bulk.

The same public surface as `CoreSession` (persistent session, QoS 1, a message acknowledged
only by `ack`, after the core stored it), without paho's Python per message: one thread does
all the socket's I/O (TLS objects must not be used by two threads at once); it reads up to a
chunk at a time, scans it with the `mqttframes` kernel and hands the PUBLISH packets to
`receive` as columns over the buffer they came in (`Received`). `ack` turns a whole batch into
one buffer of PUBACKs. Other threads queue what they send and wake the I/O thread.

Bounds: what was read and not yet taken by `receive` stays under `max_pending_messages` and
`max_pending_bytes` of payload (plus one read of `chunk_bytes`): beyond them the I/O thread
stops reading, so TCP pushes back to the broker, whose queue for this persistent session holds
the rest (see mosquitto.conf). It still sends PUBACKs and PINGREQs meanwhile, and does not
count the time it holds back as silence of the broker (a broker that dies meanwhile is found
out once reading resumes). A `publish` waits while MAX_OUTSTANDING publishes await their
PUBACK, but not while the I/O thread holds back: the PUBACKs come on the same stream behind
the messages held back, which only the publishing thread's next `receive` lets in (waiting
then stopped the core for good, with 10,000 cases escalating beside a full ingest). What is
published meanwhile is bounded by the input: it comes of steps that take the queue, whose
size is bounded.

A payload over `max_payload_bytes` arrives cut to that + 1 bytes, `payload_size` its real
length (see `frames`); after a read of under COALESCE_BYTES the next waits `coalesce_s`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from sensing.ingest import packets
from sensing.ingest.frames import Control, FrameReader, ProtocolError
from sensing.ingest.mqtt import MAX_OUTSTANDING, CoreSession
from sensing.ingest.received import Acks, Received
from sensing.kernels.mqttframes import (
    CONNACK,
    PINGRESP,
    PUBACK,
    SUBACK,
    FrameError,
    FrameScanner,
    pubacks,
    read_publish_head,
)
from sensing_edge.security import BrokerSecurity, apply_security

if TYPE_CHECKING:
    from sensing.settings import CoreSettings

__all__ = ["MAX_OUTSTANDING", "BulkSession", "Delivery"]

log = structlog.get_logger("sensing.ingest")

KEEPALIVE_S = 30
DEAD_AFTER = 1.5
"""keepalives without a packet from the broker after which the connection is dead"""
RECONNECT_DELAYS = (1.0, 5.0)
"""the first delay before a reconnect, doubled after each failure up to the second"""
CONNECT_TIMEOUT_S = 10.0
MAX_PENDING_MESSAGES = 50_000
MAX_PENDING_BYTES = 32 << 20
CHUNK_BYTES = 1 << 20
SEND_CHUNK = 256 << 10
COALESCE_S = 0.005
COALESCE_BYTES = 64 << 10
"""after a read of fewer bytes, the next waits COALESCE_S: at a trickle every read costs about
as much as a large one. A live run at ~20,000 messages/s read 19 messages at a time, 4.4 to 7.3
µs of CPU per message; waiting 2 ms: 3.1-3.5 µs, 5 ms: 1.7-3.6 µs (noisy). 5 ms is a tenth of
the core's batch wait (batch_max_wait_s)."""
STOP_FLUSH_S = 2.0
"""how long `stop` tries to send what is queued (PUBACKs, publishes) before DISCONNECT"""
SUBSCRIBE_ID = 0xFFFF
"""the SUBSCRIBE's packet id, never a publish's (those are 1..0xFFFE)"""
_LAST_PUBLISH_ID = 0xFFFE
_NOTHING_TO_READ = (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError)


class _ConnectionLost(Exception):
    """The connection cannot go on: closed, silent for too long, refused."""


class Delivery:
    """One QoS 1 publish: `delivered` once the broker's PUBACK came."""

    __slots__ = ("_delivered", "_signal", "mid")

    def __init__(self, mid: int, signal: threading.Condition) -> None:
        self.mid = mid
        self._delivered = False
        self._signal = signal

    @property
    def delivered(self) -> bool:
        return self._delivered

    def wait(self, timeout_s: float) -> bool:
        """Whether it was delivered within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._signal:
            while not self._delivered:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._signal.wait(remaining)
        return self._delivered


@dataclass(slots=True)
class _Outgoing:
    frame: bytes
    delivery: Delivery
    sent: bool
    """sent on some connection: sent again with DUP"""


@dataclass(frozen=True, slots=True)
class _Login:
    username: bytes | None
    password: bytes | None
    tls: ssl.SSLContext | None


def _login(security: BrokerSecurity | None, username: str | None, password: str | None
           ) -> _Login:
    """Credentials and TLS exactly as the edge agent's `apply_security` sets them on a paho
    client, read back from one that never connects. Made again for every connection, so a
    rotated password file is read again."""
    carrier = mqtt.Client(CallbackAPIVersion.VERSION2)
    if security is not None:
        apply_security(carrier, security)
    elif username:
        carrier.username_pw_set(username, password)
    return _Login(carrier._username, carrier._password, carrier._ssl_context)


def warm_up() -> None:
    """Compile (or load from the cache) the frame kernels."""
    FrameScanner(1).scan(np.zeros(2, np.uint8), 0, 2)
    read_publish_head(np.zeros(2, np.uint8), 0, 0)
    pubacks(np.zeros(1, np.int32), np.ones(1, np.uint8))


class BulkSession:
    """Subscribes to readings, gateway status and acks with a persistent session.

    Messages are acknowledged (PUBACK) only by `ack`, after the core has stored them: a crash
    in between makes the broker deliver them again, and the dedup window drops the repeats.
    """

    SUBSCRIPTIONS = CoreSession.SUBSCRIPTIONS

    def __init__(self, host: str, port: int, client_id: str, username: str | None = None,
                 password: str | None = None, security: BrokerSecurity | None = None, *,
                 keepalive_s: int = KEEPALIVE_S, max_payload_bytes: int = 1 << 20,
                 max_pending_messages: int = MAX_PENDING_MESSAGES,
                 max_pending_bytes: int = MAX_PENDING_BYTES, chunk_bytes: int = CHUNK_BYTES,
                 reconnect_delays: tuple[float, float] = RECONNECT_DELAYS,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 coalesce_s: float = COALESCE_S) -> None:
        """`security` (credentials and TLS) replaces `username`/`password` when given."""
        if not 1 <= keepalive_s <= 0xFFFF:
            raise ValueError("keepalive_s is 1..65535")
        if max_pending_messages < 1 or max_pending_bytes < 1:
            raise ValueError("the pending bounds must be positive")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.keepalive_s = keepalive_s
        self.max_pending_messages = max_pending_messages
        self.max_pending_bytes = max_pending_bytes
        self._credentials = (security, username, password)
        self._reconnect_delays = reconnect_delays
        self._connect_timeout_s = connect_timeout_s
        self._reader = FrameReader(max_payload_bytes, chunk_bytes)
        self._chunk_bytes = chunk_bytes
        self.coalesce_s = coalesce_s
        """the latency a message may gain so that reads are fewer and larger"""

        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        """a receive waits on it for enough messages"""
        self._room = threading.Condition(self._lock)
        """publishes wait on it for room, deliveries for their PUBACK"""
        self._pending: deque[Received] = deque()
        self._pending_messages = 0
        self._pending_bytes = 0
        self._waiting = False
        """a `receive` waits for the first message"""
        self._first_at: float | None = None
        """when a waiting `receive` saw its first message"""
        self._out = bytearray()
        self._live = False
        """the broker accepted the current connection (CONNACK): PUBACKs and publishes go"""
        self._generation = 0
        self._outstanding: dict[int, _Outgoing] = {}
        self._next_id = 1
        self._stopping = False
        self._paused = False
        self._wake_pending = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop_event = threading.Event()
        self._accepted = False
        """the broker accepted the current connection (the reconnect delay starts over)"""
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> BulkSession:
        return cls(settings.mqtt_host, settings.mqtt_port, settings.mqtt_client_id,
                   security=settings.broker_security(),
                   max_payload_bytes=settings.max_payload_bytes)

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def outstanding(self) -> int:
        """Publishes not yet acknowledged by the broker."""
        return len(self._outstanding)

    @property
    def pending(self) -> tuple[int, int]:
        """(messages, payload bytes) read and not yet taken by `receive`."""
        return self._pending_messages, self._pending_bytes

    def start(self, timeout_s: float = 30.0) -> None:
        warm_up()
        self._thread = threading.Thread(target=self._run, name="mqtt-io", daemon=True)
        self._thread.start()
        if not self.connected.wait(timeout_s):
            raise ConnectionError(f"no MQTT broker at {self.host}:{self.port} after {timeout_s} s")

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._arrived.notify_all()
            self._room.notify_all()
            self._wake()
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(STOP_FLUSH_S + self._connect_timeout_s + 5)
        self.connected.clear()

    # --- the consumer's side -------------------------------------------------------------

    def receive(self, max_messages: int, max_wait_s: float, max_bytes: int = 1 << 62,
                linger_s: float = 0.0) -> Received:
        """Up to `max_messages` (and `max_bytes` of payload, but at least one message), all from
        one connection: what has arrived, waiting at most `max_wait_s` for the first and then
        at most `linger_s` more for company (not past `max_wait_s`, and not once the bounds
        are reached). A lone alarm waits `linger_s` at most; a busy stream comes in batches
        of `linger_s` or more, whose fixed costs per step it shares."""
        start = time.monotonic()
        deadline = start + max_wait_s
        parts: list[Received] = []
        with self._lock:
            while not self._stopping and (
                    not self._pending_messages
                    or (self._pending_messages < max_messages
                        and self._pending_bytes < max_bytes)):
                now = time.monotonic()
                if self._pending_messages:
                    if self._first_at is None:
                        self._first_at = now
                    deadline = min(deadline, self._first_at + linger_s)
                remaining = deadline - now
                if remaining <= 0:
                    break
                self._waiting = True
                self._arrived.wait(remaining)
            self._waiting = False
            self._first_at = None
            generation = self._pending[0].generation if self._pending else self._generation
            taken = size = 0
            while self._pending and taken < max_messages:
                head = self._pending[0]
                if head.generation != generation:
                    break
                lengths = head.payload_lengths[:max_messages - taken]
                fits = int(np.searchsorted(np.cumsum(lengths), max_bytes - size, side="right"))
                k = max(fits, 1 if not taken else 0)
                if k == 0:
                    break
                part, rest = head.split(k)
                parts.append(part)
                taken += k
                size += int(lengths[:k].sum())
                if len(rest):
                    self._pending[0] = rest
                    if k < lengths.shape[0]:
                        break  # the byte bound
                else:
                    self._pending.popleft()
            self._pending_messages -= taken
            self._pending_bytes -= size
            if self._paused and not self._over_bounds():
                self._wake()
        return Received.concat(parts) if parts else Received.empty(generation)

    def ack(self, received: Received | Acks) -> None:
        """PUBACK the batch's QoS 1 messages, in one send; nothing if it came on an earlier
        connection (its packet ids may name other messages now)."""
        if not len(received):
            return
        data = pubacks(received.mid, received.qos)
        with self._lock:
            if received.generation != self._generation or not self._live:
                log.debug("not acknowledged: from an earlier connection",
                          messages=len(received))
                return
            self._out += data
            self._wake()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> Delivery:
        """QoS 1; kept, and sent again after a reconnect, until the broker's PUBACK. Waits
        while MAX_OUTSTANDING publishes are unacknowledged (not once stopping). Raises
        ValueError for a topic MQTT does not allow to be published."""
        name = packets.publish_topic(topic)
        with self._room:
            while (len(self._outstanding) >= MAX_OUTSTANDING and not self._stopping
                   and not self._paused):
                self._room.wait(0.1)
            mid = self._free_id()
            frame = packets.publish(name, payload, mid, qos=1, retain=retain)
            delivery = Delivery(mid, self._room)
            self._outstanding[mid] = _Outgoing(frame, delivery, sent=self._live)
            if self._live:
                self._out += frame
                self._wake()
        return delivery

    def _free_id(self) -> int:
        while self._next_id in self._outstanding:
            self._next_id = self._next_id % _LAST_PUBLISH_ID + 1
        mid = self._next_id
        self._next_id = mid % _LAST_PUBLISH_ID + 1
        return mid

    def _wake(self) -> None:
        """Wake the I/O thread (with the lock held)."""
        if not self._wake_pending:
            self._wake_pending = True
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def _over_bounds(self) -> bool:
        return (self._pending_messages >= self.max_pending_messages
                or self._pending_bytes >= self.max_pending_bytes)

    # --- the I/O thread ------------------------------------------------------------------

    def _run(self) -> None:
        first, longest = self._reconnect_delays
        delay = first
        while not self._stopping:
            self._accepted = False
            try:
                self._connection()
            except (OSError, _ConnectionLost) as e:
                log.warning("disconnected from broker", reason=str(e) or type(e).__name__)
            except (FrameError, ProtocolError) as e:
                log.error("protocol error from the broker; reconnecting", error=str(e))
            except Exception:  # a bug here must not leave the core connected to nothing:
                # this connection's unacknowledged messages come again on the next one
                log.exception("unexpected error on the MQTT I/O thread; reconnecting")
            finally:
                self.connected.clear()
                with self._lock:
                    self._live = False
            if self._accepted:
                delay = first
            if self._stop_event.wait(delay):
                break
            delay = min(delay * 2, longest)
        with contextlib.suppress(OSError):
            self._wake_r.close()
            self._wake_w.close()

    def _connection(self) -> None:
        """One connection, from CONNECT to its end (a stop returns, anything else raises)."""
        security, username, password = self._credentials
        login = _login(security, username, password)
        raw = socket.create_connection((self.host, self.port), timeout=self._connect_timeout_s)
        sock: socket.socket = raw
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if login.tls is not None:
                sock = login.tls.wrap_socket(raw, server_hostname=self.host,
                                             do_handshake_on_connect=False)
                sock.settimeout(self._connect_timeout_s)
                sock.do_handshake()
            sock.setblocking(False)
            self._reader.reset()
            with self._lock:
                self._generation += 1
                self._out = bytearray(packets.connect(self.client_id, self.keepalive_s, False,
                                                      login.username, login.password))
            self._pump(sock)
        finally:
            sock.close()
            raw.close()

    def _pump(self, sock: socket.socket) -> None:
        tls = isinstance(sock, ssl.SSLSocket)
        keepalive = float(self.keepalive_s)
        now = time.monotonic()
        last_in = last_out = now
        pinged = False
        connack_by = now + self._connect_timeout_s
        sending = memoryview(b"")
        read_after = now
        while True:
            with self._lock:
                self._wake_pending = False
                if not sending and self._out:
                    sending = memoryview(bytes(self._out[:SEND_CHUNK]))
                    del self._out[:SEND_CHUNK]
                stopping, live = self._stopping, self._live
                paused = self._paused = self._over_bounds()
            if stopping:
                self._goodbye(sock, sending, live)
                return
            if sending:
                try:
                    sent = sock.send(sending)
                except _NOTHING_TO_READ:
                    sent = 0
                if sent:
                    sending = sending[sent:]
                    last_out = time.monotonic()
            now = time.monotonic()
            if paused:  # not listening by choice: silence now says nothing of the broker
                last_in = now
            if live and (now - last_out >= keepalive or (now - last_in >= keepalive
                                                         and not pinged)):
                with self._lock:
                    self._out += packets.PINGREQ
                pinged = True
                last_out = now
                continue
            if now - last_in > DEAD_AFTER * keepalive:
                raise _ConnectionLost(f"no packet from the broker for {DEAD_AFTER} keepalives")
            if not live and now > connack_by:
                raise _ConnectionLost("no CONNACK from the broker")
            due = min(last_out + keepalive,
                      last_in + (DEAD_AFTER * keepalive if pinged else keepalive))
            timeout = max(0.0, min(due, connack_by if not live else due) - now)
            listen = not paused and now >= read_after
            if not paused and not listen:
                timeout = min(timeout, read_after - now)
            # TLS may hold decrypted bytes the socket no longer signals
            readable = listen and isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not readable:
                ready, _, _ = select.select([self._wake_r] + ([sock] if listen else []),
                                            [sock] if sending else [], [], timeout)
                if self._wake_r in ready:
                    with contextlib.suppress(OSError):
                        while self._wake_r.recv(4096):
                            pass
                readable = sock in ready
            if readable and (got := self._read(sock, tls)):
                last_in = time.monotonic()
                if got < COALESCE_BYTES:  # a trickle: let more come before the next read
                    read_after = last_in + self.coalesce_s
                pinged = False

    def _read(self, sock: socket.socket, tls: bool) -> int:
        """Read what is there, a chunk at most (what the bounds may be overshot by); returns
        how many bytes came."""
        total = 0
        while total < self._chunk_bytes:
            space = self._reader.space()
            wanted = min(len(space), self._chunk_bytes - total)
            try:
                n = sock.recv_into(space, wanted)
            except _NOTHING_TO_READ:
                break
            if n == 0:
                raise _ConnectionLost("the broker closed the connection")
            total += n
            messages, controls = self._reader.advance(n, self._generation)
            if controls:
                self._handle(controls)
            if messages and self._deliver(messages):
                break  # over the bounds: stop reading
            if not tls and n < wanted:
                break  # the socket is drained
        return total

    def _deliver(self, messages: list[Received]) -> bool:
        """Queue messages for `receive`; whether that went over the bounds."""
        with self._lock:
            for r in messages:
                self._pending.append(r)
                self._pending_messages += len(r)
                self._pending_bytes += r.payload_bytes
            if self._waiting and self._pending_messages:
                self._arrived.notify()  # the first, or more: a receive looks at the bounds
            return self._over_bounds()

    def _handle(self, controls: Iterable[Control]) -> None:
        acked: list[int] = []
        for c in controls:
            if c.kind == PUBACK:
                acked.append(c.packet_id)
            elif c.kind == CONNACK:
                self._connack(c.body)
            elif c.kind == SUBACK:
                codes = list(c.body[2:])
                if c.packet_id != SUBSCRIBE_ID or packets.SUBACK_FAILURE in codes:
                    log.error("broker refused a subscription", codes=codes)
                else:  # only now is every message published from here on routed to us
                    self.connected.set()
            elif c.kind != PINGRESP:
                log.warning("unexpected packet from the broker", type=c.kind)
        if acked:
            with self._room:
                for mid in acked:
                    entry = self._outstanding.pop(mid, None)
                    if entry is not None:
                        entry.delivery._delivered = True
                self._room.notify_all()

    def _connack(self, body: bytes) -> None:
        if self._live:
            raise ProtocolError("a second CONNACK")
        if body[1] != 0:
            reason = packets.CONNACK_REASONS.get(body[1], f"code {body[1]}")
            log.error("broker refused connection", reason=reason)
            raise _ConnectionLost(f"refused: {reason}")
        self._accepted = True
        with self._lock:
            self._live = True
            self._out += packets.subscribe(SUBSCRIBE_ID, self.SUBSCRIPTIONS)
            for entry in self._outstanding.values():  # in the order they were published
                self._out += (bytes([entry.frame[0] | packets.DUP]) + entry.frame[1:]
                              if entry.sent else entry.frame)
                entry.sent = True
        log.info("connected to broker", host=self.host, port=self.port,
                 session_present=bool(body[0] & 1))

    def _goodbye(self, sock: socket.socket, sending: memoryview, live: bool) -> None:
        """Send what is queued (for a little while), then DISCONNECT: the session stays."""
        if not live:
            return
        with self._lock:
            rest = bytes(sending) + bytes(self._out) + packets.DISCONNECT
            self._out.clear()
        with contextlib.suppress(OSError):
            sock.settimeout(STOP_FLUSH_S)
            sock.sendall(rest)
