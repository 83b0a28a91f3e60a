"""A gateway speaks only for its own devices (issue 11, adversarial review: r03, r10, r16).

A device belongs to the gateway that first reported it. Gateway B, publishing on its own topic
(which the secure ACL allows), used to be able to name gateway A's device with `epoch + 1` or
`seq + 999,999` — every later genuine reading of A was then "too old" and never detected on —
or to open an SOS for A's wristband in B's area, which swallowed A's real SOS (one open alert
per device and type). Such readings are now refused with a `gateway_mismatch` dead letter on
B's topic; `devices_follow_gateway` restores the old rule for fleets that roam.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.dedup.journal import DedupJournal
from sensing.ingest.mqtt import Incoming
from sensing.pipeline import Pipeline, StepOutput
from sensing.registry import Registry
from sensing.services import Mosquitto, VictoriaMetrics
from sensing.settings import CoreSettings
from sensing.wire import BatchBuilder, binary, topics
from sensing.wire.decode import decode_readings
from tests.helpers import Listener, publish, publisher, running_core

NOW = int(time.time() * 1000)
EPOCH = NOW // 1000 - 3600
"""the project's agents number epochs by the clock"""
QUIET = {"obscuration": 0.1, "temp_c": 21.0, "co_ppm": 1.0}
FIRE = {"obscuration": 14.0, "temp_c": 70.0, "co_ppm": 5.0}
CALM = {"heart_rate": 70.0, "spo2": 97.0, "sos": 0.0}
SOS = {"heart_rate": 70.0, "spo2": 97.0, "sos": 1.0}


def reading(device: str, kind: str, seq: int, ts: int, values: dict[str, float],
            epoch: int = EPOCH) -> dict[str, object]:
    return {"device": device, "kind": kind, "seq": seq, "epoch": epoch, "ts": ts,
            "values": values}


def json_of(*readings: dict[str, object]) -> bytes:
    return orjson.dumps(list(readings))


class Feed:
    """A pipeline fed message by message, one step each, with what every step produced."""

    def __init__(self, tmp_path: Path, **overrides: object) -> None:
        self.pipe = Pipeline(CoreSettings(state_dir=tmp_path, **overrides))  # type: ignore[arg-type]
        self.outputs: list[StepOutput] = []
        self.mid = 0

    def send(self, area: str, gateway: str, payload: bytes) -> StepOutput:
        self.mid += 1
        out = self.pipe.process([Incoming(topics.readings_topic(area, gateway), payload,
                                          self.mid, 1, 0)], NOW)
        self.outputs.append(out)
        return out

    def alerts(self) -> list[dict[str, object]]:
        return [orjson.loads(p) for out in self.outputs for t, p in out.announce
                if t.startswith("sensing/v1/alerts/")]

    def dead(self) -> list[tuple[str, dict[str, object]]]:
        return [(t, orjson.loads(p)) for out in self.outputs for t, p in out.publish
                if t.startswith("sensing/v1/deadletter/")]

    def lines(self) -> bytes:
        return b"\n".join(x if isinstance(x, bytes) else x.encode()
                          for out in self.outputs for x in out.lines)


