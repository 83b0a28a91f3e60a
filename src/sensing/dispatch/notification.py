"""A notification: one message about one case, for one responder, through one of their contacts.

Its id is deterministic (a hash of the case, the escalation step, the responder, the contact
and the re-notify round), so planning the same step again after a crash yields the same id:
the outbox ignores it, and the id doubles as the receiver's idempotency key.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from sensing.dispatch.directory import Contact
from sensing.wire.messages import GRADE_RANK, Alert, Grade

MAX_PAYLOAD_BYTES = 16 * 1024
"""a notification's payload at most: an alert with its dispatch fields is well under 2 KiB"""
MAX_NAME = 128
"""case id, responder and role at most, in characters"""
MAX_URL = 2048

HTTP_LIKE_APPRISE = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})
"""Apprise schemes that are plain HTTP to a host the operator names (not a secret)"""


@dataclass(frozen=True, slots=True)
class Notification:
    notification_id: str
    case_id: str
    responder: str
    role: str
    contact: Contact
    payload: bytes

    def __post_init__(self) -> None:
        for name in ("notification_id", "case_id", "responder", "role"):
            value: str = getattr(self, name)
            if not 0 < len(value) <= MAX_NAME:
                raise ValueError(f"{name} must have 1..{MAX_NAME} characters")
        if len(self.contact.url) > MAX_URL:
            raise ValueError(f"contact url longer than {MAX_URL}")
        if len(self.payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload of {len(self.payload)} bytes over {MAX_PAYLOAD_BYTES}")


def notification_id(case_id: str, step: int, responder: str, contact: Contact,
                    round_: int = 0, chain: str = "") -> str:
    """The same inputs give the same id in every process and after every restart. `chain`
    tells the steps of two chains apart (a case whose worse grade moved it to another)."""
    key = orjson.dumps([case_id, step, responder, contact.channel, contact.url, round_,
                        *([chain] if chain else [])])
    return hashlib.sha256(key).hexdigest()[:32]


def make_notification(*, case_id: str, step: int, responder: str, role: str, contact: Contact,
                      payload: bytes, round_: int = 0, chain: str = "") -> Notification:
    return Notification(notification_id(case_id, step, responder, contact, round_, chain),
                        case_id, responder, role, contact, payload)


def dispatch_payload(alert: Alert, *, role: str, responder: str, case_id: str,
                     resident: str | None = None, link: str | None = None) -> bytes:
    """The contract's alert object for the dispatch topic, with who it is for added (contract
    v1 only grows: `tier` is the role, as the MQTT topic's `{tier}`)."""
    doc: dict[str, Any] = alert.model_dump(mode="json", exclude_none=True)
    doc.update(tier=role, role=role, responder=responder, case_id=case_id)
    if resident is not None:
        doc["resident"] = resident
    if link is not None:
        doc["link"] = link
    return orjson.dumps(doc)


class PayloadView(BaseModel):
    """What the channels read of a payload to title a message or name a topic. Lenient: a
    payload that is not such an object still goes out, with these fields empty."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    alert_id: str = ""
    type: str = ""
    grade: str = ""
    state: str = ""
    area: str = ""
    device: str = ""
    reason: str = ""
    resident: str = ""
    role: str = ""
    responder: str = ""
    case_id: str = ""
    link: str = ""

    @classmethod
    def of(cls, payload: bytes) -> PayloadView:
        try:
            doc = orjson.loads(payload)
            if isinstance(doc, dict):
                return cls.model_validate(
                    {k: v for k, v in doc.items() if isinstance(v, str)})
        except (orjson.JSONDecodeError, ValidationError):
            pass
        return cls()

    @property
    def rank(self) -> int:
        """4 for critical .. 1 for info, 0 for no known grade (dropped first on overflow)."""
        try:
            return GRADE_RANK[Grade(self.grade)]
        except ValueError:
            return 0


def route_key(contact: Contact) -> str:
    """What a delivery failure is likely shared by: one HTTP origin (scheme, host, port) or one
    Apprise service account. Keys that would carry a secret (a bot token standing as an
    Apprise 'host') hold its hash instead, so they can be logged."""
    if contact.channel == "mqtt":
        return "mqtt"
    try:
        parts = urllib.parse.urlsplit(contact.url)
        scheme = parts.scheme.lower()
        if contact.channel == "webhook" or scheme in HTTP_LIKE_APPRISE:
            host = (parts.hostname or "").lower()
            return f"{contact.channel}:{scheme}://{host}:{parts.port or ''}"
    except ValueError:
        return f"{contact.channel}:invalid"
    digest = hashlib.sha256(parts.netloc.encode()).hexdigest()[:12]
    return f"{contact.channel}:{scheme}://#{digest}"
