"""A pipeline stage on its own thread: items handled in the order given, all those waiting at
once (a slow round lets the next take more: group commit), with a bounded queue in front so that
a slow stage holds back the one that feeds it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("sensing.core")

T = TypeVar("T")

_DONE = object()


class Stage(Generic[T]):
    """Runs `handle` on the items `put` into it, on one thread, in order: each call gets every
    item waiting then (at least one, at most `depth`).

    `put` blocks while `depth` items wait: back-pressure to the caller. An exception in `handle`
    stops the stage; `error` holds it and `put` raises it, so the caller stops too instead of
    queueing work that would never be done."""

    def __init__(self, name: str, handle: Callable[[list[T]], None], depth: int = 4) -> None:
        self._handle = handle
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def put(self, item: T) -> None:
        while True:
            if self.error is not None:
                raise RuntimeError(f"stage {self._thread.name} stopped") from self.error
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        done = False
        while not done:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if items[-1] is _DONE:
                done = True
                items.pop()
            if not items:
                continue
            try:
                self._handle(items)  # type: ignore[arg-type]
            except BaseException as exc:  # surfaced to the feeding thread by `put`/`join`
                self.error = exc
                log.exception("stage failed", stage=self._thread.name)
                return

    def join(self) -> None:
        """Handle what is queued, then end the thread (re-raises the stage's error)."""
        if self._thread.is_alive():
            while self.error is None:
                try:
                    self._queue.put(_DONE, timeout=0.2)
                    break
                except queue.Full:
                    continue
            self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"stage {self._thread.name} stopped") from self.error
