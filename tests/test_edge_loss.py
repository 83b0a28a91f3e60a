"""Nothing lost, nothing stored twice: edge agents through outages, against a real Mosquitto,
VictoriaMetrics and the core, counting readings in the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from sensing.services import Mosquitto, VictoriaMetrics, free_port
from sensing.wire.topics import deadletter_topic
from sensing_edge import (
    AgentSettings,
    GatewayAgent,
    SensorSample,
    SimulatedDriver,
    make_fleet,
    wall_clock_ms,
)
from tests.edge.support import ListDriver, smoke_samples
from tests.helpers import Listener, running_core, wait_until

pytestmark = pytest.mark.e2e

AREA = "loss-test"


def stored_keys(store: VictoriaMetrics, gateway: str) -> dict[tuple[str, int], list[int]]:
    """(device, epoch) -> the seqs the store holds for the gateway's readings, one per
    sample (a reading stored twice would be there twice)."""
    seqs: dict[tuple[str, int, int], int] = {}
    epochs: dict[tuple[str, int], int] = {}
    for name, into in (("reading_seq", "seq"), ("reading_epoch", "epoch")):
        for series in store.export(f'{{__name__="{name}",gateway="{gateway}"}}'):
            device = str(series["metric"]["device"])  # type: ignore[index]
            for ts, v in zip(series["timestamps"], series["values"], strict=True):  # type: ignore[call-overload]
                if into == "seq":
                    seqs[(device, int(ts), len(seqs))] = int(v)
                else:
                    epochs[(device, int(ts))] = int(v)
    out: dict[tuple[str, int], list[int]] = defaultdict(list)
    for (device, ts, _), seq in seqs.items():
        out[(device, epochs[(device, ts)])].append(seq)
    return out


def assert_exactly_once(keys: dict[tuple[str, int], list[int]], devices: int) -> int:
    """Every (device, epoch) holds seqs 0..n-1, each once; returns the readings stored."""
    assert len({d for d, _ in keys}) == devices
    for (device, epoch), seqs in keys.items():
        assert sorted(seqs) == list(range(len(seqs))), f"{device}/{epoch}: {sorted(seqs)}"
    return sum(len(s) for s in keys.values())


def test_a_30_s_broker_outage_under_load_loses_nothing_and_stores_nothing_twice(
    store: VictoriaMetrics, tmp_path: Path
) -> None:
    gateway = "gw-outage"
    with Mosquitto.start(tmp_path / "broker") as broker, \
            running_core(broker, store, tmp_path / "core"):
        fleet = make_fleet(200, {"smoke": 1, "manhole": 1, "wearable": 1}, gateway)
        settings = AgentSettings(gateway=gateway, area=AREA, broker_port=broker.port,
                                 buffer_path=tmp_path / "edge" / "buffer.db",
                                 reconnect_min_s=0.2, reconnect_max_s=2.0)
        agent = GatewayAgent(settings, [SimulatedDriver(fleet, interval_s=0.5, seed=4)])
        agent.start()
        assert agent.wait_connected(10)
        time.sleep(5)
        broker.stop()
        time.sleep(30)  # 200 devices at 2 readings/s: about 12,000 readings buffered
        outage = agent.stats()
        assert not outage.connected and outage.readings_buffered > 10_000
        broker.restart()
        assert wait_until(lambda: agent.stats().connects >= 2, 20)
        time.sleep(3)
        assert agent.stop(timeout=30), agent.stats()
        stats = agent.stats()
        assert stats.readings_dropped == 0 and stats.readings_buffered == 0
        match = f'{{__name__="reading_seq",gateway="{gateway}"}}'
        assert store.settled_count(match, stats.readings_sampled, 60) == stats.readings_sampled
        stored = assert_exactly_once(stored_keys(store, gateway), 200)
    assert stored == stats.readings_sampled > 15_000
    print(f"\nbroker outage: sampled {stats.readings_sampled}, buffered during the outage "
          f"{outage.readings_buffered}, stored {stored} (once each)")


def test_a_broker_killed_with_a_backlog_for_a_stopped_core_loses_nothing(
    store: VictoriaMetrics, tmp_path: Path
) -> None:
    """Issue 11, problem 11: the core stopped, a backlog queued for it in the broker, Mosquitto
    SIGKILLed (it saves its queues only every autosave_interval = 5 s) and restarted, the core
    started again: every reading sampled is stored, once. Readings the broker acknowledged and
    then lost stay in the agent's buffer until the core confirms them, and are re-sent."""
    gateway = "gw-brokerkill"
    with Mosquitto.start(tmp_path / "broker") as broker:
        with running_core(broker, store, tmp_path / "core"):
            pass  # the core's persistent session now queues its readings while it is away
        fleet = make_fleet(200, {"smoke": 1, "manhole": 1, "wearable": 1}, gateway)
        settings = AgentSettings(gateway=gateway, area=AREA, broker_port=broker.port,
                                 buffer_path=tmp_path / "edge" / "buffer.db",
                                 reconnect_min_s=0.2, reconnect_max_s=2.0,
                                 confirm_timeout_s=5.0, confirm_timeout_max_s=10.0)
        agent = GatewayAgent(settings, [SimulatedDriver(fleet, interval_s=0.5, seed=7)])
        agent.start()
        assert agent.wait_connected(10)
        time.sleep(8)  # 200 devices at 2 readings/s: about 3,200 readings queued for the core
        queued = agent.stats()
        assert queued.readings_acked > 2_000 and queued.readings_confirmed == 0
        # nothing deleted at the PUBACK (readings_acked also counts a probe re-sent after the
        # 5 s confirmation timeout, when one fell inside the 8 s)
        assert queued.readings_buffered >= queued.readings_acked - queued.readings_resent
        broker.kill()
        broker.restart()
        with running_core(broker, store, tmp_path / "core"):
            assert wait_until(lambda: agent.stats().connects >= 2, 20)
            time.sleep(3)
            assert agent.stop(timeout=60), agent.stats()
            stats = agent.stats()
            assert stats.readings_dropped == 0 and stats.readings_buffered == 0
            assert stats.readings_refused == 0
            match = f'{{__name__="reading_seq",gateway="{gateway}"}}'
            assert store.settled_count(match, stats.readings_sampled, 60) == \
                stats.readings_sampled
            stored = assert_exactly_once(stored_keys(store, gateway), 200)
    assert stored == stats.readings_sampled
    print(f"\nbroker SIGKILL with a backlog: sampled {stats.readings_sampled}, queued for the "
          f"stopped core {queued.readings_acked}, re-sent {stats.readings_resent}, stored "
          f"{stored} (once each)")


