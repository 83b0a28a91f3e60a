"""Every input is bounded and every refusal is dead-lettered with a reason code (issue 11:
problems 3, 4, 7 and 8, and the bounds of deliverable 1)."""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import string
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sensing.ingest.mqtt import Incoming
from sensing.pipeline import Pipeline
from sensing.registry import Registry
from sensing.services import Mosquitto, VictoriaMetrics
from sensing.settings import CoreSettings
from sensing.store.lineprotocol import LineFormatter, escape_key
from sensing.wire import BatchBuilder, WireError, binary, decode_readings, snb1, topics
from sensing.wire.errors import CODES, Code
from sensing.wire.limits import (
    CHANNEL_ALPHABET,
    DEVICE_ID_ALPHABET,
    MAX_CHANNEL_NAME,
    MAX_DEVICE_ID,
    MAX_DEVICES_PER_GATEWAY,
    MAX_FUTURE_MS,
    MAX_LINE_BYTES,
    MAX_VALUES_PER_READING,
    is_channel_name,
    is_device_id,
)
from tests.helpers import Listener, publish, publisher, running_core

NOW = int(time.time() * 1000)
LIMIT = 1 << 20


def reading(device: str = "smoke-1", seq: int = 1, ts: int = NOW,
            values: dict[str, float] | None = None) -> dict[str, object]:
    return {"device": device, "kind": "smoke", "seq": seq, "ts": ts,
            "values": {"co_ppm": 1.0} if values is None else values}


def snb(rows: list[tuple[str, int, int, dict[str, float]]], version: int = 2) -> bytes:
    return snb1.encode_readings(((d, "smoke", 0, seq, ts, v, None) for d, seq, ts, v in rows),
                                version)


def code_of(payload: bytes, now_ms: int | None = NOW) -> str:
    with pytest.raises(WireError) as caught:
        decode_readings(payload, "gw", "a", LIMIT, now_ms=now_ms)
    assert caught.value.code in CODES
    return caught.value.code


# -- codes --------------------------------------------------------------------------------


def test_every_code_is_snake_case_and_a_wire_error_carries_one() -> None:
    assert all(c == c.lower() and " " not in c for c in CODES)
    assert WireError("x").code == "payload_invalid"
    assert WireError("x", Code.BATCH_EMPTY).code == "batch_empty"


@pytest.mark.parametrize(("payload", "code"), [
    (b"", "payload_empty"),
    (b" " * (LIMIT + 1), "payload_too_large"),
    (b"{oops", "json_malformed"),
    (b"[]", "batch_empty"),
    (orjson.dumps({"kind": "smoke", "seq": 1, "ts": NOW, "values": {}}), "field_missing"),
    (orjson.dumps(reading() | {"seq": "1"}), "field_type"),
    (orjson.dumps(reading() | {"kind": "toaster"}), "kind_unknown"),
    (orjson.dumps(reading() | {"seq": -1}), "seq_out_of_range"),
    (orjson.dumps(reading() | {"ts": 1}), "ts_out_of_range"),
    (orjson.dumps(reading() | {"ts": NOW + MAX_FUTURE_MS + 1000}), "ts_out_of_range"),
    (orjson.dumps(reading() | {"ts": 4_102_444_000_000}), "ts_out_of_range"),
    (orjson.dumps(reading() | {"battery": 2}), "battery_out_of_range"),
    (orjson.dumps(reading() | {"gateway": "other"}), "gateway_mismatch"),
    (orjson.dumps(reading(values={"a\nb": 1.0})), "name_invalid"),
    (orjson.dumps(reading(values={"": 1.0})), "name_invalid"),
    (orjson.dumps(reading(values={"x" * 900_000: 1.0})), "name_invalid"),
    (orjson.dumps(reading(device="a b")), "name_invalid"),
    (orjson.dumps(reading(values={f"c{i}": 1.0 for i in range(65)})), "too_many_values"),
    (orjson.dumps([reading(seq=i, values={f"c{i}": 1.0}) for i in range(300)]),
     "too_many_channels"),
    (orjson.dumps([reading(device=f"d-{i}") for i in range(10_001)]), "too_many_devices"),
    (snb([("smoke-1", 1, NOW, {"co_ppm": 1.0})])[:-1], "batch_corrupt"),
    (snb([("smoke-1", 1, NOW, {"co_ppm": 1.0})], version=1)[:-1], "batch_malformed"),
    (snb([]), "batch_empty"),
    (snb([], version=1), "batch_empty"),
    (snb([("smoke-1", 1, NOW, {"a\nb": 1.0})]), "name_invalid"),
    (snb([("smoke-1", 1, NOW + MAX_FUTURE_MS + 1000, {"co_ppm": 1.0})]), "ts_out_of_range"),
], ids=lambda x: x if isinstance(x, str) else "payload")  # payloads hold the time
def test_each_refusal_has_its_code(payload: bytes, code: str) -> None:
    assert code_of(payload) == code


def test_the_issues_huge_snb1_table_of_no_readings_is_refused_from_its_header() -> None:
    """Issue 11, problem 4's input: 65,535 devices and no readings. Refused before its table
    is parsed (the header says no readings, and more devices than a message may carry)."""
    n = 65_535
    head = snb1.header_and_tables(((f"d-{i}", "smoke") for i in range(n)), ["co_ppm"], n, 1,
                                  0, 0, version=1)
    assert code_of(head) == "batch_empty"
    one = snb([(f"d-{i}", i, NOW, {"co_ppm": 1.0}) for i in range(10_001)])
    assert code_of(one) == "too_many_devices"


