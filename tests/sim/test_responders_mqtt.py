"""The simulated responders against a real Mosquitto: hand-made dispatch and case messages as
the contract writes them in, the actions they publish (topic, payload, timing) out."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sensing.dispatch.directory import parse_directory
from sensing.services import Mosquitto
from sensing.wire import topics
from sensing_sim.cli import main
from sensing_sim.directory_gen import write_directory
from sensing_sim.responders import Behaviour, ResponderSim, RoleBehaviour, Truth
from sensing_sim.responders_live import FleetClock, LiveResponders, WallClock
from tests.helpers import Listener, publish, publisher
from tests.sim.test_responders_logic import DIRECTORY, behaviour, label

SCALE = 0.02
"""the responders' delays, shortened: take 40 s -> 0.8 s, travel 100 s -> 2 s, 200 s -> 4 s"""
CERTAIN = RoleBehaviour(1.0, (40, 40), (100, 100), (200, 200))
TOLERANCE_S = 0.5


@pytest.fixture
def responders(broker: Mosquitto) -> Iterator[LiveResponders]:
    now = time.time_ns() // 1_000_000
    truth = Truth([{**label("smoke.fire", "smoke-1", 0, 300), "ts_start": now - 60_000,
                    "ts_end": now + 240_000}])
    sim = ResponderSim(parse_directory(DIRECTORY), truth, _fast(behaviour(grid_worker=CERTAIN)),
                       seed=1)
    live = LiveResponders("127.0.0.1", broker.port, sim, WallClock(), quiet_s=0.5)
    live.start(10)
    yield live
    live.stop(5)


def _fast(b: Behaviour) -> Behaviour:
    return Behaviour(roles=b.roles, unanswered_share=0.0, first_unanswered=False,
                     time_scale=SCALE)


def _case(case_id: str, event: str, **extra: Any) -> bytes:
    state = {"taken": "taken", "arrived": "arrived", "disposed": "disposed"}.get(event, "open")
    return orjson.dumps({
        "case_id": case_id, "event": event, "by": extra.pop("by", ""),
        "ts": time.time_ns() // 1_000_000, "state": state, "type": "smoke.fire",
        "grade": "critical", "area": "comm-1", "device": "smoke-1", "gateway": "gw-1",
        "members": [case_id], "taken_by": extra.pop("taken_by", ""), "outcome": "",
        "note": "", "chain": "life_safety", **extra})


def _dispatch(case_id: str, who: str, role: str, tier: str) -> tuple[str, bytes]:
    now = time.time_ns() // 1_000_000
    alert = {"alert_id": case_id, "type": "smoke.fire", "grade": "critical", "state": "raised",
             "device": "smoke-1", "gateway": "gw-1", "area": "comm-1", "ts_event": now - 900,
             "ts_raised": now - 800, "value": 14.2, "reason": "obscuration 14.2 %/m",
             "tier": tier, "case_id": case_id, "members": [case_id], "role": role,
             "responder": who, "step": 0, "round": 0, "notification_id": f"n-{case_id}-{who}"}
    return topics.dispatch_topic(tier, "comm-1"), orjson.dumps(alert)


def _acts(listener: Listener, n: int, timeout: float = 10.0) -> list[tuple[float, str, dict[
        str, Any]]]:
    assert listener.wait_for(lambda: len(listener.messages) >= n, timeout), listener.messages
    return [(time.monotonic(), t, orjson.loads(p)) for t, p in listener.messages[:n]]


