"""Wire contract codecs: JSON and SNB1 decode to the same checked columns."""

from __future__ import annotations

import calendar
import math
import string
import struct

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.wire import BatchBuilder, WireError, binary, decode_readings, snb1, topics
from sensing.wire.kinds import KINDS

TS = 1_795_478_819_832
LIMIT = 1 << 20

names = st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=20)
"""channel names of the contract's alphabet"""
readings = st.lists(
    st.tuples(
        st.sampled_from(["smoke-1", "manhole-2", "wearable-3", "smoke-4"]),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**63 - 1),
        st.integers(946_684_800_000, 4_102_444_800_000),
        st.dictionaries(names, st.floats(allow_nan=False, allow_infinity=False), max_size=4),
        st.one_of(st.none(), st.floats(0.0, 1.0)),
    ),
    max_size=30,
)
KIND_OF = {"smoke-1": "smoke", "manhole-2": "manhole", "wearable-3": "wearable",
           "smoke-4": "smoke"}


@settings(deadline=None)  # the first example compiles the decoders' kernels on a fresh cache
@given(readings)
def test_snb1_and_json_decode_to_the_same_readings(rows: list[tuple]) -> None:  # type: ignore[type-arg]
    b = BatchBuilder()
    for device, epoch, seq, ts, values, battery in rows:
        b.add(device, KIND_OF[device], epoch, seq, ts, values, battery)
    batch = b.build()
    expected = batch.readings()
    if not rows:
        return
    via_binary = decode_readings(binary.encode(batch), "gw", "a", LIMIT)
    via_json = decode_readings(orjson.dumps(expected), "gw", "a", LIMIT)
    assert via_binary.rejected == via_json.rejected == []
    assert via_binary.batch.readings() == expected
    assert via_json.batch.readings() == expected


def test_single_object_and_rfc3339_ts() -> None:
    doc = {"device": "smoke-000123", "kind": "smoke", "seq": 4711, "epoch": 3,
           "ts": "2026-11-25T00:00:00.5+08:00", "values": {"obscuration": 0.4, "x_new": 1},
           "battery": 0.93}
    d = decode_readings(orjson.dumps(doc), "gw-17", "shuangqiaozi", LIMIT)
    (r,) = d.batch.readings()
    assert r["ts"] == calendar.timegm((2026, 11, 24, 16, 0, 0)) * 1000 + 500
    assert r["values"] == {"obscuration": 0.4, "x_new": 1.0}  # unknown channels are kept
    assert r["epoch"] == 3 and r["battery"] == 0.93


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{oops", "malformed JSON"),
        (b"[]", "empty array"),
        (b'{"device": "d", "kind": "smoke", "seq": "1", "ts": 1795478819832, "values": {}}',
         "'seq' must be an integer"),
        (b'{"device": "d", "kind": "smoke", "seq": 1, "values": {}}', "missing field 'ts'"),
        (b'{"device": "d", "kind": "smoke", "seq": 1, "ts": 1795478819832, "values": {"a": NaN}}',
         "malformed JSON"),
        # beyond a float: read as infinity (not a malformed document), refused as a float
        (b'{"device": "d", "kind": "smoke", "seq": 1, "ts": 1e400, "values": {}}',
         "'ts' must be an integer, got float"),
        (b'{"device": "d", "kind": "smoke", "seq": 1, "ts": 1795478819832, "values": {"a": 1e400}}',
         "values must be finite"),
        (b'{"device": "d", "kind": "smoke", "seq": 1, "ts": 1795478819832.5, "values": {}}',
         "'ts' must be an integer"),
        (b'{"device": "d", "kind": "toaster", "seq": 1, "ts": 1795478819832, "values": {}}',
         "unknown kind"),
        (b'{"device": "d", "kind": "smoke", "seq": -1, "ts": 1795478819832, "values": {}}',
         "non-negative"),
        (b'{"device": "d", "kind": "smoke", "seq": 1, "ts": 1795478819832, "values": {},'
         b' "battery": 1.5}', "battery"),
        (b'{"device": "d", "kind": "smoke", "seq": 1, "ts": 1795478819832, "values": {},'
         b' "gateway": "gw-2"}', "speaks for gateway 'gw-2'"),
        (b'{"device": "d", "kind": "smoke", "seq": 1, "ts": 12, "values": {}}', "ts outside"),
        (b"SNB1\x01", "shorter than its header"),
        (b" " * (LIMIT + 1), "exceeds the limit"),
    ],
)
def test_bad_payloads_have_a_clear_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(WireError, match=reason.replace("(", r"\(")):
        decode_readings(payload, "gw-1", "a", LIMIT)


def test_array_keeps_the_good_readings_and_names_the_bad() -> None:
    good = {"device": "d", "kind": "smoke", "seq": 1, "ts": TS, "values": {"co_ppm": 2}}
    d = decode_readings(orjson.dumps([good, {"device": "d"}, good | {"seq": 2}, 7]), "g", "a",
                        LIMIT)
    assert [r["seq"] for r in d.batch.readings()] == [1, 2]
    assert [i for i, _, _ in d.rejected] == [1, 3]
    assert [code for _, _, code in d.rejected] == ["field_missing", "field_type"]
    assert "reading[1]" in d.reason and "reading[3]" in d.reason


