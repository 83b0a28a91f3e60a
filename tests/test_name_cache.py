"""NameCache against a dict of (key, name) -> id with the same bounds, keys drawn from a tiny
space so that equal keys of different names (hash collisions) and long probe chains are the
rule, not the exception."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.kernels import namecache
from sensing.wire.json_columns import name_hash
from sensing.wire.name_cache import NameCache, salted_key, salted_keys

pytestmark = pytest.mark.kernel

keys = st.sampled_from([0, 1, -1, 2**64 - 1, 2**63, -(2**63), 12345])
"""2^64 - 1 is -1 and 2^63 is -2^63: the same bits, so the same key"""
names = st.binary(max_size=11).map(lambda b: bytes(c % 3 + 97 for c in b))
"""names of a, b and c: many differ in one byte only, before or after the bytes a table row
holds (namecache.HEAD_BYTES)"""


def signed(key: int) -> int:
    return key - 2**64 if key >= 2**63 else key


@dataclass
class Reference:
    """What the cache must answer: a dict, cleared when an insert would pass a bound."""

    max_entries: int
    max_bytes: int
    entries: dict[tuple[int, bytes], int] = field(default_factory=dict)
    clears: int = 0

    def insert(self, key: int, name: bytes, ident: int) -> bool:
        k = (signed(key), name)
        if k not in self.entries:
            if len(name) > self.max_bytes:
                return False
            used = sum(len(n) for _, n in self.entries)
            if len(self.entries) == self.max_entries or used + len(name) > self.max_bytes:
                self.entries.clear()
                self.clears += 1
        self.entries[k] = ident
        return True

    def get(self, key: int, name: bytes) -> int:
        return self.entries.get((signed(key), name), -1)


inserts = st.tuples(st.just("insert"), keys, names, st.integers(0, 2**31 - 1))
lookups = st.tuples(st.just("lookup"), st.lists(st.tuples(keys, names), max_size=12),
                    st.binary(max_size=6))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 9), st.integers(1, 40), st.sampled_from([2, 4, 1024]),
       st.lists(inserts | lookups, max_size=60))
def test_the_cache_answers_as_a_bounded_dict(max_entries: int, max_bytes: int,
                                             initial_slots: int,
                                             ops: list[tuple]) -> None:  # type: ignore[type-arg]
    """From a table of `initial_slots` (grown as entries come) or the whole one at once."""
    cache = NameCache(max_entries, max_bytes, initial_slots)
    ref = Reference(max_entries, max_bytes)
    for op in ops:
        if op[0] == "insert":
            _, key, name, ident = op
            assert cache.insert(key, name, ident) == ref.insert(key, name, ident)
        else:
            _, asked, noise = op
            # the names as spans of one buffer, with bytes of other names around them
            parts, starts, ends, at = [], [], [], 0
            for _, name in asked:
                parts += [noise, name]
                starts.append(at + len(noise))
                at += len(noise) + len(name)
                ends.append(at)
            buf = np.frombuffer(b"".join(parts) + noise, dtype=np.uint8)
            got = cache.lookup(buf, np.array([signed(k) for k, _ in asked], np.int64),
                               np.array(starts, np.int64), np.array(ends, np.int64))
            assert got.dtype == np.int32
            assert got.tolist() == [ref.get(k, n) for k, n in asked]
            assert [cache.get(k, n) for k, n in asked] == got.tolist()
        assert len(cache) == len(ref.entries) <= max_entries
        assert cache.bytes_used == sum(len(n) for _, n in ref.entries) <= max_bytes
        assert cache.clears == ref.clears


def test_one_key_for_many_names_never_mixes_them_up() -> None:
    """The worst hash: every name has the same key. Each still finds its own id only."""
    cache = NameCache(max_entries=64, max_bytes=1024)
    own = [f"dev-{i}".encode() for i in range(40)]
    for i, name in enumerate(own):
        assert cache.insert(7, name, i)
    asked = [*own, b"dev-40", b"dev-1 ", b"dev-", b""]
    buf = np.frombuffer(b"".join(asked), dtype=np.uint8)
    ends = np.cumsum([len(n) for n in asked]).astype(np.int64)
    starts = ends - np.array([len(n) for n in asked], np.int64)
    got = cache.lookup(buf, np.full(len(asked), 7, np.int64), starts, ends)
    assert got.tolist() == [*range(40), -1, -1, -1, -1]
    other_key = cache.lookup(buf, np.full(len(asked), 8, np.uint64), starts, ends)
    assert (other_key == -1).all()


def test_names_made_to_crowd_one_place_cost_a_bounded_search() -> None:
    """One key for 100 names (as if made to collide): the first MAX_PROBE are cached, the
    rest are not (the slow path keeps them), and each lookup stops after MAX_PROBE slots."""
    cache = NameCache(max_entries=256, max_bytes=4096)
    crowd = [f"name-{i:04d}".encode() for i in range(100)]  # alike in their first bytes
    cached = [cache.insert(5, name, i) for i, name in enumerate(crowd)]
    assert cached == [i < namecache.MAX_PROBE for i in range(100)]
    assert [cache.get(5, name) for name in crowd] == [
        i if i < namecache.MAX_PROBE else -1 for i in range(100)]
    assert cache.insert(6, b"elsewhere", 1) and cache.get(6, b"elsewhere") == 1
    assert cache.clears == 0


def test_the_table_grows_with_its_entries_and_shrinks_when_cleared() -> None:
    """Memory follows what is cached, not the bound: 30,000 devices of a 100,000 bound take
    a table of 2^16 slots, not 2^18; every entry is found after each doubling."""
    cache = NameCache(max_entries=100_000, max_bytes=1 << 24)
    assert cache.slots == 1024 and cache.max_slots == 1 << 18
    names = [f"dev-{i:06d}".encode() for i in range(30_000)]
    for i, name in enumerate(names):
        assert cache.insert(name_hash(name), name, i)
    assert cache.slots == 1 << 16 and len(cache) == 30_000
    buf = np.frombuffer(b"".join(names), np.uint8)
    starts = np.arange(0, 10 * len(names), 10, dtype=np.int64)
    keys = np.array([name_hash(n) for n in names], np.int64)
    assert (cache.lookup(buf, keys, starts, starts + 10) == np.arange(30_000)).all()
    cache.clear()
    assert cache.slots == 1024 and len(cache) == 0


def _keys_starting_at(slot: int, mask: int, count: int, start: int = 1) -> list[int]:
    keys, k = [], start
    while len(keys) < count:
        if namecache.first_slot(k, mask) == slot:
            keys.append(k)
        k += 1
    return keys


def test_a_full_crowd_at_the_edge_of_a_doubling_is_kept_whole() -> None:
    """MAX_PROBE keys that start at one slot of the first table (and wrap past its end), then
    enough others to double it: every entry is still found after the rehash, with its id,
    and nothing was forgotten."""
    cache = NameCache(max_entries=4096, max_bytes=1 << 16, initial_slots=256)
    crowd = _keys_starting_at(250, 255, namecache.MAX_PROBE)  # slots 250 .. 255, 0 .. 57
    near = _keys_starting_at(0, 255, 8, start=crowd[-1] + 1)  # pushed out past the crowd
    others = [k for k in range(10**6, 10**6 + 400) if namecache.first_slot(k, 255) > 70]
    names = {k: b"n%d" % k for k in crowd + near + others}
    assert all(cache.insert(k, names[k], i) for i, k in enumerate(crowd))
    placed = [k for k in near if cache.insert(k, names[k], k)]
    assert len(placed) == 6  # slots 58 .. 63: the rest lie beyond MAX_PROBE of slot 0
    for i, k in enumerate(others):
        assert cache.insert(k, names[k], 10_000 + i)
    assert cache.slots >= 1024 and len(cache) == len(crowd) + len(placed) + len(others)
    assert [cache.get(k, names[k]) for k in crowd] == list(range(len(crowd)))
    assert [cache.get(k, names[k]) for k in placed] == placed
    assert [cache.get(k, names[k]) for k in others] == [10_000 + i for i in range(len(others))]


def test_unsigned_keys_are_the_same_bits() -> None:
    cache = NameCache(8, 64)
    cache.insert(np.uint64(2**64 - 2), b"x", 3)
    buf = np.frombuffer(b"x", np.uint8)
    one = np.array([0], np.int64), np.array([1], np.int64)
    assert cache.lookup(buf, np.array([-2], np.int64), *one).tolist() == [3]
    assert cache.lookup(buf, np.array([2**64 - 2], np.uint64), *one).tolist() == [3]
    assert cache.get(-2, b"x") == cache.get(2**64 - 2, b"x") == 3


def test_salted_keys_are_salted_key_of_each_hash() -> None:
    hashes = np.array([name_hash(n) for n in (b"smoke-1", b"smoke-2", b"")], np.int64)
    for salt in (0, 1, 17, 2**31 - 1):
        assert salted_keys(hashes, salt).tolist() == [salted_key(int(h), salt) for h in hashes]
    assert salted_key(int(hashes[0]), 1) != salted_key(int(hashes[0]), 2)
    assert salted_key(int(hashes[0]), 0) == hashes[0]


def test_a_name_beyond_the_byte_bound_is_not_cached_and_clears_nothing() -> None:
    cache = NameCache(4, 8)
    assert cache.insert(1, b"abc", 1)
    assert not cache.insert(1, b"123456789", 2)
    assert cache.get(1, b"abc") == 1 and len(cache) == 1 and cache.clears == 0


def test_bad_arguments_are_refused() -> None:
    cache = NameCache(4, 8)
    buf = np.frombuffer(b"abc", np.uint8)
    k, s, e = np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([3], np.int64)
    with pytest.raises(ValueError, match="not inside"):
        cache.lookup(buf, k, s, e + 1)
    with pytest.raises(ValueError, match="not inside"):
        cache.lookup(buf, k, e, s)
    with pytest.raises(ValueError, match="one length"):
        cache.lookup(buf, np.zeros(2, np.int64), s, e)
    with pytest.raises(ValueError, match="uint8"):
        cache.lookup(buf.astype(np.int16), k, s, e)
    with pytest.raises(ValueError, match="id"):
        cache.insert(0, b"a", -1)
    with pytest.raises(ValueError, match="id"):
        cache.insert(0, b"a", 2**31)
    with pytest.raises(ValueError, match="64-bit"):
        cache.insert(2**64, b"a", 1)
    with pytest.raises(ValueError, match="max_entries"):
        NameCache(0, 8)
