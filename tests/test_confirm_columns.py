"""The core's one-pass store confirmations (sensing.wire.confirm_columns) against
`sensing.wire.confirm.stored_messages`, the definition: the same (topic, payload) list, byte
for byte, for the same chunks and ts."""

from __future__ import annotations

import string
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensing.kernels.confirmjson import SMALL_RUN, sort_by_key, sort_run
from sensing.packed_names import PackedNames
from sensing.wire import confirm
from sensing.wire.confirm import StoredChunk, stored_messages
from sensing.wire.confirm_columns import (
    ConfirmFormatter,
    json_string,
    stored_messages_columns,
)
from sensing.wire.limits import DEVICE_ID_PATTERN, MAX_DEVICE_ID

pytestmark = pytest.mark.kernel

TOP = 2**63 - 1
DEVICE_ID_CHARS = string.ascii_letters + string.digits + "_.:-"
assert {c for c in map(chr, range(128)) if DEVICE_ID_PATTERN.fullmatch(c)} == set(DEVICE_ID_CHARS)

device_ids = st.text(st.sampled_from(DEVICE_ID_CHARS), min_size=1, max_size=MAX_DEVICE_ID)
odd_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
"""beyond the registry's: quotes, backslashes, control characters, unicode (orjson's escaping)"""
numbers = st.one_of(st.integers(0, 5), st.integers(0, TOP), st.integers(TOP - 3, TOP))


@contextmanager
def target_bytes(target: int) -> Iterator[ConfirmFormatter]:
    """A formatter splitting at `target`, and the reference patched to split there too."""
    with mock.patch.object(confirm, "TARGET_PAYLOAD_BYTES", target):
        yield ConfirmFormatter(target)


@st.composite
def steps(draw: st.DrawFn, names: st.SearchStrategy[str] = device_ids,
          max_readings: int = 60) -> tuple[list[str], list[StoredChunk]]:
    """A name table and chunks of readings over it: several gateways (one may come in several
    chunks, as when steps are committed together), runs of consecutive seqs, repeats."""
    table = draw(st.lists(names, min_size=1, max_size=12))
    gateways = draw(st.lists(st.tuples(st.sampled_from(["a1", "a-2"]),
                                       st.sampled_from(["g1", "g_2", "g3"])),
                             min_size=1, max_size=4))
    chunks: list[StoredChunk] = []
    for area, gateway in gateways:
        rows: list[tuple[int, int, int]] = []
        for _ in range(draw(st.integers(0, max_readings // len(gateways)))):
            follow: bool = draw(st.booleans())
            if rows and follow:  # the next seq, or a repeat, of an earlier reading
                d, e, q = draw(st.sampled_from(rows))
                rows.append((d, e, min(q + draw(st.integers(0, 1)), TOP)))
            else:
                rows.append((draw(st.integers(0, len(table) - 1)), draw(numbers),
                             draw(numbers)))
        if draw(st.booleans()):
            rows = draw(st.permutations(rows))
        dtype = draw(st.sampled_from([np.int32, np.int64]))
        chunks.append((area, gateway, table, np.array([r[0] for r in rows], dtype=dtype),
                       np.array([r[1] for r in rows], dtype=np.int64),
                       np.array([r[2] for r in rows], dtype=np.int64)))
    return table, chunks


def same_as_reference(chunks: list[StoredChunk], fmt: ConfirmFormatter, ts: int = 1_795_478_819_832,
                      fallbacks: int = 0) -> list[tuple[str, bytes]]:
    want = stored_messages(chunks, ts)
    before = fmt.fallbacks
    got = fmt(chunks, ts)
    assert got == want
    assert fmt.fallbacks - before == fallbacks
    return got


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps(), st.sampled_from([1, 60, 150, 400, confirm.TARGET_PAYLOAD_BYTES]))
def test_the_same_messages_as_stored_messages(step: tuple[list[str], list[StoredChunk]],
                                              target: int) -> None:
    _, chunks = step
    with target_bytes(target) as fmt:
        same_as_reference(chunks, fmt)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps(), st.integers(0, 20), st.integers(-2, 1))
def test_targets_at_the_edge_of_a_payload_split_alike(
        step: tuple[list[str], list[StoredChunk]], pick: int, delta: int) -> None:
    """A target at a whole payload's size, or at that of a part of it, give or take a byte."""
    _, chunks = step
    whole = [len(p) for _, p in stored_messages(chunks, 1_795_478_819_832)]
    if not whole:
        return
    size = whole[pick % len(whole)]
    with target_bytes(size) as fmt:
        parts = [len(p) for _, p in same_as_reference(chunks, fmt)]
    with target_bytes(max(1, parts[pick % len(parts)] + delta)) as fmt:
        same_as_reference(chunks, fmt)
    with target_bytes(max(1, size + delta)) as fmt:
        same_as_reference(chunks, fmt)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps(odd_names), st.sampled_from([80, confirm.TARGET_PAYLOAD_BYTES]))
