"""The impossible-value check's bulk shortcut gives exactly what the kernel gives on every
reading, whatever the order and batching."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.detect.fault import ImpossibleValueDetector
from sensing.detect.kernel import KernelDetector

T0 = 1_700_000_000_000

pytestmark = pytest.mark.kernel

reading = st.tuples(
    st.integers(0, 5),  # device
    st.integers(0, 600_000),  # ms after T0, any order
    st.one_of(st.floats(-5, 20), st.just(float("nan")), st.sampled_from([0.0, 1.0, 2.5])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(reading, max_size=150), st.integers(1, 40),
       st.sampled_from([("smoke", "co_ppm"), ("wearable", "sos"), ("wearable", "steps")]))
def test_shortcut_equals_the_kernel_on_every_reading(
    rows: list[tuple[int, int, float]], batch: int, where: tuple[str, str]
) -> None:
    fast = ImpossibleValueDetector(*where, capacity=2)
    full = ImpossibleValueDetector(*where, capacity=2)
    for det in (fast, full):
        det.ensure_capacity(6)
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        dev = np.array([r[0] for r in chunk], dtype=np.int32)
        ts = np.array([T0 + r[1] for r in chunk], dtype=np.int64)
        val = np.array([r[2] for r in chunk], dtype=np.float64)
        a = fast.process(dev, ts, val)
        b = KernelDetector.process(full, dev, ts, val)
        for x, y in zip((a.row, a.level, a.onset), (b.row, b.level, b.onset), strict=True):
            assert x.tolist() == y.tolist()
        assert np.array_equal(a.signal, b.signal, equal_nan=True)
    for name in fast.state:
        assert np.array_equal(fast.state[name], full.state[name]), name
