"""Contract v1 messages other than readings, as frozen pydantic models (boundary types)."""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from sensing.wire.errors import Code
from sensing.wire.limits import TS_MAX_MS, TS_MIN_MS


class Grade(StrEnum):
    """Most severe first."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    INFO = "info"

    @property
    def rank(self) -> int:
        """4 for critical .. 1 for info; 0 is reserved for 'no condition'."""
        return GRADE_RANK[self]


GRADE_RANK: dict[Grade, int] = {Grade.CRITICAL: 4, Grade.MAJOR: 3, Grade.MINOR: 2, Grade.INFO: 1}
GRADE_BY_RANK: dict[int, Grade] = {v: k for k, v in GRADE_RANK.items()}


class AlertState(StrEnum):
    RAISED = "raised"
    UPDATED = "updated"
    ACKNOWLEDGED = "acknowledged"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))


class Alert(_Message):
    alert_id: str
    type: str
    grade: Grade
    state: AlertState
    device: str
    gateway: str
    area: str
    ts_event: int
    ts_raised: int
    value: float | None = None
    reason: str = ""
    tier: str | None = None
    """Responder tier on dispatch messages (an addition to contract v1)."""
    by: str | None = None
    """Who acknowledged or resolved (an addition to contract v1)."""


class Ack(_Message):
    alert_id: str = Field(min_length=1, max_length=128)
    """the alert, or the case (any alert of it names it too)"""
    by: str = Field(min_length=1, max_length=128)
    action: Literal["ack", "resolve", "take", "arrived", "dispose", "reassign"]
    """take, arrived, dispose and reassign: additions to contract v1 (docs/contract.md)"""
    outcome: str | None = Field(default=None, max_length=32)
    """dispose: fire, false_alarm, device_fault, resident_ok or other"""
    note: str | None = Field(default=None, max_length=1000)
    to: str | None = Field(default=None, min_length=1, max_length=128)
    """reassign: the responder who takes the case over"""


class SilenceRequest(_Message):
    """`sensing/v1/silences/{responder}` (an addition to contract v1)."""

    action: Literal["add", "remove"]
    silence_id: str | None = Field(default=None, max_length=64)
    device: str = Field(default="", max_length=128)
    area: str = Field(default="", max_length=64)
    type: str = Field(default="", max_length=128)
    reason: str = Field(default="", max_length=500)
    starts_ms: int | None = None
    ends_ms: int | None = None


class GatewayStatus(_Message):
    state: Literal["online", "offline"]
    ts: int = Field(ge=TS_MIN_MS, le=TS_MAX_MS)
    """ms; the core also refuses one more than MAX_FUTURE_MS ahead of its clock"""


MAX_DEADLETTER_RAW = 64 * 1024
"""raw bytes a dead letter carries at most: the whole input up to this, else its first bytes.
A dead letter must always fit the broker's packet limit, however large its input: a 13 MB
message's 17 MB dead letter made the broker drop the core's connection, again on every
reconnect (paho sends its queue first), and stalled the core for good."""


class DeadLetter(_Message):
    reason: str
    topic: str
    payload: str
    """base64 of the raw bytes (their first MAX_DEADLETTER_RAW when `size` is larger)"""
    code: str = Code.PAYLOAD_INVALID.value
    """why, for machines: one of `sensing.wire.errors.Code` (an addition to contract v1)"""
    size: int | None = None
    """the input's whole length in bytes, when `payload` holds only its beginning (an
    addition to contract v1)"""

    @classmethod
    def of(cls, reason: str, topic: str, payload: bytes,
           code: str = Code.PAYLOAD_INVALID, size: int | None = None) -> DeadLetter:
        """`size`: the payload's length as sent, when `payload` is only its start."""
        kept = payload[:MAX_DEADLETTER_RAW]
        sent = max(len(payload), size or 0)
        return cls(reason=reason, topic=topic[:1024], payload=base64.b64encode(kept).decode(),
                   code=str(code), size=sent if len(kept) < sent else None)

    def raw(self) -> bytes:
        return base64.b64decode(self.payload)