def test_the_issues_overlong_lines_are_refused_before_the_store() -> None:
    """Issue 11, problem 2's inputs, whose stored lines exceeded the store's limit (HTTP 400,
    retried forever): a 900,000-character channel name in a 900 KB JSON payload, and an SNB1
    batch with 20,000 channels. Both are refused at the wire now."""
    assert code_of(orjson.dumps(reading(values={"c" * 900_000: 1.0}))) == "name_invalid"
    channels = [f"c{i}" for i in range(20_000)]
    rows = [("smoke-1", "smoke", 0, k, NOW, dict.fromkeys(channels[k::4], 1.0), None)
            for k in range(4)]
    many = snb1.encode_readings(rows, version=1)
    assert len(many) < LIMIT and code_of(many) == "too_many_channels"


def test_future_readings_are_refused_and_a_backlog_is_kept() -> None:
    rows = [reading(seq=1, ts=NOW - 30 * 86_400_000),  # a month-old backlog: kept
            reading(seq=2, ts=NOW + MAX_FUTURE_MS - 1000),  # within the clock skew: kept
            reading(seq=3, ts=NOW + MAX_FUTURE_MS + 1000)]  # beyond it: refused
    d = decode_readings(orjson.dumps(rows), "gw", "a", LIMIT, now_ms=NOW)
    assert [r["seq"] for r in d.batch.readings()] == [1, 2]
    assert [(i, code) for i, _, code in d.rejected] == [(2, "ts_out_of_range")]
    assert d.code == "ts_out_of_range"
    # tools that read a recording on its own clock pass no clock: only 2000..2100 holds
    assert not decode_readings(orjson.dumps(rows), "gw", "a", LIMIT).rejected


# -- names ----------------------------------------------------------------------------------

device_ids = st.text(string.ascii_letters + string.digits + "_.:-", min_size=1,
                     max_size=MAX_DEVICE_ID)
channel_names = st.text(string.ascii_letters + string.digits + "_.-", min_size=1,
                        max_size=MAX_CHANNEL_NAME)


def test_the_simulators_and_agents_channels_fit_the_rule() -> None:
    from sensing.wire.kinds import KIND_CHANNELS

    assert all(is_channel_name(c) for cs in KIND_CHANNELS.values() for c in cs)
    assert is_device_id("smoke-000123") and is_device_id("gw-07:wearable.3")
    assert DEVICE_ID_ALPHABET == "A-Za-z0-9_.:-" and CHANNEL_ALPHABET == "A-Za-z0-9_.-"


@given(st.text(max_size=80))
def test_a_name_is_refused_unless_it_fits_the_rule(name: str) -> None:
    doc = orjson.dumps([reading(seq=1), reading(seq=2, values={name: 1.0})])
    d = decode_readings(doc, "gw", "a", LIMIT, now_ms=NOW)
    if is_channel_name(name):
        assert len(d.batch) == 2 and not d.rejected
    else:
        assert len(d.batch) == 1 and [c for _, _, c in d.rejected] == ["name_invalid"]
    doc = orjson.dumps([reading(seq=1), reading(device=name, seq=2)])
    d = decode_readings(doc, "gw", "a", LIMIT, now_ms=NOW)
    assert len(d.batch) == (2 if is_device_id(name) else 1)


def _split_unescaped(line: str, sep: str) -> list[str]:
    parts, cur, escaped = [], "", False
    for ch in line:
        if escaped:
            cur += ch
            escaped = False
        elif ch == "\\":
            cur += ch
            escaped = True
        elif ch == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(device_ids, st.lists(channel_names, min_size=1, max_size=8, unique=True))
def test_every_name_that_passes_yields_exactly_one_parseable_line(
    device: str, channels: list[str]
) -> None:
    b = BatchBuilder()
    b.add(device, "smoke", 0, 1, NOW, {c: 1.5 for c in channels}, 0.5)
    d = decode_readings(binary.encode(b.build()), "gw-1", "area-1", LIMIT, now_ms=NOW)
    assert len(d.batch) == 1 and not d.rejected
    reg = Registry()
    dev, chan = reg.intern_batch(d.batch, "gw-1", "area-1")
    batch = d.batch
    text = LineFormatter(reg).readings(dev, batch.epoch, batch.seq, batch.ts, batch.battery,
                                       batch.value_row, chan, batch.value).decode()
    assert "\n" not in text and "\r" not in text
    series, fields, ts = _split_unescaped(text, " ")
    tags = dict(t.split("=", 1) for t in _split_unescaped(series, ",")[1:])
    assert tags["device"] == device and ts == str(NOW)
    keys = {f.split("=", 1)[0] for f in _split_unescaped(fields, ",")}
    assert keys >= {f"ch_{c}" if c in ("seq", "epoch", "battery") else c for c in channels}


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "", "tab\there", "x\x00"])
def test_line_protocol_refuses_a_name_that_would_break_its_line(bad: str) -> None:
    with pytest.raises(ValueError, match="line-protocol"):
        escape_key(bad)
    assert escape_key("a b,c=d") == r"a\ b\,c\=d"


def _longest_reading() -> bytes:
    """The longest line the limits allow: longest names, most values, longest floats."""
    b = BatchBuilder()
    values = {f"{i:02d}" + "c" * (MAX_CHANNEL_NAME - 2): -2.2250738585072014e-308
              for i in range(MAX_VALUES_PER_READING)}
    # seq and epoch as long as the dedup window lets a new device begin with
    b.add("d" * MAX_DEVICE_ID, "wearable", NOW // 1000, 2**40 - 1, NOW, values,
          0.123456789012345)
    return binary.encode(b.build())


def test_the_longest_line_the_limits_allow_fits_max_line_bytes() -> None:
    d = decode_readings(_longest_reading(), "g" * 64, "a" * 64, LIMIT, now_ms=NOW)
    reg = Registry()
    dev, chan = reg.intern_batch(d.batch, "g" * 64, "a" * 64)
    batch = d.batch
    line = LineFormatter(reg).readings(dev, batch.epoch, batch.seq, batch.ts, batch.battery,
                                       batch.value_row, chan, batch.value)
    assert MAX_LINE_BYTES // 4 < len(line) <= MAX_LINE_BYTES


