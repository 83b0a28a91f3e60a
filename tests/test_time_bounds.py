"""Time and sequence bounds (issue 11, problems 1, 5 and 6): no seq, epoch or timestamp an input
can carry silences a device, sets off a storm of alerts or stops the core."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from sensing.dedup.window import MAX_SEQ_JUMP
from sensing.detect.offline import OfflinePolicy, OfflineWatch
from sensing.ingest.mqtt import Incoming
from sensing.pipeline import Pipeline, StepOutput
from sensing.services import Mosquitto, VictoriaMetrics
from sensing.settings import CoreSettings
from sensing.wire import topics
from tests.helpers import Listener, publish, publisher, running_core, wait_until

INT64_MAX = 2**63 - 1
AREA, GW = "area-tb", "gw-tb"
RTOPIC = topics.readings_topic(AREA, GW)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def reading(device: str, seq: int, ts: int, epoch: int = 0,
            obscuration: float = 0.1) -> dict[str, object]:
    return {"device": device, "kind": "smoke", "seq": seq, "epoch": epoch, "ts": ts,
            "values": {"obscuration": obscuration, "temp_c": 21.0, "co_ppm": 0.0}}


def dead_codes(out: StepOutput) -> list[str]:
    return [str(orjson.loads(p)["code"]) for t, p in out.messages
            if t.startswith("sensing/v1/deadletter/")]


def alerts(out: StepOutput) -> list[dict[str, object]]:
    return [orjson.loads(p) for t, p in out.messages if t.startswith("sensing/v1/alerts/")]


class Feed:
    """A pipeline fed one JSON message at a time on the step clock `now`."""

    def __init__(self, tmp_path: Path) -> None:
        self.pipe = Pipeline(CoreSettings(state_dir=tmp_path))
        self.mid = 0
        self.outputs: list[StepOutput] = []

    def send(self, payload: object, now: int, topic: str = RTOPIC) -> StepOutput:
        self.mid += 1
        out = self.pipe.process([Incoming(topic, orjson.dumps(payload), self.mid, 1, 0)], now)
        self.outputs.append(out)
        return out

    def all_alerts(self) -> list[dict[str, object]]:
        return [a for out in self.outputs for a in alerts(out)]


# -- problem 5: a forward jump of seq or epoch ------------------------------------------------


def test_one_far_seq_or_epoch_cannot_silence_a_device(tmp_path: Path) -> None:
    """One reading with seq (or epoch) 2^63 - 1 made every later reading of the device "too
    old": an 80 s fire raised nothing. Now such readings are refused, dead-lettered and not
    stored, and the fire raises smoke.fire."""
    feed = Feed(tmp_path)
    t0 = now_ms() - 300_000
    for s in range(5):
        feed.send(reading("smoke-9", s, t0 + s * 5000), t0 + s * 5000)
    stored = feed.pipe.stats.readings_stored
    t = t0 + 25_000
    outliers = [reading("smoke-9", INT64_MAX, t), reading("smoke-9", 5, t, epoch=INT64_MAX),
                reading("smoke-9", 4 + 2 * MAX_SEQ_JUMP, t)]
    for r in outliers:
        out = feed.send(r, t)
        assert len(dead_codes(out)) == 1, r
        assert dead_codes(out)[0] in {"seq_jump", "epoch_jump", "seq_out_of_range",
                                      "epoch_out_of_range"}
    assert "seq_jump" in dead_codes(feed.outputs[-1])  # the dedup window's own bound
    assert feed.pipe.stats.readings_stored == stored  # none of them stored
    for i in range(17):  # 80 s of fire
        ts = t + 5000 + i * 5000
        feed.send(reading("smoke-9", 5 + i, ts, obscuration=15.0), ts)
    fires = [a for a in feed.all_alerts() if a["type"] == "smoke.fire"]
    assert fires and fires[0]["state"] == "raised" and fires[0]["device"] == "smoke-9"
    assert feed.pipe.stats.readings_stored == stored + 17
    feed.pipe.book.close()


@pytest.mark.e2e
def test_far_seq_and_epoch_through_the_real_broker_and_store(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    listener = Listener(broker, topics.ALERTS_FILTER, topics.DEADLETTER_FILTER)
    pub = publisher(broker)
    t0 = now_ms() - 200_000
    with running_core(broker, store, tmp_path / "core") as core:
        publish(pub, RTOPIC, orjson.dumps([reading("smoke-e2e", s, t0 + s * 5000)
                                           for s in range(5)]))
        t = t0 + 25_000
        for r in (reading("smoke-e2e", INT64_MAX, t), reading("smoke-e2e", 5, t, epoch=INT64_MAX),
                  reading("smoke-e2e", 4 + 2 * MAX_SEQ_JUMP, t)):
            publish(pub, RTOPIC, orjson.dumps(r))
        publish(pub, RTOPIC, orjson.dumps([
            reading("smoke-e2e", 5 + i, t + 5000 * (i + 1), obscuration=15.0)
            for i in range(17)]))
        assert listener.wait_for(lambda: any(
            a["type"] == "smoke.fire" and a["device"] == "smoke-e2e"
            for a in listener.json("sensing/v1/alerts/")))
        assert listener.wait_for(lambda: len(listener.json("sensing/v1/deadletter/")) >= 3)
        dead = listener.json("sensing/v1/deadletter/")
        assert len(dead) == 3 and dead[-1]["code"] == "seq_jump"
        assert wait_until(lambda: core.pipeline.stats.readings_stored == 22)
    # 5 before, 17 of the fire; the three outliers never reached the store
    assert store.settled_count('reading_seq{device="smoke-e2e"}', 22) == 22
    listener.close()


# -- problem 6: a timestamp from the future ---------------------------------------------------


def gateway_round(feed: Feed, now: int, seq: int, devices: int = 20,
                  ts_of: dict[int, int] | None = None) -> None:
    ts_of = ts_of or {}
    feed.send([reading(f"smoke-{d:02}", seq, ts_of.get(d, now)) for d in range(devices)], now)


def test_one_reading_from_the_future_raises_no_storm(tmp_path: Path) -> None:
    """A reading with ts = 4102444000000 (or now + 4 min) on a gateway raised device.offline
    for all its other devices, which stayed raised while they kept reporting."""
    feed = Feed(tmp_path)
    start = now_ms() - 200_000
    for i in range(150):  # every device every second, on the step clock
        now = start + i * 1000
        far = {0: 4_102_444_000_000, 1: now + 240_000} if i == 30 else None
        gateway_round(feed, now, i, ts_of=far)
    offline = [a for a in feed.all_alerts() if a["type"] == "device.offline"]
    assert offline == []
    # the far reading of device 0 was refused (beyond the skew allowance) or taken as now;
    # either way no watermark passed the clock
    assert int(feed.pipe.offline.gw_max_ts.max()) <= start + 149 * 1000
    feed.pipe.book.close()


def test_the_offline_watch_takes_no_time_beyond_its_clock() -> None:
    w = OfflineWatch(OfflinePolicy(), capacity=4, gateways=2)
    now = 1_796_000_000_000
    w.seen(np.array([0, 1], np.int32), np.array([now - 1000, now + 240_000]), 0, now)
    assert int(w.gw_max_ts[0]) == now and int(w.last_seen[1]) == now
    for ts in (99999999999999999999999, INT64_MAX, -(2**70), now + 1):
        w.gateway_status(1, online=True, ts=ts, now_wall=now)
        assert -1 <= int(w.gw_back[1]) <= now
        w.gateway_status(1, online=True, ts=ts)  # without a clock: any int still fits
        w.gateway_status(1, online=False, ts=ts)


@pytest.mark.e2e
def test_the_storm_through_the_real_broker(broker: Mosquitto, store: VictoriaMetrics,
                                           tmp_path: Path) -> None:
    listener = Listener(broker, topics.ALERTS_FILTER)
    pub = publisher(broker)
    topic = topics.readings_topic(AREA, "gw-storm")
    with running_core(broker, store, tmp_path / "core") as core:
        for i in range(10):
            now = now_ms()
            batch = [reading(f"storm-{d:02}", i, now) for d in range(20)]
            if i == 3:
                batch[0] = reading("storm-00", i, 4_102_444_000_000)
                batch[1] = reading("storm-01", i, now + 240_000)
            publish(pub, topic, orjson.dumps(batch))
            time.sleep(0.5)
        assert wait_until(lambda: core.pipeline.stats.readings_received >= 199)
        time.sleep(2.0)  # the core scans its timers every step and on the wall clock
        assert [a for a in listener.json() if a["type"] == "device.offline"] == []
    listener.close()


# -- problem 1: a status with any ts ----------------------------------------------------------


def test_a_status_with_any_ts_is_handled_or_dead_lettered_and_readings_go_on(
        tmp_path: Path) -> None:
    feed = Feed(tmp_path)
    now = now_ms()
    status = topics.status_topic(AREA, GW)
    for ts in ("99999999999999999999999", str(INT64_MAX), "-99999999999999999999", "1"):
        for state in ("online", "offline"):
            feed.mid += 1
            payload = f'{{"state":"{state}","ts":{ts}}}'.encode()
            out = feed.pipe.process([Incoming(status, payload, feed.mid, 1, 0)], now)
            assert "internal_error" not in dead_codes(out)
            assert all(0 <= int(str(a["ts_event"])) <= now for a in alerts(out))
    feed.send([reading("smoke-st", s, now - 5000 + s * 1000) for s in range(5)], now)
    assert feed.pipe.stats.readings_stored == 5
    feed.pipe.book.close()


@pytest.fixture
def retained_bad_statuses(broker: Mosquitto) -> Iterator[list[str]]:
    pub = publisher(broker)
    sent = []
    for n, ts in enumerate(("99999999999999999999999", str(INT64_MAX), "-99999999999999999999")):
        topic = topics.status_topic(AREA, f"gw-status-{n}")
        info = pub.publish(topic, f'{{"state":"online","ts":{ts}}}', qos=1, retain=True)
        info.wait_for_publish(10)
        sent.append(topic)
    yield sent
    for topic in sent:  # clear them for the other tests of the module
        pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
    pub.disconnect()


@pytest.mark.e2e
def test_a_retained_status_with_any_ts_never_stops_the_core(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path, retained_bad_statuses: list[str]
) -> None:
    """`{"state":"online","ts":99999999999999999999999}`, retained, crash-looped the core
    (OverflowError in detect/offline.py) before it processed anything."""
    listener = Listener(broker, topics.DEADLETTER_FILTER, topics.ALERTS_FILTER)
    pub = publisher(broker)
    with running_core(broker, store, tmp_path / "core") as core:
        topic = topics.readings_topic(AREA, "gw-status-0")
        now = now_ms()
        publish(pub, topic, orjson.dumps([reading("after-status", s, now - 10_000 + s * 1000)
                                          for s in range(5)]))
        assert wait_until(lambda: core.pipeline.stats.readings_stored == 5)
        dead = listener.json("sensing/v1/deadletter/")
        # refused by the wire's bounds, or handled with its time taken as the core's clock
        assert all(d["code"] != "internal_error" for d in dead)
        assert all(int(str(a["ts_event"])) <= now_ms() for a in listener.json(
            "sensing/v1/alerts/"))
    assert store.settled_count('reading_seq{device="after-status"}', 5) == 5
    listener.close()
