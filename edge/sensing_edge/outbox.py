"""Batches waiting for the broker's PUBACK: the seam for the durable on-disk buffer.

The agent puts every encoded batch into an `Outbox` before it hands it to MQTT and acks it
when the broker's PUBACK arrives. Whatever is still pending is what would be lost if the
gateway lost power; a disk-backed outbox (a later issue) implements the same protocol and
returns its pending entries again after a restart, so the agent re-sends them.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One encoded batch. `id` increases with every `put`; entries are sent in id order."""

    id: int
    topic: str
    payload: bytes
    readings: int


class Outbox(Protocol):
    """Unacknowledged batches. Implementations must be safe to call from several threads."""

    def put(self, topic: str, payload: bytes, readings: int) -> OutboxEntry:
        """Store a batch (durably, for a disk outbox) and return it with its new id."""
        ...

    def ack(self, entry_id: int) -> OutboxEntry | None:
        """Forget an acknowledged batch; returns it, or None if it was not pending."""
        ...

    def pending(self, limit: int | None = None) -> list[OutboxEntry]:
        """The oldest pending entries, oldest first, at most `limit` of them."""
        ...

    def __len__(self) -> int:
        """Number of pending entries."""
        ...


class MemoryOutbox:
    """An `Outbox` in memory: pending batches are lost if the process dies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, OutboxEntry] = {}
        self._next_id = 0

    def put(self, topic: str, payload: bytes, readings: int) -> OutboxEntry:
        with self._lock:
            entry = OutboxEntry(self._next_id, topic, payload, readings)
            self._entries[entry.id] = entry
            self._next_id += 1
            return entry

    def ack(self, entry_id: int) -> OutboxEntry | None:
        with self._lock:
            return self._entries.pop(entry_id, None)

    def pending(self, limit: int | None = None) -> list[OutboxEntry]:
        with self._lock:
            # Insertion order is id order; acks mostly remove from the front, so this stays
            # cheap even with a long backlog behind the in-flight window.
            return list(itertools.islice(self._entries.values(), limit))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