# -- SNB2 -----------------------------------------------------------------------------------

snb_rows = st.lists(st.tuples(
    st.sampled_from(["smoke-1", "smoke-2", "smoke-3"]), st.integers(0, 2**40),
    st.integers(NOW - 86_400_000, NOW),
    st.dictionaries(st.sampled_from(["co_ppm", "temp_c", "obscuration"]),
                    st.floats(-1e6, 1e6), max_size=3)), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(snb_rows, st.data())
def test_a_flipped_byte_of_snb2_is_refused_or_changes_nothing(
    rows: list[tuple[str, int, int, dict[str, float]]], data: st.DataObject
) -> None:
    """Issue 11, problem 7: SNB1 took 3,785 of 100,000 fuzzed batches as valid. A CRC-32
    finds every error of up to 32 bits, so a batch with a flipped byte is refused whole."""
    payload = snb(rows)
    expected = decode_readings(payload, "gw", "a", LIMIT, now_ms=NOW).batch.readings()
    at = data.draw(st.integers(0, len(payload) - 1))
    mask = data.draw(st.integers(1, 255))
    flipped = bytearray(payload)
    flipped[at] ^= mask
    try:
        got = decode_readings(bytes(flipped), "gw", "a", LIMIT, now_ms=NOW)
    except WireError as exc:
        assert exc.code in CODES
    else:
        assert got.batch.readings() == expected and not got.rejected


def test_every_byte_flipped_in_turn_is_refused() -> None:
    payload = snb([("smoke-1", 7, NOW, {"co_ppm": 1.5, "temp_c": 20.0}),
                   ("smoke-2", 8, NOW, {"obscuration": 0.1})])
    codes = set()
    for at in range(len(payload)):
        for mask in (0x01, 0x80, 0xFF):
            flipped = bytearray(payload)
            flipped[at] ^= mask
            with pytest.raises(WireError) as caught:
                decode_readings(bytes(flipped), "gw", "a", LIMIT, now_ms=NOW)
            codes.add(caught.value.code)
    assert "batch_corrupt" in codes and codes <= {"batch_corrupt", "batch_malformed",
                                                  "json_malformed"}


def test_snb1_is_still_read_and_snb2_is_what_encoders_write() -> None:
    rows = [("smoke-1", 7, NOW, {"co_ppm": 1.5})]
    v1, v2 = snb(rows, version=1), snb(rows)
    assert v1[:4] == b"SNB1" and v2[:4] == b"SNB2" and len(v2) == len(v1) + 4
    b = BatchBuilder()
    b.add("smoke-1", "smoke", 0, 7, NOW, {"co_ppm": 1.5})
    assert binary.encode(b.build()) == v2 and binary.encode(b.build(), version=1) == v1
    assert (decode_readings(v1, "g", "a", LIMIT).batch.readings()
            == decode_readings(v2, "g", "a", LIMIT).batch.readings())


@settings(deadline=None)
@given(snb_rows, st.integers(-10**11, 10**11), st.sampled_from([1, 2]))
def test_shift_ts_moves_every_ts_and_keeps_the_batch_valid(
    rows: list[tuple[str, int, int, dict[str, float]]], shift: int, version: int
) -> None:
    payload = snb(rows, version)
    moved = snb1.shift_ts(payload, shift)
    before = decode_readings(payload, "g", "a", LIMIT).batch.readings()
    after = decode_readings(moved, "g", "a", LIMIT).batch.readings()
    assert [r["ts"] for r in after] == [int(r["ts"]) + shift for r in before]  # type: ignore[call-overload]
    assert [r | {"ts": 0} for r in after] == [r | {"ts": 0} for r in before]
    assert snb1.shift_ts(moved, -shift) == payload
    with pytest.raises(WireError) as caught:
        snb1.shift_ts(payload[:-1], shift)
    assert caught.value.code in ("batch_corrupt", "batch_malformed")


# -- the pipeline -------------------------------------------------------------------------


def _dead(out_publish: list[tuple[str, bytes]]) -> list[tuple[str, dict[str, object]]]:
    return [(t, orjson.loads(p)) for t, p in out_publish
            if t.startswith("sensing/v1/deadletter/")]


def _lines(lines: list[str | bytes]) -> bytes:
    return b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines)


@pytest.fixture
def pipe(tmp_path: Path) -> Pipeline:
    return Pipeline(CoreSettings(state_dir=tmp_path))


def test_a_gateway_introduces_a_bounded_number_of_devices(pipe: Pipeline) -> None:
    topic = topics.readings_topic("area-1", "gw-many")
    half = MAX_DEVICES_PER_GATEWAY * 6 // 10

    def send(names: list[str], mid: int) -> list[tuple[str, dict[str, object]]]:
        payload = snb([(name, mid, NOW, {"co_ppm": 1.0}) for name in names])
        return _dead(pipe.process([Incoming(topic, payload, mid, 1, 0)], NOW).publish)

    assert send([f"a-{i}" for i in range(half)], 1) == []
    dead = send([f"b-{i}" for i in range(half)], 2)
    assert [d["code"] for _, d in dead] == ["too_many_devices"]
    over = 2 * half - MAX_DEVICES_PER_GATEWAY
    assert pipe.stats.readings_rejected == over
    assert pipe.stats.readings_stored == 2 * half - over
    assert len(pipe.registry.devices) == MAX_DEVICES_PER_GATEWAY
    # readings of known devices still pass, and another gateway has its own bound
    assert send([f"a-{i}" for i in range(10)], 3) == []
    other = topics.readings_topic("area-1", "gw-other")
    out = pipe.process([Incoming(other, snb([("c-1", 1, NOW, {"co_ppm": 1.0})]), 4, 1, 0)], NOW)
    assert _dead(out.publish) == []
    assert pipe.stats.readings_stored == 2 * half - over + 11


