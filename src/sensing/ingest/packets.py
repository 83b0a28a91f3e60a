"""The MQTT 3.1.1 packets a client sends, encoded; what a CONNACK or SUBACK says."""

from __future__ import annotations

from collections.abc import Iterable

MAX_REMAINING_LENGTH = 268_435_455
MAX_STRING_BYTES = 65_535
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
DUP = 0x08
SUBACK_FAILURE = 0x80
CONNACK_REASONS = {1: "unacceptable protocol version", 2: "identifier rejected",
                   3: "server unavailable", 4: "bad user name or password",
                   5: "not authorized"}


def remaining_length(n: int) -> bytes:
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"a packet of {n} bytes is beyond MQTT's limit")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(data: bytes) -> bytes:
    if len(data) > MAX_STRING_BYTES:
        raise ValueError(f"an MQTT string holds at most {MAX_STRING_BYTES} bytes")
    return len(data).to_bytes(2, "big") + data


def connect(client_id: str, keepalive_s: int, clean_session: bool,
            username: bytes | None, password: bytes | None) -> bytes:
    """CONNECT, protocol level 4 (3.1.1), no will. A password needs a user name."""
    if password is not None and username is None:
        raise ValueError("MQTT 3.1.1 sends a password only with a user name")
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError("keepalive is 0..65535 s")
    flags = ((0x80 if username is not None else 0) | (0x40 if password is not None else 0)
             | (0x02 if clean_session else 0))
    body = (string(b"MQTT") + bytes([4, flags]) + keepalive_s.to_bytes(2, "big")
            + string(client_id.encode()) + (b"" if username is None else string(username))
            + (b"" if password is None else string(password)))
    return b"\x10" + remaining_length(len(body)) + body


def subscribe(packet_id: int, filters: Iterable[tuple[str, int]]) -> bytes:
    body = packet_id.to_bytes(2, "big") + b"".join(
        string(f.encode()) + bytes([qos]) for f, qos in filters)
    return b"\x82" + remaining_length(len(body)) + body


def publish_topic(topic: str) -> bytes:
    """The topic as UTF-8, refused (ValueError) where MQTT does not allow it to be published."""
    data = topic.encode()
    if not data or len(data) > MAX_STRING_BYTES:
        raise ValueError(f"a topic is 1..{MAX_STRING_BYTES} bytes of UTF-8")
    if b"+" in data or b"#" in data or b"\0" in data:
        raise ValueError(f"a published topic has no wildcard nor NUL: {topic!r}")
    return data


def publish(topic: bytes, payload: bytes, packet_id: int, qos: int = 1, retain: bool = False,
            dup: bool = False) -> bytes:
    head = string(topic) + (packet_id.to_bytes(2, "big") if qos else b"")
    first = 0x30 | (DUP if dup else 0) | qos << 1 | (1 if retain else 0)
    return bytes([first]) + remaining_length(len(head) + len(payload)) + head + payload
