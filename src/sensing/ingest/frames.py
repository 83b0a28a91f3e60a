"""Bytes from the broker into messages, in large chunks, with bounded memory.

The reader of a connection asks `FrameReader.space()` where to put the next bytes, reads into
it, and calls `advance(n)`: the complete PUBLISH packets among what came in are one `Received`
over the buffer they arrived in (no copy), the other packets a short list of `Control`.

Buffers are written once: the next bytes go after the last ones, and when a buffer fills up
(less than MIN_FREE left, or too little for the packet in progress) a new one starts with the
incomplete packet's bytes copied over. A Received keeps its buffer alive; nothing else does.

A PUBLISH whose payload exceeds `max_payload_bytes` costs no more than that: a complete one in a
buffer is delivered cut to `max_payload_bytes + 1` bytes; one too long for a buffer (longer
than `max_payload_bytes` + the longest head of a PUBLISH, so surely too large) is read into
its own buffer up to that many payload bytes and the rest of it read and dropped. Either way its
`payload_size` is its real length, and the messages after it are intact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensing.ingest.received import Received
from sensing.kernels import mqttframes as mf
from sensing.kernels.mqttframes import MAX_PUBLISH_HEAD, PUBLISH, PublishHead, read_publish_head

MIN_FREE = 16 << 10
"""a buffer with less room than this is full: a read into it would be too small to pay"""
SKIP_CHUNK = 256 << 10
"""bytes read at once while dropping the rest of an oversize payload"""


class ProtocolError(Exception):
    """Valid MQTT this client cannot take (a QoS 2 message: it subscribes at QoS 1 at most)."""


@dataclass(frozen=True, slots=True)
class Control:
    """A packet other than PUBLISH."""

    kind: int
    packet_id: int
    body: bytes


@dataclass(slots=True)
class _Oversize:
    """The kept part of a PUBLISH too long for a buffer, being read."""

    buf: np.ndarray
    head: PublishHead
    """offsets relative to the packet's first byte"""
    kept: int