def test_a_gateway_introduces_a_bounded_number_of_channels(tmp_path: Path) -> None:
    reg = Registry(max_channels_per_gateway=4)
    b = BatchBuilder()
    for i in range(6):
        b.add("smoke-1", "smoke", 0, i, NOW, {f"ch{i}": 1.0, "co_ppm": 2.0})
    _, _, refused = reg.intern_bounded(b.build(), "gw", "a")
    assert refused is not None and refused.code == "too_many_channels"
    assert refused.rows.tolist() == [False, False, False, True, True, True]
    assert len(reg.channels) == 4
    # another gateway may introduce its own
    assert reg.intern_bounded(b.build(), "gw-2", "a")[2] is None
    # and there is a bound in all
    reg = Registry(max_channels=3)
    _, _, refused = reg.intern_bounded(b.build(), "gw", "a")
    assert refused is not None and refused.code == "too_many_channels"
    assert refused.rows.tolist() == [False, False, True, True, True, True]


def test_the_detectors_channels_are_known_from_the_start(pipe: Pipeline) -> None:
    from sensing.wire.kinds import KIND_CHANNELS

    known = pipe.registry.channels.index
    assert all(c in known for cs in KIND_CHANNELS.values() for c in cs if c != "steps"), known


def test_dead_letters_of_unusable_topics_and_statuses(pipe: Pipeline) -> None:
    """Issue 11, problem 8: these vanished without a dead letter."""
    good = orjson.dumps(reading())
    cases = [
        (topics.readings_topic("alerts", "gw-9"), good, "sensing/v1/deadletter/_/gw-9",
         "area_reserved"),
        (topics.status_topic("core", "gw-9"), b'{"state":"online","ts":1}',
         "sensing/v1/deadletter/_/gw-9", "area_reserved"),
        ("sensing/v1/a b/gw/readings", good, "sensing/v1/deadletter/_/gw", "topic_invalid"),
        ("sensing/v1/" + "x" * 70 + "/g h/readings", good, "sensing/v1/deadletter/_/_",
         "topic_invalid"),
        (topics.readings_topic("area-1", "gw-9"), snb([]), "sensing/v1/deadletter/area-1/gw-9",
         "batch_empty"),
        (topics.status_topic("area-1", "gw-9"), b'{"state":"online","ts":1}',
         "sensing/v1/deadletter/area-1/gw-9", "status_invalid"),
        (topics.status_topic("area-1", "gw-9"),
         b'{"state":"online","ts":99999999999999999999999}',
         "sensing/v1/deadletter/area-1/gw-9", "status_invalid"),
        (topics.status_topic("area-1", "gw-9"),
         orjson.dumps({"state": "online", "ts": NOW + MAX_FUTURE_MS + 1000}),
         "sensing/v1/deadletter/area-1/gw-9", "status_invalid"),
        (topics.status_topic("area-1", "gw-9"),
         orjson.dumps({"state": "online", "ts": NOW, "pad": "x" * 2_000_000}),
         "sensing/v1/deadletter/area-1/gw-9", "status_invalid"),
    ]
    for mid, (topic, payload, dead_topic, code) in enumerate(cases):
        out = pipe.process([Incoming(topic, payload, mid + 1, 1, 0)], NOW)
        dead = _dead(out.publish)
        assert [(t, d["code"]) for t, d in dead] == [(dead_topic, code)], topic
        assert dead[0][1]["topic"] == topic
    assert pipe.stats.readings_stored == 0
    # a good status is still taken
    out = pipe.process([Incoming(topics.status_topic("area-1", "gw-9"),
                                 orjson.dumps({"state": "online", "ts": NOW}), 99, 1, 0)], NOW)
    assert _dead(out.publish) == []


def test_bad_channel_names_are_dead_lettered_and_never_counted_as_stored(
    pipe: Pipeline
) -> None:
    """Issue 11, problem 3: a channel name with a newline, or an empty one, broke the stored
    line, and the reading was counted as stored."""
    payload = orjson.dumps([reading(seq=1), reading(seq=2, values={"a\nb": 1.0}),
                            reading(seq=3, values={"": 2.0}), reading(seq=4)])
    out = pipe.process([Incoming(topics.readings_topic("area-1", "gw-1"), payload, 1, 1, 0)],
                       NOW)
    dead = _dead(out.publish)
    assert [d["code"] for _, d in dead] == ["name_invalid"]
    assert "reading[1]" in str(dead[0][1]["reason"]) and "reading[2]" in str(dead[0][1]["reason"])
    lines = _lines(out.lines).split(b"\n")
    assert [x for x in lines if x.startswith(b"reading,")] and all(
        b"seq=" in x for x in lines if x.startswith(b"reading,"))
    assert pipe.stats.readings_stored == 2 and pipe.stats.readings_rejected == 2


def _distinct_tables(n_devices: int, n_readings: int, count: int) -> list[bytes]:
    """`count` SNB1 batches, each with a table of `n_devices` devices that no other batch has
    (the first name differs), and `n_readings` readings of its first device."""
    names = [f"n{i:07d}" for i in range(n_devices)]
    head = snb1.header_and_tables(((name, "smoke") for name in names), ["co_ppm"], n_devices,
                                  1, n_readings, n_readings, version=1)
    columns = b"".join(struct.pack("<q", NOW) for _ in range(n_readings)) + b"".join(
        struct.pack("<q", s) for s in range(n_readings)) + struct.pack(
        f"<{2 * n_readings}d", *([float("nan")] * n_readings + [1.0] * n_readings)) + bytes(
        4 * n_readings) + struct.pack(f"<{n_readings}I", *range(n_readings)) + bytes(
        4 * n_readings)
    out = []
    for k in range(count):
        first = bytearray(head)
        first[snb1.HEADER_SIZE + 1 : snb1.HEADER_SIZE + 9] = f"m{k:07d}".encode()
        out.append(bytes(first) + columns)
    return out