def test_snb1_corruption_is_rejected() -> None:
    b = BatchBuilder()
    b.add("smoke-1", "smoke", 0, 1, TS, {"co_ppm": 1.0})
    payload = binary.encode(b.build(), version=1)
    with pytest.raises(WireError):
        decode_readings(payload[:-1], "g", "a", LIMIT)
    bad_value = bytearray(payload)
    # one reading, one value: the columns are the last 30 + 14 bytes; the f64 value column
    # follows ts, seq and battery (3 x 8 bytes)
    start = len(payload) - 44
    bad_value[start + 24 : start + 32] = struct.pack("<d", math.nan)
    with pytest.raises(WireError, match="finite"):
        decode_readings(bytes(bad_value), "g", "a", LIMIT)


def test_topics() -> None:
    assert topics.readings_topic("a-1", "gw_2") == "sensing/v1/a-1/gw_2/readings"
    parsed = topics.parse_gateway_topic("sensing/v1/a-1/gw_2/status")
    assert parsed is not None and parsed.valid_names and parsed.leaf == "status"
    assert topics.parse_gateway_topic("sensing/v1/dispatch/grid/readings") is None
    bad = topics.parse_gateway_topic("sensing/v1/a b/gw/readings")
    assert bad is not None and not bad.valid_names
    assert set(KINDS) == {"smoke", "manhole", "wearable"}


def _table(names: list[bytes], pad: bytes = b"") -> bytes:
    raw = b"".join(bytes([len(n) % 256]) + n for n in names) + pad
    return raw + b"\0" * (-len(raw) % 8)


def _outcome(parse: object, tables: bytes, n_dev: int, n_chan: int) -> object:
    try:
        return parse(tables, n_dev, n_chan)  # type: ignore[operator]
    except WireError as exc:
        return str(exc)


raw_names = st.one_of(
    names.map(str.encode),
    st.binary(min_size=0, max_size=6),  # NULs, bad UTF-8, empty names
    st.text(min_size=28, max_size=40).map(str.encode),  # length bytes of 32 and more
    st.sampled_from([b"smoke", "井盖-1".encode(), b"a\0b", b"\xff", b"\xe4\xba"]),
)


@given(st.lists(raw_names, max_size=12), st.integers(0, 6), st.integers(0, 4),
       st.sampled_from([b"", b"\0", b"\1", b"\0\0\0x"]), st.integers(0, 3))
def test_snb1_tables_parse_in_bulk_as_name_by_name(
    names_: list[bytes], n_dev: int, n_chan: int, pad: bytes, cut: int
) -> None:
    """The bulk table parser gives the names, or the reason, of the name-by-name one."""
    tables = _table(names_, pad)
    tables = tables[: len(tables) - cut]
    expected = _outcome(binary._parse_tables_slowly, tables, n_dev, n_chan)
    assert _outcome(binary._parse_tables, tables, n_dev, n_chan) == expected
    cache = binary._TableCache(max_tables=2)
    for _ in range(2):  # a miss, then a hit
        assert _outcome(cache.get, tables, n_dev, n_chan) == expected


def test_repeated_tables_are_parsed_and_checked_once() -> None:
    b = BatchBuilder()
    b.add("smoke-1", "smoke", 0, 1, TS, {"co_ppm": 1.0})
    b.add("bad\u0007id", "smoke", 0, 1, TS, {"co_ppm": 1.0})
    payload = binary.encode(b.build())
    first = decode_readings(payload, "g", "a", LIMIT)
    again = decode_readings(bytes(bytearray(payload)), "g", "a", LIMIT)
    # the good readings' tables leave the bad name out (it must not reach the registry)
    assert first.batch.devices == again.batch.devices == ("smoke-1",)
    assert first.rejected == again.rejected == [(1, first.rejected[0][1], "name_invalid")]
    assert "characters of" in first.rejected[0][1]
    b = BatchBuilder()
    b.add("smoke-1", "smoke", 0, 1, TS, {"co_ppm": 1.0})
    b.add("toaster-1", "toaster", 0, 1, TS, {"co_ppm": 1.0})
    payload = binary.encode(b.build())
    first = decode_readings(payload, "g", "a", LIMIT)
    again = decode_readings(bytes(bytearray(payload)), "g", "a", LIMIT)
    assert first.batch.devices is again.batch.devices  # one parse for both
    assert [c for _, _, c in first.rejected] == ["kind_unknown"]


@settings(deadline=None)
@given(readings)
def test_the_numpy_free_snb1_writer_gives_the_same_bytes(rows: list[tuple]) -> None:  # type: ignore[type-arg]
    """What the edge agent sends (`snb1.encode_readings`, no numpy) is byte for byte what
    `binary.encode` makes of the same readings, and decodes back to them."""
    b = BatchBuilder()
    for device, epoch, seq, ts, values, battery in rows:
        b.add(device, KIND_OF[device], epoch, seq, ts, values, battery)
    direct = snb1.encode_readings(
        (device, KIND_OF[device], epoch, seq, ts, values, battery)
        for device, epoch, seq, ts, values, battery in rows)
    assert direct == binary.encode(b.build())
    if rows:
        assert decode_readings(direct, "gw", "a", LIMIT).batch.readings() == \
            b.build().readings()


def test_the_numpy_free_snb1_writer_refuses_what_snb1_cannot_hold() -> None:
    with pytest.raises(WireError, match="32 bits"):
        snb1.encode_readings([("smoke-1", "smoke", 2**32, 0, TS, {}, None)])
    with pytest.raises(WireError, match="1-255 bytes"):
        snb1.encode_readings([("s" * 300, "smoke", 0, 0, TS, {}, None)])
    with pytest.raises(WireError, match="65535"):
        snb1.encode_readings((f"d-{i}", "smoke", 0, 0, TS, {}, None) for i in range(70_000))
