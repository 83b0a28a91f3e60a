"""The agent over its durable buffer: backlog beside live readings, restarts, reconnects."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from sensing.services import Mosquitto
from sensing.wire.topics import readings_topic
from sensing_edge import AgentSettings, GatewayAgent, ReadingBuffer, SensorSample
from sensing_edge.agent import backoff_delay
from tests.edge.support import ListDriver, Message, Subscriber, readings_of, smoke_samples

AREA = "durable-test"


def test_the_backlog_drains_at_its_rate_while_live_readings_keep_flowing(
    broker: Mosquitto, gateway: str, tmp_path: Path
) -> None:
    path = tmp_path / "buffer.db"
    old = ReadingBuffer(path)
    for i in range(30):  # 3,000 readings of an earlier run that never reached the broker
        old.append(smoke_samples(f"old-{i}", 100))
    old_epoch = old.epoch
    old.close()
    sub = Subscriber(broker.port, readings_topic(AREA, gateway))
    arrivals: list[tuple[float, str]] = []  # (time, "old" or "live") per message
    lock = threading.Lock()

    def on_message(c: object, u: object, msg: object) -> None:
        readings = readings_of([Message(msg.topic, bytes(msg.payload), False)],  # type: ignore[attr-defined]
                               gateway, AREA)
        with lock:
            arrivals.extend((time.monotonic(), str(r["device"])[:3]) for r in readings)

    sub.client.on_message = on_message
    live = ListDriver()
    # no core here on purpose (the test watches the broker): the PUBACK confirms
    settings = AgentSettings(gateway=gateway, area=AREA, broker_port=broker.port,
                             confirm="broker", buffer_path=path, drain_readings_per_s=1_000,
                             batch_max_readings=100, batch_max_age_s=0.1, poll_interval_s=0.02)
    agent = GatewayAgent(settings, [live])
    assert agent.epoch > old_epoch
    agent.start()
    try:
        assert agent.wait_connected(10)
        started = time.monotonic()
        for k in range(40):  # a live reading every 0.1 s for 4 s
            live.feed([SensorSample("live-1", "smoke", 1_795_478_900_000 + k,
                                    {"obscuration": 0.1}, 0.9)])
            time.sleep(0.1)
        assert agent.wait_acked(10)
    finally:
        agent.stop(5)
        sub.close()
    with lock:
        old_times = [t - started for t, who in arrivals if who == "old"]
        live_times = [t - started for t, who in arrivals if who == "liv"]
    assert len(old_times) >= 3_000 and len(live_times) >= 40
    # bounded: 3,000 readings at 1,000/s take about 3 s (less one poll's burst)
    assert max(old_times) >= 2.0, max(old_times)
    # and live readings were not queued behind the backlog
    assert min(live_times) < 1.0 and sum(t < max(old_times) for t in live_times) >= 10


def test_a_restarted_agent_sends_what_the_last_run_left_then_its_own(
    broker: Mosquitto, gateway: str, tmp_path: Path
) -> None:
    path = tmp_path / "buffer.db"
    nowhere = AgentSettings(gateway=gateway, area=AREA, broker_port=1,  # nothing listens there
                            buffer_path=path, poll_interval_s=0.02,
                            confirm="broker")  # no core here on purpose: the PUBACK confirms
    first = GatewayAgent(nowhere, [ListDriver(smoke_samples("smoke-a", 50))])
    first.start()
    deadline = time.monotonic() + 5
    while first.stats().readings_sampled < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.stop(timeout=0) is False  # nothing acknowledged: all 50 stay in the file
    assert first.stats().readings_buffered == 50
    sub = Subscriber(broker.port, readings_topic(AREA, gateway))
    try:
        settings = nowhere.model_copy(update={"broker_port": broker.port})
        second = GatewayAgent(settings, [ListDriver(smoke_samples("smoke-a", 5))])
        second.start()
        assert second.wait_connected(10)
        assert second.wait_acked(10)
        second.stop(5)
        assert sub.wait_for(lambda ms: len(readings_of(ms, gateway, AREA)) >= 55)
        got = readings_of(sub.messages, gateway, AREA)
    finally:
        sub.close()
    by_epoch: dict[int, list[int]] = {}
    for r in got:
        by_epoch.setdefault(int(str(r["epoch"])), []).append(int(str(r["seq"])))
    assert sorted(by_epoch) == [first.epoch, second.epoch] and first.epoch < second.epoch
    assert sorted(set(by_epoch[first.epoch])) == list(range(50))
    assert sorted(set(by_epoch[second.epoch])) == list(range(5))
    assert ReadingBuffer(path).take(0, 100) == []


def test_reconnect_delays_double_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(1)
    for failures, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (5, 16.0), (6, 30.0), (500, 30.0)]:
        delays = [backoff_delay(failures, 0.5, 30.0, rng) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays), (failures, min(delays), max(delays))
        assert max(delays) - min(delays) > cap / 4  # spread, not one value for every gateway
