"""GatewayAgent against a real Mosquitto, observed by a plain paho subscriber."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from sensing.services import Mosquitto
from sensing.wire import KIND_CHANNELS, decode_readings
from sensing.wire.topics import readings_topic, status_topic
from sensing_edge import (
    AgentSettings,
    Driver,
    GatewayAgent,
    SensorSample,
    SimulatedDriver,
    make_fleet,
)
from tests.edge.support import (
    MAX_BYTES,
    ListDriver,
    Message,
    Subscriber,
    readings_of,
    running,
    smoke_samples,
)

AREA = "edge-test"
Subscribe = Callable[..., Subscriber]


def make_settings(gateway: str, port: int, **overrides: Any) -> AgentSettings:
    # No core runs here on purpose (these tests watch the broker's side): the broker's PUBACK
    # is the confirmation. The core's confirmations are tested in test_edge_ack.py.
    fast: dict[str, Any] = {"poll_interval_s": 0.02, "batch_max_age_s": 0.1,
                            "confirm": "broker"}
    return AgentSettings.model_validate(
        {"gateway": gateway, "area": AREA, "broker_port": port, **fast, **overrides}
    )


def wait_readings(sub: Subscriber, gateway: str, n: int) -> list[dict[str, Any]]:
    sub.wait_for(lambda ms: len(readings_of(ms, gateway, AREA)) >= n)
    return readings_of(sub.messages, gateway, AREA)


def seqs_by_device(readings: list[dict[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for r in readings:
        out[r["device"]].append(r["seq"])
    return out


def assert_contiguous(readings: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Every device's seqs are exactly 0..n-1: no gap, no repeat."""
    by_device = seqs_by_device(readings)
    for device, seqs in by_device.items():
        assert sorted(seqs) == list(range(len(seqs))), f"{device}: {sorted(seqs)}"
    return by_device


@pytest.mark.parametrize("payload_format", ["snb1", "json"])
def test_readings_arrive_numbered_contiguously_per_device(
    broker: Mosquitto, subscribe: Subscribe, gateway: str, payload_format: str
) -> None:
    sub = subscribe(broker.port, readings_topic(AREA, gateway))
    fleet = make_fleet(12, {"smoke": 1, "manhole": 1, "wearable": 1}, gateway)
    settings = make_settings(
        gateway, broker.port, epoch=3, batch_max_readings=7, payload_format=payload_format
    )
    agent = GatewayAgent(settings, [SimulatedDriver(fleet, interval_s=0.05, seed=1)])
    with running(agent):
        time.sleep(1.0)
    stats = agent.stats()
    readings = wait_readings(sub, gateway, stats.readings_acked)

    assert stats.pending_batches == 0
    assert stats.readings_sampled == stats.readings_published == stats.readings_acked
    assert stats.batches == stats.batches_acked == len(sub.messages)
    assert len(readings) == stats.readings_acked > 100
    for m in sub.messages:
        decoded = decode_readings(m.payload, gateway, AREA, MAX_BYTES)
        assert decoded.format == payload_format
        assert 1 <= len(decoded.batch) <= 7
        if payload_format == "json":
            assert isinstance(orjson.loads(m.payload), list)
    kinds = dict(fleet)
    for r in readings:
        assert r["epoch"] == 3
        assert r["kind"] == kinds[r["device"]]
        assert set(r["values"]) == set(KIND_CHANNELS[r["kind"]])
        assert 0.0 < r["battery"] <= 1.0
    by_device = assert_contiguous(readings)
    assert set(by_device) == set(kinds)
    assert all(len(seqs) >= 10 for seqs in by_device.values())


def test_batches_hold_at_most_batch_max_readings_and_stop_flushes_the_rest(
    broker: Mosquitto, subscribe: Subscribe, gateway: str
) -> None:
    sub = subscribe(broker.port, readings_topic(AREA, gateway))
    samples = [*smoke_samples("a", 40), *smoke_samples("b", 30), *smoke_samples("c", 25)]
    settings = make_settings(gateway, broker.port, batch_max_readings=10, batch_max_age_s=60)
    agent = GatewayAgent(settings, [ListDriver(samples)])
    with running(agent):
        assert sub.wait_for(lambda ms: len(ms) >= 9)
        time.sleep(0.3)  # the 5 left over are young: nothing more until stop
        assert [len(readings_of([m], gateway, AREA)) for m in sub.messages] == [10] * 9
    assert sub.wait_for(lambda ms: len(ms) == 10)
    assert len(readings_of(sub.messages[-1:], gateway, AREA)) == 5
    assert_contiguous(readings_of(sub.messages, gateway, AREA))


