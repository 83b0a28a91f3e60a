"""The JSON lane changes nothing but the speed: the same steps through a pipeline with it and
one without it give the same lines, messages, admitted readings and confirmations."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensing.dedup.journal import DedupJournal
from sensing.ingest.received import Incoming, Received
from sensing.kernels.names import spans_equal
from sensing.pipeline import Pipeline, StepOutput
from sensing.settings import CoreSettings
from sensing.wire import topics

NOW = int(time.time() * 1000)
GATEWAYS = [("a1", "gw-1"), ("a1", "gw-2"), ("a2", "gw-3"), ("a2", "gw-1")]
"""gw-1 in two areas: a gateway that moved"""
DEVICES = [("smoke-1", "smoke"), ("smoke-2", "smoke"), ("band-1", "wearable"),
           ("hole-1", "manhole"), ("smoke-1", "wearable")]
"""smoke-1 twice: a device whose kind changes"""
VALUES = {"smoke": {"obscuration": 0.1, "temp_c": 21.5, "co_ppm": 1.0},
          "wearable": {"heart_rate": 70.0, "spo2": 97.0, "sos": 0.0},
          "manhole": {"tilt_deg": 0.5, "water_m": 2.0}}


@st.composite
def readings(draw: st.DrawFn, gateway: str, area: str) -> dict[str, Any]:
    device, kind = draw(st.sampled_from(DEVICES))
    values: dict[str, Any] = dict(VALUES[kind])
    flavour = draw(st.sampled_from(["plain"] * 6 + [
        "alarm", "bad_value", "new_channel", "other_gateway", "other_area", "no_battery",
        "battery_null", "seq_negative", "far_future", "string_ts", "extra_key", "float_seq",
        "named"]))
    doc: dict[str, Any] = {"device": device, "kind": kind, "epoch": draw(st.integers(0, 2)),
                           "seq": draw(st.integers(0, 40)),
                           "ts": NOW - draw(st.integers(0, 100_000)), "values": values,
                           "battery": 0.9}
    if flavour == "alarm":
        values["obscuration" if kind == "smoke" else "sos" if kind == "wearable"
               else "water_m"] = 9.0 if kind != "wearable" else 1.0
    elif flavour == "bad_value":
        values[next(iter(values))] = "high"
    elif flavour == "new_channel":
        values[draw(st.sampled_from(["humidity", "ch_seq", "bad name"]))] = 1.0
    elif flavour == "other_gateway":
        doc["gateway"] = "gw-9"
    elif flavour == "other_area":
        doc["area"] = "a9"
    elif flavour == "no_battery":
        del doc["battery"]
    elif flavour == "battery_null":
        doc["battery"] = None
    elif flavour == "seq_negative":
        doc["seq"] = -1
    elif flavour == "far_future":
        doc["ts"] = NOW + 3_600_000
    elif flavour == "string_ts":
        doc["ts"] = "2026-12-07T12:00:00Z"
    elif flavour == "extra_key":
        doc["note"] = {"nested": [1, 2, {"x": None}]}
    elif flavour == "float_seq":
        doc["seq"] = 1.5
    elif flavour == "named":
        doc["gateway"], doc["area"] = gateway, area
    return doc


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    area, gateway = draw(st.sampled_from(GATEWAYS))
    docs = draw(st.lists(readings(gateway, area), min_size=1, max_size=4))
    shape = draw(st.sampled_from(["object", "array", "spaced", "garbage"]))
    if shape == "object":
        payload = orjson.dumps(docs[0])
    elif shape == "array":
        payload = orjson.dumps(docs)
    elif shape == "spaced":
        payload = orjson.dumps(docs, option=orjson.OPT_INDENT_2)
    else:
        payload = orjson.dumps(docs)[: draw(st.integers(1, 20))]
    return topics.readings_topic(area, gateway), payload


def _normalized(out: StepOutput) -> dict[str, object]:
    """A step's output with alert ids (random) replaced by their order of appearance."""
    ids: dict[str, str] = {}

    def fix(text: str) -> str:
        return re.sub(r"[0-9a-f]{32}", lambda m: ids.setdefault(m.group(0), f"#{len(ids)}"),
                      text)

    lines = [x if isinstance(x, bytes) else x.encode() for x in out.lines]
    return {
        "lines": fix(b"\n".join(lines).decode()),
        "messages": [(t, fix(p.decode())) for t, p in out.messages],
        "admitted": [a.tolist() for a in out.admitted],
        "handled": sorted(
            (area, gw, sorted(zip((names[int(d)] for d in np.asarray(dev).tolist()),
                                  np.asarray(ep).tolist(), np.asarray(sq).tolist(),
                                  strict=True)))
            for area, gw, names, dev, ep, sq in out.handled),
    }


