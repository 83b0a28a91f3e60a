"""The durable notification outbox: every notification and every attempt to send it, in SQLite.

States: `queued` (never tried: due at once), `retrying` (tried, due again at `next_attempt_ms`),
`sent`,
`failed` (permanently: a permanent error, too many attempts, too old, or dropped on overflow)
and `cancelled` (its case was taken or closed before it went). A row leaves queued/retrying
only when an outcome is recorded, so a notification in flight when the process dies is sent
again after the restart, with the same id: the receiver's idempotency key.

Bounded: at most `max_pending` queued/retrying rows per channel. Beyond it the lowest-graded,
then oldest, pending notifications are failed with reason `overflow` (so an info-grade backlog
goes before a critical page, and a new critical page is never the one refused while older
lower-graded ones wait); terminal rows are removed by `prune`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from sensing.dispatch.directory import Contact
from sensing.dispatch.notification import Notification, PayloadView, route_key
from sensing.redact import redact_text

log = structlog.get_logger("sensing.dispatch.outbox")

State = Literal["queued", "retrying", "sent", "failed", "cancelled"]
STATES: tuple[State, ...] = ("queued", "retrying", "sent", "failed", "cancelled")
PENDING: tuple[State, ...] = ("queued", "retrying")
Outcome = Literal["sent", "retry", "failed"]

MAX_ERROR = 500
"""characters of an error text kept per attempt"""
MAX_EXCLUDED_KEYS = 500
"""route keys one `due` query can leave out (SQLite binds at most 32,766 parameters)"""
DEFAULT_MAX_PENDING = 100_000
_CHUNK = 500
"""ids per `IN (...)` query"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notification (
    notification_id TEXT PRIMARY KEY,
    case_id TEXT NOT NULL,
    responder TEXT NOT NULL,
    role TEXT NOT NULL,
    channel TEXT NOT NULL,
    url TEXT NOT NULL,
    route_key TEXT NOT NULL,
    payload BLOB NOT NULL,
    rank INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    first_attempt_ms INTEGER,
    updated_ms INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS notification_due
    ON notification (channel, rank DESC, next_attempt_ms, created_ms, route_key, notification_id,
                     first_attempt_ms)
    WHERE state IN ('queued', 'retrying');
CREATE INDEX IF NOT EXISTS notification_victims
    ON notification (channel, rank, created_ms) WHERE state IN ('queued', 'retrying');
CREATE INDEX IF NOT EXISTS notification_case ON notification (case_id);
CREATE INDEX IF NOT EXISTS notification_done
    ON notification (updated_ms) WHERE state NOT IN ('queued', 'retrying');