def test_memory_stays_bounded_under_huge_device_tables(pipe: Pipeline) -> None:
    """Issue 11, problem 4: 150 SNB1 batches with a 65,535-device table and no readings took
    the core from 218 MB to 1.6 GB (every table kept). Here 200 batches, each with its own
    50,000-device table (within the 1 MiB payload limit) and no readings, then 150 with
    their own 10,000-device table and a reading, all from one gateway: the traced memory grows
    by the first table's devices and the caches' byte budgets, not by every table."""
    empty = _distinct_tables(50_000, 0, 200)
    one = _distinct_tables(10_000, 1, 150)
    topic = topics.readings_topic("area-1", "gw-tables")
    pipe.process([Incoming(topic, empty[0], 1, 1, 0),  # loads what a first step loads
                  Incoming(topic, snb([("warm-1", 1, NOW, {"co_ppm": 1.0})]), 2, 1, 0)], NOW)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for k, payload in enumerate(empty):
            out = pipe.process([Incoming(topic, payload, k + 1, 1, 0)], NOW)
            assert [d["code"] for _, d in _dead(out.publish)] == ["batch_empty"]
        del out
        gc.collect()
        after_empty = tracemalloc.get_traced_memory()[0] - base
        for k, payload in enumerate(one):
            pipe.process([Incoming(topic, payload, 1000 + k, 1, 0)], NOW)
        gc.collect()
        after_tables = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    print(f"traced growth: {after_empty >> 20} MB, then {after_tables >> 20} MB")
    assert after_empty < 16 << 20, after_empty
    assert after_tables < 150 << 20, after_tables  # 32 MB measured
    assert len(pipe.registry.devices) == MAX_DEVICES_PER_GATEWAY
    # the first table fills the gateway's bound; the readings of the 149 new devices after it
    # are refused (too_many_devices)
    assert pipe.stats.readings_stored == 2 and pipe.stats.readings_rejected == 1 + 200 + 149


# -- end to end, through the real broker and store -----------------------------------------

@pytest.mark.e2e
def test_through_the_broker_bad_readings_are_dead_lettered_with_codes_and_good_ones_stored(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    listener = Listener(broker, topics.DEADLETTER_FILTER)
    client = publisher(broker)
    gw = "gw-bounds-e2e"
    now = int(time.time() * 1000)
    with running_core(broker, store, tmp_path / "core") as core:
        mixed = orjson.dumps([
            reading("smoke-b1", 1, now), reading("smoke-b1", 2, now + 1, {"a\nb": 1.0}),
            reading("smoke-b1", 3, now + 2, {"": 1.0}), reading("smoke-b1", 4, now + 3),
            reading("smoke-b1", 5, now + 10 * MAX_FUTURE_MS), reading("smoke-b1", 6, now + 4)])
        publish(client, topics.readings_topic("bounds", gw), mixed)
        batch = snb([("smoke-b2", 1, now, {"co_ppm": 1.0}),
                     ("smoke-b2", 2, now + 1, {"x" * 65: 1.0})])
        publish(client, topics.readings_topic("bounds", gw), batch)
        flipped = bytearray(snb([("smoke-b3", 1, now, {"co_ppm": 1.0})]))
        flipped[-20] ^= 0x10
        publish(client, topics.readings_topic("bounds", gw), bytes(flipped))
        publish(client, topics.readings_topic("bounds", gw), snb([]))
        publish(client, topics.readings_topic("alerts", gw), orjson.dumps(reading("smoke-b4")))
        publish(client, topics.status_topic("bounds", gw), b'{"state":"online","ts":1}')
        publish(client, topics.status_topic("bounds", gw),
                orjson.dumps({"state": "online", "ts": now, "pad": "x" * 2_000_000}))
        assert listener.wait_for(lambda: len(listener.json("sensing/v1/deadletter/")) >= 7)
        dead = {(t, orjson.loads(p)["code"]) for t, p in listener.messages}
        here = f"sensing/v1/deadletter/bounds/{gw}"
        assert dead == {(here, "name_invalid"), (here, "batch_corrupt"), (here, "batch_empty"),
                        (f"sensing/v1/deadletter/_/{gw}", "area_reserved"),
                        (here, "status_invalid")}
        assert len(listener.messages) == 7
        assert store.settled_count(f'reading_seq{{gateway="{gw}"}}', 4) == 4
        assert core.stats.readings_stored == 4
    listener.close()
    client.loop_stop()


@pytest.mark.e2e
def test_the_longest_line_the_limits_allow_is_stored(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    """The bound on a stored line holds in the real store: the longest reading the limits
    allow is written, not answered with a 400 (issue 11, problem 2's cause)."""
    client = publisher(broker)
    with running_core(broker, store, tmp_path / "core"):
        publish(client, topics.readings_topic("a" * 64, "g" * 64), _longest_reading())
        selector = f'reading_seq{{device="{"d" * MAX_DEVICE_ID}"}}'
        assert store.settled_count(selector, 1) == 1
        fields = store.export(f'{{__name__=~"reading_.*",device="{"d" * MAX_DEVICE_ID}"}}')
        assert len(fields) == MAX_VALUES_PER_READING + 3  # the channels, battery, seq, epoch
    client.loop_stop()


# -- kernels against their references ---------------------------------------------------------


@pytest.mark.kernel
@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 12), max_size=40), st.integers(0, 14), st.integers(1, 5))
def test_values_per_reading_kernels_match_a_count(rows: list[int], n: int, most: int) -> None:
    """Value rows as decoders give them (non-negative; those past `n` count for none)."""
    import numpy as np

    from sensing.kernels.columns import most_values_per_reading, readings_allowed

    value_row = np.array(rows, dtype=np.int32)
    counts = [rows.count(r) for r in range(n)]
    assert most_values_per_reading(value_row, n) == max(counts, default=0)
    m = len(rows)
    ok = readings_allowed(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                          np.zeros(0), np.zeros(m), value_row, 0, 1, most)
    grouped = rows == sorted(rows)  # else: False, to be looked at closely
    assert ok == (grouped and all(rows.count(r) <= most for r in rows))


