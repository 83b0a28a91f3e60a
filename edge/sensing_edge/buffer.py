"""The gateway's durable reading buffer: SQLite in WAL mode.

Every reading is numbered `(device, epoch, seq)` and committed here as soon as the agent has it,
before anything is published; it is deleted only once the core confirmed it stored it (or, with
the agent's `confirm = "broker"`, once the broker acknowledged the batch that carried it). With
`synchronous=FULL` a commit is on disk when `append` returns, so neither `SIGKILL` nor a power
cut loses a committed reading; a reading whose deletion had not been committed yet is sent again
after a restart, and the core drops (or, being too old for its window, stores once more over
itself) the repeat.

The epoch of a run is one more than the previous run's, kept in the same file, and never less
than the Unix time in seconds, so that a gateway whose buffer file was lost does not repeat
earlier names either. Within an epoch each device's seq counts from 0.

The buffer is bounded (`max_readings`). When it is full, `drop-oldest` deletes the oldest
readings to make room (the newest data of a long outage matter most for alarms), `drop-newest`
refuses new ones; either way every dropped reading is counted and logged.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path

import orjson
import structlog

from .batching import NumberedSample
from .drivers import SensorSample

log = structlog.get_logger(__name__)

DROP_LOG_EVERY_S = 10.0
MAX_EPOCH = 2**32 - 1  # SNB1 carries the epoch as an unsigned 32-bit integer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    row INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: rows only grow
    device TEXT NOT NULL, kind TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
    ts INTEGER NOT NULL, battery REAL, "values" BLOB NOT NULL
);
"""


class WhenFull(StrEnum):
    DROP_OLDEST = "drop-oldest"
    DROP_NEWEST = "drop-newest"


Row = tuple[int, NumberedSample]
"""a buffered reading and its row id (rows increase in the order readings were appended)"""