def _placement(pipe: Pipeline) -> dict[str, tuple[str, str, str]]:
    reg = pipe.registry
    return {reg.devices.names[d]: reg.describe(d)[1:] for d in range(len(reg.devices))}


def _both(tmp_path: Path, steps: list[list[tuple[str, bytes]]], **settings: Any
          ) -> tuple[Pipeline, Pipeline]:
    """The steps through a pipeline with the JSON lane and one without, compared step by
    step (output and the registry's placement of every device)."""
    with_lane = Pipeline(CoreSettings(state_dir=tmp_path / "lane", **settings))
    without = Pipeline(CoreSettings(state_dir=tmp_path / "slow", **settings), json_lane=False)
    mid = 0
    for k, step in enumerate(steps):
        batch = []
        for topic, payload in step:
            mid += 1
            batch.append(Incoming(topic, payload, mid, 1, 0))
        now = NOW + 1000 * k
        a = with_lane.process(Received.from_messages(batch), now)
        b = without.process(Received.from_messages(batch), now)
        assert _normalized(a) == _normalized(b), f"step {k}"
        assert _placement(with_lane) == _placement(without), f"step {k}"
    assert with_lane.stats.as_dict() == without.stats.as_dict()
    with_lane.book.close()
    without.book.close()
    return with_lane, without


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.lists(messages(), min_size=1, max_size=12), min_size=1, max_size=6))
def test_the_json_lane_gives_what_the_message_by_message_path_gives(
        tmp_path: Path, steps: list[list[tuple[str, bytes]]]) -> None:
    _both(tmp_path, steps)


def test_repeat_traffic_takes_the_lane(tmp_path: Path) -> None:
    """After a gateway's first message, its devices' next readings are decoded in bulk: the
    lane takes them (checked by what it leaves to the slow path)."""
    pipe = Pipeline(CoreSettings(state_dir=tmp_path))
    topic = topics.readings_topic("a1", "gw-1")

    def batch(seq: int) -> list[Incoming]:
        return [Incoming(topic, orjson.dumps({"device": f"smoke-{d}", "kind": "smoke",
                                              "seq": seq, "ts": NOW + seq,
                                              "values": VALUES["smoke"], "battery": 0.9}),
                         d + 1, 1, 0) for d in range(50)]

    pipe.process(batch(0), NOW)
    slow_before = pipe.json_lane.slow_messages
    out = pipe.process(batch(1), NOW + 1)
    assert pipe.json_lane.slow_messages == slow_before
    assert pipe.json_lane.lane_messages >= 50
    assert pipe.stats.readings_stored == 100
    assert out.admitted[0].shape[0] == 50
    pipe.book.close()


def test_a_restarted_core_takes_the_lane_from_the_first_message(tmp_path: Path) -> None:
    """The names a restarted core recovers (snapshot and journal) warm the lane: its devices
    are decoded in bulk from their first message after the restart, as before it."""
    def batch(seq: int) -> list[Incoming]:
        return [Incoming(topics.readings_topic("a1", f"gw-{d % 3}"), orjson.dumps(
            {"device": f"smoke-{d}", "kind": "smoke", "seq": seq, "ts": NOW + seq,
             "values": VALUES["smoke"], "battery": 0.9}), d + 1, 1, 0) for d in range(30)]

    first = Pipeline(CoreSettings(state_dir=tmp_path))
    out = first.process(batch(0), NOW)
    journal = DedupJournal(tmp_path, first.dedup, first.registry.devices,
                           registry=first.registry)
    journal.append(*out.admitted)
    journal.close()
    first.book.close()

    again = Pipeline(CoreSettings(state_dir=tmp_path))
    DedupJournal(tmp_path, again.dedup, again.registry.devices,
                 registry=again.registry).recover()
    again.warm_json_lane()
    again.process(batch(1), NOW + 1)
    assert again.json_lane.slow_messages == 0 and again.json_lane.lane_messages == 30
    assert again.stats.readings_stored == 30 and again.stats.duplicates_dropped == 0
    again.book.close()