class FrameReader:
    """The receive side of one connection after another (`reset` between them)."""

    def __init__(self, max_payload_bytes: int, chunk_bytes: int = 1 << 20,
                 scan_rows: int = 8192) -> None:
        if max_payload_bytes < 0 or chunk_bytes < 2 * MIN_FREE:
            raise ValueError("max_payload_bytes >= 0 and chunk_bytes >= 32 KiB")
        self.max_payload_bytes = max_payload_bytes
        self.longest_whole = max_payload_bytes + MAX_PUBLISH_HEAD
        """a packet longer than this has a payload over the limit, whatever its topic"""
        self.capacity = max(chunk_bytes, self.longest_whole)
        self._scanner = mf.FrameScanner(scan_rows)
        self._scratch: np.ndarray | None = None
        self.reset()

    def reset(self) -> None:
        """Forget a connection's partial packet: the next bytes start a packet."""
        self._buf = np.empty(self.capacity, np.uint8)
        self._fill = 0
        self._parsed = 0
        self._shared = False
        """whether a Received holds the current buffer (else it may be overwritten)"""
        self._oversize: _Oversize | None = None
        self._skip = 0

    @property
    def buffered(self) -> int:
        """Bytes read and not yet part of a delivered packet (the incomplete one)."""
        if self._oversize is not None:
            return self._oversize.kept
        return self._fill - self._parsed

    def space(self) -> memoryview:
        """Where the next bytes go (never beyond the packet being cut or dropped)."""
        if self._skip:
            if self._scratch is None:
                self._scratch = np.empty(SKIP_CHUNK, np.uint8)
            return self._scratch.data[:min(self._skip, SKIP_CHUNK)]
        if self._oversize is not None:
            return self._oversize.buf.data[self._oversize.kept:]
        return self._buf.data[self._fill:]

    def advance(self, n: int, generation: int) -> tuple[list[Received], list[Control]]:
        """Take `n` bytes written into `space()`; raises FrameError (from the kernel) or
        ProtocolError at a packet the connection cannot go on after."""
        if self._skip:
            self._skip -= n
            return [], []
        if self._oversize is not None:
            self._oversize.kept += n
            return self._oversize_done(generation), []
        self._fill += n
        messages: list[Received] = []
        controls: list[Control] = []
        while True:
            scan = self._scanner.scan(self._buf, self._parsed, self._fill,
                                      self.max_payload_bytes)
            scan.check()
            if scan.rows:
                self._collect(scan, generation, messages, controls)
            self._parsed = scan.consumed
            if not scan.full:
                break
        if scan.need > self.longest_whole:
            messages += self._start_oversize(scan.need, generation)
        elif scan.need > self.capacity - self._parsed or self.capacity - self._fill < MIN_FREE:
            self._next_buffer()
        return messages, controls

    def _collect(self, scan: mf.Scan, generation: int, messages: list[Received],
                 controls: list[Control]) -> None:
        if scan.max_qos > 1:
            raise ProtocolError("a QoS 2 message, on a session subscribed at QoS 1 at most")
        table = scan.table[:, :scan.rows].copy()  # its rows become the Received's columns
        if scan.publishes < scan.rows:
            kind = table[mf.KIND]
            for i in np.flatnonzero(kind != PUBLISH).tolist():
                body = self._body(int(table[mf.PACKET_START, i]), int(table[mf.PACKET_END, i]))
                controls.append(Control(int(kind[i]), int(table[mf.PACKET_ID, i]), body))
            if not scan.publishes:
                return
            table = table[:, kind == PUBLISH]
        messages.append(Received(self._buf, table[mf.TOPIC_START], table[mf.TOPIC_END],
                                 table[mf.PAYLOAD_START], table[mf.PAYLOAD_END],
                                 table[mf.PAYLOAD_SIZE], table[mf.PACKET_ID].astype(np.int32),
                                 table[mf.QOS].astype(np.uint8), generation))
        self._shared = True

    def _body(self, start: int, end: int) -> bytes:
        """The bytes after a control packet's fixed header (its length is under 128 bytes
        but for a SUBACK, whose is under 1,024)."""
        header = 2 if self._buf[start + 1] < 128 else 3
        return bytes(self._buf[start + header:end])

    def _next_buffer(self) -> None:
        """Go on in a fresh buffer (or this one, from its start, if no Received holds it),
        with the incomplete packet's bytes first."""
        tail = self._buf[self._parsed:self._fill]
        if self._shared:
            fresh = np.empty(self.capacity, np.uint8)
            fresh[:tail.shape[0]] = tail
            self._buf = fresh
        else:
            self._buf[:tail.shape[0]] = tail.copy()
        self._fill = tail.shape[0]
        self._parsed = 0
        self._shared = False

    def _start_oversize(self, total: int, generation: int) -> list[Received]:
        """The packet at `_parsed` is `total` bytes long, too long to keep whole."""
        head = read_publish_head(self._buf, self._parsed, self._fill)
        if head is None:  # its topic is not all in yet
            if self.capacity - self._parsed < MAX_PUBLISH_HEAD:
                self._next_buffer()
            return []
        if head.qos > 1:
            raise ProtocolError("a QoS 2 message, on a session subscribed at QoS 1 at most")
        base = self._parsed
        relative = PublishHead(head.topic_start - base, head.topic_end - base,
                               head.payload_start - base, head.packet_end - base,
                               head.packet_id, head.qos, head.dup)
        keep = relative.payload_start + self.max_payload_bytes + 1
        have = min(self._fill - base, keep)
        kept = np.empty(keep, np.uint8)
        kept[:have] = self._buf[base:base + have]
        self._oversize = _Oversize(kept, relative, have)
        self._skip = total - (self._fill - base) if have == keep else 0
        self._fill = self._parsed  # what follows is in `kept` or dropped
        return self._oversize_done(generation)

    def _oversize_done(self, generation: int) -> list[Received]:
        big = self._oversize
        if big is None or big.kept < big.buf.shape[0]:
            return []
        h = big.head
        self._oversize = None
        if not self._skip:
            self._skip = h.packet_end - big.buf.shape[0]

        def one(value: int) -> np.ndarray:
            return np.array([value], np.int64)

        return [Received(big.buf, one(h.topic_start), one(h.topic_end), one(h.payload_start),
                         one(big.buf.shape[0]), one(h.packet_end - h.payload_start),
                         np.array([h.packet_id], np.int32), np.array([h.qos], np.uint8),
                         generation)]
