"""The store-confirmation codec (sensing.wire.confirm): what the core publishes, what the agent
reads, and that the agent's side refuses malformed input with WireError only."""

from __future__ import annotations

import itertools

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.wire import WireError
from sensing.wire.confirm import (
    MAX_ENTRIES,
    MAX_PAYLOAD_BYTES,
    TARGET_PAYLOAD_BYTES,
    StoredChunk,
    parse_stored,
    stored_messages,
)
from sensing.wire.topics import stored_topic

Key = tuple[str, str, str, int, int]  # area, gateway, device, epoch, seq

keys = st.tuples(st.sampled_from(["a1", "a2"]), st.sampled_from(["g1", "g2", "g3"]),
                 st.sampled_from(["dev-a", "dev-b", "smoke-000123", "x"]),
                 st.integers(0, 3), st.integers(0, 40))


def chunks_of(readings: list[Key], split: int) -> list[StoredChunk]:
    """The readings as the core hands them: one chunk per (area, gateway) and part, each with
    its own device table (in first-seen order, so codes differ between chunks)."""
    out: list[StoredChunk] = []
    for part in (readings[:split], readings[split:]):
        by_gw: dict[tuple[str, str], list[Key]] = {}
        for r in part:
            by_gw.setdefault((r[0], r[1]), []).append(r)
        for (area, gw), rs in by_gw.items():
            names: list[str] = []
            for r in rs:
                if r[2] not in names:
                    names.append(r[2])
            out.append((area, gw, names,
                        np.array([names.index(r[2]) for r in rs], dtype=np.int32),
                        np.array([r[3] for r in rs], dtype=np.int64),
                        np.array([r[4] for r in rs], dtype=np.int64)))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(keys, max_size=200), st.integers(0, 200))
def test_confirmations_name_exactly_the_readings_of_each_gateway_coalesced(
    readings: list[Key], split: int
) -> None:
    messages = stored_messages(chunks_of(readings, split), ts=123)
    got: dict[str, set[tuple[str, int, int]]] = {}
    for topic, payload in messages:
        ranges = parse_stored(payload)
        assert orjson.loads(payload)["ts"] == 123
        # coalesced: no two ranges of one (device, epoch) touch or overlap
        for (d1, e1, _, l1), (d2, e2, f2, _) in itertools.pairwise(sorted(ranges)):
            assert (d1, e1) != (d2, e2) or f2 > l1 + 1
        for device, epoch, first, last in ranges:
            got.setdefault(topic, set()).update(
                (device, epoch, s) for s in range(first, last + 1))
    want: dict[str, set[tuple[str, int, int]]] = {}
    for area, gw, device, epoch, seq in readings:
        want.setdefault(stored_topic(area, gw), set()).add((device, epoch, seq))
    assert got == want
    assert len(messages) == len(want)  # small steps: one message per gateway


def test_a_large_step_is_split_into_messages_of_about_256_kb() -> None:
    n = 40_000  # every other seq: 40,000 ranges of one reading, about 1 MB of JSON
    names = [f"device-{i:05d}" for i in range(1000)]
    dev = np.arange(n, dtype=np.int32) % 1000
    seq = (np.arange(n, dtype=np.int64) // 1000) * 2
    messages = stored_messages([("a", "g", names, dev, np.full(n, 7), seq)], ts=1)
    sizes = [len(p) for _, p in messages]
    assert len(messages) >= 4 and max(sizes) <= TARGET_PAYLOAD_BYTES
    ranges = [r for _, p in messages for r in parse_stored(p)]
    assert len(ranges) == n and len(set(ranges)) == n


def test_consecutive_seqs_cost_a_few_bytes_per_reading() -> None:
    n = 100_000  # a backlog: 100 devices, 1,000 consecutive seqs each
    names = [f"smoke-{i:06d}" for i in range(100)]
    dev = np.repeat(np.arange(100, dtype=np.int32), 1000)
    seq = np.tile(np.arange(1000, dtype=np.int64), 100)
    (_, payload), = stored_messages(
        [("a", "g", names, dev, np.full(n, 1_765_000_000), seq)])
    assert len(parse_stored(payload)) == 100
    assert len(payload) / n < 0.1


def test_a_step_without_readings_confirms_nothing() -> None:
    empty = np.array([], dtype=np.int64)
    assert stored_messages([("a", "g", [], empty, empty, empty)]) == []


@pytest.mark.parametrize(("payload", "code"), [
    (b"", "json_malformed"),
    (b"{", "json_malformed"),
    (b"[]", "field_missing"),
    (b'{"ts": 1}', "field_missing"),
    (b'{"ts": "1", "readings": []}', "field_type"),
    (b'{"ts": true, "readings": []}', "field_type"),
    (b'{"ts": 1, "readings": {}}', "field_type"),
    (b'{"ts": 1, "readings": [["d", 1, 2]]}', "field_type"),
    (b'{"ts": 1, "readings": [[1, 1, 2, 3]]}', "name_invalid"),
    (b'{"ts": 1, "readings": [["", 1, 2, 3]]}', "name_invalid"),
    (b'{"ts": 1, "readings": [["d", 1.5, 2, 3]]}', "field_type"),
    (b'{"ts": 1, "readings": [["d", -1, 2, 3]]}', "epoch_out_of_range"),
    (b'{"ts": 1, "readings": [["d", 1, 3, 2]]}', "seq_out_of_range"),
    (b'{"ts": 1, "readings": [["d", 1, -1, 2]]}', "seq_out_of_range"),
    (b'{"ts": 1, "readings": [["d", 1, 0, 9223372036854775808]]}', "seq_out_of_range"),
    (b'{"ts": 1, "readings": [["d", 1, 0, 1e300]]}', "field_type"),
    (b" " * (MAX_PAYLOAD_BYTES + 1), "payload_too_large"),
    (orjson.dumps({"ts": 1, "readings": [["d", 1, 0, 0]] * (MAX_ENTRIES + 1)}),
     "too_many_readings"),
])
def test_malformed_confirmations_are_refused_with_a_code(payload: bytes, code: str) -> None:
    with pytest.raises(WireError) as refused:
        parse_stored(payload)
    assert refused.value.code == code


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["ts", "readings", "x"]), inner, max_size=3),
    max_leaves=30)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=200), json_values.map(orjson.dumps)))
def test_parse_stored_raises_nothing_but_wire_error(payload: bytes) -> None:
    try:
        ranges = parse_stored(payload)
    except WireError:
        return
    assert all(0 <= f <= last for _, _, f, last in ranges)
