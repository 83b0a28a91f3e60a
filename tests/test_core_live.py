"""The core against a real Mosquitto and VictoriaMetrics, fed by a plain MQTT client."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import orjson
import pytest

from sensing.dedup.journal import DedupJournal
from sensing.ingest.mqtt import Incoming
from sensing.pipeline import Pipeline
from sensing.services import Mosquitto, VictoriaMetrics
from sensing.settings import CoreSettings
from sensing.store.writer import StoreWriter
from sensing.wire import BatchBuilder, binary, topics
from sensing.wire.messages import MAX_DEADLETTER_RAW
from tests.helpers import Listener, publish, publisher, running_core, wait_until

pytestmark = pytest.mark.e2e

NOW = int(time.time() * 1000) - 600_000


def reading(device: str, kind: str, seq: int, ts: int, **values: float) -> dict[str, object]:
    return {"device": device, "kind": kind, "seq": seq, "ts": ts, "values": values}


def test_readings_alerts_deadletters_and_acks(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    listener = Listener(broker, topics.ALERTS_FILTER, topics.DISPATCH_FILTER,
                        topics.DEADLETTER_FILTER)
    pub = publisher(broker)
    with running_core(broker, store, tmp_path / "core") as core:
        rtopic = topics.readings_topic("area-1", "gw-1")
        # quiet smoke detector, one reading per message, then a fire as a JSON array
        for i in range(5):
            publish(pub, rtopic, orjson.dumps(
                reading("smoke-1", "smoke", i, NOW + i * 1000, obscuration=0.1, temp_c=21.0)))
        fire = [reading("smoke-1", "smoke", 5 + i, NOW + (5 + i) * 1000,
                        obscuration=12.0 + i, temp_c=21.0) for i in range(3)]
        publish(pub, rtopic, orjson.dumps(fire))
        publish(pub, rtopic, orjson.dumps(fire))  # the same readings again: duplicates
        # gas in a manhole, as an SNB1 batch
        b = BatchBuilder()
        for i in range(3):
            b.add("mh-1", "manhole", 0, i, NOW + i * 1000, {"gas_lel": 30.0, "tilt_deg": 0.5})
        publish(pub, topics.readings_topic("area-1", "gw-2"), binary.encode(b.build()))
        malformed = {
            "malformed JSON": b"{not json",
            "wrong type": orjson.dumps(reading("x-1", "smoke", 0, NOW) | {"seq": "7"}),
            "missing field": b'{"device": "x-1", "kind": "smoke", "seq": 1, "values": {}}',
            "NaN": b'{"device": "x-1", "kind": "smoke", "seq": 2, "ts": 1795478819832,'
                   b' "values": {"co_ppm": NaN}}',
            "oversize": b"[" + b" " * (2 << 20) + b"]",
            "other gateway": orjson.dumps(reading("x-1", "smoke", 3, NOW) | {"gateway": "gw-9"}),
        }
        for payload in malformed.values():
            publish(pub, rtopic, payload)

        assert listener.wait_for(lambda: len(listener.json("sensing/v1/deadletter/")) >= 6)
        assert listener.wait_for(lambda: len(listener.json("sensing/v1/alerts/")) >= 2)
        alerts = listener.json("sensing/v1/alerts/")
        by_type = {a["type"]: a for a in alerts}
        assert by_type["smoke.fire"]["grade"] == "major"
        assert by_type["smoke.fire"]["ts_event"] == NOW + 5000
        assert by_type["smoke.fire"]["device"] == "smoke-1"
        assert by_type["smoke.fire"]["area"] == "area-1"
        assert by_type["manhole.gas"]["grade"] == "critical"
        assert by_type["manhole.gas"]["gateway"] == "gw-2"
        dispatch = listener.json("sensing/v1/dispatch/grid/area-1")
        assert {d["alert_id"] for d in dispatch} >= {by_type["smoke.fire"]["alert_id"]}

        dead = listener.json("sensing/v1/deadletter/area-1/gw-1")
        assert len(dead) == len(malformed)
        raw = {base64.b64decode(str(d["payload"])) for d in dead}
        assert raw == {p[:MAX_DEADLETTER_RAW] for p in malformed.values()}
        assert sorted(int(d.get("size", 0)) for d in dead)[-1] == max(map(len, malformed.values()))
        assert all(d["reason"] and d["topic"] == rtopic for d in dead)

        # an operator acknowledges the fire, then resolves it
        fire_id = by_type["smoke.fire"]["alert_id"]
        publish(pub, topics.ACK_TOPIC, orjson.dumps({"alert_id": fire_id, "by": "op-1",
                                                     "action": "ack"}))
        assert listener.wait_for(lambda: any(
            a["state"] == "acknowledged" and a["alert_id"] == fire_id
            for a in listener.json("sensing/v1/alerts/")))
        # the fire clears: readings back to normal resolve the alert once they have been
        # normal for the hold time (30 s of event time, seen through the gateway's watermark)
        clear = [reading("smoke-1", "smoke", 8 + i, NOW + (8 + i * 10) * 1000, obscuration=0.2,
                         temp_c=21.0) for i in range(2)]
        publish(pub, rtopic, orjson.dumps(clear))
        time.sleep(0.5)
        assert not any(a["state"] == "resolved" for a in listener.json("sensing/v1/alerts/"))
        later = [reading("smoke-1", "smoke", 10 + i, NOW + (50 + i * 10) * 1000,
                         obscuration=0.2, temp_c=21.0) for i in range(2)]
        publish(pub, rtopic, orjson.dumps(later))
        assert listener.wait_for(lambda: any(
            a["state"] == "resolved" and a["alert_id"] == fire_id
            for a in listener.json("sensing/v1/alerts/")))

        assert listener.wait_for(lambda: core.stats.readings_stored == 15)
        assert core.stats.duplicates_dropped == 3
    assert store.settled_count('reading_seq{device="smoke-1"}', 12) == 12
    assert store.settled_count('reading_seq{device="mh-1"}', 3) == 3
    assert store.count_samples('reading_seq{device="x-1"}') == 0
    # raised, acknowledged, resolved
    assert store.settled_count(f'alert_ts_event{{alert_id="{fire_id}"}}', 3) == 3
    listener.close()
    pub.disconnect()


def test_a_restarted_core_refuses_what_it_stored_before(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    pub = publisher(broker)
    rtopic = topics.readings_topic("area-2", "gw-r")
    batch = orjson.dumps([reading(f"wb-{d}", "wearable", s, NOW + s * 1000, heart_rate=70.0)
                          for d in range(5) for s in range(40)])
    with running_core(broker, store, tmp_path / "core") as core:
        publish(pub, rtopic, batch)
        assert wait_until(lambda: core.stats.readings_stored == 200)
    # the gateway sends its whole backlog again to the restarted core
    with running_core(broker, store, tmp_path / "core") as core:
        publish(pub, rtopic, batch)
        assert wait_until(lambda: core.stats.duplicates_dropped == 200)
        assert core.stats.readings_stored == 0
    assert store.settled_count('reading_seq{gateway="gw-r"}', 200) == 200
    pub.disconnect()


def test_a_crash_between_the_store_and_the_journal_stores_nothing_twice(
    store: VictoriaMetrics, tmp_path: Path
) -> None:
    """The core stores a step, then dies before its journal hears of it: the restarted core
    cannot know it stored those readings, admits them again on redelivery and stores them
    again. The store keeps one sample per series and timestamp (as InfluxDB does by design,
    and VictoriaMetrics with -dedup.minScrapeInterval), so nothing is stored twice."""
    rtopic = topics.readings_topic("area-9", "gw-crash")
    batch = orjson.dumps([reading(f"sm-{d}", "smoke", s, NOW + s * 1000, temp_c=21.0 + s / 10)
                          for d in range(4) for s in range(25)])
    writer = StoreWriter(store.url, "", "sensing", "sensing")
    state = tmp_path / "core"
    for _ in range(2):  # the first run, then the restart after the crash
        pipe = Pipeline(CoreSettings(state_dir=state))
        journal = DedupJournal(state, pipe.dedup, pipe.registry.devices)
        journal.recover()
        out = pipe.process([Incoming(rtopic, batch, 1, 1, 0)], int(time.time() * 1000))
        assert out.admitted[0].size == 100  # admitted both times: the journal never heard
        writer.write(out.lines, threading.Event())
        # the crash: neither journal.append(*out.admitted) nor a clean close (which would
        # write a snapshot of the window)
        pipe.book.close()
    writer.close()
    assert store.settled_count('reading_temp_c{gateway="gw-crash"}', 100) == 100


def test_steps_committed_together_are_stored_in_bounded_requests(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    """A one-byte request size makes every step's block of lines a request of its own: all
    of them are stored, once, and the writer counts each line once."""
    pub = publisher(broker)
    with running_core(broker, store, tmp_path / "core", store_request_bytes=1,
                      batch_max_messages=5) as core:
        rtopic = topics.readings_topic("area-1", "gw-1")
        for i in range(60):
            publish(pub, rtopic, orjson.dumps(
                reading("smoke-r", "smoke", i, NOW + i * 1000, obscuration=0.1, temp_c=21.0)))
        assert wait_until(lambda: core.stats.readings_stored == 60)
        assert core.direct.points_written == 60
        assert core.direct.failures == 0
    assert store.settled_count('reading_seq{device="smoke-r"}', 60) == 60
    pub.disconnect()