@settings(deadline=None)  # the first example compiles the kernel when the cache is cold
@given(st.lists(st.binary(max_size=6), min_size=1, max_size=8), st.data())
def test_spans_equal_compares_bytes_as_python_does(table: list[bytes], data: st.DataObject
                                                   ) -> None:
    words = data.draw(st.lists(st.binary(max_size=6) | st.sampled_from(table), max_size=12))
    ids = np.array(data.draw(st.lists(st.integers(0, len(table) - 1), min_size=len(words),
                                      max_size=len(words))), dtype=np.int32)
    absent = data.draw(st.lists(st.booleans(), min_size=len(words), max_size=len(words)))
    buf = b"#" + b"".join(words) + b"#"
    ends = 1 + np.cumsum([len(w) for w in words], dtype=np.int64)
    starts = ends - np.array([len(w) for w in words], dtype=np.int64)
    starts[np.array(absent, dtype=bool)] = -1
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in table])]).astype(np.int64)
    out = np.empty(len(words), dtype=np.bool_)
    spans_equal(np.frombuffer(buf, np.uint8), starts, ends,
                np.frombuffer(b"".join(table) or b"\0", np.uint8), offsets, ids, out)
    assert out.tolist() == [a or w == table[k] for w, k, a in zip(words, ids.tolist(), absent,
                                                                 strict=True)]


def test_a_failing_lane_leaves_its_messages_to_the_slow_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the lane must not stop the core: its messages take the message-by-message
    path, and are stored as that path stores them."""
    pipe = Pipeline(CoreSettings(state_dir=tmp_path))
    topic = topics.readings_topic("a1", "gw-1")

    def batch(seq: int) -> list[Incoming]:
        return [Incoming(topic, orjson.dumps({"device": f"smoke-{d}", "kind": "smoke",
                                              "seq": seq, "ts": NOW + seq,
                                              "values": VALUES["smoke"]}), d + 1, 1, 0)
                for d in range(5)]

    pipe.process(batch(0), NOW)

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("injected")

    monkeypatch.setattr(pipe.json_lane, "decode", broken)
    out = pipe.process(batch(1), NOW + 1)
    assert pipe.stats.readings_stored == 10 and out.admitted[0].shape[0] == 5
    assert not [t for t, _ in out.messages if t.startswith("sensing/v1/deadletter/")]
    pipe.book.close()


def test_names_crowded_out_of_a_small_cache_are_learned_once_it_grows() -> None:
    """Device ids made to share one probe start of the cache's first 1,024 slots: the ones
    past MAX_PROBE are refused while the table is small, and learned once it has doubled
    (else those devices would take the slow path for good)."""
    from sensing.json_lane import _Learned
    from sensing.kernels.namecache import MAX_PROBE, first_slot
    from sensing.registry import Names
    from sensing.wire.json_columns import name_hash

    crowd: list[str] = []
    k = 0
    while len(crowd) < MAX_PROBE + 8:
        name = f"crowd-{k}"
        if first_slot(name_hash(name.encode()), 1023) == 7:
            crowd.append(name)
        k += 1
    names = Names()
    learned = _Learned(names, 100_000, 64)
    for name in crowd:
        names.intern(name)
    learned.sync()
    assert learned.cache.slots == 1024 and learned.refused  # crowded out for now
    for i in range(600):  # the table doubles past 512 entries
        names.intern(f"other-{i}")
    learned.sync()
    assert learned.cache.slots == 2048 and not learned.refused
    assert [learned.cache.get(name_hash(n.encode()), n.encode()) for n in crowd] == [
        names.index[n] for n in crowd]
