"""A live run against a real Mosquitto: what a plain subscriber hears matches the report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sensing.services import Mosquitto
from sensing.wire import WireError, decode_readings
from sensing.wire.topics import READINGS_FILTER, parse_gateway_topic
from sensing_sim import MALFORMED_REASONS, Fleet, FleetSpec, LiveOptions, run_live

pytestmark = pytest.mark.e2e

CORE_LIMIT = 1 << 20


class Subscriber:
    """A plain paho subscriber on every readings topic, decoding as the core would."""

    def __init__(self, port: int) -> None:
        self.names: set[tuple[str, int, int]] = set()
        self.readings = 0
        self.rejected = 0
        self.values: dict[str, list[dict[str, float]]] = {}
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sim-test-listener")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(READINGS_FILTER, qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        topic = parse_gateway_topic(msg.topic)
        assert topic is not None
        try:
            batch = decode_readings(bytes(msg.payload), topic.gateway, topic.area, CORE_LIMIT).batch
        except WireError:
            with self._lock:
                self.rejected += 1
            return
        with self._lock:
            for reading in batch.readings():
                name = (str(reading["device"]), int(reading["epoch"]),  # type: ignore[call-overload]
                        int(reading["seq"]))  # type: ignore[call-overload]
                self.names.add(name)
                self.readings += 1
                self.values.setdefault(name[0], []).append(reading["values"])  # type: ignore[arg-type]

    def wait_for(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if done():
                    return
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto.start(tmp_path) as b:
        yield b


def test_subscriber_hears_every_reading_the_report_counts(broker: Mosquitto) -> None:
    sub = Subscriber(broker.port)
    fleet = Fleet(FleetSpec(n_gateways=2, n_devices=20, interval_s=0.5, seed=21))
    fleet.schedule_demo_incidents(5.0)
    report = run_live(fleet, LiveOptions(
        port=broker.port, duration_s=5.0, duplicate_rate=0.5, malformed=6, batch_max_age_s=0.25,
    ))
    expected = report.readings_sent_unique + report.duplicate_readings_injected
    sub.wait_for(lambda: sub.rejected >= 6 and sub.readings >= expected, 15)
    sub.close()

    assert report.all_acked and not report.stopped_early
    assert 160 <= report.readings_sampled <= 220  # 20 devices, 2 readings/s each, ~5 s
    assert report.readings_sent_unique == report.readings_sampled == report.readings_acked
    assert len(sub.names) == report.readings_sent_unique
    assert {name[0] for name in sub.names} == {d.id for d in fleet.devices}
    assert {name[1] for name in sub.names} == {report.epoch}

    assert report.duplicate_batches_injected > 0
    assert sub.readings - len(sub.names) == report.duplicate_readings_injected

    assert report.malformed_sent == dict.fromkeys(MALFORMED_REASONS, 1)
    assert sub.rejected == report.malformed_total == 6

    # the labels, and the incidents really on the wire
    assert {i["type"] for i in report.incidents} >= {"smoke.fire", "manhole.displaced",
                                                      "wearable.sos", "device.battery"}
    by_type = {str(i["type"]): str(i["device"]) for i in report.incidents}
    assert max(v["tilt_deg"] for v in sub.values[by_type["manhole.displaced"]]) >= 35.0
    assert max(v["sos"] for v in sub.values[by_type["wearable.sos"]]) == 1.0
    quiet = set(sub.values) - set(by_type.values())
    assert all(v.get("sos", 0.0) == 0.0 and v.get("tilt_deg", 0.0) < 7.0
               for d in quiet for v in sub.values[d])
    assert orjson.loads(report.to_json())["malformed_total"] == 6
    for inc in report.incidents:
        assert report.start_ms <= int(inc["ts_start"]) < int(inc["ts_end"]) <= report.end_ms  # type: ignore[call-overload]


def test_cli_stops_cleanly_on_sigterm_and_still_reports(broker: Mosquitto, tmp_path: Path) -> None:
    report_path = tmp_path / "out" / "report.json"
    cli = Path(sys.executable).parent / "sensing-sim"
    proc = subprocess.Popen(
        [str(cli), "live", "--broker-port", str(broker.port), "--gateways", "2",
         "--devices", "10", "--interval", "0.5", "--duration", "120", "--format", "json",
         "--malformed", "3", "--progress-every", "0.5", "--report", str(report_path), "--json",
         "--confirm", "broker"],  # no core behind this broker
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stderr is not None
    progress = Counter[str]()
    for line in proc.stderr:
        if b" sampled " in line:
            progress["lines"] += 1
            if progress["lines"] == 2:
                break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert len(lines) == 1, "--json prints one JSON object on stdout"
    report = orjson.loads(lines[0])
    assert report["stopped_early"] is True and report["all_acked"] is True
    assert report["payload_format"] == "json"
    assert 0 < report["readings_sent_unique"] == report["readings_sampled"]
    assert report["duration_s"] < 30
    assert orjson.loads(report_path.read_bytes()) == report


def test_simulator_live_path_does_not_import_numba() -> None:
    code = ("import sys, sensing_sim, sensing_sim.cli, sensing_sim.live, sensing.logs; "
            "assert 'numba' not in sys.modules, 'numba imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
