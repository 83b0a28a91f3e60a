"""The JSON fast lane (scan_json) against the codec it stands in for: a message it takes gives
exactly what `json_codec.decode` gives; the forms the project's own senders write are taken."""

from __future__ import annotations

import math
import string
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba.core import config

from sensing.kernels import jsonscan
from sensing.kernels.jsonnumber import read_number, to_float
from sensing.kernels.spans import span_bytes
from sensing.wire import json_codec
from sensing.wire.errors import Code
from sensing.wire.json_columns import (
    JsonColumns,
    ScanStatus,
    name_hash,
    pack_payloads,
    scan_json,
)
from sensing.wire.kinds import KINDS
from sensing.wire.limits import (
    MAX_CHANNELS_PER_MESSAGE,
    MAX_DEVICES_PER_MESSAGE,
    MAX_VALUES_PER_READING,
)

pytestmark = pytest.mark.kernel

GATEWAY, AREA = "gw-1", "area-1"
TS = 1_795_478_819_832
FEW = 25 if config.DISABLE_JIT else 100  # type: ignore[attr-defined]  # examples: the kernel as Python is slow
Canon = tuple[str, str, int, int, int, tuple[tuple[str, str], ...], str | None]
"""(device, kind, epoch, seq, ts, ((channel, value as float.hex), ...), battery as hex)"""


# --- what the codec gives, and what the lane gives -----------------------------------------

def canon(reading: dict[str, Any]) -> Canon:
    values = tuple((k, float(v).hex()) for k, v in reading["values"].items())
    battery = reading.get("battery")
    return (reading["device"], reading["kind"], reading["epoch"], reading["seq"], reading["ts"],
            values, None if battery is None else float(battery).hex())


def lane_readings(cols: JsonColumns, m: int) -> list[Canon]:
    out = []
    for i in range(int(cols.message_start[m]), int(cols.message_stop[m])):
        assert cols.reading_message[i] == m
        values = []
        for j in range(int(cols.value_start[i]), int(cols.value_stop[i])):
            assert cols.value_reading[j] == i
            name = cols.text(int(cols.channel_start[j]), int(cols.channel_end[j]))
            assert cols.channel_hash[j] == name_hash(name.encode())
            values.append((name, float(cols.value[j]).hex()))
        device = cols.text(int(cols.device_start[i]), int(cols.device_end[i]))
        kind = cols.text(int(cols.kind_start[i]), int(cols.kind_end[i]))
        assert cols.device_hash[i] == name_hash(device.encode())
        assert cols.kind_hash[i] == name_hash(kind.encode())
        battery = float(cols.battery[i])
        out.append((device, kind, int(cols.epoch[i]), int(cols.seq[i]), int(cols.ts[i]),
                    tuple(values), None if math.isnan(battery) else battery.hex()))
    return out


def foreign(cols: JsonColumns, i: int) -> bool:
    """Whether reading i speaks for another gateway or area than the topic's (the caller's
    check on the spans)."""
    for start, end, own in ((cols.gateway_start[i], cols.gateway_end[i], GATEWAY),
                            (cols.area_start[i], cols.area_end[i], AREA)):
        if start >= 0 and cols.text(int(start), int(end)) != own:
            return True
    return False


def check_message(cols: JsonColumns, m: int, payload: bytes) -> None:
    """OK: the codec decodes `payload` to the same readings in the same order, refusing only
    those whose gateway or area is not the topic's. Else: no readings."""
    if cols.status[m] != ScanStatus.OK:
        assert cols.message_start[m] == cols.message_stop[m]
        return
    batch, kept, rejected = json_codec.decode(payload, GATEWAY, AREA)
    lane = lane_readings(cols, m)
    first = int(cols.message_start[m])
    mismatched = [i for i in range(len(lane)) if foreign(cols, first + i)]
    assert [i for i, _, _ in rejected] == mismatched
    assert all(code == Code.GATEWAY_MISMATCH for _, _, code in rejected)
    assert kept == [i for i in range(len(lane)) if i not in mismatched]
    # the codec's batch gives a device the kind of its first (kept) reading in the message
    first_kind: dict[str, str] = {}
    want = [(d, first_kind.setdefault(d, k), *rest) for d, k, *rest in (lane[i] for i in kept)]
    assert [canon(r) for r in batch.readings()] == want