def test_new_gateways_beyond_the_bound_are_dead_lettered(pipe: Pipeline,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import sensing.pipeline

    monkeypatch.setattr(sensing.pipeline, "MAX_GATEWAYS", 2)
    codes = []
    for k, gw in enumerate(["gw-1", "gw-2", "gw-3", "gw-1"]):
        out = pipe.process([Incoming(topics.readings_topic("area-1", gw),
                                     orjson.dumps(reading(f"smoke-{gw}", k + 1)), k + 1, 1, 0)],
                           NOW)
        codes.append([d["code"] for _, d in _dead(out.publish)])
    assert codes == [[], [], ["too_many_gateways"], []]
    assert pipe.stats.readings_stored == 3 and len(pipe.registry.gateways) == 2


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([b"SNB1", b"SNB2", b"[", b"{", b""]), st.binary(max_size=200),
       st.booleans())
def test_any_payload_decodes_or_raises_a_wire_error_with_a_code(
    magic: bytes, rest: bytes, valid_header: bool
) -> None:
    payload = magic + rest
    if valid_header and magic in (b"SNB1", b"SNB2") and len(rest) >= 20:
        # a header that adds up, with random tables and columns behind it
        n_read, n_val = rest[0] % 4, rest[1] % 6
        tables_len = 8 * (rest[2] % 4)
        body = bytes(rest[20:]) + bytes(tables_len + 30 * n_read + 14 * n_val)
        body = body[: tables_len + 30 * n_read + 14 * n_val]
        version = 2 if magic == b"SNB2" else 1
        head = snb1.HEADER.pack(magic, version, 0, rest[3] % 3, rest[4] % 3, 0, n_read, n_val,
                                tables_len)
        payload = snb1.with_checksum(head + body, version)
    try:
        d = decode_readings(payload, "gw", "a", LIMIT, now_ms=NOW)
    except WireError as exc:
        assert exc.code in CODES
    else:
        assert len(d.batch) > 0 and all(code in CODES for _, _, code in d.rejected)


# -- adversarial review of issue 11: channel collisions, numbers beyond a float -----------


@given(st.lists(st.one_of(channel_names, st.sampled_from(
    ["seq", "epoch", "battery", "ch_seq", "ch_epoch", "ch_battery", "ch_ch_seq", "ch_"])),
    min_size=2, max_size=12, unique=True))
def test_no_two_channels_the_wire_accepts_share_a_stored_field(names: list[str]) -> None:
    """Review finding 19: channels `seq` and `ch_seq` were both stored as the field `ch_seq`,
    one value lost without a dead letter."""
    from sensing.store.lineprotocol import field_key

    accepted = [n for n in names if is_channel_name(n)]
    keys = [field_key(n) for n in accepted]
    assert len(set(keys)) == len(keys)
    assert not {"seq", "epoch", "battery"} & set(keys)


def test_a_channel_named_like_a_renamed_field_is_refused_not_stored_over_another(
    pipe: Pipeline
) -> None:
    """Review finding 19 through the pipeline (r15_channel_collision.py): the reading naming
    `ch_seq` beside `seq` is dead-lettered; `seq` alone is stored as `ch_seq`, once."""
    payload = orjson.dumps([
        reading(seq=1, values={"seq": 5.5, "ch_seq": 7.5}),
        reading(seq=2, values={"battery": 0.2, "ch_battery": 0.9}),
        reading(seq=3, values={"seq": 5.5, "epoch": 1.25, "battery": 0.25}),
        reading(seq=4, values={"ch_epoch": 2.25})])
    out = pipe.process([Incoming(topics.readings_topic("area-1", "gw-1"), payload, 1, 1, 0)],
                       NOW)
    ((_, dead),) = _dead(out.publish)
    assert dead["code"] == "name_invalid"
    reason = str(dead["reason"])
    assert all(f"reading[{i}]" in reason for i in (0, 1, 3)) and "reading[2]" not in reason
    assert "'ch_seq' is reserved" in reason
    lines = [x for x in _lines(out.lines).split(b"\n") if x.startswith(b"reading,")]
    assert len(lines) == 1 and pipe.stats.readings_stored == 1
    keys = [f.split(b"=")[0] for f in lines[0].split(b" ")[1].split(b",")]
    assert sorted(keys) == [b"ch_battery", b"ch_epoch", b"ch_seq", b"epoch", b"seq"]  # no battery
    assert b"ch_seq=5.5" in lines[0] and b"ch_battery=0.25" in lines[0]
    assert code_of(snb([("smoke-1", 1, NOW, {"ch_epoch": 1.0})])) == "name_invalid"


_BEYOND_FLOAT = [b"1e309", b"-1e309", b"1" + b"0" * 400, b"-" + b"9" * 400, b"1" * 100_000,
                 b"1E99999999999999999999"]


