"""Bulk line protocol against the straightforward per-reading Python formatter it replaced."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import config, njit

from sensing.kernels.lineproto import (
    FLOAT_MAX_CHARS,
    OUT_PADDING,
    _write_float_cached,
    group_by_reading,
    index_range,
    new_float_cache,
    stale_prefixes,
    write_float,
    write_int,
)
from sensing.registry import Registry
from sensing.store.lineprotocol import LineFormatter, escape_key, field_key
from sensing.wire import BatchBuilder
from sensing.wire.batch import ReadingBatch

pytestmark = pytest.mark.kernel


def python_lines(reg: Registry, dev: np.ndarray, epoch: np.ndarray, seq: np.ndarray,
                 ts: np.ndarray, battery: np.ndarray, value_row: np.ndarray,
                 value_channel: np.ndarray, value: np.ndarray) -> list[str]:
    """One f-string per reading, floats by repr: the reference."""
    lines = []
    for i in range(dev.shape[0]):
        name, kind, gateway, area = reg.describe(int(dev[i]))
        fields = [f"{field_key(reg.channels.names[int(value_channel[j])])}={float(value[j])!r}"
                  for j in range(value.shape[0]) if value_row[j] == i]
        if not math.isnan(battery[i]):
            fields.append(f"battery={float(battery[i])!r}")
        fields.append(f"seq={int(seq[i])}i,epoch={int(epoch[i])}i")
        lines.append(f"reading,area={escape_key(area)},gateway={escape_key(gateway)},"
                     f"device={escape_key(name)},kind={kind} {','.join(fields)} {int(ts[i])}")
    return lines


@njit
def _format_many(values: np.ndarray, buf: np.ndarray, ends: np.ndarray) -> None:
    bits = values.view(np.uint64)
    pos = 0
    for i in range(values.shape[0]):
        pos = write_float(buf, pos, values[i], bits[i])
        ends[i] = pos


def formatted(values: np.ndarray) -> list[str]:
    values = np.ascontiguousarray(values, dtype=np.float64)
    buf = np.zeros(values.shape[0] * FLOAT_MAX_CHARS, dtype=np.uint8)
    ends = np.zeros(values.shape[0], dtype=np.int64)
    _format_many(values, buf, ends)
    text = buf.tobytes().decode()
    starts = [0, *ends[:-1].tolist()]
    return [text[a:b] for a, b in zip(starts, ends.tolist(), strict=True)]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=50))
def test_floats_are_written_as_repr_writes_them(values: list[float]) -> None:
    assert formatted(np.array(values)) == [repr(v) for v in values]


@pytest.mark.parametrize("seed", range(3))
def test_random_doubles_and_sensor_values_round_trip_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2_000 if config.DISABLE_JIT else 200_000
    bits = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    samples = np.concatenate([
        bits.view(np.float64),
        np.round(rng.uniform(-100, 100, n) * 10.0 ** (d := rng.integers(0, 6, n))) / 10.0 ** d,
        10.0 ** rng.uniform(-30, 30, n),
        np.arange(1, 200) * 5e-324,
        [0.0, -0.0, 1e16, 1e15, 9999999999999998.0, 1e-4, 1e-5, 2.0**53, 1e22, 1e23],
    ])
    samples = samples[np.isfinite(samples)]
    got = formatted(samples)
    assert got == [repr(float(v)) for v in samples]
    assert all(struct.pack("<d", float(s)) == struct.pack("<d", v)
               for s, v in zip(got, samples.tolist(), strict=True))


@settings(deadline=None)  # the first example compiles write_int on its own
@given(st.lists(st.integers(-(2**63) + 1, 2**63 - 1), min_size=1, max_size=30))
def test_integers(values: list[int]) -> None:
    buf = np.zeros(21 * len(values), dtype=np.uint8)
    pos = 0
    for v in values:
        end = write_int(buf, pos, v)
        assert buf[pos:end].tobytes().decode() == str(v)
        pos = end


# -- whole batches ----------------------------------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
                min_size=1, max_size=12).filter(str.isprintable)
channels = st.one_of(st.sampled_from(["obscuration", "temp_c", "seq", "epoch", "battery",
                                      "a b", "x=y,z", "back\\slash"]), names)


@st.composite
def batches(draw: st.DrawFn) -> tuple[ReadingBatch, str, str, bool]:
    devices = draw(st.lists(st.one_of(names, st.sampled_from(["smoke 1", "a,b=c", "d\\e"])),
                            min_size=1, max_size=5, unique=True))
    b = BatchBuilder()
    for _i in range(draw(st.integers(0, 25))):
        device = draw(st.sampled_from(devices))
        values = draw(st.dictionaries(channels, st.floats(allow_nan=False, allow_infinity=False),
                                      max_size=4))
        battery = draw(st.one_of(st.none(), st.floats(0.0, 1.0)))
        b.add(device, "smoke", draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**63 - 1)),
              draw(st.integers(946_684_800_000, 4_102_444_800_000)), values, battery)
    gateway = draw(st.sampled_from(["gw-1", "gw 2"]))
    area = draw(st.sampled_from(["shuangqiaozi", "a=b"]))
    return b.build(), gateway, area, draw(st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.lists(batches(), min_size=1, max_size=4))
def test_batches_are_byte_identical_to_the_python_formatter(
    steps: list[tuple[ReadingBatch, str, str, bool]]
) -> None:
    reg = Registry()
    fmt = LineFormatter(reg)
    for batch, gateway, area, shuffle in steps:  # devices move between gateways and areas
        dev, chan = reg.intern_batch(batch, gateway, area)
        order = np.arange(batch.n_values)
        if shuffle:  # values need not come grouped by reading
            order = order[::-1]
        cols = (dev, batch.epoch, batch.seq, batch.ts, batch.battery, batch.value_row[order],
                chan[order], batch.value[order])
        expected = "\n".join(python_lines(reg, *cols)).encode()
        assert fmt.readings(*cols) == expected


def test_wrapper_checks_its_input() -> None:
    reg = Registry()
    b = BatchBuilder()
    b.add("smoke-1", "smoke", 0, 1, 1_795_478_819_832, {"co_ppm": 1.0})
    batch = b.build()
    dev, chan = reg.intern_batch(batch, "gw", "a")
    fmt = LineFormatter(reg)
    cols = [dev, batch.epoch, batch.seq, batch.ts, batch.battery, batch.value_row, chan,
            batch.value]
    assert fmt.readings(*cols) == (b"reading,area=a,gateway=gw,device=smoke-1,kind=smoke "
                                   b"co_ppm=1.0,seq=1i,epoch=0i 1795478819832")
    with pytest.raises(IndexError):
        fmt.readings(*cols[:6], np.array([5], np.int32), cols[7])
    with pytest.raises(IndexError):
        fmt.readings(np.array([3], np.int32), *cols[1:])
    with pytest.raises(ValueError):
        fmt.readings(*cols[:5], np.zeros(0, np.int32), *cols[6:])
    empty = [c[:0] for c in cols]
    assert fmt.readings(*empty) == b""


# -- kernels of the formatter -----------------------------------------------------------------

@njit
def _format_cached(values: np.ndarray, buf: np.ndarray, ends: np.ndarray,
                   cache_bits: np.ndarray, cache_text: np.ndarray) -> None:
    bits = values.view(np.uint64)
    pos = 0
    for i in range(values.shape[0]):
        pos = _write_float_cached(buf, pos, values[i], bits[i], cache_bits, cache_text)
        ends[i] = pos


def test_cached_floats_are_repr_through_hits_misses_and_evictions() -> None:
    rng = np.random.default_rng(11)
    n = 300 if config.DISABLE_JIT else 30_000  # far more distinct values than slots
    values = np.concatenate([
        np.round(rng.normal(20, 10, n) * 10.0 ** (d := rng.integers(0, 4, n))) / 10.0 ** d,
        rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True).view(np.float64),
    ])
    values = values[np.isfinite(values)]
    cache = new_float_cache()
    for _ in range(2):  # the second pass mostly hits
        buf = np.zeros(values.shape[0] * FLOAT_MAX_CHARS + OUT_PADDING, dtype=np.uint8)
        ends = np.zeros(values.shape[0], dtype=np.int64)
        _format_cached(values, buf, ends, *cache)
        text = buf.tobytes().decode(errors="replace")
        starts = [0, *ends[:-1].tolist()]
        assert [text[a:b] for a, b in zip(starts, ends.tolist(), strict=True)] == [
            repr(float(v)) for v in values]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=40), st.lists(st.integers(-1, 2), min_size=12,
                                                          max_size=12))
def test_stale_prefixes_match_the_reference(dev: list[int], cells: list[int]) -> None:
    gateway, area = np.array(cells[:6], np.int32), np.array(cells[6:], np.int32)
    built = np.array([cells[(i * 5) % 12] for i in range(12)], np.int32).reshape(6, 2)
    got = stale_prefixes(np.array(dev, np.int32), gateway, area, built)
    assert got.tolist() == [d for d in dev if (built[d, 0], built[d, 1]) != (gateway[d],
                                                                           area[d])]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.integers(0, n - 1), max_size=30))))
def test_values_are_grouped_by_reading_in_value_order(case: tuple[int, list[int]]) -> None:
    n, rows = case
    start, order, grouped = group_by_reading(n, np.array(rows, np.int32))
    index = np.arange(len(rows)) if grouped else order
    assert grouped == (rows == sorted(rows))
    for i in range(n):
        assert index[start[i] : start[i + 1]].tolist() == [j for j, r in enumerate(rows)
                                                            if r == i]


@settings(deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=50))
def test_index_range(values: list[int]) -> None:
    assert index_range(np.array(values, np.int32)) == (min(values), max(values))
