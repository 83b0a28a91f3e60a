"""Edge agent test helpers: a plain paho subscriber, fake drivers, decoding."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sensing.wire import decode_readings
from sensing_edge import GatewayAgent, SensorSample

MAX_BYTES = 1 << 24


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """A plain paho client that records every message on its topic filters (QoS 1)."""

    def __init__(
        self, port: int, *filters: str, client_id: str | None = None, clean_session: bool = True
    ) -> None:
        self.filters = filters
        self._messages: list[Message] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{uuid.uuid4().hex[:10]}",
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_connect(
        self, c: mqtt.Client, u: object, f: mqtt.ConnectFlags, rc: ReasonCode,
        p: Properties | None,
    ) -> None:
        c.subscribe([(f, 1) for f in self.filters])

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self._messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    @property
    def messages(self) -> list[Message]:
        with self._cond:
            return list(self._messages)

    def wait_for(self, predicate: Callable[[list[Message]], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self._messages)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class ListDriver:
    """Returns queued samples on the next poll; `feed()` queues more (thread-safe)."""

    def __init__(self, samples: list[SensorSample] | None = None) -> None:
        self._lock = threading.Lock()
        self._queued = list(samples or [])

    def feed(self, samples: list[SensorSample]) -> None:
        with self._lock:
            self._queued.extend(samples)

    def poll(self, now_ms: int) -> list[SensorSample]:
        with self._lock:
            out, self._queued = self._queued, []
        return out


def smoke_samples(device: str, n: int, ts0: int = 1_795_478_819_832) -> list[SensorSample]:
    return [
        SensorSample(device, "smoke", ts0 + i, {"obscuration": 0.1, "temp_c": 22.0}, 0.9)
        for i in range(n)
    ]


def readings_of(messages: list[Message], gateway: str, area: str) -> list[dict[str, object]]:
    """Every reading in the readings messages, decoded as the core decodes them."""
    out: list[dict[str, object]] = []
    for m in messages:
        if m.topic.endswith("/readings"):
            decoded = decode_readings(m.payload, gateway, area, MAX_BYTES)
            assert decoded.rejected == [], decoded.reason
            out.extend(decoded.batch.readings())
    return out


def reading_count(gateway: str, area: str) -> Callable[[list[Message]], int]:
    def count(messages: list[Message]) -> int:
        return len(readings_of(messages, gateway, area))

    return count



class FakeCore:
    """Confirms what it hears on one gateway's readings topic, as the core does
    (`sensing.wire.confirm`), without storing anything: for tests of the agent's side of the
    end-to-end acknowledgement (the real core's side is tested in tests/test_edge_loss.py).

    `mode`: "confirm"; "hold" (a core that is down while the broker keeps its queue: what it
    hears waits for `release()`); "ignore" (what it hears is lost, as by a broker crash).
    `refuse`: devices whose readings it never confirms (a core that dead-letters them) while it
    confirms the rest."""

    def __init__(self, port: int, area: str, gateway: str, mode: str = "confirm") -> None:
        from sensing.wire.topics import readings_topic

        self.area, self.gateway = area, gateway
        self.mode = mode
        self.refuse: set[str] = set()
        self._lock = threading.Lock()
        self._held: list[bytes] = []
        self.heard: list[tuple[str, int, int]] = []  # every reading received, repeats too
        self.sub = Subscriber(port, readings_topic(area, gateway))
        self.sub.client.on_message = self._on_message

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            if self.mode == "hold":
                self._held.append(bytes(msg.payload))
                return
        self._handle(bytes(msg.payload))

    def _handle(self, payload: bytes) -> None:
        from sensing.wire.confirm import stored_messages

        batch = decode_readings(payload, self.gateway, self.area, MAX_BYTES).batch
        keys = [(batch.devices[int(d)], int(e), int(s))
                for d, e, s in zip(batch.device, batch.epoch, batch.seq, strict=True)]
        with self._lock:
            self.heard.extend(keys)
            if self.mode == "ignore":
                return
        keep = [i for i, k in enumerate(keys) if k[0] not in self.refuse]
        chunk = (self.area, self.gateway, batch.devices, batch.device[keep], batch.epoch[keep],
                 batch.seq[keep])
        for topic, payload in stored_messages([chunk]):
            self.sub.client.publish(topic, payload, qos=1)

    def release(self, mode: str = "confirm", pause_s: float = 0.0) -> None:
        """Switch to `mode` and handle what was held, in order, `pause_s` apart (a core
        working through its backlog)."""
        with self._lock:
            self.mode, held, self._held = mode, self._held, []
        for payload in held:
            self._handle(payload)
            time.sleep(pause_s)

    def heard_keys(self) -> list[tuple[str, int, int]]:
        with self._lock:
            return list(self.heard)

    def close(self) -> None:
        self.sub.close()


@contextmanager
def running(agent: GatewayAgent, stop_timeout_s: float = 5.0) -> Iterator[GatewayAgent]:
    """A started, connected agent; stopped (waiting up to `stop_timeout_s` for its readings)
    when the block ends."""
    agent.start()
    try:
        assert agent.wait_connected(10), "agent did not connect"
        yield agent
    finally:
        agent.stop(stop_timeout_s)
