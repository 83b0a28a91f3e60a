"""Process-level helpers shared by the command-line tools (core, edge agent, simulator)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` instead of killing the process, so it can shut down in
    order. Only the main thread can install handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def on_hangup(handle: Callable[[], None]) -> Iterator[None]:
    """SIGHUP calls `handle` (a reload), which must only start work and return. Only the main
    thread can install handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: handle())
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 << 10
TRIM_THRESHOLD_BYTES = 1 << 20


def give_freed_memory_back() -> bool:
    """Have glibc return large freed blocks to the system (True if it was told so).

    By default glibc raises its mmap threshold to the largest block freed, up to 32 MB: once
    the core's state arrays have grown a few times, their successors come from the heap, and
    the blocks they replaced stay resident behind whatever was allocated after them. A fixed
    threshold maps every block over 256 kB on its own, unmapped when freed. Measured with
    benchmarks/bench_e2e.py at 100,000 devices, one reading per message: peak RSS 473 MB ->
    404 MB at the same throughput. An operator's MALLOC_* or GLIBC_TUNABLES malloc settings
    win."""
    if (any(k.startswith("MALLOC_") for k in os.environ)
            or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")
            or not sys.platform.startswith("linux")):
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                    and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
