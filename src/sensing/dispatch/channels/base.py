"""What every channel is: a sender that turns one notification into one outcome, in bounded time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from sensing.dispatch.notification import Notification

MAX_RETRY_AFTER_MS = 3_600_000
"""a receiver's Retry-After is honoured up to an hour"""


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """`sent`; `retry` later (the receiver or the way to it may recover); `failed` for good."""

    outcome: Literal["sent", "retry", "failed"]
    reason: str = ""
    retry_after_ms: int | None = None
    """the receiver's own wish (HTTP Retry-After), at least this long before the next try"""

    @classmethod
    def sent(cls) -> SendOutcome:
        return cls("sent")

    @classmethod
    def retry(cls, reason: str, retry_after_ms: int | None = None) -> SendOutcome:
        if retry_after_ms is not None:
            retry_after_ms = min(max(0, retry_after_ms), MAX_RETRY_AFTER_MS)
        return cls("retry", reason, retry_after_ms)

    @classmethod
    def failed(cls, reason: str) -> SendOutcome:
        return cls("failed", reason)


class Channel(Protocol):
    """Sends over one kind of contact (`name` is `Contact.channel`). `send` returns within the
    channel's timeouts and raises nothing for a failure of the receiver or the network; it
    may be called from several threads at once."""

    @property
    def name(self) -> str: ...

    def send(self, notification: Notification) -> SendOutcome: ...


class LazyChannel:
    """A channel built on its first send: a core whose directory names no contact of it never
    pays for it (Apprise costs 6.4 MB of memory and 0.1 s to import)."""

    def __init__(self, name: str, build: Callable[[], Channel]) -> None:
        self._name = name
        self._build = build
        self._channel: Channel | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    def send(self, notification: Notification) -> SendOutcome:
        channel = self._channel
        if channel is None:
            with self._lock:
                if self._channel is None:
                    self._channel = self._build()
                channel = self._channel
        return channel.send(notification)
