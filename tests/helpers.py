"""Test helpers: a core in a thread, an MQTT listener that records what it hears."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sensing.core import StreamCore
from sensing.services import Mosquitto, VictoriaMetrics
from sensing.settings import CoreSettings
from sensing.warmup import warm_up

_warmed_up = functools.cache(warm_up)
"""the core's warm-up, once per test session: on a fresh machine it compiles every kernel
(about 20 s), which is no part of what a test's timeouts are for"""


@contextmanager
def running_core(broker: Mosquitto, store: VictoriaMetrics, state_dir: Path,
                 **overrides: object) -> Iterator[StreamCore]:
    _warmed_up()
    settings = CoreSettings(mqtt_port=broker.port, store_url=store.url, state_dir=state_dir,
                            mqtt_client_id=f"core-{state_dir.name}", **overrides)  # type: ignore[arg-type]
    core = StreamCore(settings)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            core.run()
        except BaseException as exc:  # surfaced by the test below
            errors.append(exc)

    thread = threading.Thread(target=target, name="core", daemon=True)
    thread.start()
    assert core.session.connected.wait(15), "core did not connect"
    try:
        yield core
        assert thread.is_alive(), f"core stopped: {errors}"
    finally:
        core.stop_event.set()
        thread.join(20)
    assert not errors, errors


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll until `predicate` holds or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Listener:
    """Subscribes to topic filters and keeps every message it receives."""

    def __init__(self, broker: Mosquitto, *filters: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe([(f, 1) for f in filters])
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def json(self, prefix: str = "") -> list[dict[str, object]]:
        with self._lock:
            return [orjson.loads(p) for t, p in self.messages if t.startswith(prefix)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
        return wait_until(predicate, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publisher(broker: Mosquitto) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, topic: str, payload: bytes | str) -> None:
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(10)
    assert info.is_published()