@pytest.mark.parametrize("number", _BEYOND_FLOAT, ids=lambda n: n[:12].decode())
def test_a_number_beyond_a_float_refuses_its_reading_not_the_array(number: bytes) -> None:
    """Review finding 20 (r06_wire_oddities.py): orjson refused the whole document for one
    `1e309` (`json_malformed`), losing the array's good readings."""
    good = orjson.dumps(reading(seq=1))
    bad_value = b'{"device":"smoke-2","kind":"smoke","seq":1,"ts":%d,"values":{"x":%s}}' % (
        NOW, number)
    bad_battery = orjson.dumps(reading(device="smoke-3"))[:-1] + b',"battery":%s}' % number
    bad_seq = b'{"device":"smoke-4","kind":"smoke","seq":%s,"ts":%d,"values":{}}' % (number, NOW)
    d = decode_readings(b"[%s,%s,%s,%s]" % (good, bad_value, bad_battery, bad_seq), "gw", "a",
                        LIMIT, now_ms=NOW)
    assert d.batch.devices[:1] == ("smoke-1",) and len(d.batch) == 1
    assert [(i, c) for i, _, c in d.rejected] == [
        (1, "value_invalid"), (2, "battery_out_of_range"), (3, "field_type")]
    assert code_of(bad_value) == "value_invalid"


@pytest.mark.parametrize(("tail", "code"), [
    (b"NaN", "json_malformed"),  # not JSON, for either parser
    (b"-Infinity", "json_malformed"),
    (b'"\\ud800"', "json_malformed"),  # a lone surrogate: orjson refuses it, so must we
    (b'"\\ud83d\\ude00"', "value_invalid"),  # a pair is fine (the reading has the 1e309)
    (b"[" * 5000 + b"]" * 5000, "json_malformed"),  # deeper than the stack: RecursionError
    (b"[" * 500 + b"]" * 500, "value_invalid"),
])
def test_the_fallback_parser_refuses_what_orjson_refuses(tail: bytes, code: str) -> None:
    """The stdlib parser reads a document with a number beyond a float, and nothing more
    than orjson would: each of these follows a reading with `1e309`."""
    payload = b'[{"device":"d-1","kind":"smoke","seq":1,"ts":%d,"values":{"x":1e309}},%s]' % (
        NOW, tail)
    assert code_of(payload) == code
    assert code_of(b"\xef\xbb\xbf" + payload) == "json_malformed"  # a BOM, as orjson


def test_a_deeply_nested_gateway_or_area_is_a_mismatch_not_a_crash() -> None:
    """The reason quoted `str()` of the field: a 1,000-deep array (orjson reads 1,024) made
    that a RecursionError, not a WireError."""
    deep = b"[" * 1020 + b"]" * 1020
    for field in (b"gateway", b"area"):
        payload = b'{"%s":%s,"device":"d","kind":"smoke","seq":1,"ts":%d,"values":{}}' % (
            field, deep, NOW)
        assert code_of(payload) == "gateway_mismatch"


_NUMBERS_NOT_JSON = ["NaN", "Infinity", "01", "1."]
_HOSTILE_NUMBERS = st.sampled_from(4 * [
    "1e309", "-1e309", "1" + "0" * 400, "-" + "9" * 30, "1e-400", "-0", "-0.0",
    "18446744073709551616", "18446744073709551615", "9223372036854775808",
    "-9223372036854775809", "1" * 5000, "0.5", "1", "2e0", str(NOW), "4102444800000",
] + _NUMBERS_NOT_JSON)  # mostly JSON: a document is refused whole for one that is not
_HOSTILE_STRINGS = st.sampled_from(4 * [
    '"d-1"', '"smoke"', '"gw"', '"a"', '""', '"\\ud83d\\ude00"', '"ch_seq"',
    '"2026-12-07T13:00:00+23:59"', '"0001-01-01T00:00:00+23:59"', '"a\\nb"', '"caf\\u00e9"',
    "null", "true", "false"] + ['"\\ud800"', '"\\udc00x"'])  # lone surrogates: not JSON
_JSON_KEYS = st.sampled_from(["device", "kind", "seq", "epoch", "ts", "values", "battery",
                              "gateway", "area", "seq", "ch_seq", "x", ""])


def _json_object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{orjson.dumps(k).decode()}:{v}" for k, v in pairs) + "}"


_deep_arrays = st.sampled_from([2, 900, 990, 1000, 1010, 1015, 1018, 1020, 3000]).map(
    lambda n: "[" * n + "1" + "]" * n)
"""around orjson's depth limit (1,024) and Python's recursion limit (1,000)"""
_json_values = st.recursive(
    st.one_of(_HOSTILE_NUMBERS, _HOSTILE_STRINGS,
              st.text(max_size=8).map(json.dumps),  # escapes surrogates as \\udXXX
              _deep_arrays),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(_JSON_KEYS, inner), max_size=6).map(_json_object)),
    max_leaves=4)


@st.composite
def _hostile_readings(draw: st.DrawFn) -> bytes:
    """Reading-shaped JSON with hostile field values (numbers beyond a float, NaN, lone
    surrogates, deep arrays, odd strings), sometimes broken at the edges."""
    items = []
    for _ in range(draw(st.integers(1, 3))):
        fields = {"device": '"d-1"', "kind": '"smoke"', "seq": "1", "ts": str(NOW),
                  "values": '{"x":1}'}
        for key in draw(st.lists(_JSON_KEYS, max_size=2)):
            fields[key] = draw(_json_values)
        if draw(st.booleans()):
            fields["values"] = _json_object(draw(st.lists(
                st.tuples(st.sampled_from(["x", "seq", "ch_seq", "ch_battery", "a b", ""]),
                          _json_values), max_size=4)))
        items.append(_json_object(list(fields.items())))
    text = "[" + ",".join(items) + "]" if len(items) > 1 or draw(st.booleans()) else items[0]
    raw = text.encode()
    edge = draw(st.sampled_from(6 * [b""] + [b"\xef\xbb\xbf", b"\xff", b" ", b"\x00"]))
    return edge + raw if draw(st.booleans()) else raw + edge


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_hostile_readings())
def test_hostile_json_decodes_or_raises_a_wire_error_only(payload: bytes) -> None:
    """Review finding 20 and its kin: no OverflowError, RecursionError, UnicodeError or
    ValueError out of the JSON path, whatever the numbers, strings and nesting."""
    try:
        d = decode_readings(payload, "gw", "a", LIMIT, now_ms=NOW)
    except WireError as exc:
        assert exc.code in CODES
    else:
        assert len(d.batch) > 0 and all(code in CODES for _, _, code in d.rejected)
        assert bool(np.isfinite(d.batch.value).all())
        assert all(is_channel_name(c) for c in d.batch.channels)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["device", "kind", "seq", "epoch", "ts", "values", "battery", "gateway",
                        "area"]), st.one_of(_json_values, _deep_arrays), st.booleans())