def check_payloads(payloads: Sequence[bytes], around: Sequence[tuple[bytes, bytes]] = ()
                   ) -> JsonColumns:
    """Scan the payloads as spans of one buffer, each between the bytes `around` gives it
    (garbage, or what would continue it), and check every message."""
    parts, starts, ends, at = [], [], [], 0
    for k, p in enumerate(payloads):
        before, after = around[k] if k < len(around) else (b"", b"")
        parts += [before, p, after]
        starts.append(at + len(before))
        ends.append(at + len(before) + len(p))
        at += len(before) + len(p) + len(after)
    buf = np.frombuffer(b"".join(parts), dtype=np.uint8)
    cols = scan_json(buf, np.array(starts, np.int64), np.array(ends, np.int64))
    assert cols.n_messages == len(payloads)
    for m, p in enumerate(payloads):
        check_message(cols, m, p)
    assert cols.n_readings == sum(int(cols.message_stop[m] - cols.message_start[m])
                                  for m in range(len(payloads)))
    return cols


# --- payloads ------------------------------------------------------------------------------

names = st.text(string.ascii_letters + string.digits + "_.-:", min_size=1, max_size=16)
spaces = st.sampled_from(["", "", "", " ", "\n", "\t", "\r\n  ", "  "])
KNOWN = {"device", "kind", "gateway", "area", "epoch", "seq", "ts", "values", "battery"}


digits = st.text("0123456789", min_size=1, max_size=22)
short_digits = st.text("0123456789", min_size=1, max_size=6)


@st.composite
def number_texts(draw: st.DrawFn) -> str:
    """A JSON number in any of its forms; mostly ones the lane reads exactly."""
    form = draw(st.integers(0, 9))
    if form == 0:
        return repr(draw(st.floats(allow_nan=False, allow_infinity=False)))
    if form <= 3:
        return repr(draw(st.floats(-1e6, 1e6)))
    if form == 4:
        return str(draw(st.integers(-(10**20), 10**20)))
    if form == 5:
        return str(draw(st.integers(-1000, 1000)))
    wide = form == 6
    sign = draw(st.sampled_from(["", "-"]))
    whole = draw(st.sampled_from(["0", str(draw(st.integers(1, 10**20 if wide else 10**6)))]))
    frac = draw(st.sampled_from(["", ".0", ".5", "." + draw(digits if wide else short_digits)]))
    exp = draw(st.sampled_from(["", "e0", "E+2", "e-5", draw(st.sampled_from("eE"))
                                + draw(st.sampled_from(["", "+", "-"]))
                                + draw(digits)[:3 if wide else 1]]))
    return sign + whole + frac + exp


def int_texts() -> st.SearchStrategy[str]:
    """Integers of the 64-bit range mostly; sometimes beyond, or not integers."""
    return st.one_of(
        st.integers(0, 2**63 - 1).map(str), st.integers(0, 10**6).map(str),
        st.integers(-(2**63), 2**63 - 1).map(str), st.integers(0, 2**63 - 1).map(str),
        st.integers(-(2**64), 2**64).map(str),
        st.sampled_from(["-0", "0", "1.0", "1e3", "true", "null", '"7"', "99e99",
                         "123456789012345678901234567890"]))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
    | st.text(string.ascii_letters, max_size=8) | st.text(string.printable, max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6)


def obj(draw: st.DrawFn, fields: list[tuple[str, str]]) -> str:
    members = [f'{draw(spaces)}"{k}"{draw(spaces)}:{draw(spaces)}{v}{draw(spaces)}'
               for k, v in fields]
    return "{" + ",".join(members) + draw(spaces) + "}"