class ReadingBuffer:
    """Numbered readings waiting for their confirmation. Thread-safe.

    `path` is a file, or ":memory:" for a buffer that does not survive the process (tests, or a
    gateway without storage). `epoch` overrides the persisted epoch counter for this run.
    """

    def __init__(self, path: Path | str = ":memory:", *, max_readings: int = 1_000_000,
                 when_full: WhenFull | str = WhenFull.DROP_OLDEST, epoch: int | None = None,
                 clock_s: float | None = None) -> None:
        if max_readings < 1:
            raise ValueError("max_readings must be at least 1")
        self.path = str(path)
        self.max_readings = max_readings
        self.when_full = WhenFull(when_full)
        self._lock = threading.Lock()
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.epoch = self._next_epoch(epoch, time.time() if clock_s is None else clock_s)
        self._next_seq: dict[str, int] = {}
        self._count = int(self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
        self.dropped = 0
        """readings dropped because the buffer was full, since this buffer was opened"""
        self._logged_drop_at = -DROP_LOG_EVERY_S

    def _next_epoch(self, override: int | None, now_s: float) -> int:
        with self._transaction():
            found = self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            previous = -1 if found is None else int(found[0])
            epoch = override if override is not None else max(previous + 1, int(now_s))
            if not 0 <= epoch <= MAX_EPOCH:
                raise ValueError(f"epoch {epoch} outside 0..{MAX_EPOCH}")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)",
                             (max(epoch, previous),))
        return epoch

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # -- writing ---------------------------------------------------------------------------

    def append(self, samples: Sequence[SensorSample]) -> list[Row]:
        """Number `samples` in this epoch and commit them (durably) in one transaction;
        returns them with their rows. When the buffer is full, the policy decides which
        readings are dropped; a dropped reading keeps its seq, so that the stream downstream
        shows the gap."""
        if not samples:
            return []
        with self._lock:
            numbered = []
            for s in samples:
                seq = self._next_seq.get(s.device, 0)
                self._next_seq[s.device] = seq + 1
                numbered.append(NumberedSample(s, self.epoch, seq))
            free = self.max_readings - self._count
            if len(numbered) > free and self.when_full is WhenFull.DROP_NEWEST:
                self._note_dropped(len(numbered) - max(0, free),
                                   "buffer full: newest readings refused")
                numbered = numbered[: max(0, free)]
            elif len(numbered) > self.max_readings:  # drop-oldest, more than the whole buffer
                self._note_dropped(len(numbered) - self.max_readings,
                                   "buffer full: oldest readings deleted")
                numbered = numbered[len(numbered) - self.max_readings :]
            if not numbered:
                return []
            with self._transaction():
                evict = self._count + len(numbered) - self.max_readings
                if evict > 0:  # drop-oldest (drop-newest never gets here)
                    self._db.execute(
                        "DELETE FROM readings WHERE row IN "
                        "(SELECT row FROM readings ORDER BY row LIMIT ?)", (evict,))
                self._db.executemany(
                    'INSERT INTO readings (device, kind, epoch, seq, ts, battery, "values") '
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(n.sample.device, n.sample.kind, n.epoch, n.seq, n.sample.ts,
                      n.sample.battery, orjson.dumps(n.sample.values)) for n in numbered])
                # one writer, one transaction: the new rows are the last len(numbered) ones
                last = int(self._db.execute("SELECT MAX(row) FROM readings").fetchone()[0])
            if evict > 0:
                self._count -= evict
                self._note_dropped(evict, "buffer full: oldest readings deleted")
            self._count += len(numbered)
            first = last - len(numbered) + 1
            return list(zip(range(first, last + 1), numbered, strict=True))

    def _note_dropped(self, n: int, reason: str) -> None:
        self.dropped += n
        now = time.monotonic()
        if now - self._logged_drop_at >= DROP_LOG_EVERY_S:  # a full buffer drops every poll
            self._logged_drop_at = now
            log.warning("readings_dropped", readings=n, reason=reason,
                        dropped_total=self.dropped, max_readings=self.max_readings,
                        policy=self.when_full.value)

    def remove(self, rows: Iterable[int]) -> int:
        """Delete confirmed readings (one transaction); returns how many were still here."""
        runs = _runs(sorted(set(rows)))
        if not runs:
            return 0
        with self._lock, self._transaction():
            removed = 0
            for lo, hi in runs:
                removed += self._db.execute(
                    "DELETE FROM readings WHERE row BETWEEN ? AND ?", (lo, hi)).rowcount
            self._count -= removed
            return removed

    # -- reading ---------------------------------------------------------------------------

    def take(self, after: int, limit: int, through: int | None = None) -> list[Row]:
        """Up to `limit` readings with rows after `after` (and at most `through`), oldest
        first."""
        with self._lock:
            cur = self._db.execute(
                'SELECT row, device, kind, epoch, seq, ts, battery, "values" FROM readings '
                "WHERE row > ? AND row <= ? ORDER BY row LIMIT ?",
                (after, _MAX_ROW if through is None else through, limit))
            return [_row(*found) for found in cur]

    def get(self, rows: Sequence[int]) -> list[Row]:
        """The readings of `rows` still here (a full buffer may have deleted some), by row."""
        wanted = set(rows)
        out: list[Row] = []
        with self._lock:
            for lo, hi in _runs(sorted(wanted)):
                cur = self._db.execute(
                    'SELECT row, device, kind, epoch, seq, ts, battery, "values" FROM readings '
                    "WHERE row BETWEEN ? AND ? ORDER BY row", (lo, hi))
                out.extend(_row(*found) for found in cur)
        return out

    def count_after(self, after: int, through: int | None = None) -> int:
        with self._lock:
            return int(self._db.execute(
                "SELECT COUNT(*) FROM readings WHERE row > ? AND row <= ?",
                (after, _MAX_ROW if through is None else through)).fetchone()[0])

    def last_row(self) -> int:
        """The newest row (0 when the buffer never held a reading)."""
        with self._lock:
            found = self._db.execute("SELECT MAX(row) FROM readings").fetchone()[0]
            return 0 if found is None else int(found)

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def close(self) -> None:
        with self._lock:
            self._db.close()


_MAX_ROW = 2**63 - 1


def _row(row: int, device: str, kind: str, epoch: int, seq: int, ts: int,
         battery: float | None, values: bytes) -> Row:
    return row, NumberedSample(SensorSample(device, kind, ts, orjson.loads(values), battery),
                               epoch, seq)


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    """Sorted distinct rows as inclusive (first, last) runs of consecutive numbers."""
    out: list[tuple[int, int]] = []
    for r in rows:
        if out and r == out[-1][1] + 1:
            out[-1] = (out[-1][0], r)
        else:
            out.append((r, r))
    return out


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")