@example("gateway", "[" * 1010 + "1" + "]" * 1010, False)  # RecursionError once
@example("area", "[" * 1000 + "1" + "]" * 1000, False)
@example("x", "1" + "0" * 400, True)  # the whole array refused once
@example("battery", "-1e309", False)
def test_one_hostile_field_beside_a_good_reading_is_refused_alone_or_whole(
    key: str, value: str, in_values: bool
) -> None:
    """One field (or channel value) of one reading hostile, the other reading good: the good
    one is kept unless the document is no JSON at all (`json_malformed`, only for what is not
    JSON or nested deeper than orjson's 1,024 levels). Hypothesis raises the recursion limit
    while it runs, so the RecursionError of a deep gateway is the test above's."""
    fields = {"device": '"d-1"', "kind": '"smoke"', "seq": "1", "ts": str(NOW),
              "values": '{"x":1}'}
    if in_values:
        fields["values"] = _json_object([(key, value)])
    else:
        fields[key] = value
    payload = b"[%s,%s]" % (orjson.dumps(reading(device="good-1")),
                            _json_object(list(fields.items())).encode())
    try:
        d = decode_readings(payload, "gw", "a", LIMIT, now_ms=NOW)
    except WireError as exc:
        assert exc.code == "json_malformed"
        assert any(token in value for token in (*_NUMBERS_NOT_JSON, "\\ud800", "\\udc00",
                                                 "[" * 1000)), value[:80]
    else:
        assert d.batch.devices[0] == "good-1" and d.batch.device[0] == 0
        assert len(d.batch) + len(d.rejected) == 2
        assert bool(np.isfinite(d.batch.value).all())


_HOSTILE_NAMES = st.sampled_from([b"ch_seq", b"\xed\xa0\x80AA", b"\xff\xfe\xfdAAA",
                                  b"a\nbcd_", b"caf\xc3\xa9", b"seq\x00\x00\x00", b"ok-ok!"])
_HOSTILE_FLOATS = st.sampled_from([math.inf, -math.inf, math.nan, 1e308, -0.0, 5e-324, 1.0])


@settings(max_examples=300, deadline=None)
@given(_HOSTILE_NAMES, _HOSTILE_NAMES, _HOSTILE_FLOATS, _HOSTILE_FLOATS,
       st.sampled_from([0, 1, 2**40, 2**63 - 1]), st.sampled_from([1, 2]))
def test_hostile_snb_names_and_numbers_decode_or_raise_a_wire_error_only(
    device: bytes, channel: bytes, value: float, battery: float, seq: int, version: int
) -> None:
    """SNB with a channel and device name swapped for hostile bytes of the same length
    (non-UTF-8, an encoded surrogate, a renamed field) and hostile numbers, checksum right."""
    payload = snb1.encode_readings([("dev-ok", "smoke", seq % 2**31, seq, NOW,
                                     {"chn-ok": value, "co_ppm": 1.0}, battery),
                                    ("smoke-2", "smoke", 0, 1, NOW, {"co_ppm": 1.0}, None)],
                                   version)
    body = payload[:-4] if version == 2 else payload
    body = body.replace(b"dev-ok", device[:6].ljust(6, b"_")).replace(
        b"chn-ok", channel[:6].ljust(6, b"_"))
    try:
        d = decode_readings(snb1.with_checksum(body, version), "gw", "a", LIMIT, now_ms=NOW)
    except WireError as exc:
        assert exc.code in CODES
    else:
        assert d.batch.devices[-1:] == ("smoke-2",) or "smoke-2" in d.batch.devices
        assert bool(np.isfinite(d.batch.value).all())
        assert all(is_channel_name(c) for c in d.batch.channels)


def test_a_bad_name_no_reading_uses_never_reaches_the_registry(pipe: Pipeline) -> None:
    """The 30,000-input fuzz run (seed 5): an SNB table listing a channel `accel\\x03g` that no
    value used refused no reading, so the name reached the registry, and from then on every
    step failed to format it: every message of every step was dead-lettered `internal_error`
    (5,820 of 30,400 good readings stored). Unused bad names are now cut from the tables."""
    now = int(time.time() * 1000)
    b = BatchBuilder()
    b.add("smoke-unused-1", "smoke", 0, 1, now, {"obscuration": 0.1}, 0.9)
    good = b.build()
    hostile = dataclasses.replace(good, channels=(*good.channels, "accel\x03g"),
                                  devices=(*good.devices, "bad\x03id"),
                                  kinds=(*good.kinds, "smoke"))
    topic = topics.readings_topic("area-1", "gw-unused")
    pipe.process([Incoming(topic, binary.encode(hostile), 1, 1, 0)], now)
    assert "accel\x03g" not in pipe.registry.channels.index
    assert "bad\x03id" not in pipe.registry.devices.index
    b2 = BatchBuilder()
    b2.add("smoke-unused-1", "smoke", 0, 2, now + 1000, {"obscuration": 0.1}, 0.9)
    out = pipe.process([Incoming(topic, binary.encode(b2.build()), 2, 1, 0)], now + 1000)
    assert not [p for t, p in out.messages if b"internal_error" in p]
    assert pipe.stats.readings_stored == 2
