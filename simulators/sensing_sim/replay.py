"""Replay a recording against a broker, `speed` times faster than it was simulated.

A message recorded as arriving `t` simulated seconds after the start is published `t / speed`
seconds after the replay starts, at QoS 1, with its retain flag. Times inside the messages
(SNB1 `ts` columns, status `ts`) are moved by one constant (`replay_shift_ms`) so that the
recording ends when the replay is due to finish: the core sees the fleet's own timing (a fire
still rises at its rate per simulated minute) and detects on it as it would live, and at any
speed of 1 or more every stamp is in the past when it is published, like a gateway's backlog,
by up to `duration * (1 - 1/speed)` at the start and none at the end. (The core refuses
stamps more than 5 minutes ahead of its clock and counts none ahead of it; until 2026-12 a
replay started its recording now, and at ×N its stamps ran ahead of the wall clock.) Below
speed 1 the recording starts now. Malformed messages go out byte for byte.

The report carries the labels on the replay's wall clock (`ts_start`/`ts_end` where the core
saw the incident begin and end) with `speed`, so `sensing-sim score` gives latencies in
simulated seconds.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sensing.wire import WireError, snb1
from sensing_sim.faults import CountsMalformed
from sensing_sim.recording import RecordingReader
from sensing_sim.transport import DUPLICATE, KINDS_OF_MESSAGE, READINGS, STATUS

MAX_UNACKED = 20_000
"""publishes awaiting their PUBACK before the replay waits for the oldest"""


class ReplayError(RuntimeError):
    """The replay could not run (broker unreachable, publish refused)."""


def shift_snb1_ts(payload: bytes, shift_ms: int) -> bytes:
    """The SNB1 or SNB2 batch with every reading's `ts` moved by `shift_ms` (SNB2 checksummed
    anew); a batch that is not well formed goes out as it is."""
    try:
        return snb1.shift_ts(payload, shift_ms)
    except WireError:
        return payload


def shift_status_ts(payload: bytes, shift_ms: int) -> bytes:
    status = orjson.loads(payload)
    status["ts"] = int(status["ts"]) + shift_ms
    return orjson.dumps(status)


def rebased(what: str, payload: bytes, shift_ms: int) -> bytes:
    """The payload as it is published in a replay: its own times moved by `shift_ms`."""
    if what in (READINGS, DUPLICATE) and snb1.is_batch(payload):
        return shift_snb1_ts(payload, shift_ms)
    if what == STATUS:
        return shift_status_ts(payload, shift_ms)
    return payload


@dataclass(frozen=True, slots=True)
class ReplayProgress:
    sim_s: float
    messages: int
    lag_s: float


@dataclass(slots=True)
class ReplayReport(CountsMalformed):
    recording: str
    broker: str
    speed: float
    start_ms: int
    """wall clock when the replay began"""
    shift_ms: int
    """how far the messages' own times were moved (see `replay_shift_ms`)"""
    end_ms: int
    wall_s: float
    simulated_s: float
    stopped_early: bool
    all_acked: bool
    messages: dict[str, int]
    readings_published: int
    lag_max_s: float
    """how far the replay fell behind its schedule at worst (the broker or this machine
    could not keep up at this speed if it is large)"""
    malformed_sent: dict[str, int]
    recorded: dict[str, Any] | None
    """what the recorded run sent (the recording's trailer)"""
    incidents: list[dict[str, Any]] = field(default_factory=list)
    """the labels, with ts_start/ts_end on this replay's wall clock and `speed`"""



class _Clock:
    """Where the replay's wall clock was when it reached given simulated times: the labels'
    starts and ends, so that a replay that falls behind still labels where the core saw them."""

    def __init__(self, times_ms: list[int]) -> None:
        self._pending = sorted(set(times_ms))
        self.reached: dict[int, int] = {}

    def passed(self, sim_ms: int, wall_ms: int) -> None:
        """Publishing has reached `sim_ms` at `wall_ms`."""
        while self._pending and self._pending[0] <= sim_ms:
            self.reached[self._pending.pop(0)] = wall_ms


def replay_shift_ms(rec_start_ms: int, duration_ms: int, wall_start_ms: int,
                    speed: float) -> int:
    """What to add to a recording's times so that it ends when a replay at `speed` that began
    at `wall_start_ms` is due to finish (starts then, at a speed below 1): a message of
    simulated time t, published at wall_start + (t - rec_start) / speed or later, carries
    times no later than that."""
    behind = max(0, duration_ms - round(duration_ms / speed))
    return wall_start_ms - rec_start_ms - behind


