"""MQTT traffic of a test: a QoS 1 publisher that keeps a bounded window in flight, and a
recorder that keeps what it hears with the (monotonic) time it arrived."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sensing.services import LOOPBACK

_ids = itertools.count()


@dataclass(frozen=True, slots=True)
class Heard:
    topic: str
    payload: bytes
    at: float
    """time.monotonic() when it arrived"""
    retained: bool


class Recorder:
    """Subscribes to topic filters (QoS 1) and keeps every message with its arrival time.
    Reconnects by itself after a broker restart (a persistent session, so nothing published
    while it was away is missed once the broker kept it)."""

    def __init__(self, port: int, *filters: str, client_id: str = "") -> None:
        self.messages: list[Heard] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._filters = filters
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"recorder-{next(_ids)}-{time.time_ns()}",
                                  clean_session=False)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("the recorder could not subscribe")

    def _on_connect(self, c: mqtt.Client, u: object, flags: object, reason: object,
                    props: object) -> None:
        c.subscribe([(f, 1) for f in self._filters])

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        heard = Heard(msg.topic, bytes(msg.payload), time.monotonic(), bool(msg.retain))
        with self._lock:
            self.messages.append(heard)

    def heard(self, prefix: str = "") -> list[Heard]:
        with self._lock:
            return [h for h in self.messages if h.topic.startswith(prefix)]

    def json(self, prefix: str = "") -> list[tuple[Heard, dict[str, object]]]:
        """Messages under `prefix` whose payload is a JSON object (others are skipped: a
        hostile client can publish anything anywhere)."""
        out: list[tuple[Heard, dict[str, object]]] = []
        for h in self.heard(prefix):
            try:
                doc = orjson.loads(h.payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                out.append((h, doc))
        return out

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    """QoS 1 publishing with at most `window` messages awaiting PUBACK. With a fixed
    `client_id` the session persists, so paho sends again what a broker restart cut off."""

    def __init__(self, port: int, client_id: str = "", window: int = 500) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"publisher-{next(_ids)}-{time.time_ns()}",
                                  clean_session=not client_id)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(min(window, 65535))
        self.client.reconnect_delay_set(1, 2)
        self.window = threading.BoundedSemaphore(window)
        self.sent = 0
        self.acked = 0
        self._lock = threading.Lock()
        self._ack_waiters: dict[int, Callable[[], None]] = {}
        self.client.on_publish = self._on_publish
        self._connected = threading.Event()
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("the publisher could not connect")

    def _on_publish(self, c: mqtt.Client, u: object, mid: int, reason: object,
                    props: object) -> None:
        with self._lock:
            self.acked += 1
        self.window.release()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1, blocking while the window is full."""
        self.window.acquire()
        with self._lock:
            self.sent += 1
        self.client.publish(topic, payload, qos=1, retain=retain)

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every message published so far is acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.acked >= self.sent:
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