def test_a_young_batch_is_published_once_it_is_batch_max_age_old(
    broker: Mosquitto, subscribe: Subscribe, gateway: str
) -> None:
    sub = subscribe(broker.port, readings_topic(AREA, gateway))
    driver = ListDriver()
    settings = make_settings(gateway, broker.port, batch_max_readings=200, batch_max_age_s=0.3)
    with running(GatewayAgent(settings, [driver])) as agent:
        fed = time.monotonic()
        driver.feed(smoke_samples("smoke-a", 3))
        assert sub.wait_for(lambda ms: len(ms) == 1, timeout=5)
        waited = time.monotonic() - fed
        assert 0.2 <= waited < 3.0
        assert agent.wait_acked(5)
        assert agent.stats().readings_acked == 3
    assert [r["seq"] for r in readings_of(sub.messages, gateway, AREA)] == [0, 1, 2]


def test_status_is_retained_online_while_running_and_offline_after_stop(
    broker: Mosquitto, subscribe: Subscribe, gateway: str
) -> None:
    topic = status_topic(AREA, gateway)
    settings = make_settings(gateway, broker.port)
    agent = GatewayAgent(settings, [], clock=lambda: 1_795_478_819_832)
    early = subscribe(broker.port, topic)
    with running(agent):
        assert early.wait_for(lambda ms: len(ms) == 1)  # the broker has it now
        late = subscribe(broker.port, topic)
        assert late.wait_for(lambda ms: len(ms) == 1)
        online = late.messages[0]
        assert online.retain
        assert orjson.loads(online.payload) == {"state": "online", "ts": 1_795_478_819_832}
    after = subscribe(broker.port, topic)
    assert after.wait_for(lambda ms: len(ms) == 1)
    assert after.messages[0].retain
    assert orjson.loads(after.messages[0].payload) == {"state": "offline", "ts": 1_795_478_819_832}
    assert agent.stats().connected is False


def test_publish_now_goes_out_at_once_with_the_young_readings_before_it(
    broker: Mosquitto, subscribe: Subscribe, gateway: str
) -> None:
    sub = subscribe(broker.port, readings_topic(AREA, gateway))
    settings = make_settings(gateway, broker.port, batch_max_age_s=60)
    agent = GatewayAgent(settings, [ListDriver(smoke_samples("smoke-a", 5))])
    with running(agent):
        deadline = time.monotonic() + 5
        while agent.stats().readings_sampled < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert sub.messages == []  # a young batch of 5: waiting for its age (60 s)
        alarm = SensorSample("smoke-a", "smoke", 1_795_478_900_000, {"obscuration": 14.2}, 0.9)
        sent = time.monotonic()
        agent.publish_now([alarm])
        assert sub.wait_for(lambda ms: len(ms) == 1, timeout=5)
        assert time.monotonic() - sent < 2.0
        first = readings_of(sub.messages, gateway, AREA)
        assert [r["seq"] for r in first] == [0, 1, 2, 3, 4, 5]
        assert first[-1]["values"] == {"obscuration": 14.2}


def test_in_flight_batches_stay_within_max_inflight_and_the_hook_sees_every_batch(
    broker: Mosquitto, subscribe: Subscribe, gateway: str
) -> None:
    sub = subscribe(broker.port, readings_topic(AREA, gateway))
    settings = make_settings(gateway, broker.port, batch_max_readings=1, max_inflight=2)
    hooked: list[tuple[str, bytes]] = []
    in_flight: list[int] = []
    agent = GatewayAgent(settings, [ListDriver(smoke_samples("smoke-a", 60))])

    def hook(topic: str, payload: bytes) -> None:
        s = agent.stats()
        in_flight.append(s.batches - s.batches_acked)
        hooked.append((topic, payload))

    agent.on_payload = hook
    with running(agent):
        assert sub.wait_for(lambda ms: len(ms) == 60)
        assert agent.wait_acked(5)
    assert 1 <= max(in_flight) <= 2
    assert Counter(hooked) == Counter((m.topic, m.payload) for m in sub.messages)
    assert_contiguous(readings_of(sub.messages, gateway, AREA))
    assert agent.stats().batches_acked == 60


def test_a_failing_driver_does_not_stop_the_others(
    broker: Mosquitto, subscribe: Subscribe, gateway: str
) -> None:
    class Broken:
        def poll(self, now_ms: int) -> list[SensorSample]:
            raise OSError("sensor bus unplugged")

    sub = subscribe(broker.port, readings_topic(AREA, gateway))
    drivers: list[Driver] = [Broken(), ListDriver(smoke_samples("smoke-a", 4))]
    agent = GatewayAgent(make_settings(gateway, broker.port), drivers)
    with running(agent):
        assert sub.wait_for(lambda ms: len(readings_of(ms, gateway, AREA)) == 4)