@st.composite
def reading_texts(draw: st.DrawFn, varied: bool = True) -> str:
    """A reading object as text: the contract's fields in any order and form, sometimes with
    unknown keys, absent optional fields, a foreign gateway or area, or a wrong type."""
    values = draw(st.lists(st.tuples(names, number_texts()), max_size=6,
                           unique_by=lambda kv: kv[0]))
    odd = varied and draw(st.integers(0, 4)) == 0  # seq and epoch in odd forms
    fields = [("device", f'"{draw(names)}"'),
              ("kind", f'"{draw(st.sampled_from(KINDS) | names)}"'),
              ("seq", draw(int_texts()) if odd else str(draw(st.integers(0, 2**63 - 1)))),
              ("ts", str(draw(st.integers(0, 2 * TS)))),
              ("values", obj(draw, values))]
    if draw(st.booleans()):
        fields.append(("epoch", draw(int_texts()) if odd else str(draw(st.integers(0, 9)))))
    battery = draw(st.sampled_from(["absent", "null", "number"]))
    if battery != "absent":
        fields.append(("battery", "null" if battery == "null" else draw(number_texts())))
    if varied:
        for key, own in (("gateway", GATEWAY), ("area", AREA)):
            if draw(st.integers(0, 3)) == 0:
                fields.append((key, f'"{draw(st.sampled_from([own, own, "other"]))}"'))
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
            key = draw(names.filter(lambda k: k not in KNOWN))
            fields.append((key, orjson.dumps(draw(json_values)).decode()))
        if draw(st.integers(0, 19)) == 0:  # a field of the wrong type, or missing
            k = draw(st.integers(0, len(fields) - 1))
            fields[k] = (fields[k][0], draw(st.sampled_from(["null", "[]", "{}", '"x"', "1.5"])))
        if draw(st.integers(0, 19)) == 0:
            del fields[draw(st.integers(0, len(fields) - 1))]
        if draw(st.integers(0, 29)) == 0:  # a ts as RFC 3339
            fields.append(("ts", '"2026-12-07T12:00:00Z"'))
    fields = draw(st.permutations(fields))
    return obj(draw, fields)


@st.composite
def payloads(draw: st.DrawFn, varied: bool = True) -> bytes:
    items = draw(st.lists(reading_texts(varied), min_size=1, max_size=4))
    if len(items) == 1 and draw(st.booleans()):
        text = items[0]
    else:
        text = "[" + ",".join(draw(spaces) + r + draw(spaces) for r in items) + "]"
    return (draw(spaces) + text + draw(spaces)).encode()


@st.composite
def hostile_payloads(draw: st.DrawFn) -> bytes:
    """Broken or odd payloads: cut, bytes changed, added or removed, escapes, non-ASCII,
    deep nesting, huge numbers, random bytes."""
    base = draw(payloads())
    how = draw(st.integers(0, 7))
    i = draw(st.integers(0, len(base)))
    if how == 0:
        return base[:i]
    if how == 1:
        return base[:i] + bytes([draw(st.integers(0, 255))]) + base[i:]
    if how == 2:
        return base[:i] + base[i + 1:]
    if how == 3:
        return base[:i] + bytes([draw(st.integers(0, 255))]) + base[i + 1:]
    if how == 4:
        swap = draw(st.sampled_from([b"\\u0041", b"\\n", "é".encode(), b"\xff", b"\x00",
                                     b"\\\"", b'"', b"}", b"]", b",", b":"]))
        return base[:i] + swap + base[i:]
    if how == 5:
        depth = draw(st.sampled_from([1, 31, 32, 33, 64, 1100]))
        nest = "[" * depth + "]" * depth
        return (f'{{"x":{nest},"device":"d","kind":"smoke","seq":1,"ts":{TS},"values":{{}}}}'
                .encode())
    if how == 6:
        big = draw(st.sampled_from(["1" * 400, "1e400", "-1e-400", "1e309", "2e-324",
                                    "9" * 19, "18446744073709551616", "-9223372036854775809"]))
        fields = {"device": '"d"', "kind": '"smoke"', "seq": "1", "ts": str(TS),
                  "values": '{"v":1}'}
        field = draw(st.sampled_from(["seq", "ts", "epoch", "battery", "values", "x"]))
        fields[field] = f'{{"v":{big}}}' if field == "values" else big
        return ("{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}").encode()
    return draw(st.binary(max_size=60))


garbage = st.tuples(st.binary(max_size=8), st.sampled_from(
    [b"", b"}", b"]", b',"x":1}', b"0", b'"', b"e5", b".5", b"\xff"]) | st.binary(max_size=8))


# --- properties ----------------------------------------------------------------------------

@settings(max_examples=FEW * 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payloads(), min_size=1, max_size=4), st.lists(garbage, max_size=4))
def test_a_message_taken_decodes_as_the_codec_decodes_it(
        messages: list[bytes], around: list[tuple[bytes, bytes]]) -> None:
    check_payloads(messages, around)