def test_any_name_orjson_writes_is_escaped_as_orjson_escapes_it(
        step: tuple[list[str], list[StoredChunk]], target: int) -> None:
    _, chunks = step
    with target_bytes(target) as fmt:
        same_as_reference(chunks, fmt)


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(max_codepoint=0x2100) | st.sampled_from(['"', "\\", "\x7f"]),
               max_size=8))
def test_json_string_is_orjson_dumps(name: str) -> None:
    """The packed names' encoder writes what orjson writes, and fails where it fails."""
    try:
        expected: bytes | None = orjson.dumps(name)
    except orjson.JSONEncodeError:
        expected = None
    try:
        got: bytes | None = json_string(name)
    except (orjson.JSONEncodeError, UnicodeEncodeError):
        got = None
    assert got == expected


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 400), st.integers(0, 2))
def test_one_long_run_and_many_single_readings_split_alike(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    table = [f"smoke-{i:06d}" for i in range(n)]
    runs = ("a", "g", table, np.zeros(n, dtype=np.int32), np.full(n, 3),
            rng.permutation(n).astype(np.int64))  # one device: one range, however shuffled
    singles = ("a", "h", table, rng.permutation(n).astype(np.int32), np.full(n, 3),
               rng.integers(0, TOP, n))
    with target_bytes(int(rng.integers(40, 2000))) as fmt:
        messages = same_as_reference([runs, singles], fmt)
    assert orjson.loads(messages[0][1])["readings"] == [["smoke-000000", 3, 0, n - 1]]


def test_a_large_step_splits_at_the_default_target() -> None:
    n = 8_000  # about 360 kB of entries: two messages
    rng = np.random.default_rng(7)
    table = [f"wearable-{i:06d}" for i in range(n)]
    chunks: list[StoredChunk] = [
        ("a", "g", table, rng.permutation(n).astype(np.int32), np.full(n, 1_765_000_000),
         rng.integers(2**40, 2**50, n)),
        ("a", "h", table, np.arange(10, dtype=np.int32), np.zeros(10, np.int64),
         np.arange(10, dtype=np.int64))]
    messages = same_as_reference(chunks, ConfirmFormatter())
    assert len(messages) == 3


def test_the_table_is_packed_as_it_grows() -> None:
    table = ["d0", "d1"]
    fmt = ConfirmFormatter()
    one = np.array([1], dtype=np.int32)
    for k in range(2, 40):
        same_as_reference([("a", "g", table, one * (k - 1), one, one)], fmt)
        table.append(f'd"{k}\\')
    same_as_reference([("a", "g", table, np.arange(len(table)), np.zeros(len(table), np.int64),
                        np.arange(len(table)))], fmt)


def fallback_cases() -> Iterator[tuple[str, list[StoredChunk]]]:
    one = np.array([1])
    names = ["d0", "d1"]
    yield "two tables", [("a", "g", names, one, one, one), ("a", "g", ["x", "y"], one, one, one)]
    yield "negative device index", [("a", "g", names, -one, one, one)]
    yield "negative epoch", [("a", "g", names, one, -one, one)]
    yield "negative seq", [("a", "g", names, one, one, one - 5)]
    yield "a name orjson cannot write, unused", [("a", "g", ["d0", "\ud800"], one - 1, one, one)]
    yield "uint64", [("a", "g", names, one, one, one.astype(np.uint64))]
    yield "floats", [("a", "g", names, one, one.astype(np.float64), one)]


@pytest.mark.parametrize(("case", "chunks"), list(fallback_cases()))
def test_what_the_kernel_does_not_take_goes_to_stored_messages(
        case: str, chunks: list[StoredChunk]) -> None:
    same_as_reference(chunks, ConfirmFormatter(), fallbacks=1)


def test_a_name_orjson_cannot_write_fails_alike() -> None:
    chunk: Any = ("a", "g", ["d0", "\ud800"], np.array([1]), np.array([0]), np.array([0]))
    for build in (stored_messages, ConfirmFormatter()):
        with pytest.raises(orjson.JSONEncodeError):
            build([chunk], 1)


def test_lists_empty_chunks_and_the_clock() -> None:
    fmt = ConfirmFormatter()
    empty = np.array([], dtype=np.int64)
    assert fmt([("a", "g", ["d"], empty, empty, empty)]) == []
    assert fmt([]) == []
    chunk: Any = ("a", "g", ["d0", "d1"], [1, 0, 1], [0, 0, 0], [5, 5, 6])
    same_as_reference([chunk, ("a", "h", ["d0", "d1"], empty, empty, empty)], fmt)
    ((topic, payload),) = stored_messages_columns(iter([chunk]))
    assert topic == "sensing/v1/core/stored/a/g"
    assert orjson.loads(payload)["readings"] == [["d0", 0, 5, 5], ["d1", 0, 5, 6]]
    assert fmt.fallbacks == 0


# -- the sorts -------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 3), st.integers(0, 2**62)), max_size=3 * SMALL_RUN))
def test_sort_by_key_is_a_stable_argsort(keys: list[int]) -> None:
    key = np.array(keys, dtype=np.int64)
    order = np.full(len(keys) + 1, -1, dtype=np.int64)
    tmp, key_tmp = (np.empty(len(keys) + 1, dtype=np.int64) for _ in range(2))
    sort_by_key(key, order, tmp, key_tmp)
    want = np.argsort(keys, kind="stable")
    assert order[:len(keys)].tolist() == want.tolist()
    assert key.tolist() == sorted(keys)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.one_of(st.integers(0, 9), numbers)),
                max_size=3 * SMALL_RUN), st.integers(0, 3))
