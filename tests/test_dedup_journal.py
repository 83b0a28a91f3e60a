"""The dedup window survives a restart: snapshot + journal, torn tails ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sensing.dedup import DedupJournal, DedupWindow
from sensing.kernels.dedup import ADMITTED, DUPLICATE
from sensing.registry import Names


def fresh(state: Path, compact_every: int = 1000) -> tuple[DedupWindow, Names, DedupJournal]:
    window, names = DedupWindow(capacity=2), Names()
    journal = DedupJournal(state, window, names, compact_every=compact_every)
    journal.recover()
    return window, names, journal


def admit(window: DedupWindow, names: Names, journal: DedupJournal,
          keys: list[tuple[str, int, int]]) -> list[int]:
    dev = np.array([names.intern(d) for d, _, _ in keys], dtype=np.int32)
    window.ensure_capacity(len(names))
    epoch = np.array([e for _, e, _ in keys], dtype=np.int64)
    seq = np.array([s for _, _, s in keys], dtype=np.int64)
    verdict = window.classify(dev, epoch, seq)
    keep = verdict == ADMITTED
    journal.append(dev[keep], epoch[keep], seq[keep])
    return verdict.tolist()


def test_restart_refuses_what_was_admitted_before(tmp_path: Path) -> None:
    for compact_every in (1, 3, 1000):  # snapshot only, snapshot + journal, journal only
        state = tmp_path / f"c{compact_every}"
        w, n, j = fresh(state, compact_every)
        for step in range(5):
            keys = [(f"dev-{d}", 0, step * 10 + k) for d in range(20) for k in range(10)]
            assert admit(w, n, j, keys) == [ADMITTED] * len(keys)
        # no clean close: a crash
        w2, n2, j2 = fresh(state, compact_every)
        assert n2.names == n.names  # same dense indices after the restart
        again = [(f"dev-{d}", 0, s) for d in range(20) for s in range(50)]
        assert admit(w2, n2, j2, again) == [DUPLICATE] * len(again)
        assert admit(w2, n2, j2, [("dev-3", 0, 50), ("dev-new", 0, 0)]) == [ADMITTED] * 2


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    w, n, j = fresh(tmp_path)
    admit(w, n, j, [("a", 0, 1), ("b", 0, 1)])
    admit(w, n, j, [("a", 0, 2), ("c", 0, 7)])
    data = j.journal_path.read_bytes()
    j.journal_path.write_bytes(data[:-5])  # the crash cut the second record short
    w2, n2, j2 = fresh(tmp_path)
    # the first record holds; the torn one never was acknowledged, so its readings are new
    assert admit(w2, n2, j2, [("a", 0, 1), ("b", 0, 1), ("a", 0, 2), ("c", 0, 7)]) == [
        DUPLICATE, DUPLICATE, ADMITTED, ADMITTED]
