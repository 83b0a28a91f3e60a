"""Alert lifecycle: one open alert per (device, type), every transition recorded in SQLite (WAL)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import orjson
import structlog

from sensing.wire.messages import Ack, Alert, AlertState, Grade

log = structlog.get_logger("sensing.alerts")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    type TEXT NOT NULL,
    is_open INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (is_open, device, type);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    state TEXT NOT NULL,
    grade TEXT NOT NULL,
    ts INTEGER NOT NULL,
    doc TEXT NOT NULL
);
-- alert and dispatch messages decided but not yet confirmed by the broker (PUBACK): written in
-- the same transaction as the transitions they announce, published again after a crash
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    messages BLOB NOT NULL
);
"""


class UnknownAlert(KeyError):
    pass


class AlertBook:
    """Open alerts in memory, every transition in SQLite.

    Inside `step()` transitions are not committed one by one: the step's transitions and its
    outbox of messages commit together when the block ends, so a crash leaves either both or
    neither (and the broker, not yet acknowledged, delivers the step's messages again)."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._deferred = False
        self._open: dict[tuple[str, str], Alert] = {}
        self._by_id: dict[str, Alert] = {}
        for (doc,) in self._db.execute("SELECT doc FROM alerts WHERE is_open = 1"):
            alert = Alert.model_validate_json(doc)
            self._open[(alert.device, alert.type)] = alert
            self._by_id[alert.alert_id] = alert

    def close(self) -> None:
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The store's connection, for what must commit with the transitions (the cases and
        notifications of `sensing.dispatch`); used on the core's step thread only."""
        return self._db

    @contextmanager
    def step(self) -> Iterator[None]:
        """Commit the transitions of the block (and its `enqueue`d messages) at once."""
        self._deferred = True
        try:
            yield
        except BaseException:
            self._db.rollback()
            raise
        else:
            self._db.commit()
        finally:
            self._deferred = False

    def enqueue(self, messages: list[tuple[str, bytes]]) -> int:
        """Keep (topic, payload) messages until `delivered`; returns their outbox id."""
        cur = self._db.execute("INSERT INTO outbox (messages) VALUES (?)",
                               (orjson.dumps([[t, p.decode()] for t, p in messages]),))
        if not self._deferred:
            self._db.commit()
        return int(cur.lastrowid or 0)

    def delivered(self, outbox_ids: list[int]) -> None:
        """The broker confirmed every message of these outbox entries."""
        if not outbox_ids:
            return
        self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in outbox_ids])
        if not self._deferred:
            self._db.commit()

    def undelivered(self) -> list[tuple[int, list[tuple[str, bytes]]]]:
        """Outbox entries the broker never confirmed (a crash), oldest first."""
        return [(int(i), [(t, p.encode()) for t, p in orjson.loads(raw)])
                for i, raw in self._db.execute("SELECT id, messages FROM outbox ORDER BY id")]

    @property
    def open_alerts(self) -> list[Alert]:
        return list(self._open.values())

    def get(self, alert_id: str) -> Alert:
        alert = self._by_id.get(alert_id)
        if alert is not None:
            return alert
        row = self._db.execute("SELECT doc FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        if row is None:
            raise UnknownAlert(alert_id)
        return Alert.model_validate_json(row[0])

    def open_for(self, device: str, alert_type: str) -> Alert | None:
        return self._open.get((device, alert_type))

    def _record(self, alert: Alert) -> Alert:
        is_open = alert.state != AlertState.RESOLVED
        key = (alert.device, alert.type)
        if is_open:
            self._open[key] = alert
            self._by_id[alert.alert_id] = alert
        else:
            self._open.pop(key, None)
            self._by_id.pop(alert.alert_id, None)
        doc = orjson.dumps(alert.model_dump(mode="json", exclude_none=True)).decode()
        with nullcontext() if self._deferred else self._db:
            self._db.execute(
                "INSERT INTO alerts (alert_id, device, type, is_open, doc) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (alert_id)"
                " DO UPDATE SET is_open = excluded.is_open, doc = excluded.doc",
                (alert.alert_id, alert.device, alert.type, int(is_open), doc),
            )
            self._db.execute(
                "INSERT INTO transitions (alert_id, state, grade, ts, doc) VALUES (?, ?, ?, ?, ?)",
                (alert.alert_id, alert.state.value, alert.grade.value, alert.ts_raised, doc),
            )
        log.info(
            "alert",
            alert_id=alert.alert_id,
            type=alert.type,
            grade=alert.grade.value,
            state=alert.state.value,
            device=alert.device,
            gateway=alert.gateway,
            area=alert.area,
        )
        return alert

    def condition(
        self,
        *,
        device: str,
        alert_type: str,
        grade: Grade | None,
        gateway: str,
        area: str,
        ts_event: int,
        value: float | None,
        reason: str,
        now: int,
    ) -> Alert | None:
        """A detector's verdict changed: raise, update or resolve the alert it concerns."""
        current = self._open.get((device, alert_type))
        if grade is None:
            if current is None:
                return None
            return self._record(
                current.model_copy(
                    update={
                        "state": AlertState.RESOLVED,
                        "ts_raised": now,
                        "value": value,
                        "reason": reason,
                    }
                )
            )
        if current is None:
            return self._record(
                Alert(
                    alert_id=uuid.uuid4().hex,
                    type=alert_type,
                    grade=grade,
                    state=AlertState.RAISED,
                    device=device,
                    gateway=gateway,
                    area=area,
                    ts_event=ts_event,
                    ts_raised=now,
                    value=value,
                    reason=reason,
                )
            )
        if current.grade == grade:
            return None
        return self._record(
            current.model_copy(
                update={
                    "grade": grade,
                    "state": AlertState.UPDATED,
                    "ts_raised": now,
                    "value": value,
                    "reason": reason,
                    "by": None,
                }
            )
        )

    def update(self, alert_id: str, *, reason: str, now: int, grade: Grade | None = None
               ) -> Alert:
        """An `updated` transition of an open alert: a new reason, maybe a new grade."""
        current = self._by_id[alert_id]
        return self._record(current.model_copy(update={
            "state": AlertState.UPDATED, "ts_raised": now, "reason": reason,
            "grade": grade or current.grade}))

    def ack(self, ack: Ack, now: int) -> Alert:
        current = self._by_id.get(ack.alert_id)
        if current is None:
            self.get(ack.alert_id)  # raises UnknownAlert for ids never seen
            raise UnknownAlert(f"{ack.alert_id} is already resolved")
        state = AlertState.ACKNOWLEDGED if ack.action == "ack" else AlertState.RESOLVED
        return self._record(
            current.model_copy(
                update={
                    "state": state,
                    "ts_raised": now,
                    "by": ack.by,
                    "reason": f"{state.value} by {ack.by}",
                }
            )
        )

    def escalate(self, alert_id: str, tier: str, now: int) -> Alert:
        current = self._by_id[alert_id]
        return self._record(
            current.model_copy(
                update={
                    "state": AlertState.ESCALATED,
                    "ts_raised": now,
                    "tier": tier,
                    "reason": f"not acknowledged, escalated to {tier}",
                }
            )
        )

    @staticmethod
    def is_acknowledged(alert: Alert) -> bool:
        return alert.by is not None
