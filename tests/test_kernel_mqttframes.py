"""The MQTT frame kernels against a slow, obviously correct parser written from the standard."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.kernels.mqttframes import (
    BAD_FLAGS,
    BAD_LENGTH,
    BAD_PACKET_ID,
    BAD_QOS,
    BAD_TOPIC,
    CONTROL_MAX_LENGTH,
    MALFORMED_LENGTH,
    PUBLISH,
    UNEXPECTED_TYPE,
    FrameError,
    FrameScanner,
    PublishHead,
    pubacks,
    read_publish_head,
)

pytestmark = pytest.mark.kernel


class Packet(NamedTuple):
    kind: int
    flags: int
    start: int
    end: int
    topic_start: int
    topic_end: int
    payload_start: int
    payload_end: int
    payload_size: int
    packet_id: int
    qos: int
    dup: int


class Parsed(NamedTuple):
    packets: list[Packet]
    consumed: int
    error: int | None
    """the error code of the packet at `consumed`, None if it is fine (or incomplete)"""


CONTROL_LENGTHS = {2: (0, 2, 2), 4: (0, 2, 2), 5: (0, 2, 2), 6: (2, 2, 2), 7: (0, 2, 2),
                   9: (0, 3, CONTROL_MAX_LENGTH), 11: (0, 2, 2), 13: (0, 0, 0)}
"""type -> (flags, least and most remaining length), from MQTT 3.1.1 section 3"""
WITH_PACKET_ID = {4, 5, 6, 7, 9, 11}


def reference(data: bytes, max_payload: int = 1 << 40) -> Parsed:
    """Packet after packet: the first byte, then up to 4 bytes of remaining length, then the
    body; stop at the first bad or incomplete one. Payloads are cut to max_payload + 1."""
    out: list[Packet] = []
    pos = 0
    while pos < len(data):
        kind, flags = data[pos] >> 4, data[pos] & 15
        length, multiplier, i = 0, 1, pos + 1
        while True:
            # four length bytes that all say "more" are malformed whatever comes next
            if i - pos > 4:
                return Parsed(out, pos, MALFORMED_LENGTH)
            if i >= len(data):
                return Parsed(out, pos, None)
            length += (data[i] & 127) * multiplier
            multiplier *= 128
            i += 1
            if data[i - 1] < 128:
                break
        body = i
        qos = (flags >> 1) & 3
        if kind == PUBLISH:
            if qos == 3:
                return Parsed(out, pos, BAD_QOS)
        elif kind not in CONTROL_LENGTHS:
            return Parsed(out, pos, UNEXPECTED_TYPE)
        else:
            want_flags, least, most = CONTROL_LENGTHS[kind]
            if flags != want_flags:
                return Parsed(out, pos, BAD_FLAGS)
            if not least <= length <= most:
                return Parsed(out, pos, BAD_LENGTH)
        if body + length > len(data):
            return Parsed(out, pos, None)
        packet = data[body:body + length]
        if kind == PUBLISH:
            if length < 2:
                return Parsed(out, pos, BAD_TOPIC)
            topic_length = int.from_bytes(packet[:2], "big")
            head = 2 + topic_length + (2 if qos else 0)
            if topic_length == 0 or head > length:
                return Parsed(out, pos, BAD_TOPIC)
            pid = int.from_bytes(packet[2 + topic_length:head], "big") if qos else 0
            if qos and pid == 0:
                return Parsed(out, pos, BAD_PACKET_ID)
            size = length - head
            out.append(Packet(kind, flags, pos, body + length, body + 2, body + 2 + topic_length,
                              body + head, body + head + min(size, max_payload + 1), size, pid,
                              qos, flags >> 3))
        else:
            pid = int.from_bytes(packet[:2], "big") if kind in WITH_PACKET_ID else 0
            out.append(Packet(kind, flags, pos, body + length, 0, 0, 0, 0, 0, pid, 0, 0))
        pos = body + length
    return Parsed(out, pos, None)


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def frame(first: int, body: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(body)) + body


def publish(topic: bytes, payload: bytes, qos: int = 1, pid: int = 1, dup: bool = False,
            retain: bool = False) -> bytes:
    var = len(topic).to_bytes(2, "big") + topic + (pid.to_bytes(2, "big") if qos else b"")
    return frame(0x30 | dup << 3 | qos << 1 | retain, var + payload)


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    which = draw(st.sampled_from(["publish", "publish", "publish", "big", "control"]))
    if which == "control":
        kind = draw(st.sampled_from(sorted(CONTROL_LENGTHS)))
        flags, least, most = CONTROL_LENGTHS[kind]
        body = draw(st.binary(min_size=least, max_size=min(most, 8)))
        return frame(kind << 4 | flags, body)
    size = 20_000 if which == "big" else 300
    return publish(draw(st.binary(min_size=1, max_size=30)), draw(st.binary(max_size=size)),
                   qos=draw(st.integers(0, 1)), pid=draw(st.integers(1, 0xFFFF)),
                   dup=draw(st.booleans()), retain=draw(st.booleans()))


broken = st.sampled_from([
    b"\x30\xff\xff\xff\xff\x01",  # five bytes of remaining length
    b"\x10\x00",  # CONNECT
    b"\x41\x02\x00\x01",  # PUBACK with flags
    b"\x40\x03\x00\x01\x00",  # PUBACK of 3 bytes
    b"\x36\x05\x00\x01a\x00\x01",  # QoS 3
    b"\x30\x03\x00\x05a",  # topic beyond the packet
    b"\x30\x02\x00\x00",  # empty topic
    b"\x32\x05\x00\x01a\x00\x00",  # packet id 0
    b"\x90\xff\x7f",  # SUBACK far too long: refused from its header alone
])

streams = st.tuples(st.lists(packets(), max_size=25), st.one_of(st.just(b""), broken,
                                                                st.binary(max_size=12)))


def scan_all(buf: np.ndarray, start: int, end: int, rows: int, max_payload: int
             ) -> tuple[list[Packet], int, int | None]:
    """Scan until the scans stop making progress, as the session's reader does."""
    out: list[Packet] = []
    pos = start
    scanner = FrameScanner(rows)
    while True:
        s = scanner.scan(buf, pos, end, max_payload)
        found = [Packet(*(int(x) for x in s.table[:, i])) for i in range(s.rows)]
        assert s.publishes == sum(p.kind == PUBLISH for p in found)
        assert s.max_qos == max((p.qos for p in found if p.kind == PUBLISH), default=0)
        out += found
        pos = s.consumed
        if s.error:
            return out, pos, s.error
        if not s.full:
            return out, pos, None


