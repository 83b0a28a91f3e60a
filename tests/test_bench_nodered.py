"""The Node-RED peer of the end-to-end benchmark (benchmarks/e2e/nodered.py) does the job it is
compared on: every reading published at QoS 1 is stored once, a repeat is dropped, an alarm
reading gives one alert, and hostile input leaves it running.

Skipped unless SENSING_BENCH_NODERED=1: it needs node and npm, and installs Node-RED from npm
(about 20 s, once, into .bench/node-red), which CI must not depend on."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sensing.services import LOOPBACK, Mosquitto, VictoriaMetrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from e2e.nodered import FLOWS, NodeRed

ENABLED = os.environ.get("SENSING_BENCH_NODERED") == "1"
AVAILABLE, WHY_NOT = NodeRed.available()

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ENABLED, reason="Node-RED peer: set SENSING_BENCH_NODERED=1 "
                       "(needs node + npm; installs node-red from npm)"),
    pytest.mark.skipif(ENABLED and not AVAILABLE, reason=f"Node-RED peer: {WHY_NOT}"),
]

AREA = "nr-test"
T0 = 1_795_478_819_832


class Alerts:
    """Every message on sensing/v1/alerts/#."""

    def __init__(self, broker: Mosquitto) -> None:
        self.received: list[dict[str, object]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(LOOPBACK, broker.port)
        self.client.subscribe("sensing/v1/alerts/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append(orjson.loads(msg.payload))

    def snapshot(self) -> list[dict[str, object]]:
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.connect(LOOPBACK, broker.port)
        self.client.loop_start()

    def send(self, gateway: str, payload: bytes) -> None:
        info = self.client.publish(f"sensing/v1/{AREA}/{gateway}/readings", payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wearable(device: str, seq: int, ts: int, sos: float = 0.0) -> dict[str, object]:
    return {"device": device, "kind": "wearable", "seq": seq, "epoch": 0, "ts": ts,
            "values": {"heart_rate": 72.0, "spo2": 97.0, "accel_g": 1.0, "steps": 3.0,
                       "sos": sos}, "battery": 0.9}


def smoke(device: str, seq: int, ts: int) -> dict[str, object]:
    return {"device": device, "kind": "smoke", "seq": seq, "ts": ts,
            "values": {"obscuration": 0.1, "temp_c": 21.5, "co_ppm": 1.0}}


def wait_stored(node_red: NodeRed, store: VictoriaMetrics, expected: int,
                timeout: float = 30.0) -> int:
    """The store's count once it reaches `expected` (or time runs out), looked at once more
    after a pause to catch any surplus."""
    deadline = time.monotonic() + timeout
    while node_red.stored(store) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    count: int = node_red.stored(store)
    return count


@pytest.fixture(scope="module")
def installed() -> NodeRed:
    node_red = NodeRed()
    node_red.install()
    return node_red


@pytest.fixture
def running(installed: NodeRed, tmp_path: Path, request: pytest.FixtureRequest
            ) -> Iterator[tuple[NodeRed, Mosquitto, VictoriaMetrics]]:
    """Node-RED with the flow named by the test's parameter."""
    flow = request.param
    with Mosquitto.start(tmp_path) as broker, VictoriaMetrics.start(tmp_path) as store:
        node_red = NodeRed(installed.cache_dir, flow=flow)
        node_red.start(broker.port, store.url, tmp_path)
        try:
            yield node_red, broker, store
        finally:
            node_red.stop()
    assert node_red.pids() == []


@pytest.mark.parametrize("running", list(FLOWS), indirect=True)
def test_every_reading_stored_once_and_one_alert(
        running: tuple[NodeRed, Mosquitto, VictoriaMetrics]) -> None:
    node_red, broker, store = running
    alerts, publisher = Alerts(broker), Publisher(broker)
    alarm_device = "wearable-77"
    expected = set()
    for m in range(100):  # 100 messages of 10 readings, on 4 gateways
        gateway = f"gw-{m % 4}"
        batch = []
        for i in range(10):
            device, seq = f"wearable-{m % 10}{i}", m // 10
            sos = 1.0 if (device, seq) == (alarm_device, 3) else 0.0
            batch.append(wearable(device, seq, T0 + 10 * m + i, sos))
            expected.add((gateway, device, 0, seq))
        publisher.send(gateway, orjson.dumps(batch))
    assert len(expected) == 1000

    assert wait_stored(node_red, store, 1000) == 1000
    stored = node_red.stored_keys(store)
    assert set(stored) == expected
    assert set(stored.values()) == {1}
    assert wait_until(lambda: len(alerts.snapshot()) >= 1)
    time.sleep(0.5)
    [alert] = alerts.snapshot()
    assert alert["device"] == alarm_device
    assert alert["ts"] == T0 + 10 * 37 + 7
    assert alert["area"] == AREA
    alerts.close()
    publisher.close()


@pytest.mark.parametrize("running", ["per-message", "per-reading-joined"], indirect=True)
def test_repeats_dropped_single_readings_and_arrays(
        running: tuple[NodeRed, Mosquitto, VictoriaMetrics]) -> None:
    """A repeat of (device, epoch, seq) is dropped however it comes, even with another ts (the
    store would keep that as a second sample); a later epoch is a new reading."""
    node_red, broker, store = running
    alerts, publisher = Alerts(broker), Publisher(broker)
    first = [smoke("smoke-1", 1, T0), wearable("wearable-1", 1, T0, sos=1.0)]
    publisher.send("gw-a", orjson.dumps(first))
    publisher.send("gw-a", orjson.dumps(smoke("smoke-1", 1, T0 + 5)))
    publisher.send("gw-a", orjson.dumps(wearable("wearable-1", 1, T0 + 5, sos=1.0)))
    publisher.send("gw-a", orjson.dumps({**smoke("smoke-1", 1, T0 + 9), "epoch": 1}))
    assert wait_stored(node_red, store, 3) == 3
    assert node_red.stored_keys(store) == {
        ("gw-a", "smoke-1", 0, 1): 1, ("gw-a", "wearable-1", 0, 1): 1,
        ("gw-a", "smoke-1", 1, 1): 1}
    assert [a["device"] for a in alerts.snapshot()] == ["wearable-1"]
    alerts.close()
    publisher.close()


@pytest.mark.parametrize("running", ["per-message", "per-reading-joined"], indirect=True)
def test_hostile_input_refused_and_the_flow_keeps_going(
        running: tuple[NodeRed, Mosquitto, VictoriaMetrics]) -> None:
    node_red, broker, store = running
    publisher = Publisher(broker)
    good = smoke("smoke-2", 1, T0)
    # each with its own seq: one that slipped through would show as a reading of its own
    variants: list[dict[str, object]] = [
        {"kind": "toaster"}, {"device": "a b,c=d"}, {"device": ""}, {"seq": -1},
        {"seq": 2**60}, {"seq": 1.5}, {"epoch": "0"}, {"ts": "yesterday"}, {"ts": 5},
        {"values": {"obscuration": "high"}}, {"values": {}}, {"values": [1.0]},
        {"values": {"__proto__": 1.0}}, {"values": {"ch_seq": 1.0}},
        {"values": {f"ch{i}": 1.0 for i in range(65)}}, {"battery": 7},
    ]
    hostile = [b"not json", b"", b"null", b"[1, 2]", b'"text"', b"{}", b"[[]]",
               b'{"device": "smoke-2", "kind": "smoke", "seq": 99, "ts": 1795478819832, '
               b'"values": {"obscuration": 1e999}}']
    hostile += [orjson.dumps({**good, "seq": 100 + i, **v}) for i, v in enumerate(variants)]
    for payload in hostile:
        publisher.send("gw-b", payload)
    renamed = {**good, "seq": 2, "ts": T0 + 1, "values": {"time": 3.0}}  # stored as ch_time
    publisher.send("gw-b", orjson.dumps([good, renamed]))
    assert wait_stored(node_red, store, 2) == 2
    assert node_red.stored_keys(store) == {("gw-b", "smoke-2", 0, 1): 1,
                                           ("gw-b", "smoke-2", 0, 2): 1}
    assert node_red.pids(), "node-red stopped"
    publisher.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
