"""The closed loop through a real Mosquitto, the core and VictoriaMetrics: a fire reaches the
directory's people, climbs the chain until someone takes it, is disposed and recorded; forged
and out-of-area actions are refused; a core SIGKILLed mid-escalation plans no notification
twice (a copy of the one in flight at the kill keeps its id), forgets none and escalates on
time."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from sensing.services import Mosquitto, VictoriaMetrics
from sensing.testing.processes import CoreProcess
from sensing.testing.webhook_receiver import WebhookReceiver
from sensing.wire import topics
from tests.helpers import Listener, publish, publisher, running_core, wait_until

pytestmark = pytest.mark.e2e

AREA, GATEWAY, DEVICE = "area-1", "gw-1", "smoke-1"


def directory(path: Path, hook: str, relatives_s: float, volunteers_s: float) -> Path:
    path.write_text(f"""
[[areas]]
id = "city"
level = "city"
[[areas]]
id = "street-1"
level = "street"
parent = "city"
[[areas]]
id = "{AREA}"
level = "community"
parent = "street-1"
[[areas]]
id = "area-2"
level = "community"
parent = "street-1"

[[responders]]
id = "grid-1"
roles = ["grid_worker"]
areas = ["{AREA}"]
contacts = [{{ channel = "mqtt" }}, {{ channel = "webhook", url = "{hook}/grid-1" }}]
[[responders]]
id = "grid-2"
roles = ["grid_worker"]
areas = ["area-2"]
contacts = [{{ channel = "mqtt" }}]
[[responders]]
id = "vol-1"
roles = ["volunteer"]
areas = ["{AREA}"]
contacts = [{{ channel = "mqtt" }}]
[[responders]]
id = "duty-1"
roles = ["duty_officer"]
areas = ["{AREA}"]
contacts = [{{ channel = "mqtt" }}]

[[residents]]
id = "res-1"
area = "{AREA}"
devices = ["{DEVICE}"]
relatives = [{{ id = "rel-1", contacts = [{{ channel = "mqtt" }},
             {{ channel = "webhook", url = "{hook}/rel-1" }}] }}]

