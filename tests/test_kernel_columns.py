"""The whole-batch helpers against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.kernels.columns import batch_bounds, take

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