@settings(max_examples=FEW * 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_payloads(), min_size=1, max_size=4), st.lists(garbage, max_size=4))
def test_hostile_bytes_never_give_a_reading_the_codec_would_not(
        messages: list[bytes], around: list[tuple[bytes, bytes]]) -> None:
    check_payloads(messages, around)


@settings(max_examples=FEW, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(), st.data())
def test_the_lane_reads_nothing_beyond_a_span(payload: bytes, data: st.DataObject) -> None:
    """A span cut short of its payload, the rest of the payload just after it in the
    buffer: the lane reads the cut message (which is never the whole reading), and alone in a
    buffer of its exact size (where reading on would fail under NUMBA_DISABLE_JIT) the same."""
    cut = data.draw(st.integers(0, len(payload) - 1))
    head, tail = payload[:cut], payload[cut:]
    cols = check_payloads([head], [(b"", tail)])
    alone = scan_json(np.frombuffer(head, np.uint8).copy(), np.array([0]), np.array([cut]))
    assert alone.status[0] == cols.status[0]
    assert lane_readings(alone, 0) == lane_readings(cols, 0)


@settings(max_examples=FEW * 3, deadline=None)
@given(number_texts())
def test_numbers_read_as_orjson_reads_them(text: str) -> None:
    payload = (f'{{"device":"d","kind":"smoke","seq":1,"ts":{TS},"values":{{"v":{text}}},'
               f'"battery":{text}}}').encode()
    cols = check_payloads([payload])
    digits = text.removeprefix("-")
    if digits.isdigit() and int(digits) < 2**63:  # an integer of 64 bits: always taken
        assert cols.status[0] == ScanStatus.OK, text


@settings(max_examples=FEW * 10, deadline=None)
@given(number_texts() | st.floats(allow_nan=False, allow_infinity=False).map(repr)
       | st.floats(-1e9, 1e9).map(repr))
def test_a_number_converts_to_the_double_python_reads(text: str) -> None:
    """The kernel's own reading of a number, beside the codec: valid JSON numbers, and of
    those it calls exact, the same bits as Python's float() of the text (of int() for an
    integer, as orjson gives one)."""
    buf = np.frombuffer(text.encode(), np.uint8)
    valid, end, integer, negative, significand, exponent, dropped = read_number(buf, 0, len(buf))
    assert valid and end == len(buf)
    exact, x = to_float(integer, negative, significand, exponent, dropped)
    if exact:
        assert x.hex() == (float(int(text)) if integer else float(text)).hex()
    if integer and not dropped:
        assert (-significand if negative else significand) == int(text)


@settings(max_examples=FEW * 10, deadline=None)
@given(number_texts() | st.text("0123456789-+.eE", max_size=24), st.text(",}] x\"", max_size=2))
def test_the_lanes_own_number_reading_is_read_numbers(text: str, after: str) -> None:
    """`_number` reads the common forms itself and leaves the rest to read_number: the same
    result for any bytes, valid or not, and however the span ends."""
    buf = np.frombuffer((text + after).encode(), np.uint8)
    for end in (len(text), len(buf)):
        if end:  # positions as the kernel has them: np.int64 under NUMBA_DISABLE_JIT
            span = np.array([0, end], np.int64)
            got = jsonscan._number(buf, span[0], span[1])
            assert got == read_number(buf, span[0], span[1]), (text, after)
            assert all(type(x) in (bool, int) for x in got[2:]), got  # not np.int64, which
            # math.ldexp refuses


@settings(max_examples=FEW * 5, deadline=None)
@given(st.sampled_from(sorted(KNOWN)) | names | st.text(max_size=9),
       st.sampled_from(['"', '"', '":1', '" : 1', 'x"', '\\"', ""]))
def test_a_key_read_as_a_word_is_the_key_read_byte_by_byte(key: str, after: str) -> None:
    """`_known_key` takes the reading object's own keys, whole and closed, and leaves every
    other key to the byte-by-byte path, at any distance from the span's end."""
    raw = ('"' + key + after).encode()
    buf = np.frombuffer(raw, np.uint8)
    for end in range(1, len(buf) + 1):
        field, after_key = jsonscan._known_key(buf, 0, end)
        code, close = jsonscan._string_end(buf, 0, end)
        slow = jsonscan._key_field(buf, 1, close) if code == jsonscan.OK else 0
        if field:
            assert field == slow and after_key == close + 1, (raw, end)
        else:
            assert after_key == 0
            assert not slow or end < 9, (raw, end)  # near the end: byte by byte