[policy.chains.test_fire]
steps = [
    {{ whom = "grid_worker", after_s = 0, renotify_s = 600 }},
    {{ whom = "relatives", after_s = {relatives_s}, renotify_s = 600 }},
    {{ whom = "volunteers", after_s = {volunteers_s}, renotify_s = 600 }},
]
[[policy.rules]]
type = "smoke.fire"
area = "city"
chain = "test_fire"
""")
    return path


def fire(pub: object, start_ms: int) -> None:
    rtopic = topics.readings_topic(AREA, GATEWAY)
    for i in range(6):
        obscuration = 0.1 if i < 3 else 14.0
        publish(pub, rtopic, orjson.dumps(  # type: ignore[arg-type]
            {"device": DEVICE, "kind": "smoke", "seq": i, "ts": start_ms + i * 1000,
             "values": {"obscuration": obscuration, "temp_c": 21.0}}))


def dispatched(listener: Listener) -> list[dict[str, object]]:
    return [d for d in listener.json("sensing/v1/dispatch/") if d.get("responder")]


def act(pub: object, by: str, case_id: str, action: str, **extra: str) -> None:
    publish(pub, topics.ack_topic(by), orjson.dumps(  # type: ignore[arg-type]
        {"alert_id": case_id, "by": by, "action": action, **extra}))


def test_a_fire_climbs_the_chain_until_taken_then_is_disposed(
        broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path) -> None:
    listener = Listener(broker, topics.DISPATCH_FILTER, topics.CASES_FILTER,
                        topics.ALERTS_FILTER, topics.DEADLETTER_FILTER)
    pub = publisher(broker)
    with WebhookReceiver() as hook, running_core(
            broker, store, tmp_path / "core",
            directory_file=directory(tmp_path / "dir.toml", hook.url(""), 2, 6)):
        fire(pub, int(time.time() * 1000) - 10_000)
        assert wait_until(lambda: any(d["responder"] == "rel-1" for d in dispatched(listener)),
                          20), dispatched(listener)
        first = dispatched(listener)[0]
        assert (first["responder"], first["tier"], first["role"]) == (
            "grid-1", "grid", "grid_worker")
        case_id = str(first["case_id"])
        assert wait_until(lambda: set(hook.keys()) and len(hook.keys()) == 2, 10), hook.keys()
        assert {r.path for r in hook.requests()} == {"/grid-1", "/rel-1"}

        # nobody outside the directory, nor a grid worker of another community, may act
        act(pub, "mallory", case_id, "take")
        act(pub, "grid-2", case_id, "take")
        codes = lambda: [d["code"] for d in listener.json("sensing/v1/deadletter/_/ack")]  # noqa: E731
        assert wait_until(lambda: len(codes()) == 2, 10)
        assert sorted(codes()) == ["ack_not_authorized", "ack_unknown_responder"]

        act(pub, "rel-1", case_id, "take")
        assert wait_until(lambda: any(c["event"] == "taken" for c in listener.json(
            "sensing/v1/cases/")), 10)
        act(pub, "grid-1", case_id, "take")  # taken already: refused, with the reason
        assert wait_until(lambda: "ack_refused" in codes(), 10)
        time.sleep(6.5)  # past the volunteers' step: nobody takes a case twice
        assert not any(d["responder"] == "vol-1" for d in dispatched(listener))

        act(pub, "rel-1", case_id, "arrived")
        act(pub, "rel-1", case_id, "dispose", outcome="fire", note="kitchen, put out")
        events = lambda: [c["event"] for c in listener.json("sensing/v1/cases/")]  # noqa: E731
        assert wait_until(lambda: "disposed" in events(), 10), events()
        assert events()[:3] == ["opened", "notified", "notified"]
        assert events()[-3:] == ["taken", "arrived", "disposed"]
        resolved = [a for a in listener.json("sensing/v1/alerts/") if a["state"] == "resolved"]
        assert [a["by"] for a in resolved] == ["rel-1"]
        # every change of the case is in the time-series store too, once
        assert store.settled_count(f'case_ts{{case_id="{case_id}"}}', len(events())) == \
            len(events())
    listener.close()


def test_a_core_killed_mid_escalation_sends_nothing_twice_and_escalates_on_time(
        broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path) -> None:
    listener = Listener(broker, topics.DISPATCH_FILTER, topics.CASES_FILTER)
    pub = publisher(broker)
    with WebhookReceiver() as hook:
        env = {"SENSING_DIRECTORY_FILE": str(directory(tmp_path / "dir.toml", hook.url(""),
                                                         8, 14))}
        core = CoreProcess(broker.port, store.url, tmp_path / "core", env=env)
        core.start(timeout=120)
        try:
            fire(pub, int(time.time() * 1000) - 10_000)
            assert wait_until(lambda: bool(dispatched(listener)), 20)
            assert wait_until(lambda: len(hook.keys()) == 1, 10)
            core.kill()  # SIGKILL: the relatives' step (8 s) falls due while it is down
            core.start(timeout=120)
            restarted = time.time() * 1000
            assert wait_until(lambda: any(d["responder"] == "vol-1"
                                          for d in dispatched(listener)), 40)
        finally:
            core.stop()
        sent = Counter(str(d["notification_id"]) for d in dispatched(listener))
        cases = listener.json("sensing/v1/cases/")
        opened = next(int(c["ts"]) for c in cases if c["event"] == "opened")  # type: ignore[call-overload]
        reached = {str(c["responders"][0]): int(c["ts"])  # type: ignore[index, call-overload]
                   for c in cases if c["event"] == "notified"}
        assert sorted(reached) == ["grid-1", "rel-1", "vol-1"]
        # one notification per person, planned once across the kill; a copy of one can only
        # be the message in flight at the kill (QoS 1, the broker had not confirmed it), and
        # it carries the same id, which receivers drop
        assert len(sent) == 3 and sum(sent.values()) <= 3 + 1, sent
        keys = hook.keys()
        assert len(keys) == 2 and sum(keys.values()) <= 2 + 1, keys  # grid-1's and rel-1's
        # each step came on time: when it fell due, or at the restart if the core was down
        # then; never counted again from the restart
        assert opened + 8_000 <= reached["rel-1"] < max(opened + 8_000, restarted) + 3_000
        assert opened + 14_000 <= reached["vol-1"] < max(opened + 14_000, restarted) + 3_000
        steps = [c["step"] for c in cases if c["event"] == "notified"]
        assert sorted(set(steps)) == [0, 1, 2] and len(steps) <= 3 + 1  # a copy, as above
    listener.close()
