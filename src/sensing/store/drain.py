"""The drain: a thread that moves the spool into the store, oldest first, and then tells the
gateways what is stored.

Several spooled steps go out in one write (up to `max_request_bytes`). Lines the store refuses
are handed to `on_rejected` (the core dead-letters them); the rest are stored. Only after the
write does the drain publish the entries' store confirmations and delete them from the spool,
so an edge agent never deletes a reading the store does not have.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from sensing.store.spool import Spool
from sensing.store.writer import Rejected, StoreUnavailable, StoreWriter

log = structlog.get_logger("sensing.store")

Publish = Callable[[str, bytes], None]


class StoreDrain:
    def __init__(self, spool: Spool, writer: StoreWriter, publish: Publish,
                 on_rejected: Callable[[list[Rejected]], None],
                 max_request_bytes: int = 8 << 20) -> None:
        self.spool = spool
        self.writer = writer
        self._publish = publish
        self._on_rejected = on_rejected
        self.max_request_bytes = max_request_bytes
        self.stop_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-drain", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self.stop_event.is_set():
                if not self.spool.wait_for_entries(0.2):
                    continue
                self.drain_once()
        except StoreUnavailable:
            log.warning("store unreachable at stop; the spool keeps what is left",
                        entries=self.spool.entries, bytes=self.spool.size_bytes)
        except BaseException as exc:  # surfaced by the core, which stops on it
            self.error = exc
            log.exception("store drain failed")

    def drain_once(self) -> int:
        """Store the oldest entries; returns how many. Raises StoreUnavailable on stop."""
        entries = self.spool.oldest(self.max_request_bytes)
        if not entries:
            return 0
        rejected = self.writer.write([e.lines for e in entries], self.stop_event)
        if rejected:
            self._on_rejected(rejected)
        for entry in entries:
            for topic, payload in entry.confirms:
                self._publish(topic, payload)
        self.spool.done(entries)
        return len(entries)

    def stop(self, grace_s: float) -> None:
        """Give the drain `grace_s` to empty the spool, then stop it."""
        if self._thread.is_alive():
            self.spool.wait_empty(grace_s)
        self.stop_event.set()
        self._thread.join()
