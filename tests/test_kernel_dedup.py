"""The dedup kernel against a slow, obviously correct reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.dedup import DedupWindow
from sensing.kernels.dedup import ADMITTED, DUPLICATE, TOO_OLD, WINDOW_BITS

pytestmark = pytest.mark.kernel


def reference(events: list[tuple[int, int, int]]) -> list[int]:
    """Per device: the current epoch and the set of seqs seen in it; older than the window or
    an earlier epoch cannot be placed."""
    epoch: dict[int, int] = {}
    seen: dict[int, set[int]] = {}
    top: dict[int, int] = {}
    out = []
    for d, e, s in events:
        if d not in epoch or e > epoch[d]:
            epoch[d], seen[d], top[d] = e, set(), -1
        if e < epoch[d] or top[d] - s >= WINDOW_BITS:
            out.append(int(TOO_OLD))
        elif s in seen[d]:
            out.append(int(DUPLICATE))
        else:
            seen[d].add(s)
            top[d] = max(top[d], s)
            out.append(int(ADMITTED))
    return out


events = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 3 * WINDOW_BITS)),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(events, st.integers(1, 50))
def test_kernel_matches_reference_in_any_order_and_batching(
    evs: list[tuple[int, int, int]], batch: int
) -> None:
    w = DedupWindow(capacity=2)
    w.ensure_capacity(4)
    got: list[int] = []
    for i in range(0, len(evs), batch):
        chunk = evs[i : i + batch]
        dev = np.array([c[0] for c in chunk], dtype=np.int32)
        ep = np.array([c[1] for c in chunk], dtype=np.int64)
        sq = np.array([c[2] for c in chunk], dtype=np.int64)
        got.extend(w.classify(dev, ep, sq).tolist())
    assert got == reference(evs)


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(WINDOW_BITS))), st.integers(0, WINDOW_BITS))
def test_shuffled_window_admits_each_once_and_repeats_never(order: list[int], k: int) -> None:
    """Late-but-unseen readings inside the window are accepted; repeats, however late, not."""
    w = DedupWindow()
    seqs = np.array(order + order[:k], dtype=np.int64)
    dev = np.zeros(seqs.shape[0], dtype=np.int32)
    verdict = w.classify(dev, np.zeros_like(seqs), seqs)
    assert (verdict[:WINDOW_BITS] == ADMITTED).all()
    assert (verdict[WINDOW_BITS:] == DUPLICATE).all()


def test_a_restart_opens_a_new_epoch() -> None:
    w = DedupWindow()
    dev = np.zeros(4, dtype=np.int32)
    v = w.classify(dev, np.array([0, 0, 1, 0]), np.array([5, 5, 5, 6]))
    assert v.tolist() == [ADMITTED, DUPLICATE, ADMITTED, TOO_OLD]


def test_wrapper_checks_its_input() -> None:
    w = DedupWindow(capacity=2)
    with pytest.raises(IndexError):
        w.classify(np.array([5], np.int32), np.array([0]), np.array([0]))
    with pytest.raises(ValueError):
        w.classify(np.array([0], np.int32), np.array([0]), np.array([-1]))
    with pytest.raises(ValueError):
        w.classify(np.array([0, 0], np.int32), np.array([0]), np.array([0]))
