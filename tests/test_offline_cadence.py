"""device.offline before a device has spoken twice, across restarts, and on one clock (issue 13,
points 4 and 6): a device reporting every 45-60 s from its first reading, its second reading
held in a gateway batch or a little late, is never called offline; nor one silent 100 s while
it restarts; one silent for 10 of its intervals is, and its reason and `gateway.offline`'s
`ts_event` each take times of one clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.detect.offline import DEFAULT_INTERVALS_S, OfflinePolicy, OfflineWatch
from sensing.detect.overrides import Overrides, OverridesError
from sensing.ingest.mqtt import Incoming
from sensing.pipeline import Pipeline
from sensing.registry import Registry
from sensing.services import Mosquitto, VictoriaMetrics
from sensing.settings import CoreSettings
from sensing.wire import BatchBuilder, topics
from sensing.wire.kinds import KINDS
from tests.helpers import Listener, publish, publisher, running_core, wait_until

T0 = 1_795_478_819_832
S = 1000
AREA, GW = "area-oc", "gw-oc"
CHANNEL = {"smoke": "temp_c", "manhole": "tilt_deg", "wearable": "heart_rate"}
VALUE = {"smoke": 21.0, "manhole": 0.5, "wearable": 70.0}


# -- the watch alone: any 45-60 s cadence, any hold ------------------------------------------


def registered(devices: list[tuple[str, str]], area: str = AREA) -> Registry:
    reg = Registry()
    b = BatchBuilder()
    for i, (device, kind) in enumerate(devices):
        b.add(device, kind, 0, i, T0, {CHANNEL[kind]: VALUE[kind]}, None)
    reg.intern_batch(b.build(), GW, area)
    return reg


def one(w: OfflineWatch, dev: int, ts: int, wall: int) -> None:
    w.seen(np.array([dev], np.int32), np.array([ts], np.int64), 0, wall)


@pytest.mark.kernel
@settings(max_examples=40, deadline=None)
@given(st.sampled_from(KINDS), st.lists(st.integers(45_000, 60_000), min_size=11, max_size=11),
       st.lists(st.integers(0, 40_000), min_size=12, max_size=12))
def test_a_45_to_60_s_cadence_is_never_offline_and_10_silent_intervals_are(
        kind: str, gaps: list[int], holds: list[int]) -> None:
    """Device 1 reports every 45-60 s from its first reading, each reading held up to 40 s
    (a gateway's batch, a slow link: the second one too) while device 0 keeps its gateway's
    watermark going every 5 s; then device 1 falls silent for 10 intervals."""
    reg = registered([("clock", "wearable"), ("dev", kind)])
    policy = OfflinePolicy()
    w = OfflineWatch(policy, capacity=2, gateways=1)
    w.assign(reg)
    ts = [T0 + 3 * S + sum(gaps[:k]) for k in range(12)]
    arrivals = sorted((t + hold, t) for t, hold in zip(ts, holds, strict=True))
    end = ts[-1] + 10 * 60 * S
    raised: list[tuple[int, int, int]] = []
    wall = T0
    while wall <= end:
        one(w, 0, wall, wall)
        while arrivals and arrivals[0][0] <= wall:
            one(w, 1, arrivals.pop(0)[1], wall)
        mark = int(w.watermarks(1, wall)[0])
        raised += [(mark, c.silent_since, c.silent_ms) for c in w.scan(reg.device_gateway, 2, 1,
                                                                        wall)
                   if c.offline]
        wall += 5 * S
    timeout = policy.timeout_s(kind, float(w.gap[1]) / 1000) * 1000
    assert len(raised) == 1, raised
    mark, since, silent = raised[0]
    assert since == ts[-1] and silent == mark - ts[-1]
    assert timeout < silent <= timeout + 5 * S  # within one step of its timeout
    assert timeout >= policy.timeout_s(kind)  # the learned gap never lowered it


@pytest.mark.kernel
@settings(max_examples=40, deadline=None)
@given(st.sampled_from(KINDS), st.sampled_from([1, 2, 5, 10, 30, 45, 60]),
       st.integers(0, 100), st.integers(2, 40))
def test_a_restart_silent_100_s_raises_nothing(kind: str, every_s: int, silent_s: int,
                                               before: int) -> None:
    """A device reporting every `every_s` restarts after `before` readings: nothing for up to
    100 s, then readings of its new epoch (the watch sees times; the epoch changes nothing)."""
    reg = registered([("clock", "wearable"), ("dev", kind)])
    w = OfflineWatch(OfflinePolicy(), capacity=2, gateways=1)
    w.assign(reg)
    last = T0 + (before - 1) * every_s * S
    back = last + max(silent_s, every_s) * S
    device_ts = [T0 + k * every_s * S for k in range(before)]
    device_ts += [back + k * every_s * S for k in range((300 // every_s) + 1)]
    changes = []
    wall = T0
    for t in sorted({*device_ts, *range(T0, device_ts[-1] + 1, 5 * S)}):
        wall = t
        one(w, 0, t, wall)
        if t in device_ts:
            one(w, 1, t, wall)
        changes += w.scan(reg.device_gateway, 2, 1, wall)
    assert changes == []


def test_each_kind_starts_with_its_own_interval() -> None:
    policy = OfflinePolicy()
    assert {k: policy.interval_s(k) for k in KINDS} == DEFAULT_INTERVALS_S
    # before a second reading: the kind's interval stands in for the gap
    assert policy.timeout_s("smoke") == 5 * 60 + 10
    assert policy.timeout_s("wearable") == 5 * 30 + 10
    assert policy.timeout_s("manhole", gap_s=2.0) == 310  # learned 2 s: bounded by the kind
    assert policy.timeout_s("manhole", gap_s=600.0) == 5 * 600 + 10  # slower: its own
    assert policy.timeout_s("wearable", interval_s=5) == 100 + 5 + 10  # a restart's allowance
    assert policy.timeout_s("") == 310  # a kind the contract does not name: 60 s
    narrow = OfflinePolicy(intervals_s={"smoke": 120})
    assert narrow.interval_s("smoke") == 120 and narrow.interval_s("wearable") == 30


@pytest.mark.parametrize("kwargs, message", [
    ({"intervals_s": {"toaster": 60}}, "unknown kind"),
    ({"intervals_s": {"smoke": 0}}, "interval of smoke"),
    ({"default_interval_s": float("nan")}, "interval of other kinds"),
    ({"restart_s": -1}, "restart_s"),
    ({"factor": 0.5}, "factor"),
])
def test_bad_policies_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OfflinePolicy(**kwargs)  # type: ignore[arg-type]


def test_settings_set_intervals_per_kind(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setenv("SENSING_OFFLINE__INTERVALS_S__MANHOLE", "3600")
    policy = CoreSettings(state_dir=tmp_path).offline
    assert policy.interval_s("manhole") == 3600 and policy.interval_s("smoke") == 60


DETECTORS = """
[kind.manhole.device-offline]
interval_s = 600

[area.ward.device-offline]
interval_s = 120

[device."wb-fast".device-offline]
interval_s = 5
"""


def test_the_detectors_file_sets_intervals_per_kind_area_and_device(tmp_path: Path) -> None:
    path = tmp_path / "detectors.toml"
    path.write_text(DETECTORS)
    ov = Overrides.load(path)
    w = OfflineWatch(OfflinePolicy(), capacity=1, gateways=1)
    reg = registered([("mh-1", "manhole"), ("sm-1", "smoke"), ("wb-fast", "wearable")])
    w.assign(reg, ov)
    b = BatchBuilder()
    for i, (device, kind) in enumerate([("mh-2", "manhole"), ("wb-2", "wearable"),
                                         ("wb-fast", "wearable")]):
        b.add(device, kind, 0, i, T0, {CHANNEL[kind]: VALUE[kind]}, None)
    reg.intern_batch(b.build(), GW, "ward")  # wb-fast is known: it keeps its area
    w.assign(reg, ov)
    got = {reg.devices.names[d]: int(w.interval_ms[d]) // S for d in range(len(reg.devices))}
    assert got == {"mh-1": 600, "sm-1": 60, "wb-fast": 5, "mh-2": 120, "wb-2": 120}


@pytest.mark.parametrize("text, message", [
    ("[kind.smoke.device-offline]\ninterval_s = 0", "interval_s: expected seconds"),
    ("[kind.smoke.device-offline]\ninterval_s = 'x'", "interval_s: expected seconds"),
    ("[kind.smoke.device-offline]\ntimeout_s = 60", "unknown key 'timeout_s'"),
    ("[kind.smoke.device-offline]\ninterval_s = 1e9", "interval_s: expected seconds"),
])
def test_offline_overrides_mistakes_are_clear_errors(tmp_path: Path, text: str,
                                                    message: str) -> None:
    path = tmp_path / "detectors.toml"
    path.write_text(text)
    with pytest.raises(OverridesError, match=message):
        Overrides.load(path)


# -- the whole core: one field day, through the pipeline and through Mosquitto ---------------


@dataclass(frozen=True)
class Day:
    """Sixteen minutes under one gateway, sent in 5 s batches by arrival time."""

    batches: list[tuple[int, list[dict[str, object]]]]
    """(arrival ms from the start, readings)"""
    readings: int


def field_day(base: int) -> Day:
    rows: list[tuple[int, dict[str, object]]] = []
    seqs: dict[tuple[str, int], int] = {}

    def add(device: str, kind: str, t_s: float, hold_s: float = 0.0, epoch: int = 0) -> None:
        seq = seqs[(device, epoch)] = seqs.get((device, epoch), -1) + 1
        ts = base + round(t_s * S)
        rows.append((round((t_s + hold_s) * S), {
            "device": device, "kind": kind, "seq": seq, "epoch": epoch, "ts": ts,
            "values": {CHANNEL[kind]: VALUE[kind]}}))

    end = 960
    for t in range(0, end, 5):
        add("clock-w", "wearable", t)  # keeps the gateway's watermark going
    cadence = [45, 60, 52, 58, 47, 60, 55, 49, 60, 51, 57, 46, 60, 53, 59, 48, 60, 50]
    for device, kind, first, hold in (("smoke-slow", "smoke", 3, 40), ("mh-slow", "manhole",
                                                                        10, 30),
                                      ("wb-slow", "wearable", 20, 30)):
        t = first
        for k, gap in enumerate(cadence):
            if t >= end:
                break
            add(device, kind, t, hold if k == 1 else k % 3)  # the second one held
            t += gap
    for t in (0, 60, 120):  # then silent for 14 minutes: offline
        add("smoke-dead", "smoke", t)
    for t in range(0, end, 5):  # restarts at 300 s, back 100 s later in a new epoch
        if not 300 < t < 400:
            add("wb-reboot", "wearable", t, epoch=0 if t <= 300 else 1)
    for t in range(0, end, 10):
        if not 500 < t < 600:
            add("mh-reboot", "manhole", t, epoch=0 if t <= 500 else 1)
    rows.sort(key=lambda r: r[0])
    batches: dict[int, list[dict[str, object]]] = {}
    for arrival, reading in rows:
        batches.setdefault(arrival // (5 * S) * 5 * S + 5 * S, []).append(reading)
    return Day(sorted(batches.items()), len(rows))


def check_offline(alerts: list[dict[str, object]], base: int, most_s: int) -> None:
    offline = [a for a in alerts if a["type"] == "device.offline"]
    assert [(a["device"], a["state"]) for a in offline] == [("smoke-dead", "raised")], offline
    raised = offline[0]
    assert raised["ts_event"] == base + 120 * S
    # 5 intervals of 60 s and the 10 s batch allowance, on the gateway's watermark; seen by
    # the first scan after (a step may take many of the day's batches)
    reason = str(raised["reason"])
    assert reason.startswith("no reading for ") and reason.endswith(" s of its gateway's time")
    assert 310 < int(reason.split()[3]) <= most_s, reason


def test_a_field_day_through_the_pipeline(tmp_path: Path) -> None:
    """Replayed at ×10 after the fact: the wall clock far ahead of every reading."""
    pipe = Pipeline(CoreSettings(state_dir=tmp_path))
    base = T0
    day = field_day(base)
    alerts: list[dict[str, object]] = []
    start_wall = T0 + 3600 * S
    for mid, (arrival, batch) in enumerate(day.batches, 1):
        out = pipe.process([Incoming(topics.readings_topic(AREA, GW), orjson.dumps(batch), mid,
                                     1, 0)], start_wall + arrival // 10)
        alerts += [orjson.loads(p) for t, p in out.messages if t.startswith("sensing/v1/alerts/")]
    assert pipe.stats.readings_stored == day.readings
    check_offline(alerts, base, 320)  # the first 5 s batch past its timeout
    pipe.book.close()


def status(pipe: Pipeline, gateway: str, state: str, ts: int, now: int
           ) -> list[dict[str, object]]:
    out = pipe.process([Incoming(topics.status_topic(AREA, gateway), orjson.dumps(
        {"state": state, "ts": ts}), 1, 1, 0)], now)
    return [orjson.loads(p) for t, p in out.messages if t.startswith("sensing/v1/alerts/")]


def test_gateway_offline_takes_the_status_own_time(tmp_path: Path) -> None:
    pipe = Pipeline(CoreSettings(state_dir=tmp_path))
    now = T0 + 3600 * S
    for gateway in ("gw-a", "gw-b", "gw-c"):
        pipe.process([Incoming(topics.readings_topic(AREA, gateway), orjson.dumps([
            {"device": f"sm-{gateway}", "kind": "smoke", "seq": 0, "ts": now - 600 * S,
             "values": {"temp_c": 21.0}}]), 1, 1, 0)], now)
    # a clean sign-off 5 minutes ago (a delayed or replayed status): its own ts
    [down] = status(pipe, "gw-a", "offline", now - 300 * S, now)
    assert (down["type"], down["state"], down["ts_event"]) == ("gateway.offline", "raised",
                                                               now - 300 * S)
    # a last will, set when the gateway connected an hour ago: not before its newest reading
    [down] = status(pipe, "gw-b", "offline", now - 3500 * S, now)
    assert down["ts_event"] == now - 600 * S
    # a status ahead of the core's clock (within the skew allowance): the core's clock
    [down] = status(pipe, "gw-c", "offline", now + 200 * S, now)
    assert down["ts_event"] == now
    # the last will of a gateway that connected (will set), came online, sent nothing and
    # died: not before its online status
    assert status(pipe, "gw-d", "online", now - 100 * S, now) == []
    [down] = status(pipe, "gw-d", "offline", now - 101 * S, now)
    assert down["ts_event"] == now - 100 * S
    pipe.book.close()


@pytest.fixture
def listener(broker: Mosquitto) -> Iterator[Listener]:
    lst = Listener(broker, topics.ALERTS_FILTER)
    yield lst
    lst.close()


@pytest.mark.e2e
def test_a_field_day_through_mosquitto(broker: Mosquitto, store: VictoriaMetrics,
                                       tmp_path: Path, listener: Listener) -> None:
    """The day's 16 minutes stamped 20 minutes ago, published as fast as they go (a gateway's
    backlog, or a replay): the devices of a 45-60 s cadence, held or late, and the restarts
    raise nothing; the smoke detector silent for 14 minutes is offline."""
    base = time.time_ns() // 1_000_000 - 20 * 60 * S
    day = field_day(base)
    pub = publisher(broker)
    with running_core(broker, store, tmp_path / "core") as core:
        for _, batch in day.batches:
            publish(pub, topics.readings_topic(AREA, GW), orjson.dumps(batch))
        assert wait_until(lambda: core.pipeline.stats.readings_stored >= day.readings, 60)
        time.sleep(1.5)  # a few more timer scans on the wall clock
    pub.disconnect()
    check_offline(listener.json("sensing/v1/alerts/"), base, 960 - 120)
