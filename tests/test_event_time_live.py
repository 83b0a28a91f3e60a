"""Through Mosquitto: late readings neither resolve nor re-raise a fire, and an impossible
value is a sensor fault, never a fire (issue 13 points 1 and 2)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from sensing.services import Mosquitto, VictoriaMetrics
from sensing.wire import topics
from tests.helpers import Listener, publish, publisher, running_core

pytestmark = pytest.mark.e2e

NOW = int(time.time() * 1000) - 600_000
S = 1000


def reading(device: str, seq: int, ts: int, obscuration: float) -> dict[str, object]:
    return {"device": device, "kind": "smoke", "seq": seq, "ts": ts,
            "values": {"obscuration": obscuration, "temp_c": 21.0, "co_ppm": 0.0}}


def test_late_readings_neither_resolve_nor_re_raise_a_fire(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    listener = Listener(broker, topics.ALERTS_FILTER)
    pub = publisher(broker)

    def fires() -> list[dict[str, object]]:
        return [a for a in listener.json("sensing/v1/alerts/")
                if a["type"] == "smoke.fire" and a["device"] == "smoke-1"]

    def quiet_for(seconds: float) -> list[dict[str, object]]:
        before = len(fires())
        time.sleep(seconds)
        return fires()[before:]

    with running_core(broker, store, tmp_path / "core") as core:
        rtopic = topics.readings_topic("area-1", "gw-1")
        # a fire, every 10 s, even seqs
        publish(pub, rtopic, orjson.dumps([reading("smoke-1", 2 * i, NOW + i * 10 * S, 12.0)
                                           for i in range(4)]))
        assert listener.wait_for(lambda: any(a["state"] == "raised" for a in fires()))
        (raised,) = fires()
        fire_id = raised["alert_id"]
        # the gateway's backlog: another detector's readings minutes ahead move its watermark
        publish(pub, rtopic, orjson.dumps([reading("smoke-2", i, NOW + (300 + i * 10) * S, 0.1)
                                           for i in range(3)]))
        # minutes late, normal values of the burning detector (odd seqs, older ts)
        publish(pub, rtopic, orjson.dumps([reading("smoke-1", 1, NOW + 5 * S, 0.1),
                                           reading("smoke-1", 3, NOW + 15 * S, 0.1)]))
        assert listener.wait_for(lambda: core.stats.readings_stored == 9)
        assert quiet_for(2.0) == []  # neither resolved nor raised again
        # the fire ends: current normal readings; resolved once clear for 30 s of the
        # detector's own time, under the same alert_id
        publish(pub, rtopic, orjson.dumps([reading("smoke-1", 8 + 2 * i, NOW + (40 + i * 10) * S,
                                                   0.1) for i in range(2)]))
        assert quiet_for(1.0) == []  # 10 s of its own time: not yet (the watermark is ahead)
        publish(pub, rtopic, orjson.dumps([reading("smoke-1", 12 + 2 * i,
                                                   NOW + (60 + i * 10) * S, 0.1)
                                           for i in range(2)]))
        assert listener.wait_for(lambda: any(a["state"] == "resolved" for a in fires()))
        assert [(a["alert_id"], a["state"]) for a in fires()] == [(fire_id, "raised"),
                                                                   (fire_id, "resolved")]
        # late alarm-level readings from during the fire: no new fire
        publish(pub, rtopic, orjson.dumps([reading("smoke-1", 5, NOW + 25 * S, 12.0),
                                           reading("smoke-1", 7, NOW + 35 * S, 12.0)]))
        assert listener.wait_for(lambda: core.stats.readings_stored == 15)
        assert quiet_for(2.0) == []
    listener.close()
    pub.disconnect()


def test_an_impossible_obscuration_is_a_fault_and_no_fire(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    listener = Listener(broker, topics.ALERTS_FILTER)
    pub = publisher(broker)
    with running_core(broker, store, tmp_path / "core"):
        publish(pub, topics.readings_topic("area-1", "gw-1"), orjson.dumps(
            [reading("smoke-9", i, NOW + i * 10 * S, 400.0) for i in range(4)]))
        assert listener.wait_for(lambda: any(
            a["type"] == "device.fault" for a in listener.json("sensing/v1/alerts/")))
        time.sleep(1.0)
        types = {a["type"] for a in listener.json("sensing/v1/alerts/")}
        assert types == {"device.fault"}
    listener.close()
    pub.disconnect()
