"""The dedup kernel against a slow, obviously correct reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.dedup import DedupWindow
from sensing.dedup.window import (
    EPOCH_LIMIT,
    EPOCH_SKEW_S,
    MAX_EPOCH_JUMP,
    MAX_SEQ_JUMP,
    SEQ_LIMIT,
)
from sensing.kernels.dedup import (
    ADMITTED,
    DUPLICATE,
    EPOCH_JUMP,
    SEQ_JUMP,
    TOO_OLD,
    WINDOW_BITS,
    WINDOW_WORDS,
    dedup_window,
)

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
    with pytest.raises(ValueError):
        w.classify(np.array([0], np.int32), np.array([-1]), np.array([0]))


# -- bounds on jumps ahead (issue 11, problem 5) ----------------------------------------------


@dataclass(frozen=True)
class Bounds:
    max_seq_jump: int
    seq_limit: int
    max_epoch_jump: int
    epoch_ceiling: int
    epoch_limit: int


def bounded_reference(events: list[tuple[int, int, int]], b: Bounds) -> list[int]:
    """The rules of sensing.kernels.dedup written out plainly: sets of seen seqs per device,
    the jump last refused per device."""
    epoch: dict[int, int] = {}
    seen: dict[int, set[int]] = {}
    top: dict[int, int] = {}
    pending: dict[int, tuple[int, int]] = {}
    out = []
    for d, e, s in events:
        c, t = epoch.get(d, 0), top.get(d, -1)
        if s >= b.seq_limit:
            out.append(int(SEQ_JUMP))
            continue
        if e >= b.epoch_limit:
            out.append(int(EPOCH_JUMP))
            continue
        if e < c:
            out.append(int(TOO_OLD))
            continue
        jump = None
        if e > c and e - c > b.max_epoch_jump and e > b.epoch_ceiling:
            jump = EPOCH_JUMP
        elif t >= 0 and (s > b.max_seq_jump if e > c else s - t > b.max_seq_jump):
            jump = SEQ_JUMP
        if jump is not None:
            pe, ps = pending.get(d, (-1, -1))
            if pe == e and ps < s <= ps + WINDOW_BITS:
                del pending[d]
            else:
                pending[d] = (e, s)
                out.append(int(jump))
                continue
        if e > c or d not in seen:
            epoch[d], seen[d], top[d] = e, set(), -1
        if top[d] - s >= WINDOW_BITS:
            out.append(int(TOO_OLD))
        elif s in seen[d]:
            out.append(int(DUPLICATE))
        else:
            seen[d].add(s)
            top[d] = max(top[d], s)
            out.append(int(ADMITTED))
    return out


def run_kernel(evs: list[tuple[int, int, int]], b: Bounds, batch: int) -> list[int]:
    n = 4
    cur, top = np.zeros(n, np.int64), np.full(n, -1, np.int64)
    bitmap = np.zeros((n, WINDOW_WORDS), np.uint64)
    pend_e, pend_s = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    got: list[int] = []
    for i in range(0, len(evs), batch):
        chunk = evs[i : i + batch]
        verdict = np.empty(len(chunk), np.int8)
        admitted = dedup_window(
            np.array([c[0] for c in chunk], np.int32), np.array([c[1] for c in chunk], np.int64),
            np.array([c[2] for c in chunk], np.int64), cur, top, bitmap, pend_e, pend_s,
            b.max_seq_jump, b.seq_limit, b.max_epoch_jump, b.epoch_ceiling, b.epoch_limit,
            verdict)
        assert admitted == int(np.count_nonzero(verdict == ADMITTED))
        got.extend(verdict.tolist())
    return got


seq_values = st.one_of(st.integers(0, 3 * WINDOW_BITS), st.integers(0, 20 * WINDOW_BITS))
bounded_events = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 6), seq_values), max_size=300)
bounds = st.builds(Bounds, st.sampled_from([50, 700, 5 * WINDOW_BITS]),
                   st.sampled_from([10 * WINDOW_BITS, 2**62]), st.integers(0, 2),
                   st.integers(0, 6), st.integers(3, 7))


@settings(max_examples=400, deadline=None)
@given(bounded_events, bounds, st.integers(1, 50))
def test_bounded_kernel_matches_reference(evs: list[tuple[int, int, int]], b: Bounds,
                                          batch: int) -> None:
    assert run_kernel(evs, b, batch) == bounded_reference(evs, b)


@settings(max_examples=200, deadline=None)
@given(bounded_events, st.integers(1, 50))
def test_without_bounds_the_window_is_the_plain_one(evs: list[tuple[int, int, int]],
                                                    batch: int) -> None:
    """The journal replays with the bounds off: the plain anti-replay window."""
    w = DedupWindow(capacity=4)
    got: list[int] = []
    for i in range(0, len(evs), batch):
        chunk = evs[i : i + batch]
        got.extend(w.classify(np.array([c[0] for c in chunk], np.int32),
                              np.array([c[1] for c in chunk], np.int64),
                              np.array([c[2] for c in chunk], np.int64)).tolist())
    assert got == reference(evs)


NOW_S = 1_796_000_000
INT64_MAX = 2**63 - 1


def verdicts(w: DedupWindow, rows: list[tuple[int, int]], now_s: int = NOW_S) -> list[int]:
    """(epoch, seq) of device 0, in order."""
    ep = np.array([r[0] for r in rows], np.int64)
    sq = np.array([r[1] for r in rows], np.int64)
    out: list[int] = w.classify(np.zeros(len(rows), np.int32), ep, sq, now_s).tolist()
    return out


def test_one_huge_seq_is_refused_and_leaves_the_window_where_it_was() -> None:
    """Issue 11, problem 5: one seq of 2^63 - 1 made every later reading "too old"."""
    w = DedupWindow()
    assert verdicts(w, [(5, 10), (5, INT64_MAX), (5, INT64_MAX - 1), (5, 11)]) == [
        ADMITTED, SEQ_JUMP, SEQ_JUMP, ADMITTED]


def test_one_huge_epoch_is_refused_and_leaves_the_window_where_it_was() -> None:
    w = DedupWindow()
    assert verdicts(w, [(5, 10), (INT64_MAX, 0), (INT64_MAX, 1), (5, 11)]) == [
        ADMITTED, EPOCH_JUMP, EPOCH_JUMP, ADMITTED]


def test_seq_bounds() -> None:
    w = DedupWindow()
    assert verdicts(w, [(0, 0), (0, MAX_SEQ_JUMP), (0, 2 * MAX_SEQ_JUMP + 1),
                        (0, MAX_SEQ_JUMP + 1)]) == [ADMITTED, ADMITTED, SEQ_JUMP, ADMITTED]
    # a new epoch of a known device starts from seq 0
    assert verdicts(w, [(1, MAX_SEQ_JUMP + 1), (1, MAX_SEQ_JUMP)]) == [SEQ_JUMP, ADMITTED]
    # a device never seen may be met in the middle of a long epoch, below SEQ_LIMIT
    fresh = DedupWindow()
    assert verdicts(fresh, [(7, SEQ_LIMIT), (7, SEQ_LIMIT - 1)]) == [SEQ_JUMP, ADMITTED]


def test_epoch_bounds_follow_the_clock_for_agents_that_use_it() -> None:
    w = DedupWindow()
    # counters of restarts, and an agent's max(previous + 1, Unix seconds) up to the skew
    # allowance ahead of the core's clock
    assert verdicts(w, [(3, 0), (2 * MAX_EPOCH_JUMP, 0), (NOW_S, 0),
                        (NOW_S + EPOCH_SKEW_S, 0)]) == [ADMITTED] * 4
    # beyond the clock: at most MAX_EPOCH_JUMP above the current epoch
    ahead = NOW_S + EPOCH_SKEW_S
    assert verdicts(w, [(ahead + MAX_EPOCH_JUMP, 0), (ahead + 2 * MAX_EPOCH_JUMP + 1, 0),
                        (ahead + MAX_EPOCH_JUMP + 1, 0)]) == [ADMITTED, EPOCH_JUMP, ADMITTED]
    fresh = DedupWindow()
    assert verdicts(fresh, [(NOW_S + EPOCH_SKEW_S + MAX_EPOCH_JUMP + 1, 0), (EPOCH_LIMIT, 0),
                            (MAX_EPOCH_JUMP, 9)]) == [EPOCH_JUMP, EPOCH_JUMP, ADMITTED]
    assert verdicts(fresh, [(NOW_S, 5)]) == [ADMITTED]


def test_a_device_that_really_jumped_is_believed_on_its_second_reading() -> None:
    """An agent that lost more than MAX_SEQ_JUMP readings is not locked out; repeats of the
    outlier (QoS 1 redelivery) do not confirm it, and the limits are never passed."""
    w = DedupWindow()
    far = 5 * MAX_SEQ_JUMP
    assert verdicts(w, [(1, 0), (1, far), (1, far), (1, 1), (1, far + 1), (1, far),
                        (1, far + 2), (1, 2)]) == [
        ADMITTED, SEQ_JUMP, SEQ_JUMP, ADMITTED, ADMITTED, ADMITTED, ADMITTED, TOO_OLD]
    future = NOW_S + 10 * EPOCH_SKEW_S
    assert verdicts(w, [(future, 0), (future, 1), (future + 1, 0)]) == [
        EPOCH_JUMP, ADMITTED, ADMITTED]
    assert verdicts(w, [(future + 1, SEQ_LIMIT), (future + 1, SEQ_LIMIT + 1)]) == [
        SEQ_JUMP, SEQ_JUMP]


def test_refused_jumps_are_not_admitted_by_the_journal_replay() -> None:
    """Bounds apply only when the core's clock is given; the journal holds admitted readings."""
    w = DedupWindow()
    assert w.classify(np.zeros(2, np.int32), np.array([0, 0]), np.array([0, 2**50])).tolist() \
        == [ADMITTED, ADMITTED]
