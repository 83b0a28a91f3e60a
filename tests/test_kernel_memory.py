"""Prefetch hints and unsigned indices: they change no result."""

from __future__ import annotations

import numpy as np
import pytest
from numba import config, njit
from numba.core.errors import TypingError

from sensing.kernels.fault import STUCK_STATE
from sensing.kernels.jit import ix
from sensing.kernels.memory import prefetch

pytestmark = pytest.mark.kernel


@njit(cache=False)
def _sum_with_hints(flat: np.ndarray, table: np.ndarray, records: np.ndarray,
                    rows: np.ndarray) -> float:
    """The sum of flat[rows] + table[rows, 1] + records[rows, 0]["run_val"], asking for each
    row's lines two rows ahead (and for rows far outside the arrays: a hint never faults)."""
    total = 0.0
    for i in range(rows.shape[0]):
        if i + 2 < rows.shape[0]:
            r = ix(rows[i + 2])
            prefetch(flat, r, 0)
            prefetch(table, r, 1)
            prefetch(records, r, 0)
        prefetch(flat, 1 << 40, 0)
        r = ix(rows[i])
        total += flat[r] + table[r, 1] + records[r, 0]["run_val"]
    return total


def test_prefetch_changes_neither_the_arrays_nor_the_result() -> None:
    rng = np.random.default_rng(5)
    flat = rng.random(1000)
    table = rng.random((1000, 3))
    records = np.zeros((1000, 2), STUCK_STATE)
    records["run_val"] = rng.random((1000, 2))
    rows = rng.integers(0, 1000, 500).astype(np.int32)
    before = (flat.copy(), table.copy(), records.copy())
    got = _sum_with_hints(flat, table, records, rows)
    want = float((flat[rows] + table[rows, 1] + records["run_val"][rows, 0]).sum())
    assert got == pytest.approx(want, rel=1e-12)
    assert np.array_equal(flat, before[0])
    assert np.array_equal(table, before[1])
    assert np.array_equal(records, before[2])


@pytest.mark.skipif(config.DISABLE_JIT, reason="typing needs the compiler; without it the hint "
                                               "is a Python no-op")
def test_prefetch_refuses_arrays_of_three_dimensions() -> None:
    @njit(cache=False)
    def cube(a: np.ndarray) -> None:
        prefetch(a, 0, 0)

    with pytest.raises(TypingError):
        cube(np.zeros((2, 2, 2)))


def test_ix_is_the_same_index() -> None:
    @njit(cache=False)
    def pick(a: np.ndarray, i: int) -> float:
        return float(a[ix(i)])

    a = np.arange(10.0)
    assert [pick(a, i) for i in range(10)] == a.tolist()
