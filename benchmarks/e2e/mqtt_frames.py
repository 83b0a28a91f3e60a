"""The few MQTT 3.1.1 packets a publisher needs, built and read as bytes (OASIS MQTT 3.1.1,
section 2 and 3): CONNECT, CONNACK, PUBLISH at QoS 1, PUBACK, DISCONNECT."""

from __future__ import annotations

import struct

import numpy as np

MAX_PACKET_ID = 65_535
PUBACK_SIZE = 4
MAX_REMAINING_LENGTH = 268_435_455
DISCONNECT = b"\xe0\x00"


class ProtocolError(RuntimeError):
    """The broker answered something a QoS 1 publisher did not ask for."""


def remaining_length(n: int) -> bytes:
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"an MQTT packet cannot carry {n:,} bytes")
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: bytes) -> bytes:
    if len(text) > 0xFFFF:
        raise ValueError("an MQTT string holds at most 65,535 bytes")
    return struct.pack(">H", len(text)) + text


def connect(client_id: str, clean_session: bool = True, keepalive_s: int = 0) -> bytes:
    """CONNECT; keepalive 0 turns the broker's idle timeout off (a publisher waits idle while
    the others build their payloads)."""
    flags = 0x02 if clean_session else 0x00
    body = _string(b"MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive_s)
    body += _string(client_id.encode())
    return b"\x10" + remaining_length(len(body)) + body


def check_connack(packet: bytes) -> None:
    if len(packet) != 4 or packet[:2] != b"\x20\x02":
        raise ProtocolError(f"expected CONNACK, got {packet[:8]!r}")
    if packet[3] != 0:
        raise ProtocolError(f"the broker refused the connection (return code {packet[3]})")


def publish_qos1_head(topic: bytes, payload_len: int) -> tuple[bytes, int]:
    """The bytes of a QoS 1 PUBLISH before its payload, and where the 2-byte packet id sits in
    them."""
    variable = _string(topic)
    head = b"\x32" + remaining_length(len(variable) + 2 + payload_len) + variable
    return head + b"\x00\x00", len(head)


def check_pubacks(raw: bytes, first_id_index: int) -> None:
    """`raw` must be PUBACKs, whole, for the packets numbered first_id_index, +1, ... in order
    (one connection's QoS 1 PUBLISHes are acknowledged in the order sent); packet index i
    carries id i % 65,535 + 1."""
    if len(raw) % PUBACK_SIZE:
        raise ValueError("pass whole PUBACKs")
    acks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, PUBACK_SIZE)
    if acks.size and not ((acks[:, 0] == 0x40).all() and (acks[:, 1] == 0x02).all()):
        bad = int(np.flatnonzero((acks[:, 0] != 0x40) | (acks[:, 1] != 0x02))[0])
        raise ProtocolError(f"expected PUBACK, got {bytes(acks[bad])!r}")
    ids = acks[:, 2].astype(np.int64) * 256 + acks[:, 3]
    want = (first_id_index + np.arange(ids.size)) % MAX_PACKET_ID + 1
    if not np.array_equal(ids, want):
        bad = int(np.flatnonzero(ids != want)[0])
        raise ProtocolError(f"PUBACK for packet id {ids[bad]}, expected {want[bad]}")