@pytest.mark.parametrize("text", [
    "0", "-0", "0.0", "-0.0", "-0e5", "0e999", "1e22", "1e23", "1E+22", "1e-22", "1.5e-23",
    "9007199254740992", "9007199254740993", "9007199254740993.0", "9007199254740995.0",
    "0.30000000000000004", "0.1", "22.5", "1.7976931348623157e308", "1.7976931348623159e308",
    "2.2250738585072014e-308", "2.2250738585072011e-308", "5e-324", "1e-400", "1e400",
    "123456789012345678", "1234567890123456789", "-9223372036854775808",
    "9223372036854775807", "2.4703282292062328e-324", "8.988465674311579e307",
    "4.4501477170144023e-308", "0.000000000000000000000000000001", "100000000000000000000e-20"])
def test_edge_numbers_read_as_orjson_reads_them(text: str) -> None:
    for field in ("values", "seq", "battery"):
        value = f'{{"v":{text}}}' if field == "values" else text
        rest = {"values": f'"seq":1,"ts":{TS}', "seq": f'"ts":{TS},"values":{{}}',
                "battery": f'"seq":1,"ts":{TS},"values":{{}}'}[field]
        check_payloads([f'{{"device":"d","kind":"smoke",{rest},"{field}":{value}}}'.encode()])


# --- the project's own senders are taken -----------------------------------------------------

sensor_floats = st.floats(-1e9, 1e9).filter(lambda x: x == 0.0 or abs(x) > 1e-250)
sensor_readings = st.fixed_dictionaries({
    "device": st.text(string.ascii_letters + string.digits + "_.:-", min_size=1, max_size=40),
    "kind": st.sampled_from(KINDS),
    "seq": st.integers(0, 2**63 - 1),
    "epoch": st.integers(0, 2**32 - 1),
    "ts": st.integers(946_684_800_000, 4_102_444_800_000),
    "values": st.dictionaries(st.text(string.ascii_letters + string.digits + "_.-", min_size=1,
                                      max_size=20),
                              sensor_floats, max_size=8),
}, optional={"battery": st.floats(0.0, 1.0).filter(lambda x: x == 0.0 or x > 1e-250)})


@settings(max_examples=FEW, deadline=None)
@given(st.lists(st.lists(sensor_readings, min_size=1, max_size=20), min_size=1, max_size=5),
       st.booleans())
def test_json_codec_encode_of_readings_is_taken(batches: list[list[dict[str, Any]]],
                                                single: bool) -> None:
    messages = [orjson.dumps(b[0]) if single else json_codec.encode(b) for b in batches]
    cols = check_payloads(messages)
    assert (cols.status == ScanStatus.OK).all()


def test_the_edge_agents_json_batches_are_taken() -> None:
    from sensing_edge.batching import NumberedSample, encode_batch
    from sensing_edge.drivers import SensorSample

    rng = np.random.default_rng(3)
    samples = [NumberedSample(SensorSample(f"smoke-{i:06d}", "smoke", TS + i,
                                           {"obscuration": float(rng.uniform(0, 0.3)),
                                            "temp_c": float(rng.normal(21, 2)), "co_ppm": 1.0},
                                           None if i % 3 else float(rng.uniform())), i % 4, i)
               for i in range(300)]
    messages = [encode_batch(samples[i:i + 100], "json") for i in range(0, 300, 100)]
    messages += [encode_batch(samples[i:i + 1], "json") for i in range(20)]
    cols = check_payloads(messages)
    assert (cols.status == ScanStatus.OK).all()
    assert cols.n_readings == 320


def test_the_pipeline_benchmarks_json_messages_are_taken() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_pipeline import make_messages  # type: ignore[import-not-found]

    messages = [m.payload for m in make_messages(1000, 3000, "json")]
    cols = check_payloads(messages)
    assert (cols.status == ScanStatus.OK).all()
    assert cols.n_readings == 3000