def test_sort_run_sorts_by_epoch_then_seq_stably(pairs: list[tuple[int, int]],
                                                 lo: int) -> None:
    epoch = np.array([e for e, _ in pairs], dtype=np.int64)
    seq = np.array([q for _, q in pairs], dtype=np.int64)
    order = np.arange(len(pairs), dtype=np.int64)[::-1].copy()
    lo = min(lo, len(pairs))
    want = order[:lo].tolist() + sorted(order[lo:].tolist(), key=pairs.__getitem__)
    sort_run(order, lo, len(pairs), epoch, seq, np.empty(len(pairs), dtype=np.int64))
    assert order.tolist() == want


# -- the packed table ------------------------------------------------------------------------

def test_packed_names_follow_their_table() -> None:
    table = ["a", "bcd"]
    packed = PackedNames(table)
    packed.sync()
    for k in range(100):
        table.append("é" * (k % 7 + 1))
        if k % 3 == 0:
            packed.sync()
    packed.sync()
    assert len(packed) == len(table)
    assert [packed.table[packed.offsets[k]:packed.offsets[k + 1]].tobytes().decode()
            for k in range(len(table))] == table
    assert packed.longest == max(len(n.encode()) for n in table)
    table.append("\ud800")
    with pytest.raises(UnicodeEncodeError):
        packed.sync()
    assert len(packed) == len(table) - 1
    del table[:5]
    with pytest.raises(ValueError, match="only grow"):
        packed.sync()