CREATE TABLE IF NOT EXISTS notification_attempt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT NOT NULL,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS notification_attempt_of ON notification_attempt (notification_id);
-- pending rows per channel, kept by triggers so the bound is checked without counting rows
CREATE TABLE IF NOT EXISTS notification_pending (
    channel TEXT PRIMARY KEY,
    n INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS notification_pending_added AFTER INSERT ON notification
    WHEN NEW.state IN ('queued', 'retrying')
BEGIN
    INSERT INTO notification_pending (channel, n) VALUES (NEW.channel, 1)
        ON CONFLICT (channel) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS notification_pending_settled AFTER UPDATE OF state ON notification
    WHEN OLD.state IN ('queued', 'retrying') AND NEW.state NOT IN ('queued', 'retrying')
BEGIN
    UPDATE notification_pending SET n = n - 1 WHERE channel = OLD.channel;
END;
CREATE TRIGGER IF NOT EXISTS notification_pending_removed AFTER DELETE ON notification
    WHEN OLD.state IN ('queued', 'retrying')
BEGIN
    UPDATE notification_pending SET n = n - 1 WHERE channel = OLD.channel;
END;
"""
_RECOUNT = """
DELETE FROM notification_pending;
INSERT INTO notification_pending (channel, n) SELECT channel, COUNT(*) FROM notification
    WHERE state IN ('queued', 'retrying') GROUP BY channel;
"""

_COLUMNS = ("notification_id, case_id, responder, role, channel, url, payload, attempts,"
            " created_ms, route_key, first_attempt_ms")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pending notification due now, as far as choosing it needs."""

    notification_id: str
    route_key: str
    first_attempt_ms: int | None


@dataclass(frozen=True, slots=True)
class Due:
    """A pending notification handed to a sender, with what the retry policy needs."""

    notification: Notification
    attempts: int
    created_ms: int
    route_key: str
    first_attempt_ms: int | None
    """on the delivery clock; None: never tried"""


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One outcome to record. `next_attempt_ms` for a retry; a retry without it is due now."""

    notification_id: str
    ts_ms: int
    outcome: Outcome
    error: str = ""
    duration_ms: int = 0
    next_attempt_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    ts_ms: int
    outcome: str
    error: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    notification_id: str
    case_id: str
    responder: str
    role: str
    channel: str
    url: str
    state: State
    attempts: int
    created_ms: int
    updated_ms: int
    last_error: str
    tries: tuple[AttemptRecord, ...]


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    added: int
    duplicates: int
    dropped: tuple[str, ...]
    """ids failed with reason `overflow` (may include some of those just added)"""


def _bounded(error: str) -> str:
    text = redact_text(error)
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


class Outbox:
    """Notifications and their attempts in the tables `notification` and
    `notification_attempt`.

    Given a connection (the alert store's), the outbox shares its transactions: call
    `enqueue(..., commit=False)` inside the store's step so the notifications commit with the
    escalation that planned them. Given a path, it opens its own connection (WAL). A
    connection is used by one thread at a time: the delivery loop opens its own."""

    def __init__(self, db: sqlite3.Connection | Path | str,
                 max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = max_pending
        self._owned = not isinstance(db, sqlite3.Connection)
        if isinstance(db, sqlite3.Connection):
            self._db = db
        else:
            self._db = sqlite3.connect(str(db), timeout=10.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        # commits any open transaction: only at start-up (the recount heals a count that a
        # tool editing the table without the triggers left wrong)
        self._db.executescript(_SCHEMA + _RECOUNT)

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    def close(self) -> None:
        """Closes the connection only if the outbox opened it."""
        if self._owned:
            self._db.close()

    # --- writing -----------------------------------------------------------------------------

    def enqueue(self, notifications: Iterable[Notification], now_ms: int, *,
                commit: bool = True) -> EnqueueResult:
        """Queue notifications not queued before (by id); older or lower-graded ones beyond
        the channel's bound are failed with reason `overflow`."""
        added = duplicates = 0
        channels: set[str] = set()
        for n in notifications:
            if self._insert(n, now_ms, sent=False):
                added += 1
                channels.add(n.contact.channel)
            else:
                duplicates += 1
        dropped: list[str] = []
        for channel in sorted(channels):
            dropped.extend(self._drop_overflow(channel, now_ms))
        if commit:
            self._db.commit()
        if dropped:
            log.warning("notification outbox full: dropped the lowest-graded, oldest",
                        dropped=len(dropped), max_pending=self.max_pending)
        return EnqueueResult(added, duplicates, tuple(dropped))

    def published(self, notifications: Iterable[Notification], now_ms: int) -> int:
        """Record notifications the core publishes itself with a step (the contract's MQTT
        dispatch topic) as sent, with their attempt; no commit (the step's transaction
        holds them). The step's own outbox re-publishes them until the broker confirms, so
        the delivery loop never sends them. Returns how many were new."""
        added = 0
        for n in notifications:
            if self._insert(n, now_ms, sent=True):
                added += 1
                self._db.execute(
                    "INSERT INTO notification_attempt (notification_id, ts_ms, outcome, error,"
                    " duration_ms) VALUES (?, ?, 'sent', 'published with the core''s step', 0)",
                    (n.notification_id, now_ms))
        return added

    def _insert(self, n: Notification, now_ms: int, sent: bool) -> bool:
        """Add `n` unless its id is there already (True if added): queued (due at once, never
        tried) or, `sent`, as published, with its one attempt made at `now_ms`."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO notification (notification_id, case_id, responder, role,"
            " channel, url, route_key, payload, rank, state, attempts, created_ms,"
            " next_attempt_ms, first_attempt_ms, updated_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (n.notification_id, n.case_id, n.responder, n.role, n.contact.channel,
             n.contact.url, route_key(n.contact), n.payload, PayloadView.of(n.payload).rank,
             "sent" if sent else "queued", int(sent), now_ms, now_ms if sent else 0,
             now_ms if sent else None, now_ms))
        return cur.rowcount == 1

    def _drop_overflow(self, channel: str, now_ms: int) -> list[str]:
        excess = self.pending(channel) - self.max_pending
        if excess <= 0:
            return []
        victims = [str(i) for (i,) in self._db.execute(
            "SELECT notification_id FROM notification WHERE channel = ?"
            " AND state IN ('queued', 'retrying') ORDER BY rank, created_ms LIMIT ?",
            (channel, excess))]
        reason = f"overflow: more than {self.max_pending} pending on channel {channel}"
        self._db.executemany(
            "UPDATE notification SET state = 'failed', updated_ms = ?, last_error = ?"
            " WHERE notification_id = ?", [(now_ms, reason, i) for i in victims])
        self._db.executemany(
            "INSERT INTO notification_attempt (notification_id, ts_ms, outcome, error,"
            " duration_ms) VALUES (?, ?, 'dropped', ?, 0)", [(i, now_ms, reason) for i in victims])
        return victims

    def record(self, results: Sequence[AttemptResult]) -> int:
        """Record outcomes in one transaction; returns how many changed a notification's state.

        A `sent` always wins (it happened), except over another `sent`; a retry or a failure
        changes only a pending notification (one cancelled meanwhile stays cancelled). Every
        attempt is kept in `notification_attempt` all the same."""
        changed = 0
        with self._db:
            for r in results:
                error = _bounded(r.error)
                if r.outcome == "sent":
                    cur = self._db.execute(
                        "UPDATE notification SET state = 'sent', attempts = attempts + 1,"
                        " first_attempt_ms = COALESCE(first_attempt_ms, ?), updated_ms = ?,"
                        " last_error = '' WHERE notification_id = ? AND state != 'sent'",
                        (r.ts_ms, r.ts_ms, r.notification_id))
                else:
                    state: State = "retrying" if r.outcome == "retry" else "failed"
                    cur = self._db.execute(
                        "UPDATE notification SET state = ?, attempts = attempts + 1,"
                        " first_attempt_ms = COALESCE(first_attempt_ms, ?), next_attempt_ms = ?,"
                        " updated_ms = ?, last_error = ?"
                        " WHERE notification_id = ? AND state IN ('queued', 'retrying')",
                        (state, r.ts_ms,
                         r.next_attempt_ms if r.next_attempt_ms is not None else r.ts_ms,
                         r.ts_ms, error, r.notification_id))
                changed += cur.rowcount
                self._db.execute(
                    "INSERT INTO notification_attempt (notification_id, ts_ms, outcome, error,"
                    " duration_ms) VALUES (?, ?, ?, ?, ?)",
                    (r.notification_id, r.ts_ms, r.outcome, error, r.duration_ms))
        return changed

    def give_up(self, notification_id: str, now_ms: int, reason: str) -> bool:
        """Fail a pending notification without an attempt (too old to be worth sending)."""
        with self._db:
            cur = self._db.execute(
                "UPDATE notification SET state = 'failed', updated_ms = ?, last_error = ?"
                " WHERE notification_id = ? AND state IN ('queued', 'retrying')",
                (now_ms, _bounded(reason), notification_id))
            if cur.rowcount:
                self._db.execute(
                    "INSERT INTO notification_attempt (notification_id, ts_ms, outcome, error,"
                    " duration_ms) VALUES (?, ?, 'expired', ?, 0)",
                    (notification_id, now_ms, _bounded(reason)))
        return cur.rowcount == 1

    def cancel_case(self, case_id: str, now_ms: int, reason: str, *,
                    commit: bool = True) -> int:
        """Stop the case's pending notifications (it was taken or closed); returns how many."""
        cur = self._db.execute(
            "UPDATE notification SET state = 'cancelled', updated_ms = ?, last_error = ?"
            " WHERE case_id = ? AND state IN ('queued', 'retrying')",
            (now_ms, _bounded(reason), case_id))
        if commit:
            self._db.commit()
        return cur.rowcount

    def prune(self, before_ms: int) -> int:
        """Forget finished notifications (and their attempts) last changed before `before_ms`."""
        with self._db:
            self._db.execute(
                "DELETE FROM notification_attempt WHERE notification_id IN (SELECT"
                " notification_id FROM notification WHERE state NOT IN ('queued', 'retrying')"
                " AND updated_ms < ?)", (before_ms,))
            cur = self._db.execute(
                "DELETE FROM notification WHERE state NOT IN ('queued', 'retrying')"
                " AND updated_ms < ?", (before_ms,))
        return cur.rowcount

    # --- reading -----------------------------------------------------------------------------

    def candidates(self, now_ms: int, channel: str, limit: int,
                   exclude_keys: Iterable[str] = ()) -> list[Candidate]:
        """Pending notifications of `channel` due by `now_ms` (queued ones always are), most
        severe first, then the never tried, then the longest due, without their payloads;
        none whose route key is in `exclude_keys` (busy or broken routes). Cheap: read from
        one covering index."""
        excluded = sorted(set(exclude_keys))[:MAX_EXCLUDED_KEYS]
        marks = ", ".join("?" * len(excluded))
        rows = self._db.execute(
            "SELECT notification_id, route_key, first_attempt_ms FROM notification"
            " WHERE channel = ?"
            " AND state IN ('queued', 'retrying') AND next_attempt_ms <= ?"
            + (f" AND route_key NOT IN ({marks})" if excluded else "")
            + " ORDER BY rank DESC, next_attempt_ms, created_ms LIMIT ?",
            (channel, now_ms, *excluded, max(0, limit))).fetchall()
        return [Candidate(str(i), str(k), None if f is None else int(f)) for i, k, f in rows]

    def load(self, notification_ids: Sequence[str], now_ms: int) -> list[Due]:
        """The pending ones of these notifications, whole, in the order given. A row the
        directory's contact model no longer accepts is failed, not returned."""
        rows: dict[str, tuple[Any, ...]] = {}
        for start in range(0, len(notification_ids), _CHUNK):
            chunk = notification_ids[start:start + _CHUNK]
            for row in self._db.execute(
                    f"SELECT {_COLUMNS} FROM notification WHERE notification_id IN"
                    f" ({', '.join('?' * len(chunk))}) AND state IN ('queued', 'retrying')",
                    tuple(chunk)):
                rows[str(row[0])] = row
        out: list[Due] = []
        for nid in notification_ids:
            if nid not in rows:
                continue
            (_, case_id, responder, role, ch, url, payload, attempts, created_ms, key,
             first) = rows[nid]
            try:
                n = Notification(nid, case_id, responder, role,
                                 Contact(channel=ch, url=url), bytes(payload))
            except ValueError as e:  # pydantic's ValidationError is a ValueError
                self.give_up(nid, now_ms, f"invalid stored notification: {e}")
                continue
            out.append(Due(n, int(attempts), int(created_ms), str(key),
                           None if first is None else int(first)))
        return out

    def due(self, now_ms: int, channel: str, limit: int,
            exclude_keys: Iterable[str] = ()) -> list[Due]:
        """`candidates`, loaded whole."""
        return self.load([c.notification_id for c in
                          self.candidates(now_ms, channel, limit, exclude_keys)], now_ms)

    def pending(self, channel: str) -> int:
        """Queued and retrying notifications of the channel (kept count: no scan)."""
        row = self._db.execute("SELECT n FROM notification_pending WHERE channel = ?",
                               (channel,)).fetchone()
        return 0 if row is None else int(row[0])

    def next_due_ms(self, channel: str) -> int | None:
        """When the channel's earliest pending notification is due (None: nothing pending)."""
        (when,) = self._db.execute(
            "SELECT MIN(next_attempt_ms) FROM notification WHERE channel = ?"
            " AND state IN ('queued', 'retrying')", (channel,)).fetchone()
        return None if when is None else int(when)

    def state_of(self, notification_id: str) -> State | None:
        row = self._db.execute("SELECT state FROM notification WHERE notification_id = ?",
                               (notification_id,)).fetchone()
        return None if row is None else _state(row[0])

    def counts(self, channel: str | None = None) -> dict[State, int]:
        """Notifications per state (every state present, zero or not)."""
        where, args = ("WHERE channel = ?", (channel,)) if channel is not None else ("", ())
        out: dict[State, int] = dict.fromkeys(STATES, 0)
        for state, n in self._db.execute(
                f"SELECT state, COUNT(*) FROM notification {where} GROUP BY state", args):
            out[_state(state)] = int(n)
        return out

    def history(self, case_id: str) -> list[NotificationRecord]:
        """Every notification of a case with its attempts, in the order they were queued."""
        rows = self._db.execute(
            "SELECT notification_id, case_id, responder, role, channel, url, state, attempts,"
            " created_ms, updated_ms, last_error FROM notification WHERE case_id = ?"
            " ORDER BY created_ms, rowid", (case_id,)).fetchall()
        out: list[NotificationRecord] = []
        for nid, cid, responder, role, channel, url, state, attempts, created, updated, err \
                in rows:
            tries = tuple(AttemptRecord(int(ts), str(o), str(e), int(d)) for ts, o, e, d in
                          self._db.execute(
                              "SELECT ts_ms, outcome, error, duration_ms FROM"
                              " notification_attempt WHERE notification_id = ? ORDER BY id",
                              (nid,)))
            out.append(NotificationRecord(str(nid), str(cid), str(responder), str(role),
                                          str(channel), str(url), _state(state), int(attempts),
                                          int(created), int(updated), str(err), tries))
        return out


def _state(value: object) -> State:
    for s in STATES:
        if s == value:
            return s
    raise ValueError(f"unknown notification state {value!r}")