def wall_labels(labels: list[dict[str, Any]], rec_start_ms: int, wall_start_ms: int,
                speed: float, reached: dict[int, int] | None = None) -> list[dict[str, Any]]:
    """Labels moved onto the replay's wall clock: where the replay reached their times
    (`reached`), else where its schedule put them, simulated time t at t / speed."""
    reached = reached or {}
    out = []
    for label in labels:
        moved = dict(label)
        for key in ("ts_start", "ts_end"):
            ts = int(label[key])
            moved[key] = reached.get(ts, wall_start_ms + round((ts - rec_start_ms) / speed))
        moved["speed"] = speed
        out.append(moved)
    return out


class _Publisher:
    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"sensing-sim-replay-{uuid.uuid4().hex[:12]}",
                                   protocol=mqtt.MQTTv311)
        self._client.max_inflight_messages_set(1000)
        connected = threading.Event()

        def on_connect(client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:
            if not reason_code.is_failure:
                connected.set()

        self._client.on_connect = on_connect
        try:
            self._client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise ReplayError(f"cannot connect to the broker at {host}:{port}: {exc}") from exc
        self._client.loop_start()
        if not connected.wait(timeout):
            self.close(0.0)
            raise ReplayError(f"the broker at {host}:{port} did not accept a connection")
        self.infos: deque[mqtt.MQTTMessageInfo] = deque()
        """publishes not yet acknowledged, oldest first (give or take: PUBACKs may come out of
        order, so a few acknowledged ones can wait behind an older one)"""

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ReplayError(f"publish on {topic} failed: {mqtt.error_string(info.rc)}")
        self.infos.append(info)
        while self.infos and self.infos[0].is_published():
            self.infos.popleft()
        # paho numbers messages with 16 bits: hold back rather than let them wrap around (the
        # replay then falls behind its schedule, which its lag says)
        while len(self.infos) >= MAX_UNACKED:
            self.infos[0].wait_for_publish(1.0)
            while self.infos and self.infos[0].is_published():
                self.infos.popleft()

    def close(self, timeout: float) -> bool:
        """Wait up to `timeout` for every PUBACK, then disconnect; True if all came."""
        deadline = time.monotonic() + timeout
        for info in self.infos:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.01, deadline - time.monotonic()))
        acked = all(i.is_published() for i in self.infos)
        self._client.disconnect()
        self._client.loop_stop()
        return acked


def replay(path: Path, *, host: str = "127.0.0.1", port: int = 1883, speed: float = 1.0,
           stop: threading.Event | None = None, connect_timeout_s: float = 10.0,
           stop_timeout_s: float = 30.0,
           progress: Callable[[ReplayProgress], None] | None = None,
           progress_every_s: float = 1.0) -> ReplayReport:
    """Publish the recording at `path`; blocks until done or `stop` is set."""
    if not speed > 0:
        raise ValueError("speed must be positive")
    stop = stop or threading.Event()
    reader = RecordingReader(path)
    rec_start = reader.start_ms
    publisher = _Publisher(host, port, connect_timeout_s)
    clock = _Clock([int(lb[k]) for lb in reader.labels for k in ("ts_start", "ts_end")])
    counts = dict.fromkeys(KINDS_OF_MESSAGE, 0)
    readings = 0
    lag_max = 0.0
    t0 = time.monotonic()
    wall_start = time.time_ns() // 1_000_000
    shift = replay_shift_ms(rec_start, round(float(reader.header["duration_s"]) * 1000),
                            wall_start, speed)
    sim_s = 0.0
    next_progress = progress_every_s
    try:
        for m in reader.messages():
            sim_s = (m.at_ms - rec_start) / 1000
            due = sim_s / speed
            while (ahead := due - (time.monotonic() - t0)) > 0:
                if stop.wait(min(ahead, 0.2)):
                    break
            if stop.is_set():
                break
            lag_max = max(lag_max, time.monotonic() - t0 - due)
            clock.passed(m.at_ms, time.time_ns() // 1_000_000)
            publisher.publish(m.topic, rebased(m.what, m.payload, shift), m.retain)
            counts[m.what] += 1
            readings += m.readings
            if progress is not None and time.monotonic() - t0 >= next_progress:
                next_progress += progress_every_s
                progress(ReplayProgress(round(sim_s, 1), sum(counts.values()),
                                        round(lag_max, 3)))
    finally:
        all_acked = publisher.close(stop_timeout_s)
    return ReplayReport(
        recording=str(path), broker=f"{host}:{port}", speed=speed, start_ms=wall_start,
        shift_ms=shift,
        end_ms=time.time_ns() // 1_000_000, wall_s=round(time.monotonic() - t0, 3),
        simulated_s=round(sim_s, 3), stopped_early=stop.is_set(), all_acked=all_acked,
        messages=counts, readings_published=readings, lag_max_s=round(lag_max, 3),
        malformed_sent={w: n for w, n in counts.items()
                        if w not in (READINGS, STATUS, DUPLICATE)},
        recorded=reader.trailer,
        incidents=wall_labels(reader.labels, rec_start, wall_start, speed, clock.reached),
    )
