"""A pipeline stage on its own thread: items handled in the order given, all those waiting at
once (a slow round lets the next take more: group commit), with a queue in front bounded in items
and in bytes so that a slow stage holds back the one that feeds it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("sensing.core")

T = TypeVar("T")


class Stage(Generic[T]):
    """Runs `handle` on the items `put` into it, on one thread, in order: each call gets every
    item waiting then (at least one, at most `depth`).

    `put` blocks while `depth` items wait, or while the items given and not yet handled weigh
    `max_bytes` (as `put` is told; one item alone may weigh more): back-pressure to the caller.
    An exception in `handle` stops the stage; `error` holds it and `put` raises it, so the
    caller stops too instead of queueing work that would never be done."""

    def __init__(self, name: str, handle: Callable[[list[T]], None], depth: int = 4,
                 max_bytes: int = 1 << 62) -> None:
        self._handle = handle
        self._queue: queue.Queue[tuple[T, int] | None] = queue.Queue(maxsize=depth)
        """(item, weight) in order; None: the end"""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None
        self.max_bytes = max_bytes
        self._weight = 0
        """bytes given to `put` and not yet handled"""
        self._lighter = threading.Condition()

    def start(self) -> None:
        self._thread.start()

    def put(self, item: T, weight: int = 0) -> None:
        with self._lighter:
            while self._weight and self._weight + weight > self.max_bytes:
                self._raise_if_stopped()
                self._lighter.wait(0.2)
            self._weight += weight
        while True:
            self._raise_if_stopped()
            try:
                self._queue.put((item, weight), timeout=0.2)
                return
            except queue.Full:
                continue

    @property
    def weight(self) -> int:
        """Bytes given to `put` and not yet handled."""
        return self._weight

    def _raise_if_stopped(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"stage {self._thread.name} stopped") from self.error

    def _run(self) -> None:
        done = False
        while not done:
            got = [self._queue.get()]
            while True:
                try:
                    got.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if got[-1] is None:
                done = True
            items = [x for x in got if x is not None]
            if not items:
                continue
            try:
                self._handle([item for item, _ in items])
            except BaseException as exc:  # surfaced to the feeding thread by `put`/`join`
                self.error = exc
                log.exception("stage failed", stage=self._thread.name)
                return
            with self._lighter:
                self._weight -= sum(weight for _, weight in items)
                self._lighter.notify_all()

    def join(self) -> None:
        """Handle what is queued, then end the thread (re-raises the stage's error)."""
        if self._thread.is_alive():
            while self.error is None:
                try:
                    self._queue.put(None, timeout=0.2)
                    break
                except queue.Full:
                    continue
            self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"stage {self._thread.name} stopped") from self.error