def test_another_gateway_cannot_silence_a_devices_detection(tmp_path: Path) -> None:
    """r03: one reading from gateway B, naming A's detectors with a newer epoch or a seq far
    ahead, used to make A's fire "too old" to detect. Now they are refused, B's own device in
    the same message is stored, and A's fire is alerted."""
    feed = Feed(tmp_path)
    devices = ["s-ep", "s-seq"]
    t0 = NOW - 200_000
    for seq in range(10):
        feed.send("a", "gw-a", json_of(*(reading(d, "smoke", seq, t0 + seq * 1000, QUIET)
                                         for d in devices)))
    hijack = json_of(reading("s-ep", "smoke", 0, t0 + 10_000, QUIET, epoch=EPOCH + 1),
                     reading("b-own", "smoke", 0, t0 + 10_000, QUIET),
                     reading("s-seq", "smoke", 10 + 999_999, t0 + 10_000, QUIET))
    out = feed.send("b", "gw-b", hijack)
    dead = [(t, d) for t, d in feed.dead()]
    assert [(t, d["code"]) for t, d in dead] == [("sensing/v1/deadletter/b/gw-b",
                                                  "gateway_mismatch")]
    assert "'s-ep' belongs to gateway 'gw-a'" in str(dead[0][1]["reason"])
    assert "2 readings refused" in str(dead[0][1]["reason"])
    stored = b"\n".join(x if isinstance(x, bytes) else x.encode() for x in out.lines)
    assert b"device=b-own" in stored and b"device=s-" not in stored
    assert [(h[1], np.asarray(h[3]).tolist()) for h in out.handled] == [("gw-b", [2])]  # b-own only
    for seq in range(10, 20):
        feed.send("a", "gw-a", json_of(*(reading(d, "smoke", seq, t0 + seq * 1000, FIRE)
                                         for d in devices)))
    fires = {(a["device"], a["area"], a["gateway"]) for a in feed.alerts()
             if a["type"] == "smoke.fire" and a["state"] == "raised"}
    assert fires == {("s-ep", "a", "gw-a"), ("s-seq", "a", "gw-a")}
    assert feed.pipe.stats.readings_late == 0
    assert b"gateway=gw-b,device=s-" not in feed.lines()


