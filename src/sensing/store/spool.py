"""The core's spool: line protocol on its way to the store, on the core's own disk.

A step's lines (and the store confirmations its gateways are waiting for) are committed here
durably (SQLite WAL, synchronous=FULL) before the broker is acknowledged; a drain thread
(`sensing.store.drain`) writes them to the store and deletes them. So a store outage never
holds back the step loop (alerts go out while the store is down), a crash or a stop during an
outage loses nothing (the next start drains what is left), and memory stays bounded: the spool
is bounded in bytes, and when it is full the step loop waits for the drain, leaving new
messages with the broker.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lines BLOB NOT NULL,
    confirms BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    id: int
    lines: bytes
    """newline-separated line protocol (may be empty)"""
    confirms: list[tuple[str, bytes]]
    """(topic, payload) to publish once `lines` are stored"""


class Spool:
    def __init__(self, path: Path | str, max_bytes: int = 1 << 30) -> None:
        self.path = str(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(lines) + LENGTH(confirms)), 0) FROM spool"
        ).fetchone()
        self._entries, self._bytes = int(row[0]), int(row[1])

    @property
    def entries(self) -> int:
        return self._entries

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def add(self, lines: bytes, confirms: list[tuple[str, bytes]],
            stop: threading.Event | None = None) -> bool:
        """Commit one step's lines durably; waits while the spool is full. False if `stop`
        was set while waiting (nothing added)."""
        if not lines and not confirms:
            return True
        blob = orjson.dumps([[t, p.decode()] for t, p in confirms])
        size = len(lines) + len(blob)
        with self._changed:
            while self._bytes and self._bytes + size > self.max_bytes:
                if stop is not None and stop.is_set():
                    return False
                self._changed.wait(0.2)
            self._db.execute("INSERT INTO spool (lines, confirms) VALUES (?, ?)", (lines, blob))
            self._entries += 1
            self._bytes += size
            self._changed.notify_all()
        return True

    def wait_for_entries(self, timeout: float) -> bool:
        with self._changed:
            if not self._entries:
                self._changed.wait(timeout)
            return self._entries > 0

    def oldest(self, max_bytes: int) -> list[SpoolEntry]:
        """The oldest entries, at least one, up to about `max_bytes` of lines."""
        out: list[SpoolEntry] = []
        total = 0
        with self._lock:
            for i, lines, confirms in self._db.execute(
                    "SELECT id, lines, confirms FROM spool ORDER BY id LIMIT 256"):
                if out and total + len(lines) > max_bytes:
                    break
                out.append(SpoolEntry(int(i), bytes(lines),
                                      [(t, p.encode()) for t, p in orjson.loads(confirms)]))
                total += len(lines)
        return out

    def done(self, entries: list[SpoolEntry]) -> None:
        """The entries are stored and their confirmations sent: forget them."""
        if not entries:
            return
        with self._changed:
            # two statements for the lot, not two per entry: ids go in as one JSON array
            ids = (orjson.dumps([e.id for e in entries]).decode(),)
            self._db.execute("BEGIN IMMEDIATE")
            removed, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(lines) + LENGTH(confirms)), 0) FROM spool "
                "WHERE id IN (SELECT value FROM json_each(?))", ids).fetchone()
            self._db.execute("DELETE FROM spool WHERE id IN (SELECT value FROM json_each(?))",
                             ids)
            self._db.execute("COMMIT")
            self._entries -= int(removed)
            self._bytes -= int(size)
            self._changed.notify_all()

    def wait_empty(self, timeout: float) -> bool:
        with self._changed:
            self._changed.wait_for(lambda: self._entries == 0, timeout)
            return self._entries == 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