def test_the_simulators_json_faults_are_taken_or_left_as_they_should_be() -> None:
    from sensing_sim.faults import MALFORMED_REASONS, malformed_payload

    messages = [malformed_payload(r, 7, TS, "gw-other") for r in MALFORMED_REASONS]
    cols = check_payloads(messages)
    status = dict(zip(MALFORMED_REASONS, cols.status.tolist(), strict=True))
    # a good reading padded with a 2 MB unknown field, and one for another gateway: the lane
    # reads both (the caller bounds payload sizes and compares the gateway's span)
    assert status.pop("oversize") == status.pop("foreign_gateway") == ScanStatus.OK
    assert all(s != ScanStatus.OK for s in status.values()), status
    foreign_reading = int(cols.message_start[MALFORMED_REASONS.index("foreign_gateway")])
    assert foreign(cols, foreign_reading)


# --- limits and edges ------------------------------------------------------------------------

def reading(values: str = '"v":1', extra: str = "") -> str:
    return f'{{"device":"d","kind":"smoke","seq":1,"ts":{TS},"values":{{{values}}}{extra}}}'


@pytest.mark.parametrize(("payload", "status"), [
    ("[]", ScanStatus.EMPTY), (" [ ] ", ScanStatus.EMPTY), ("", ScanStatus.SYNTAX),
    ("   ", ScanStatus.SYNTAX), ("7", ScanStatus.FIELD), ("[7]", ScanStatus.FIELD),
    ("null", ScanStatus.FIELD), ("{}", ScanStatus.FIELD), (reading() + "x", ScanStatus.SYNTAX),
    (reading() + reading(), ScanStatus.SYNTAX), ("[" + reading() + ",]", ScanStatus.SYNTAX),
    (reading(extra=',"seq":2'), ScanStatus.FIELD), (reading('"v":1,"v":2'), ScanStatus.FIELD),
    (reading(extra=',"ts":"2026-12-07T12:00:00Z"'), ScanStatus.FIELD),
    (reading(extra=',"battery":true'), ScanStatus.FIELD),
    (reading('"v":true'), ScanStatus.FIELD), (reading('"v":"1"'), ScanStatus.FIELD),
    (reading(extra=',"epoch":null'), ScanStatus.FIELD),
    (reading(extra=',"d\\u0065vice":"e"'), ScanStatus.STRING),
    (reading(extra=',"x":"\u00e9"'), ScanStatus.STRING),
    (reading('"v":1e400'), ScanStatus.NUMBER), (reading('"v":01'), ScanStatus.SYNTAX),
    (reading('"v":1.'), ScanStatus.SYNTAX), (reading('"v":.5'), ScanStatus.SYNTAX),
    (reading('"v":-'), ScanStatus.SYNTAX), (reading('"v":+1'), ScanStatus.SYNTAX),
    (reading('"v":NaN'), ScanStatus.SYNTAX), (reading(extra=',"x":tru'), ScanStatus.SYNTAX),
    (reading(extra=',"x":[1,]'), ScanStatus.SYNTAX), (reading(extra=',"x":{"a"}'),
                                                        ScanStatus.SYNTAX),
    ("\ufeff" + reading(), ScanStatus.SYNTAX), ("\x0c" + reading(), ScanStatus.SYNTAX),
    (reading(extra=',"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]'),
     ScanStatus.OK),
    (reading(extra=',"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]'),
     ScanStatus.LIMIT),
])
def test_forms_the_lane_leaves_to_the_codec(payload: str, status: ScanStatus) -> None:
    cols = check_payloads([payload.encode()])
    assert cols.status[0] == status


def test_limits_per_reading_and_per_message() -> None:
    at_most = reading(",".join(f'"c{i}":{i}' for i in range(MAX_VALUES_PER_READING)))
    beyond = reading(",".join(f'"c{i}":{i}' for i in range(MAX_VALUES_PER_READING + 1)))
    # 5 readings of 64 values: 320 values, of 320 channels (beyond the message's 256) or 64
    many = "[" + ",".join(reading(",".join(f'"c{r}_{i}":1' for i in range(64)))
                          for r in range(5)) + "]"
    few = "[" + ",".join(reading(",".join(f'"c{i}":1' for i in range(64)))
                         for _ in range(5)) + "]"
    cut = "[" + ",".join([reading()] * MAX_DEVICES_PER_MESSAGE) + "]"
    over = "[" + ",".join([reading()] * (MAX_DEVICES_PER_MESSAGE + 1)) + "]"
    cols = check_payloads([p.encode() for p in (at_most, beyond, many, few, cut, over)])
    assert cols.status.tolist() == [ScanStatus.OK, ScanStatus.LIMIT, ScanStatus.LIMIT,
                                    ScanStatus.OK, ScanStatus.OK, ScanStatus.LIMIT]
    assert 64 < MAX_CHANNELS_PER_MESSAGE < 320