def test_another_gateway_cannot_open_or_swallow_an_sos(tmp_path: Path) -> None:
    """r10: B's forged SOS for A's wristband opened wearable.sos in B's area (dispatched to B's
    responders), and A's real SOS then raised nothing. Now the forgery is refused and A's SOS
    is raised in A's area."""
    feed = Feed(tmp_path)
    for seq in range(5):
        feed.send("a", "gw-a", json_of(reading("w-A", "wearable", seq, NOW - 60_000 + seq,
                                               CALM)))
    for seq in range(2):
        feed.send("b", "gw-b", json_of(reading("w-A", "wearable", seq, NOW - 50_000 + seq, SOS,
                                               epoch=NOW // 1000)))
    assert feed.alerts() == []
    assert {(t, d["code"]) for t, d in feed.dead()} == {("sensing/v1/deadletter/b/gw-b",
                                                         "gateway_mismatch")}
    for seq in range(5, 10):
        feed.send("a", "gw-a", json_of(reading("w-A", "wearable", seq, NOW - 40_000 + seq, SOS)))
    sos = [(a["state"], a["area"], a["gateway"]) for a in feed.alerts()
           if a["type"] == "wearable.sos"]
    assert sos and sos[0] == ("raised", "a", "gw-a")
    assert all(area == "a" for _, area, _ in sos)
    assert feed.pipe.registry.describe(0)[2:] == ("gw-a", "a")


def test_the_owner_may_move_its_devices_to_another_area(tmp_path: Path) -> None:
    """The secure ACL lets a gateway publish in any area (a gateway may move): its devices go
    with it, and their alerts name the new area."""
    feed = Feed(tmp_path)
    feed.send("a", "gw-a", json_of(reading("s-1", "smoke", 0, NOW - 10_000, QUIET)))
    feed.send("c", "gw-a", json_of(*(reading("s-1", "smoke", s, NOW - 10_000 + s * 1000, FIRE)
                                     for s in range(1, 6))))
    assert feed.dead() == []
    assert feed.pipe.registry.describe(0)[2:] == ("gw-a", "c")
    assert {a["area"] for a in feed.alerts()} == {"c"}


def test_devices_follow_their_gateway_when_the_setting_says_so(tmp_path: Path) -> None:
    """devices_follow_gateway: a roaming wristband belongs to the gateway it came through
    last, as before (and so another gateway's reading moves its window)."""
    feed = Feed(tmp_path, devices_follow_gateway=True)
    feed.send("a", "gw-a", json_of(reading("w-1", "wearable", 0, NOW - 10_000, CALM)))
    feed.send("b", "gw-b", json_of(reading("w-1", "wearable", 1, NOW - 9_000, SOS)))
    assert feed.dead() == []
    assert feed.pipe.registry.describe(0)[2:] == ("gw-b", "b")
    assert [(a["type"], a["area"]) for a in feed.alerts()] == [("wearable.sos", "b")]


def test_a_message_over_its_gateways_bound_and_naming_anothers_device(tmp_path: Path) -> None:
    """Both refusals of one message get a dead letter each; a reading counts in one only."""
    feed = Feed(tmp_path)
    feed.pipe.registry.max_devices_per_gateway = 2
    feed.send("a", "gw-a", json_of(reading("a-1", "smoke", 0, NOW - 5000, QUIET)))
    feed.send("b", "gw-b", json_of(reading("a-1", "smoke", 1, NOW - 4000, QUIET),
                                   reading("b-1", "smoke", 0, NOW - 4000, QUIET),
                                   reading("b-2", "smoke", 0, NOW - 4000, QUIET),
                                   reading("b-3", "smoke", 0, NOW - 4000, QUIET)))
    codes = [d["code"] for _, d in feed.dead()]
    assert codes == ["too_many_devices", "gateway_mismatch"]
    assert feed.pipe.stats.readings_rejected == 2
    assert feed.pipe.stats.readings_stored == 3


def test_a_restarted_core_remembers_owners_in_its_dedup_snapshot(tmp_path: Path) -> None:
    """Owners are saved with the dedup snapshot (at every compaction and at a stop): after a
    restart, B still cannot take A's device by reporting it first. A snapshot of a core that
    kept no owners still loads (its devices are first come again)."""

    def started(run: str, registry: bool = True) -> tuple[Feed, DedupJournal]:
        feed = Feed(tmp_path / run)
        pipe = feed.pipe
        journal = DedupJournal(tmp_path / "state", pipe.dedup, pipe.registry.devices,
                               registry=pipe.registry if registry else None)
        journal.recover()
        return feed, journal

    feed, journal = started("1")
    for seq in range(3):
        out = feed.send("a", "gw-a", json_of(reading("s-1", "smoke", seq, NOW - 9000 + seq,
                                                     QUIET)))
        journal.append(*out.admitted)
    journal.close()
    feed, journal = started("2")
    assert feed.pipe.registry.describe(0) == ("s-1", "smoke", "gw-a", "a")
    feed.send("b", "gw-b", json_of(reading("s-1", "smoke", 0, NOW - 8000, QUIET,
                                           epoch=EPOCH + 1)))
    assert [d["code"] for _, d in feed.dead()] == ["gateway_mismatch"]
    for seq in range(3, 8):
        out = feed.send("a", "gw-a", json_of(reading("s-1", "smoke", seq, NOW - 7000 + seq,
                                                     FIRE)))
        journal.append(*out.admitted)
    assert [(a["type"], a["area"]) for a in feed.alerts()] == [("smoke.fire", "a")]
    journal.close()
    # an older core's snapshot, without owners: loads, and the devices are unplaced
    _, journal = started("3", registry=False)
    journal.close()
    feed, journal = started("4")
    assert len(feed.pipe.registry.devices) == 1 and feed.pipe.registry.device_gateway[0] == -1
    journal.close()


# -- the registry against a model ------------------------------------------------------------

TABLES = [[("smoke-1", "smoke"), ("manhole-2", "manhole")],
          [("manhole-2", "manhole"), ("wearable-3", "wearable")],
          [("wearable-3", "wearable"), ("smoke-1", "smoke"), ("smoke-4", "smoke")],
          [("smoke-1", "wearable")]]  # a device that changes kind


def snb(devices: list[tuple[str, str]]) -> bytes:
    b = BatchBuilder()
    for i, (device, kind) in enumerate(devices):
        b.add(device, kind, 0, i, NOW, {"x": 1.0})
    return binary.encode(b.build())


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(TABLES) - 1), st.sampled_from(["g1", "g2", "g3"]),
                          st.sampled_from(["a", "b"])), max_size=25))
