"""A publisher process: a raw-socket MQTT 3.1.1 client that sends pre-built QoS 1 PUBLISH
frames in large writes and reads PUBACKs in bulk.

The whole phase is built into one buffer before the start signal, every frame with its packet
id already in place (packet i carries id i % 65,535 + 1; at most `window` < 65,535 are
unacknowledged, and the broker acknowledges one connection's packets in order, so an id is free
again before it comes round). As fast as the broker takes them, or paced at a fixed rate in
bursts of a millisecond or two. The moment an alarm's frame is let go is reported as the alarm's
publish time.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import numpy as np
import numpy.typing as npt

from e2e.fleet import Message, Phase, messages
from e2e.mqtt_frames import (
    DISCONNECT,
    MAX_PACKET_ID,
    PUBACK_SIZE,
    ProtocolError,
    check_connack,
    check_pubacks,
    connect,
    publish_qos1_head,
)
from sensing.services import LOOPBACK

WRITE_CHUNK = 1 << 18
DEFAULT_WINDOW = 32_768
STALL_S = 60.0
"""no PUBACK for this long: the broker is gone or wedged, give up"""


@dataclass(frozen=True, slots=True)
class PublisherSpec:
    index: int
    broker_port: int
    phase: Phase
    gateways: tuple[int, ...]
    rate: float | None = None
    """readings/s of this publisher; None: as fast as the broker takes them"""
    window: int = DEFAULT_WINDOW


@dataclass(frozen=True, slots=True)
class Alarm:
    frame: int
    device: str


@dataclass(slots=True)
class Stream:
    data: bytearray
    ends: npt.NDArray[np.int64]
    """byte offset after each frame"""
    readings: npt.NDArray[np.int64]
    """readings up to and including each frame"""
    alarms: list[Alarm]


@dataclass(slots=True)
class PublisherResult:
    index: int
    messages: int
    readings: int
    bytes: int
    build_s: float
    t_first: float
    """wall time of the first byte written"""
    t_last: float
    """wall time of the last byte written"""
    t_acked: float
    alarms: dict[str, int] = field(default_factory=dict)
    """device -> wall time (ms) its alarm was let go"""


def build_stream(msgs: Iterable[Message]) -> Stream:
    parts: list[bytes] = []
    ends: list[int] = []
    counts: list[int] = []
    alarms: list[Alarm] = []
    pos = 0
    for i, m in enumerate(msgs):
        head, id_at = publish_qos1_head(m.topic, len(m.payload))
        head = head[:id_at] + struct.pack(">H", i % MAX_PACKET_ID + 1)
        if m.alarm_device:
            alarms.append(Alarm(i, m.alarm_device))
        parts += (head, m.payload)
        pos += len(head) + len(m.payload)
        ends.append(pos)
        counts.append(m.readings)
    return Stream(bytearray(b"".join(parts)), np.asarray(ends, dtype=np.int64),
                  np.cumsum(np.asarray(counts, dtype=np.int64)), alarms)


def _connect(port: int, client_id: str) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect(client_id))
    connack = b""
    while len(connack) < 4:
        chunk = sock.recv(4 - len(connack))
        if not chunk:
            raise ProtocolError("the broker closed the connection before CONNACK")
        connack += chunk
    check_connack(connack)
    sock.setblocking(False)
    return sock


def send(sock: socket.socket, stream: Stream, rate: float | None, start_wall: float,
         window: int) -> tuple[float, float, float, dict[str, int]]:
    """Send every frame and wait for every PUBACK; returns (first write, last write, last ack,
    alarms' publish times)."""
    if not 0 < window < MAX_PACKET_ID:
        raise ValueError(f"window must be 1 ..< {MAX_PACKET_ID}")
    n = int(stream.ends.size)
    view = memoryview(stream.data)
    due = (stream.readings / rate if rate else np.zeros(n)).astype(np.float64)
    start = time.monotonic() + (start_wall - time.time())
    pos = acked = next_alarm = 0
    pending = b""
    t_first = t_last = 0.0
    alarm_ms: dict[str, int] = {}
    last_progress = time.monotonic()
    while acked < n:
        now = time.monotonic()
        allowed = min(n, acked + window)
        if rate:
            allowed = min(allowed, int(np.searchsorted(due, now - start, side="right")))
        while next_alarm < len(stream.alarms) and stream.alarms[next_alarm].frame < allowed:
            alarm_ms[stream.alarms[next_alarm].device] = int(time.time() * 1000)
            next_alarm += 1
        limit = int(stream.ends[allowed - 1]) if allowed else 0
        writing = pos < limit
        timeout = 1.0
        if rate and not writing and allowed < n and acked + window > allowed:
            timeout = min(0.05, max(0.0005, start + float(due[allowed]) - now))
        readable, writable, _ = select.select([sock], [sock] if writing else [], [], timeout)
        if writable:
            k = sock.send(view[pos : min(limit, pos + WRITE_CHUNK)])
            if pos == 0:
                t_first = time.time()
            pos += k
            if pos == len(stream.data):
                t_last = time.time()
        if readable:
            data = sock.recv(1 << 20)
            if not data:
                raise ProtocolError(f"the broker closed the connection after {acked:,} "
                                    f"PUBACKs of {n:,}")
            pending += data
            whole = len(pending) - len(pending) % PUBACK_SIZE
            check_pubacks(pending[:whole], acked)
            acked += whole // PUBACK_SIZE
            pending = pending[whole:]
            last_progress = time.monotonic()
        elif not writable and time.monotonic() - last_progress > STALL_S and pos >= limit:
            raise ProtocolError(f"no PUBACK for {STALL_S:.0f} s ({acked:,} of {n:,})")
    return t_first, t_last, time.time(), alarm_ms


def run(spec: PublisherSpec, conn: Connection) -> None:
    """Process body: build, connect, say ("ready", readings), wait for ("go", start wall
    time), send, say ("done", PublisherResult); ("error", text) on any failure."""
    try:
        t = time.perf_counter()
        stream = build_stream(messages(spec.phase, list(spec.gateways)))
        build_s = time.perf_counter() - t
        sock = _connect(spec.broker_port, f"bench-pub-{spec.index}-{os.getpid()}")
        total = int(stream.readings[-1]) if stream.readings.size else 0
        conn.send(("ready", total))
        command, start_wall = conn.recv()
        if command != "go":
            sock.close()
            return
        if stream.ends.size:
            t_first, t_last, t_acked, alarms = send(sock, stream, spec.rate, start_wall,
                                                    spec.window)
        else:
            t_first = t_last = t_acked = time.time()
            alarms = {}
        sock.setblocking(True)
        sock.sendall(DISCONNECT)
        sock.close()
        conn.send(("done", PublisherResult(
            spec.index, int(stream.ends.size), total, len(stream.data), build_s, t_first,
            t_last, t_acked, alarms)))
    except BaseException as exc:  # reported to the harness, which stops the run
        conn.send(("error", f"publisher {spec.index}: {type(exc).__name__}: {exc}"))
