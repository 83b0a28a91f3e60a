"""CPU time and peak memory of processes and their descendants, from /proc."""

from __future__ import annotations

import os
from pathlib import Path

from sensing.testing.processes import memory_kb

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the name (field 2) is in parentheses and may hold spaces or parentheses itself
    return text[text.rindex(")") + 2 :].split()


def process_children() -> dict[int, list[int]]:
    """Every live process's children, by parent pid: one look at /proc for several queries."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(pids: list[int], children: dict[int, list[int]] | None = None) -> list[int]:
    """`pids` and every live process below them."""
    if children is None:
        children = process_children()
    out: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_seconds(pids: list[int], children: dict[int, list[int]] | None = None) -> float:
    """utime + stime of each process and its descendants, live or waited for (cutime,
    cstime), in seconds; a process that has gone counts 0."""
    total = 0
    for pid in descendants(pids, children):
        fields = _stat_fields(pid)
        if fields is not None:
            # after the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
            total += sum(int(f) for f in fields[11:15])
    return total / _TICKS


def peak_rss_kb(pids: list[int]) -> int:
    """The sum of the peak resident sets (VmHWM) of each process and its descendants."""
    return sum(memory_kb(pid) for pid in descendants(pids))


def current_rss_kb(pids: list[int]) -> int:
    """The sum of the resident sets now (VmRSS) of each process and its descendants."""
    return sum(memory_kb(pid, "VmRSS") for pid in descendants(pids))
