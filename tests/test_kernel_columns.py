"""The whole-batch helpers against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.kernels.columns import batch_bounds, readings_in_range, take, widen_wire_indices

pytestmark = pytest.mark.kernel

ints = st.lists(st.integers(-5, 50), max_size=40)


@settings(max_examples=200, deadline=None)
@given(ints, st.lists(st.integers(-3, 9), max_size=40), ints, ints)
def test_batch_bounds_are_numpys_min_and_max(dev: list[int], kind: list[int], row: list[int],
                                             chan: list[int]) -> None:
    n, m = min(len(dev), len(kind)), min(len(row), len(chan))
    d, k = np.array(dev[:n], np.int32), np.array(kind[:n], np.int8)
    r, c = np.array(row[:m], np.int32), np.array(chan[:m], np.int32)
    want = (int(d.min()) if n else 0, int(d.max()) if n else -1,
            int(k.max()) if n else -1, int(r.min()) if m else 0, int(r.max()) if m else -1,
            int(c.min()) if m else 0)
    assert batch_bounds(d, k, r, c) == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-128, 127), min_size=1, max_size=20), ints)
def test_take_is_fancy_indexing_and_names_the_first_index_outside(table: list[int],
                                                                  index: list[int]) -> None:
    t, i = np.array(table, np.int8), np.array(index, np.int32)
    out = np.zeros(i.shape[0], np.int8)
    outside = [p for p, j in enumerate(index) if not 0 <= j < len(table)]
    got = take(t, i, out)
    if outside:
        assert got == outside[0]
        assert np.array_equal(out[: got], t[i[: got]])
    else:
        assert got == -1 and np.array_equal(out, t[i])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**16 - 1), st.integers(0, 2**32 - 1)), max_size=30),
       st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1)), max_size=30))
def test_widen_wire_indices_is_astype_and_max(readings: list[tuple[int, int]],
                                              values: list[tuple[int, int]]) -> None:
    device = np.array([d for d, _ in readings], "<u2")
    epoch = np.array([e for _, e in readings], "<u4")
    row = np.array([r for r, _ in values], "<u4")
    channel = np.array([c for _, c in values], "<u2")
    out = (np.empty(len(readings), np.int32), np.empty(len(readings), np.int64),
           np.empty(len(values), np.int32), np.empty(len(values), np.int32))
    # read-only, as SNB1's views of a payload are
    for a in (device, epoch, row, channel):
        a.setflags(write=False)
    got = widen_wire_indices(device, epoch, row, channel, *out)
    want = tuple(int(a.max()) if a.size else -1 for a in (device, row, channel))
    assert got == want
    # rows past 2**31 - 1 are clamped (the exact maximum rejects them)
    assert out[2].tolist() == np.minimum(row, 2**31 - 1).tolist()
    for narrow, wide in zip((device, epoch, channel), (out[0], out[1], out[3]), strict=True):
        assert wide.tolist() == narrow.tolist()


def _in_range_by_numpy(seq: np.ndarray, epoch: np.ndarray, ts: np.ndarray,
                       battery: np.ndarray, value: np.ndarray, lo: int, hi: int) -> bool:
    has = ~np.isnan(battery)
    return bool((seq >= 0).all() and (epoch >= 0).all() and ((ts >= lo) & (ts <= hi)).all()
                and ((battery[has] >= 0) & (battery[has] <= 1)).all()
                and np.isfinite(value).all())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-2, 5), st.integers(-2, 5), st.integers(90, 210),
                          st.one_of(st.just(float("nan")), st.floats(-0.5, 1.5))), max_size=20),
       st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20))
def test_readings_in_range_is_numpys_checks(readings: list[tuple[int, int, int, float]],
                                            values: list[float]) -> None:
    seq, epoch, ts = (np.array([r[k] for r in readings], np.int64) for k in range(3))
    battery = np.array([r[3] for r in readings], np.float64)
    value = np.array(values, np.float64)
    assert (readings_in_range(seq, epoch, ts, battery, value, 100, 200)
            == _in_range_by_numpy(seq, epoch, ts, battery, value, 100, 200))
