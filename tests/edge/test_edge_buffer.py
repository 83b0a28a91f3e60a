"""The durable reading buffer on its own: numbering, persistence, epochs, the cap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing_edge import ReadingBuffer, SensorSample, WhenFull


def samples(device: str, n: int, start_ts: int = 1_795_478_819_832) -> list[SensorSample]:
    return [SensorSample(device, "smoke", start_ts + i * 1000, {"obscuration": 0.1 + i / 100},
                         0.9) for i in range(n)]


def test_readings_are_numbered_per_device_and_come_back_in_order(tmp_path: Path) -> None:
    buf = ReadingBuffer(tmp_path / "b.db", clock_s=1000)
    rows = buf.append([*samples("a", 3), *samples("b", 2), *samples("a", 1)])
    assert [(n.sample.device, n.epoch, n.seq) for _, n in rows] == [
        ("a", 1000, 0), ("a", 1000, 1), ("a", 1000, 2), ("b", 1000, 0), ("b", 1000, 1),
        ("a", 1000, 3)]
    assert [r for r, _ in rows] == list(range(rows[0][0], rows[0][0] + 6))
    assert buf.take(0, 100) == rows
    assert buf.take(rows[1][0], 2) == rows[2:4]
    assert buf.take(0, 100, through=rows[2][0]) == rows[:3]
    assert len(buf) == 6 and buf.count_after(rows[3][0]) == 2


def test_what_was_not_removed_is_there_after_a_reopen_under_a_new_epoch(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    buf = ReadingBuffer(path, clock_s=1000)
    rows = buf.append(samples("a", 5))
    assert buf.remove([rows[0][0], rows[1][0], rows[3][0]]) == 3
    assert buf.remove([rows[0][0]]) == 0  # removed once only
    buf.close()
    again = ReadingBuffer(path, clock_s=1000)
    assert again.epoch == 1001  # one more than the last run, though the clock says 1000
    assert [r for r, _ in again.take(0, 10)] == [rows[2][0], rows[4][0]]
    new = again.append(samples("a", 1))
    assert new[0][1].epoch == 1001 and new[0][1].seq == 0
    assert new[0][0] > rows[-1][0]  # rows never go back
    again.close()
    assert ReadingBuffer(path, clock_s=5000).epoch == 5000  # never behind the clock


def test_rows_are_never_reused_after_the_buffer_empties(tmp_path: Path) -> None:
    buf = ReadingBuffer(tmp_path / "b.db")
    first = buf.append(samples("a", 3))
    buf.remove(r for r, _ in first)
    assert len(buf) == 0
    second = buf.append(samples("a", 1))
    assert second[0][0] == first[-1][0] + 1


def test_a_full_buffer_drops_the_oldest_and_counts_them() -> None:
    buf = ReadingBuffer(max_readings=5, when_full=WhenFull.DROP_OLDEST)
    buf.append(samples("a", 4))
    kept = buf.append(samples("b", 3))
    assert len(buf) == 5 and buf.dropped == 2
    assert [(n.sample.device, n.seq) for _, n in buf.take(0, 10)] == [
        ("a", 2), ("a", 3), ("b", 0), ("b", 1), ("b", 2)]
    assert len(kept) == 3
    buf.append(samples("c", 7))  # more than the whole buffer at once: its newest 5 stay
    assert [(n.sample.device, n.seq) for _, n in buf.take(0, 10)] == [
        ("c", 2), ("c", 3), ("c", 4), ("c", 5), ("c", 6)]
    assert buf.dropped == 2 + 5 + 2


def test_a_full_buffer_can_refuse_the_newest_instead() -> None:
    buf = ReadingBuffer(max_readings=5, when_full="drop-newest")
    buf.append(samples("a", 4))
    kept = buf.append(samples("b", 3))
    assert [(n.sample.device, n.seq) for _, n in kept] == [("b", 0)]
    assert buf.append(samples("b", 1)) == [] and buf.dropped == 3
    assert [n.sample.device for _, n in buf.take(0, 10)] == ["a"] * 4 + ["b"]
    buf.remove([r for r, _ in buf.take(0, 1)])
    # the refused readings used up their seqs: downstream sees the gap (1-3 are missing)
    assert [n.seq for _, n in buf.append(samples("b", 1))] == [4]


def test_a_committed_reading_survives_sigkill(tmp_path: Path) -> None:
    """A child process appends readings and is killed with SIGKILL right after `append`
    returned: every reading it reported committed is in the file."""
    path = tmp_path / "b.db"
    child = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys\n"
            "from sensing_edge import ReadingBuffer, SensorSample\n"
            f"b = ReadingBuffer({str(path)!r})\n"
            "for i in range(10**9):\n"
            "    b.append([SensorSample('d-%d' % (i % 7), 'smoke', 1795478819832 + i,\n"
            "                           {'obscuration': 0.1}, None)])\n"
            "    print(i, flush=True)\n")],
        stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    done = -1
    for line in child.stdout:
        done = int(line)
        if done >= 300:
            break
    child.kill()
    child.wait()
    rows = ReadingBuffer(path).take(0, 10**6)
    assert len(rows) >= done + 1  # at least what it reported, perhaps one more
    assert [n.sample.ts - 1795478819832 for _, n in rows] == list(range(len(rows)))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 4)), max_size=12),
       st.integers(1, 20), st.sampled_from(list(WhenFull)))
def test_what_is_kept_and_dropped_adds_up_under_any_cap(appends: list[tuple[str, int]],
                                                        cap: int, policy: WhenFull) -> None:
    """Seqs count every sample (kept or dropped) per device; the buffer holds at most `cap`;
    kept + dropped = appended; drop-oldest keeps the newest readings, drop-newest the oldest."""
    buf = ReadingBuffer(max_readings=cap, when_full=policy)
    sent: list[tuple[str, int]] = []
    counter: dict[str, int] = {}
    for device, n in appends:
        buf.append(samples(device, n))
        for _ in range(n):
            sent.append((device, counter.get(device, 0)))
            counter[device] = counter.get(device, 0) + 1
    held = [(n.sample.device, n.seq) for _, n in buf.take(0, 10**6)]
    assert len(held) == len(buf) == min(cap, len(sent))
    assert len(held) + buf.dropped == len(sent)
    want = sent[-cap:] if policy is WhenFull.DROP_OLDEST else sent[:cap]
    assert held == want


def test_a_bad_epoch_is_refused() -> None:
    with pytest.raises(ValueError):
        ReadingBuffer(epoch=2**32)
    with pytest.raises(ValueError):
        ReadingBuffer(max_readings=0)