def test_a_core_outage_of_many_confirm_timeouts_makes_the_agent_drop_nothing(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    """The core stopped for 20 s with confirmation timeouts of 0.5 s and giving up after one
    ignored resend (the defaults are 30-300 s and 5: this is an hour's outage, sped up): the
    agent probes, gives nothing up, and every reading is stored once when the core is back."""
    gateway = "gw-coredown"
    fleet = make_fleet(50, {"smoke": 1, "wearable": 1}, gateway)
    settings = AgentSettings(gateway=gateway, area=AREA, broker_port=broker.port,
                             buffer_path=tmp_path / "edge" / "buffer.db",
                             confirm_timeout_s=0.5, confirm_timeout_max_s=0.5,
                             confirm_give_up_after=1)
    agent = GatewayAgent(settings, [SimulatedDriver(fleet, interval_s=0.5, seed=9)])
    with running_core(broker, store, tmp_path / "core"):
        agent.start()
        assert agent.wait_connected(10)
        time.sleep(3)
    time.sleep(20)  # the core is down
    down = agent.stats()
    assert down.readings_refused == 0 and down.readings_awaiting_core > 1_000
    # one probe batch (about 50 readings) per 0.5 s: about 2,000 re-sent, where re-sending
    # every overdue batch at each of the 40 timeouts would have been 40 times the window
    assert down.readings_resent <= 5 * down.readings_awaiting_core
    with running_core(broker, store, tmp_path / "core"):
        time.sleep(2)
        assert agent.stop(timeout=30), agent.stats()
        stats = agent.stats()
        match = f'{{__name__="reading_seq",gateway="{gateway}"}}'
        assert store.settled_count(match, stats.readings_sampled, 30) == stats.readings_sampled
        stored = assert_exactly_once(stored_keys(store, gateway), 50)
    assert stats.readings_refused == 0 and stats.readings_dropped == 0
    assert stored == stats.readings_sampled
    print(f"\ncore down 20 s: sampled {stats.readings_sampled}, awaiting the core "
          f"{down.readings_awaiting_core}, re-sent {stats.readings_resent}, stored {stored}")


def test_a_reading_the_core_refuses_is_given_up_after_bounded_tries(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    """A reading a day ahead of the core's clock is dead-lettered and never confirmed, while
    the readings after it are: the agent sends it 1 + confirm_give_up_after times, then
    deletes it and counts it; the rest is stored."""
    gateway = "gw-refused"
    driver = ListDriver()
    settings = AgentSettings(gateway=gateway, area=AREA, broker_port=broker.port,
                             poll_interval_s=0.05, batch_max_age_s=0.1, confirm_timeout_s=1.0,
                             confirm_timeout_max_s=1.0, confirm_give_up_after=2)
    agent = GatewayAgent(settings, [driver])
    now = wall_clock_ms()
    with running_core(broker, store, tmp_path / "core"):
        letters = Listener(broker, deadletter_topic(AREA, gateway))
        agent.start()
        assert agent.wait_connected(10)
        driver.feed([SensorSample("smoke-ahead", "smoke", now + 86_400_000,
                                  {"obscuration": 0.1}, 0.9)])
        for k in range(40):  # live readings, confirmed: the core is alive and moving on
            driver.feed(smoke_samples("smoke-live", 1, ts0=now + k))
            time.sleep(0.2)
            if agent.stats().readings_refused:
                break
        assert agent.stop(timeout=10), agent.stats()
        letters.close()
    stats = agent.stats()
    assert stats.readings_refused == 1 and stats.readings_buffered == 0
    refused = [m for _, m in letters.messages if b"ahead" in m]
    assert len(refused) == 3  # sent, re-sent twice, given up
    assert stats.readings_confirmed == stats.readings_sampled - 1


def test_an_agent_killed_mid_stream_loses_nothing_and_stores_nothing_twice(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    """`sensing-edge run` with a buffer file, SIGKILLed twice while publishing, run again:
    every reading any run committed is stored once, under the run's own epoch."""
    gateway = "gw-sigkill"
    buffer = tmp_path / "edge" / "buffer.db"
    argv = [sys.executable, "-m", "sensing_edge", "run", "--gateway", gateway, "--area", AREA,
            "--broker-port", str(broker.port), "--devices", "300", "--interval", "0.5",
            "--buffer", str(buffer), "--log-level", "warning"]
    with running_core(broker, store, tmp_path / "core"):
        for _ in range(2):
            child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
            time.sleep(6)
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        last = subprocess.run([*argv, "--duration", "5", "--json"], capture_output=True,
                              timeout=120, check=False)
        assert last.returncode == 0, last.stderr.decode()[-2000:]
        # the last run drained the killed runs' buffered readings and stopped with none left
        keys: dict[tuple[str, int], list[int]] = {}

        def settled() -> bool:
            nonlocal keys
            keys = stored_keys(store, gateway)
            return len({e for _, e in keys}) == 3
        assert wait_until(settled, 30)
        time.sleep(1)
        keys = stored_keys(store, gateway)
    epochs = sorted({e for _, e in keys})
    assert len(epochs) == 3 and epochs[0] < epochs[1] < epochs[2]
    stored = assert_exactly_once(keys, 300)
    per_epoch = {e: sum(len(s) for (_, ep), s in keys.items() if ep == e) for e in epochs}
    # 300 devices at 2 readings/s for ~6 s per killed run (less its start-up)
    assert all(n > 1_500 for n in per_epoch.values()), per_epoch
    print(f"\nSIGKILL: stored per run {per_epoch}, {stored} readings in all, once each")


def test_a_full_buffer_keeps_the_newest_readings_and_counts_the_rest(
    store: VictoriaMetrics, tmp_path: Path
) -> None:
    gateway = "gw-cap"
    port = free_port()  # no broker there yet: everything stays in the buffer
    samples = smoke_samples("smoke-cap", 500)
    settings = AgentSettings(gateway=gateway, area=AREA, broker_port=port,
                             buffer_path=tmp_path / "edge" / "buffer.db",
                             buffer_max_readings=200, reconnect_min_s=0.2,
                             reconnect_max_s=1.0, poll_interval_s=0.02)
    agent = GatewayAgent(settings, [ListDriver(samples)])
    agent.start()
    assert wait_until(lambda: agent.stats().readings_sampled == 500, 10)
    stats = agent.stats()
    assert stats.readings_buffered == 200 and stats.readings_dropped == 300
    with Mosquitto.start(tmp_path / "broker", port=port) as broker, \
            running_core(broker, store, tmp_path / "core"):
        assert agent.wait_connected(20)
        assert agent.stop(timeout=20)
        match = f'{{__name__="reading_seq",gateway="{gateway}"}}'
        assert store.settled_count(match, 200, 30) == 200
        keys = stored_keys(store, gateway)
    ((_, _epoch), seqs), = keys.items()
    assert sorted(seqs) == list(range(300, 500))  # drop-oldest: the newest 200 are stored


def test_a_local_alarm_fires_while_the_broker_is_down_and_arrives_when_it_is_back(
    store: VictoriaMetrics, tmp_path: Path
) -> None:
    gateway = "gw-alarm"
    port = free_port()
    fired = tmp_path / "fired.json"
    hook = [sys.executable, "-c",
            "import os, sys; open(sys.argv[1], 'w').write(sys.stdin.read() + "
            "os.environ['SENSING_ALARM_TYPE'])", str(fired)]
    driver = ListDriver()
    settings = AgentSettings.model_validate({
        "gateway": gateway, "area": AREA, "broker_port": port, "poll_interval_s": 0.02,
        "buffer_path": tmp_path / "edge" / "buffer.db", "reconnect_min_s": 0.2,
        "reconnect_max_s": 1.0, "alarms": {"command": hook}})
    agent = GatewayAgent(settings, [driver])
    agent.start()
    quiet = smoke_samples("smoke-home", 3)
    fire = [SensorSample(s.device, s.kind, s.ts + 10_000, {"obscuration": 14.0}, 0.9)
            for s in smoke_samples("smoke-home", 1)]
    driver.feed([*quiet, *fire])
    assert wait_until(fired.exists, 10), "the actuator hook did not run"
    assert wait_until(lambda: fired.read_text().endswith("smoke.fire"), 5)
    assert '"device":"smoke-home"' in fired.read_text()
    assert not agent.connected and agent.stats().local_alarms == 1
    with Mosquitto.start(tmp_path / "broker", port=port) as broker, \
            running_core(broker, store, tmp_path / "core"):
        assert agent.wait_connected(20)
        assert agent.stop(timeout=20)
        match = f'{{__name__="reading_obscuration",gateway="{gateway}"}}'
        assert store.settled_count(match, 4, 30) == 4
