"""The messages of one receive: columns of offsets into the bytes they arrived in.

A batch of messages is one buffer and a few arrays, not an object per message: `buf` holds the
packets as they came off the socket, and message `i`'s topic is `buf[topic_start[i]:
topic_end[i]]`, its payload `buf[payload_start[i]:payload_end[i]]`. A payload longer than the
session's limit is cut: `payload_size[i]` keeps its real length. `Incoming` is one message as
an object, for tests, tools and the few places that want one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sensing.spare import Spares


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    """connection the message came on: a PUBACK on a later connection would ack another message"""
    size: int = field(default=-1, compare=False)
    """the payload's length as sent, when `payload` is only its start (an oversize one); -1:
    len(payload)"""

    @property
    def sent_size(self) -> int:
        return max(self.size, len(self.payload))


_JOINED = Spares(np.uint8)
"""buffers of joined parts (`Received.concat`): a step's megabytes, reused once it is done"""

_SPAN_COLUMNS = ("topic_start", "topic_end", "payload_start", "payload_end", "payload_size")


@dataclass(frozen=True, slots=True, eq=False)
class Acks:
    """What acknowledging a batch takes: its packet ids and QoS, and its connection. Kept
    instead of the batch until it is stored, so the bytes it came in are freed at once."""

    mid: np.ndarray
    qos: np.ndarray
    generation: int

    def __len__(self) -> int:
        return int(self.mid.shape[0])


@dataclass(frozen=True, slots=True, eq=False)
class Received:
    """The messages of one receive, all from one connection (`generation`)."""

    buf: bytes | np.ndarray
    topic_start: np.ndarray
    topic_end: np.ndarray
    payload_start: np.ndarray
    payload_end: np.ndarray
    payload_size: np.ndarray
    """the payload's length as sent: larger than payload_end - payload_start when it was cut"""
    mid: np.ndarray
    qos: np.ndarray
    generation: int

    def __post_init__(self) -> None:
        shape = self.topic_start.shape
        if len(shape) != 1 or not (
                shape == self.topic_end.shape == self.payload_start.shape
                == self.payload_end.shape == self.payload_size.shape == self.mid.shape
                == self.qos.shape):
            raise ValueError("a Received's columns must be 1-D and of one length")

    def __len__(self) -> int:
        return int(self.topic_start.shape[0])

    def acks(self) -> Acks:
        return Acks(self.mid, self.qos, self.generation)

    def topic(self, i: int) -> str:
        """The topic of message `i` (MQTT topics are UTF-8; anything else is replaced, so a
        bad one fails the topic checks downstream instead of raising here)."""
        return bytes(self.buf[self.topic_start[i]:self.topic_end[i]]).decode("utf-8", "replace")

    def payload(self, i: int) -> bytes:
        return bytes(self.buf[self.payload_start[i]:self.payload_end[i]])

    def incoming(self, i: int) -> Incoming:
        return Incoming(self.topic(i), self.payload(i), int(self.mid[i]), int(self.qos[i]),
                        self.generation, int(self.payload_size[i]))

    def messages(self) -> list[Incoming]:
        buf, g = self.buf, self.generation
        return [Incoming(bytes(buf[ts:te]).decode("utf-8", "replace"), bytes(buf[ps:pe]), m, q, g,
                         n)
                for ts, te, ps, pe, m, q, n in zip(
                    self.topic_start.tolist(), self.topic_end.tolist(),
                    self.payload_start.tolist(), self.payload_end.tolist(), self.mid.tolist(),
                    self.qos.tolist(), self.payload_size.tolist(), strict=True)]

    @property
    def payload_bytes(self) -> int:
        """Payload bytes held (cut payloads count what was kept)."""
        return int(np.sum(self.payload_end - self.payload_start))

    @property
    def payload_lengths(self) -> np.ndarray:
        lengths: np.ndarray = self.payload_end - self.payload_start
        return lengths

    def split(self, k: int) -> tuple[Received, Received]:
        """The first `k` messages and the rest (views of the same buffer and columns)."""
        def cut(part: slice) -> Received:
            return Received(self.buf, self.topic_start[part], self.topic_end[part],
                            self.payload_start[part], self.payload_end[part],
                            self.payload_size[part], self.mid[part], self.qos[part],
                            self.generation)
        return cut(slice(0, k)), cut(slice(k, None))

    @classmethod
    def empty(cls, generation: int) -> Received:
        no = np.zeros(0, np.int64)
        return cls(b"", no, no, no, no, no, np.zeros(0, np.int32), np.zeros(0, np.uint8),
                   generation)

    @classmethod
    def from_messages(cls, messages: Sequence[Incoming], generation: int | None = None
                      ) -> Received:
        """One buffer of topics and payloads; `generation` is the messages' (which must agree),
        or the given one for an empty list (0 by default)."""
        generations = {m.generation for m in messages}
        if len(generations) > 1 or (generation is not None and generations - {generation}):
            raise ValueError(f"messages of several connections: {sorted(generations)}")
        g = generations.pop() if generations else generation or 0
        pieces: list[bytes] = []
        starts = np.zeros((len(messages), 4), np.int64)
        pos = 0
        for i, m in enumerate(messages):
            topic = m.topic.encode()
            starts[i] = (pos, pos + len(topic), pos + len(topic),
                         pos + len(topic) + len(m.payload))
            pieces += (topic, m.payload)
            pos = int(starts[i, 3])
        # writable, as the session's buffers are: the kernels compiled for one kind of array
        # (the warm-up's, from here) must be the ones the live messages use, or the first live
        # step compiles anew for 20 s (numba types a read-only array apart)
        buf = np.frombuffer(bytearray(b"".join(pieces)), np.uint8)
        t0, t1, p0, p1 = (starts[:, j].copy() for j in range(4))
        sent = np.maximum(p1 - p0, np.array([m.size for m in messages], np.int64))
        return cls(buf, t0, t1, p0, p1, sent, np.array([m.mid for m in messages], np.int32),
                   np.array([m.qos for m in messages], np.uint8), g)

    @classmethod
    def concat(cls, parts: Sequence[Received]) -> Received:
        """One Received of the parts' messages in order: over the same buffer when they share
        one, else over a copy of the regions they use."""
        parts = [p for p in parts if len(p)] or list(parts[:1])
        if not parts:
            raise ValueError("nothing to concatenate")
        if len({p.generation for p in parts}) > 1:
            raise ValueError("parts of several connections")
        if len(parts) == 1:
            return parts[0]
        buf: Any = parts[0].buf
        shifts = [0] * len(parts)
        if any(p.buf is not buf for p in parts):
            lows = [int(p.topic_start.min()) for p in parts]
            highs = [int(p.payload_end.max()) for p in parts]
            buf = _JOINED.empty(sum(h - lo for lo, h in zip(lows, highs, strict=True)))
            pos = 0
            for i, (p, lo, h) in enumerate(zip(parts, lows, highs, strict=True)):
                buf[pos:pos + h - lo] = np.frombuffer(p.buf, np.uint8)[lo:h]
                shifts[i] = pos - lo
                pos += h - lo

        def joined(column: str, shifted: bool = False) -> np.ndarray:
            out: np.ndarray = np.concatenate([
                getattr(p, column) + s if shifted and s else getattr(p, column)
                for p, s in zip(parts, shifts, strict=True)])
            return out

        return cls(buf, joined("topic_start", True), joined("topic_end", True),
                   joined("payload_start", True), joined("payload_end", True),
                   joined("payload_size"), joined("mid"), joined("qos"), parts[0].generation)