def as_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8).copy()


limits = st.sampled_from([0, 7, 300, 1 << 30])


@settings(max_examples=300, deadline=None)
@given(streams, st.integers(1, 9), limits)
def test_a_stream_scans_as_the_reference_parses_it(stream: tuple[list[bytes], bytes],
                                                    rows: int, limit: int) -> None:
    data = b"".join(stream[0]) + stream[1]
    assert scan_all(as_array(data), 0, len(data), rows, limit) == reference(data, limit)


@settings(max_examples=300, deadline=None)
@given(streams, st.lists(st.integers(0, 1 << 20), max_size=6), st.integers(1, 9), limits)
def test_a_stream_split_anywhere_scans_the_same(stream: tuple[list[bytes], bytes],
                                                cuts: list[int], rows: int, limit: int) -> None:
    """Bytes arrive in pieces: scanning what is in after each piece, from where the last scan
    stopped, finds the same packets at the same offsets."""
    data = b"".join(stream[0]) + stream[1]
    want = reference(data, limit)
    buf = as_array(data)
    got: list[Packet] = []
    pos = 0
    error: int | None = None
    for end in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        found, pos, error = scan_all(buf, pos, max(end, pos), rows, limit)
        got += found
        if error is not None:
            break
    assert (got, pos, error) == want
    if error is None and pos < len(data):  # a trailing incomplete packet says its length
        need = FrameScanner().scan(buf, pos, len(data)).need
        assert need == 0 or pos + need > len(data)


def test_the_length_of_an_incomplete_packet_is_known_from_its_header() -> None:
    data = publish(b"t/x", b"p" * 3_000_000, pid=7)
    s = FrameScanner().scan(as_array(data[:100]), 0, 100)
    assert (s.rows, s.consumed, s.need, s.error) == (0, 0, len(data), 0)
    assert read_publish_head(as_array(data[:100]), 0, 100) == PublishHead(
        7, 10, 12, len(data), 7, 1, False)
    assert read_publish_head(as_array(data[:7]), 0, 7) is None
    with pytest.raises(FrameError, match="unexpected packet type"):
        read_publish_head(as_array(b"\x40\x02\x00\x01"), 0, 4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 1)), max_size=50))
def test_pubacks_are_one_per_qos1_message_in_order(messages: list[tuple[int, int]]) -> None:
    pid = np.array([m for m, _ in messages], np.int32)
    qos = np.array([q for _, q in messages], np.uint8)
    want = b"".join(b"\x40\x02" + m.to_bytes(2, "big") for m, q in messages if q == 1)
    assert pubacks(pid, qos) == want


def test_the_wrappers_refuse_what_the_kernels_cannot_take() -> None:
    with pytest.raises(TypeError):
        FrameScanner().scan(np.zeros(4, np.int64), 0, 4)
    with pytest.raises(ValueError, match="outside"):
        FrameScanner().scan(np.zeros(4, np.uint8), 2, 5)
    with pytest.raises(ValueError, match="16-bit"):
        pubacks(np.array([70_000], np.int32), np.array([1], np.uint8))