def test_readings_survive_a_broker_restart(
    subscribe: Subscribe, gateway: str, tmp_path: Path
) -> None:
    with Mosquitto.start(tmp_path) as broker:
        sub = subscribe(
            broker.port, readings_topic(AREA, gateway), client_id=f"sub-{gateway}",
            clean_session=False,
        )
        fleet = make_fleet(10, {"smoke": 1}, gateway)
        agent = GatewayAgent(
            make_settings(gateway, broker.port), [SimulatedDriver(fleet, interval_s=0.05, seed=2)]
        )
        with running(agent):
            time.sleep(0.4)
            broker.restart()
            deadline = time.monotonic() + 10
            while agent.stats().connects < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.4)
        stats = agent.stats()
        assert stats.connects >= 2
        assert stats.readings_acked == stats.readings_sampled

        def unique(ms: list[Message]) -> int:
            return len({(r["device"], r["seq"]) for r in readings_of(ms, gateway, AREA)})

        assert sub.wait_for(lambda ms: unique(ms) >= stats.readings_sampled, timeout=10)
        readings = readings_of(sub.messages, gateway, AREA)
        by_device = seqs_by_device(readings)  # at least once: duplicates allowed, gaps not
        for device, seqs in by_device.items():
            assert sorted(set(seqs)) == list(range(len(set(seqs)))), device
        assert sum(len(set(s)) for s in by_device.values()) == stats.readings_sampled


# -- settings -------------------------------------------------------------------------


def test_settings_defaults_and_validation() -> None:
    s = AgentSettings(gateway="gw-1", area="demo")
    assert s.client_id == "edge-demo-gw-1"
    assert (s.broker_host, s.broker_port) == ("127.0.0.1", 1883)
    assert (s.batch_max_readings, s.batch_max_age_s, s.payload_format) == (200, 0.5, "snb1")
    assert (s.poll_interval_s, s.max_inflight, s.epoch, s.buffer_path) == (0.1, 100, None, None)
    assert AgentSettings(gateway="g", area="a", client_id="mine").client_id == "mine"
    for bad in (
        {"gateway": "gw 1", "area": "demo"},
        {"gateway": "gw/1", "area": "demo"},
        {"gateway": "g" * 65, "area": "demo"},
        {"gateway": "gw-1", "area": ""},
        {"gateway": "gw-1", "area": "alerts"},
        {"gateway": "gw-1", "area": "demo", "payload_format": "xml"},
        {"gateway": "gw-1", "area": "demo", "epoch": -1},
        {"gateway": "gw-1", "area": "demo", "batch_max_readings": 0},
        {"gateway": "gw-1", "area": "demo", "unknown_option": 1},
        {"gateway": "gw-1", "area": "demo", "reconnect_min_s": 5, "reconnect_max_s": 1},
        {"gateway": "gw-1", "area": "demo", "buffer_when_full": "drop-some"},
    ):
        with pytest.raises(ValidationError):
            AgentSettings.model_validate(bad)
    with pytest.raises(ValidationError):
        s.gateway = "other"


def test_a_local_alarm_in_a_drivers_readings_goes_out_at_once(
    broker: Mosquitto, subscribe: Subscribe, gateway: str
) -> None:
    """A batch would wait 60 s; a reading at an alarm level (SOS) takes it out at once."""
    sub = subscribe(broker.port, readings_topic(AREA, gateway))
    driver = ListDriver()
    settings = make_settings(gateway, broker.port, batch_max_age_s=60)
    with running(GatewayAgent(settings, [driver])) as agent:
        quiet = {"heart_rate": 72.0, "spo2": 97.0, "accel_g": 1.0, "steps": 3.0, "sos": 0.0}
        driver.feed([SensorSample("band-1", "wearable", 1_795_478_900_000 + i, quiet, 0.8)
                     for i in range(3)])
        time.sleep(0.5)
        assert sub.messages == []
        fed = time.monotonic()
        driver.feed([SensorSample("band-1", "wearable", 1_795_478_900_010,
                                  quiet | {"sos": 1.0}, 0.8)])
        assert sub.wait_for(lambda ms: len(readings_of(ms, gateway, AREA)) == 4, timeout=5)
        assert time.monotonic() - fed < 2.0
        assert agent.stats().local_alarms == 1