def test_a_device_keeps_the_gateway_that_first_reported_it(
    steps: list[tuple[int, str, str]]
) -> None:
    """Against a dictionary of owners: each device keeps its first gateway, takes the area and
    kind its owner last sent, and exactly the readings naming another's device are refused.
    The decoded tables repeat (the decoder's cache), so most steps take the shortcut."""
    reg = Registry(capacity=1)
    payloads = [snb(t) for t in TABLES]
    model: dict[str, tuple[str, str, str]] = {}
    for t, gateway, area in steps:
        batch = decode_readings(payloads[t], gateway, area, 1 << 20).batch
        _, _, refused = reg.intern_checked(batch, gateway, area)
        foreign = [device in model and model[device][1] != gateway for device, _ in TABLES[t]]
        if any(foreign):
            assert [r.code for r in refused] == ["gateway_mismatch"]
            assert refused[0].rows.tolist() == foreign
        else:
            assert refused == ()
        for (device, kind), theirs in zip(TABLES[t], foreign, strict=True):
            if not theirs:
                model[device] = (kind, gateway, area)
        assert {reg.describe(d)[0]: reg.describe(d)[1:] for d in range(len(reg.devices))} \
            == model


# -- through the real broker and store -------------------------------------------------------


@pytest.mark.e2e
def test_through_the_broker_b_can_neither_silence_nor_hijack_as_devices(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    """r03 + r10 + r16 against a running core: B's readings of A's smoke detector and
    wristband are dead-lettered on B's topic and stored nowhere; A's fire and SOS are alerted
    in A's area; every reading A sent is stored under A."""
    listener = Listener(broker, topics.ALERTS_FILTER, topics.DEADLETTER_FILTER)
    gwa, gwb = publisher(broker), publisher(broker)
    t0 = NOW - 300_000
    a_topic, b_topic = topics.readings_topic("a", "gw-a"), topics.readings_topic("b", "gw-b")
    with running_core(broker, store, tmp_path / "core"):
        for seq in range(10):
            publish(gwa, a_topic, json_of(reading("s-1", "smoke", seq, t0 + seq * 1000, QUIET),
                                          reading("w-A", "wearable", seq, t0 + seq * 1000,
                                                  CALM)))
        publish(gwb, b_topic, json_of(
            reading("s-1", "smoke", 10 + 999_999, t0 + 10_000, QUIET),
            reading("w-A", "wearable", 0, t0 + 10_000, SOS, epoch=NOW // 1000),
            reading("w-A", "wearable", 1, t0 + 11_000, SOS, epoch=NOW // 1000),
            reading("b-own", "smoke", 0, t0 + 10_000, QUIET)))
        assert listener.wait_for(lambda: any(
            d.get("code") == "gateway_mismatch" for d in listener.json(
                "sensing/v1/deadletter/b/gw-b")), timeout=10)
        for seq in range(10, 20):
            publish(gwa, a_topic, json_of(reading("s-1", "smoke", seq, t0 + seq * 1000, FIRE),
                                          reading("w-A", "wearable", seq, t0 + seq * 1000,
                                                  SOS)))

        def raised() -> set[tuple[object, ...]]:
            return {(a["type"], a["device"], a["area"], a["gateway"])
                    for a in listener.json("sensing/v1/alerts/") if a["state"] == "raised"}

        expected = {("smoke.fire", "s-1", "a", "gw-a"), ("wearable.sos", "w-A", "a", "gw-a")}
        assert listener.wait_for(lambda: expected <= raised(), timeout=20), raised()
        assert not [x for x in raised() if x[2] == "b"]
        assert store.settled_count('reading_seq{device=~"s-1|w-A",gateway="gw-a",area="a"}',
                                   40) == 40
        assert store.settled_count('reading_seq{device="b-own",gateway="gw-b"}', 1) == 1
        assert store.count_samples('reading_seq{device=~"s-1|w-A",gateway="gw-b"}') == 0
        dead = listener.json("sensing/v1/deadletter/")
        assert [d["code"] for d in dead] == ["gateway_mismatch"]
    listener.close()
    for client in (gwa, gwb):
        client.disconnect()
        client.loop_stop()
