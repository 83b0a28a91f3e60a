"""The receive side's frame reader and the Received batches it makes, without a socket: the
same messages whatever the read sizes, oversize payloads cut to the limit with their size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.ingest.frames import Control, FrameReader, ProtocolError
from sensing.ingest.received import Incoming, Received
from sensing.kernels.mqttframes import PUBACK, SUBACK, FrameError
from tests.test_kernel_mqttframes import frame, publish

LIMIT = 1000
CHUNK = 32 << 10

Expected = tuple[str, bytes, int, int, int]
"""topic, payload as kept, size as sent, packet id, QoS"""


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, Expected | None]:
    """A packet and the message it should come out as (None for a PUBACK)."""
    if draw(st.integers(0, 9)) == 0:
        pid = draw(st.integers(1, 0xFFFF))
        return b"\x40\x02" + pid.to_bytes(2, "big"), None
    topic = draw(st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1,
                         max_size=20))
    size = draw(st.sampled_from([0, 10, 200, LIMIT, LIMIT + 1, LIMIT + 2, 5_000, 80_000,
                                 150_000]))
    payload = draw(st.binary(min_size=min(size, 8), max_size=min(size, 8))) * (size // 8 or 1)
    payload = payload[:size].ljust(size, b"p")
    qos = draw(st.integers(0, 1))
    pid = draw(st.integers(1, 0xFFFF)) if qos else 0
    return (publish(topic.encode(), payload, qos=qos, pid=pid),
            (topic, payload[:LIMIT + 1], len(payload), pid, qos))


def read_all(reader: FrameReader, data: bytes, reads: list[int]
             ) -> tuple[list[Received], list[Control]]:
    got: list[Received] = []
    controls: list[Control] = []
    pos = 0
    sizes = iter(reads)
    while pos < len(data):
        space = reader.space()
        n = min(len(space), len(data) - pos, next(sizes, 1 << 30) or 1)
        space[:n] = data[pos:pos + n]
        pos += n
        received, control = reader.advance(n, generation=3)
        got += received
        controls += control
    return got, controls


def as_tuples(batches: list[Received]) -> list[Expected]:
    out = []
    for r in batches:
        assert r.generation == 3
        out += [(r.topic(i), r.payload(i), int(r.payload_size[i]), int(r.mid[i]),
                 int(r.qos[i])) for i in range(len(r))]
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(messages(), max_size=30), st.lists(st.integers(1, 70_000), max_size=40))
def test_messages_come_out_whole_or_cut_whatever_the_reads(
        stream: list[tuple[bytes, Expected | None]], reads: list[int]) -> None:
    reader = FrameReader(LIMIT, chunk_bytes=CHUNK, scan_rows=4)
    data = b"".join(p for p, _ in stream)
    got, controls = read_all(reader, data, reads)
    assert as_tuples(got) == [m for _, m in stream if m is not None]
    assert [(c.kind, c.packet_id) for c in controls] == [
        (PUBACK, int.from_bytes(p[2:], "big")) for p, m in stream if m is None]
    assert reader.buffered == 0
    # memory: every buffer is a chunk, or holds one cut message
    assert all(np.asarray(r.buf).shape[0] <= max(CHUNK, reader.longest_whole) for r in got)


def test_a_payload_larger_than_any_buffer_is_cut_and_the_next_message_is_intact() -> None:
    reader = FrameReader(LIMIT, chunk_bytes=CHUNK)
    big = publish(b"t/big", b"x" * 3_000_000, pid=9)
    after = publish(b"t/after", b"fine", pid=10)
    got, _ = read_all(reader, big + after, [])
    assert as_tuples(got) == [("t/big", b"x" * (LIMIT + 1), 3_000_000, 9, 1),
                              ("t/after", b"fine", 4, 10, 1)]


def test_control_packets_keep_their_bodies() -> None:
    reader = FrameReader(LIMIT, chunk_bytes=CHUNK)
    got, controls = read_all(reader, frame(0x90, b"\x00\x05\x01\x80") + b"\xd0\x00", [])
    assert got == []
    assert controls == [Control(SUBACK, 5, b"\x00\x05\x01\x80"), Control(13, 0, b"")]


@pytest.mark.parametrize(("data", "error"), [
    (publish(b"t", b"x", qos=2, pid=1), ProtocolError),
    (publish(b"t", b"x" * 100_000, qos=2, pid=1)[:100], ProtocolError),  # oversize
    (b"\x30\xff\xff\xff\xff\x01", FrameError),
    (b"\x10\x00", FrameError),
])
def test_what_a_session_cannot_go_on_after_is_refused(data: bytes, error: type[Exception]
                                                       ) -> None:
    reader = FrameReader(LIMIT, chunk_bytes=CHUNK)
    with pytest.raises(error):
        read_all(reader, data, [])


def test_received_from_messages_round_trips_and_concatenates() -> None:
    first = [Incoming("a/b", b"one", 1, 1, 4), Incoming("ü/x", b"", 2, 0, 4)]
    second = [Incoming("c", b"three", 3, 1, 4)]
    a, b = Received.from_messages(first), Received.from_messages(second)
    assert a.messages() == first and len(a) == 2 and a.payload_bytes == 3
    joined = Received.concat([a, b])
    assert joined.messages() == first + second
    head, rest = joined.split(1)
    assert head.messages() == first[:1] and rest.messages() == first[1:] + second
    assert Received.concat([head, rest]).messages() == first + second  # one buffer: no copy
    assert Received.concat([head, rest]).buf is joined.buf
    assert len(Received.from_messages([], generation=7)) == 0
    with pytest.raises(ValueError, match="several connections"):
        Received.from_messages([*first, Incoming("d", b"", 1, 1, 5)])