def test_told_of_a_case_the_grid_worker_takes_arrives_and_disposes(
        broker: Mosquitto, responders: LiveResponders) -> None:
    listener = Listener(broker, "sensing/v1/ack/#")
    pub = publisher(broker)
    try:
        publish(pub, "sensing/v1/cases/comm-1", _case("c1", "opened"))
        told = time.monotonic()
        publish(pub, *_dispatch("c1", "grid-1", "grid_worker", "grid"))
        # a copy of the same notification changes nothing
        publish(pub, *_dispatch("c1", "grid-1", "grid_worker", "grid"))
        [(at, topic, doc)] = _acts(listener, 1)
        assert topic == "sensing/v1/ack/grid-1"
        assert doc == {"alert_id": "c1", "by": "grid-1", "action": "take"}
        assert 40 * SCALE - 0.05 <= at - told <= 40 * SCALE + TOLERANCE_S

        taken = time.monotonic()
        publish(pub, "sensing/v1/cases/comm-1", _case("c1", "taken", by="grid-1",
                                                        taken_by="grid-1"))
        at, topic, doc = _acts(listener, 2)[1]
        assert (topic, doc["action"], doc["by"]) == ("sensing/v1/ack/grid-1", "arrived", "grid-1")
        assert 100 * SCALE - 0.05 <= at - taken <= 100 * SCALE + TOLERANCE_S

        arrived = time.monotonic()
        publish(pub, "sensing/v1/cases/comm-1", _case("c1", "arrived", by="grid-1",
                                                        taken_by="grid-1"))
        at, topic, doc = _acts(listener, 3)[2]
        assert doc["action"] == "dispose" and doc["outcome"] == "fire"
        assert doc["alert_id"] == "c1" and 0 < len(doc["note"]) <= 1000
        assert 200 * SCALE - 0.05 <= at - arrived <= 200 * SCALE + TOLERANCE_S
        assert not responders.settled()

        publish(pub, "sensing/v1/cases/comm-1", _case("c1", "disposed", by="grid-1",
                                                        taken_by="grid-1", outcome="fire"))
        # the core refusing one of its actions is counted; broken messages are skipped
        publish(pub, "sensing/v1/deadletter/_/ack", orjson.dumps({
            "reason": "case c1 is already disposed", "code": "ack_refused",
            "topic": "sensing/v1/ack/grid-1",
            "payload": base64.b64encode(b'{"alert_id": "c1"}').decode()}))
        publish(pub, "sensing/v1/dispatch/grid/comm-1", b"not json")
        publish(pub, "sensing/v1/cases/comm-1", b'{"case_id": "c2"}')
        assert listener.wait_for(responders.settled, 10)
        report = responders.stop(5)
        assert report["sent"] == {"take": 1, "arrived": 1, "dispose": 1}
        assert report["outcomes"] == {"fire": 1} and report["refused"] == {"ack_refused": 1}
        assert report["heard"] == {"dispatch": 2, "cases": 4, "refusals": 1, "invalid": 2}
        assert report["repeats"] == 1 and report["unconfirmed"] == 0
        assert report["cases_by_state"] == {"disposed": 1}
        time.sleep(0.5)
        assert len(listener.messages) == 3
    finally:
        listener.close()
        pub.disconnect()


def test_only_one_takes_and_a_cleared_case_is_disposed_remotely(
        broker: Mosquitto, responders: LiveResponders) -> None:
    listener = Listener(broker, "sensing/v1/ack/#")
    pub = publisher(broker)
    try:
        publish(pub, *_dispatch("c3", "grid-1", "grid_worker", "grid"))
        publish(pub, "sensing/v1/cases/comm-1", _case("c3", "taken", by="duty-1",
                                                        taken_by="duty-1"))
        # duty-1 took it: grid-1's take is dropped, duty-1 (one of the directory's) arrives
        [(_, topic, doc)] = _acts(listener, 1)
        assert (topic, doc["action"]) == ("sensing/v1/ack/duty-1", "arrived")

        publish(pub, *_dispatch("c4", "grid-1", "grid_worker", "grid"))
        publish(pub, "sensing/v1/cases/comm-1", _case("c4", "cleared"))
        at = time.monotonic()
        _, topic, doc = _acts(listener, 2)[1]
        assert (topic, doc["action"], doc["outcome"]) == (
            "sensing/v1/ack/grid-1", "dispose", "fire")
        assert time.monotonic() - at <= 180 * SCALE + TOLERANCE_S
        time.sleep(1.0)
        assert [orjson.loads(p)["action"] for _, p in listener.messages] == [
            "arrived", "dispose"]
    finally:
        listener.close()
        pub.disconnect()


