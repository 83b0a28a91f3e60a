"""Silences and maintenance windows: notifications held back, everything still recorded.

A silence matches a device, an area (and everything under it) or an alert type ("kind.*"
covers a kind), or any combination; it runs from `starts_ms` to `ends_ms` (an expiry is
required: a forgotten silence must end). Cases that a silence matches are opened, recorded and
kept in their timeline as usual; only their notifications are held back, and the escalation
resumes where the chain stands when the silence ends.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from typing import Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sensing.wire.limits import TS_MAX_MS, TS_MIN_MS

MAX_SILENCES = 10_000
"""silences in force at once, at most: one more is refused"""
MAX_SILENCE_MS = 90 * 24 * 3600 * 1000
"""the longest a silence may last (90 days)"""

_NAME = r"^[A-Za-z0-9_.*-]{1,128}$"


class Silence(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    silence_id: str = Field(default_factory=lambda: uuid.uuid4().hex, pattern=r"^[0-9a-f]{32}$")
    device: str = Field("", max_length=128)
    area: str = Field("", max_length=64)
    type: str = Field("", pattern=r"^$|" + _NAME)
    """an alert type, "kind.*" or "" (any)"""
    author: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=500)
    starts_ms: int = Field(ge=TS_MIN_MS, le=TS_MAX_MS)
    ends_ms: int = Field(ge=TS_MIN_MS, le=TS_MAX_MS)

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if not (self.device or self.area or self.type):
            raise ValueError("a silence names a device, an area or a type (or several)")
        if not self.starts_ms < self.ends_ms <= self.starts_ms + MAX_SILENCE_MS:
            raise ValueError("a silence ends after it starts, within 90 days")
        return self

    def matches(self, alert_type: str, device: str, area_line: Sequence[str],
                now_ms: int) -> bool:
        """Whether it holds back an alert of this type and device, in an area whose line of
        ancestors (the area first) is `area_line`, at `now_ms`."""
        if not self.starts_ms <= now_ms < self.ends_ms:
            return False
        if self.device and self.device != device:
            return False
        if self.area and self.area not in area_line:
            return False
        if self.type.endswith(".*"):
            return alert_type.startswith(self.type[:-1])
        return not self.type or self.type == alert_type


_SCHEMA = """
CREATE TABLE IF NOT EXISTS silences (
    silence_id TEXT PRIMARY KEY,
    ends_ms INTEGER NOT NULL,
    removed_by TEXT,
    doc BLOB NOT NULL
);
"""


class SilenceBook:
    """Silences in the alert store (history kept: a removed or expired one stays recorded).

    Like `CaseStore`, it never commits: writes belong to the caller's transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)
        self._active: list[Silence] = [
            Silence.model_validate_json(doc) for (doc,) in self._db.execute(
                "SELECT doc FROM silences WHERE removed_by IS NULL")]

    def add(self, silence: Silence, now_ms: int) -> Silence:
        self.expire(now_ms)
        if len(self._active) >= MAX_SILENCES:
            raise ValueError(f"{MAX_SILENCES} silences are in force already")
        self._db.execute("INSERT INTO silences (silence_id, ends_ms, doc) VALUES (?, ?, ?)",
                         (silence.silence_id, silence.ends_ms,
                          orjson.dumps(silence.model_dump())))
        self._active.append(silence)
        return silence

    def remove(self, silence_id: str, by: str) -> bool:
        """End a silence early; False if none in force has this id."""
        kept = [s for s in self._active if s.silence_id != silence_id]
        if len(kept) == len(self._active):
            return False
        self._active = kept
        self._db.execute("UPDATE silences SET removed_by = ? WHERE silence_id = ?",
                         (by, silence_id))
        return True

    def expire(self, now_ms: int) -> None:
        """Forget silences that have ended (their rows stay, marked expired)."""
        ended = [s for s in self._active if s.ends_ms <= now_ms]
        if ended:
            self._active = [s for s in self._active if s.ends_ms > now_ms]
            self._db.executemany("UPDATE silences SET removed_by = '(expired)'"
                                 " WHERE silence_id = ?", [(s.silence_id,) for s in ended])

    @property
    def active(self) -> tuple[Silence, ...]:
        return tuple(self._active)

    def holding(self, alert_type: str, device: str, area_line: Sequence[str],
                now_ms: int) -> Silence | None:
        """The silence that holds back this alert's notifications now, if any."""
        for s in self._active:
            if s.matches(alert_type, device, area_line, now_ms):
                return s
        return None

    def next_end(self, alert_type: str, device: str, area_line: Sequence[str],
                 now_ms: int) -> int | None:
        """When the silences holding this alert back all end (None: none holds it)."""
        ends = [s.ends_ms for s in self._active
                if s.matches(alert_type, device, area_line, now_ms)]
        return max(ends) if ends else None