@pytest.mark.skipif(config.DISABLE_JIT,  # type: ignore[attr-defined]
                    reason="thousands of readings: minutes as Python")
def test_output_grows_for_dense_messages_and_stays_in_order() -> None:
    """Messages far denser than the first estimate of the output's size (values of 6 bytes,
    readings of 60): the pass stops, grows its output and goes on, giving the same readings
    as each message alone."""
    dense = "[" + ",".join(reading(",".join(f'"{c}":{i % 10}' for c in string.ascii_letters))
                           for i in range(200)) + "]"
    small = '{"device":"a","kind":"b","seq":0,"ts":0,"values":{}}'
    messages = [small.encode()] * 50 + [dense.encode()] * 3 + [small.encode()] * 50
    cols = check_payloads(messages)
    assert (cols.status == ScanStatus.OK).all()
    assert cols.n_values == 3 * 200 * 52


def test_spans_must_lie_in_the_buffer() -> None:
    buf, starts, ends = pack_payloads([reading().encode(), b"[]"])
    for s, e in ((starts - 1, ends), (starts, ends + 1), (ends, starts)):
        with pytest.raises(ValueError, match="not inside"):
            scan_json(buf, s, e)
    with pytest.raises(ValueError, match="one length"):
        scan_json(buf, starts, ends[:1])
    with pytest.raises(ValueError, match="uint8"):
        scan_json(buf.astype(np.int8), starts, ends)
    cols = scan_json(bytes(buf), starts, ends)
    assert cols.status.tolist() == [ScanStatus.OK, ScanStatus.EMPTY]
    empty = scan_json(b"", np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert empty.n_messages == empty.n_readings == empty.n_values == 0


@settings(max_examples=FEW, deadline=None)
@given(st.integers(0, 50), st.lists(st.tuples(st.integers(-3, 60), st.integers(-3, 60)),
                                     max_size=10))
def test_span_bytes_finds_the_first_span_outside_and_counts_bytes(
        size: int, spans: list[tuple[int, int]]) -> None:
    starts = np.array([s for s, _ in spans], np.int64)
    ends = np.array([e for _, e in spans], np.int64)
    outside = [i for i, (s, e) in enumerate(spans) if not 0 <= s <= e <= size]
    first = outside[0] if outside else -1
    inside = spans[:first] if outside else spans
    assert span_bytes(size, starts, ends) == (first, sum(e - s for s, e in inside))


def test_status_codes_are_the_kernels() -> None:
    assert {s.name: s.value for s in ScanStatus} == {
        n: getattr(jsonscan, n) for n in ("OK", "SYNTAX", "STRING", "NUMBER", "FIELD", "LIMIT",
                                          "EMPTY")}


def test_a_name_hash_is_the_same_in_any_buffer() -> None:
    buf = np.frombuffer(b"xxsmoke-1yy", np.uint8)
    assert jsonscan.hash_name(buf, 2, 9) == name_hash(b"smoke-1") >= 0
    assert name_hash(b"smoke-1") != name_hash(b"smoke-2")


def test_columns_held_stay_as_they_were_while_later_payloads_are_scanned() -> None:
    """The scan's output arrays are reused (sensing.spare) only once nothing holds them."""
    first = [reading(f'"v":{i}').encode() for i in range(50)]
    held = scan_json(*pack_payloads(first))
    want = held.value.copy(), held.seq.copy()
    for k in range(3):
        later = scan_json(*pack_payloads([reading(f'"w":{k * 100 + i}').encode()
                                          for i in range(60)]))
        assert later.n_values == 60
    assert (held.value == want[0]).all() and (held.seq == want[1]).all()
    assert lane_readings(held, 0)[0][5] == (("v", float(0).hex()),)