def test_the_fleet_clock_follows_the_cases_and_runs_at_the_replays_speed() -> None:
    clock = FleetClock(speed=60)
    assert abs(clock.now_ms() - time.time() * 1000) < 1000  # nothing heard: the wall clock
    clock.observe(1_000_000)
    start = time.monotonic()
    time.sleep(0.2)
    ran = (clock.now_ms() - 1_000_000) / 1000
    assert 0.2 * 60 * 0.8 <= ran <= (time.monotonic() - start) * 60 + 1
    clock.observe(1_000_500)  # behind its own reckoning: ignored
    assert clock.now_ms() > 1_000_500 + 5000
    assert clock.wall_s_until(clock.now_ms() + 60_000) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError):
        FleetClock(speed=0)


def test_live_runs_the_responders_of_a_directory_and_reports_them(
        broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "dir.toml"
    write_directory(directory, DIRECTORY)
    code = main(["live", "--broker-port", str(broker.port), "--gateways", "1", "--devices",
                 "4", "--areas", "comm-1", "--duration", "1", "--incidents", "none",
                 "--confirm", "broker", "--directory", str(directory), "--linger", "1",
                 "--json"])
    assert code == 0
    report = orjson.loads(capsys.readouterr().out)
    people = report["responders"]
    assert people["cases"] == 0 and people["clock"] == "wall" and people["seed"] == 1
    assert 0.9 <= report["linger_s"] <= 3
    assert report["duration_s"] < 3
    code = main(["live", "--broker-port", str(broker.port), "--duration", "1",
                 "--responders"])
    assert code == 2  # responders need a directory
    (tmp_path / "bad.toml").write_text("areas = []\n")
    assert main(["live", "--broker-port", str(broker.port), "--duration", "1",
                 "--directory", str(tmp_path / "bad.toml")]) == 2


def test_on_the_fleets_clock_a_delay_takes_its_simulated_seconds_over_the_speed(
        broker: Mosquitto) -> None:
    speed = 20.0
    fleet_ms = 1_795_485_600_000  # a replayed fleet's clock, long past
    sim = ResponderSim(parse_directory(DIRECTORY), Truth([]),
                       Behaviour(roles=behaviour(grid_worker=CERTAIN).roles,
                                 unanswered_share=0.0, first_unanswered=False), seed=1)
    clock = FleetClock(speed)
    people = LiveResponders("127.0.0.1", broker.port, sim, clock, quiet_s=0.5)
    people.start(10)
    listener = Listener(broker, "sensing/v1/ack/#")
    pub = publisher(broker)
    try:
        doc = orjson.loads(_case("f1", "opened"))
        publish(pub, "sensing/v1/cases/comm-1", orjson.dumps({**doc, "ts": fleet_ms}))
        told = time.monotonic()
        publish(pub, *_dispatch("f1", "grid-1", "grid_worker", "grid"))
        [(at, topic, act)] = _acts(listener, 1)
        assert (topic, act["action"]) == ("sensing/v1/ack/grid-1", "take")
        assert 40 / speed - 0.05 <= at - told <= 40 / speed + TOLERANCE_S
        assert abs(clock.now_ms() - (fleet_ms + (time.monotonic() - told) * speed * 1000)) \
            < speed * 1000 * TOLERANCE_S
    finally:
        listener.close()
        pub.disconnect()
        people.stop(5)


def test_replay_runs_the_responders_on_the_fleets_clock(
        broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recording, directory = tmp_path / "r.simrec", tmp_path / "dir.toml"
    assert main(["record", "--gateways", "1", "--devices", "4", "--areas", "comm-1",
                 "--duration", "20", "--incidents", "none", "--out", str(recording)]) == 0
    write_directory(directory, DIRECTORY)
    capsys.readouterr()
    assert main(["replay", str(recording), "--broker-port", str(broker.port), "--speed", "20",
                 "--directory", str(directory), "--linger", "1", "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["responders"]["clock"] == "fleet" and report["responders"]["cases"] == 0
    assert report["linger_s"] <= 3 and report["speed"] == 20
    assert main(["replay", str(recording), "--broker-port", str(broker.port),
                 "--responders"]) == 2
