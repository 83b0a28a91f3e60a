"""MQTT 3.1.1 packets from a broker, scanned in bulk; PUBACKs written in bulk.

`scan_frames` walks the packets in `buf[start:end]` and writes one row per complete packet into
a table of columns (`FrameScanner` below owns one): its type and flags, where it starts and
ends, and for a PUBLISH the spans of its topic and payload (cut to a limit, with its real
size), its packet id, QoS and DUP flag. It stops at an incomplete trailing packet, at the first
malformed one, or when the table is full, and says where (`status`): a caller appends more
bytes and scans again from there.

Only what a broker may send a client is accepted: CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL,
PUBCOMP, SUBACK, UNSUBACK and PINGRESP, each with the fixed-header flags and remaining length
the standard gives it (SUBACK at most CONTROL_MAX_LENGTH). A remaining length is at most 4
bytes (268,435,455); a fifth is malformed. The header of a packet is checked as soon as it is
in, so a bad one is refused before its body arrives.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBACK = 9
UNSUBACK = 11
PINGRESP = 13

OK = 0
MALFORMED_LENGTH = 1
"""the remaining length goes on past its 4th byte"""
UNEXPECTED_TYPE = 2
"""a packet type a broker never sends a client"""
BAD_FLAGS = 3
"""fixed-header flags other than the type's"""
BAD_LENGTH = 4
"""a control packet's remaining length is not its type's"""
BAD_QOS = 5
"""a PUBLISH with both QoS bits set"""
BAD_TOPIC = 6
"""a PUBLISH whose topic is empty or does not fit in the packet"""
BAD_PACKET_ID = 7
"""packet id 0 on a PUBLISH of QoS 1 or 2"""
ERRORS = ("ok", "malformed remaining length", "unexpected packet type", "bad fixed-header flags",
          "bad remaining length for the packet type", "QoS 3", "bad topic length",
          "packet id 0")

MAX_REMAINING_LENGTH = 268_435_455
CONTROL_MAX_LENGTH = 1024
"""SUBACK: a packet id and one return code per topic filter of the SUBSCRIBE"""
MAX_HEADER_LENGTH = 5
MAX_PUBLISH_HEAD = MAX_HEADER_LENGTH + 2 + 65_535 + 2
"""fixed header, topic length, the longest topic, packet id: a PUBLISH's bytes before its
payload, at most"""
PUBACK_SIZE = 4

KIND, FLAGS, PACKET_START, PACKET_END, TOPIC_START, TOPIC_END = range(6)
PAYLOAD_START, PAYLOAD_END, PAYLOAD_SIZE, PACKET_ID, QOS, DUP = range(6, 12)
COLUMNS = 12
"""the rows of a scan's table: one column of the packets each (contiguous)"""

CONSUMED, ERROR, NEED, PUBLISHES, MAX_QOS = range(5)
"""`status` of a scan: where it stopped, why (an error code, OK if it did not fail), the
length of the packet at that point when it stopped on that packet being incomplete with its
fixed header in (0 otherwise), how many rows are PUBLISH and their highest QoS"""


@njit(cache=True, nogil=True)
def _remaining_length(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """(remaining length, fixed-header length) of the packet at `pos`; header length 0 when
    the header is not all in `buf[:end]` yet, -1 when malformed."""
    value = 0
    for k in range(4):
        p = pos + 1 + k
        if p >= end:
            return 0, 0
        b = int(buf[p])
        value += (b & 127) << (7 * k)
        if b < 128:
            return value, k + 2
    return 0, -1


@njit(cache=True, nogil=True)
def _header_error(kind: int, flags: int, length: int) -> int:
    if kind == PUBLISH:
        return BAD_QOS if (flags >> 1) & 3 == 3 else OK
    if kind == PUBREL:
        if flags != 2:
            return BAD_FLAGS
    elif kind in (CONNACK, PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, PINGRESP):
        if flags != 0:
            return BAD_FLAGS
    else:
        return UNEXPECTED_TYPE
    if kind == PINGRESP:
        return OK if length == 0 else BAD_LENGTH
    if kind == SUBACK:
        return OK if 3 <= length <= CONTROL_MAX_LENGTH else BAD_LENGTH
    return OK if length == 2 else BAD_LENGTH


@njit(cache=True, nogil=True)
def _publish_head(buf: np.ndarray, body: int, length: int, qos: int, end: int
                  ) -> tuple[int, int, int, int]:
    """(topic end, payload start, packet id, error) of a PUBLISH whose variable header starts
    at `body`; payload start -1 while the variable header is not all in `buf[:end]`."""
    if length < 2:
        return 0, 0, 0, BAD_TOPIC
    if body + 2 > end:
        return 0, -1, 0, OK
    topic_length = (int(buf[body]) << 8) | int(buf[body + 1])
    head = 2 + topic_length + (2 if qos > 0 else 0)
    if topic_length == 0 or head > length:
        return 0, 0, 0, BAD_TOPIC
    if body + head > end:
        return 0, -1, 0, OK
    topic_end = body + 2 + topic_length
    packet_id = 0
    if qos > 0:
        packet_id = (int(buf[topic_end]) << 8) | int(buf[topic_end + 1])
        if packet_id == 0:
            return 0, 0, 0, BAD_PACKET_ID
    return topic_end, body + head, packet_id, OK


@njit(cache=True, nogil=True)
def scan_frames(buf: np.ndarray, start: int, end: int, max_payload: int, table: np.ndarray,
                status: np.ndarray) -> int:
    """Rows (columns of `table`, one per row of it: see the column names) for the complete
    packets from `start`, at most `table.shape[1]`; returns how many. A payload is cut to
    `max_payload + 1` bytes (PAYLOAD_END; PAYLOAD_SIZE keeps its length). Columns other than
    kind, flags and the packet span are 0 for packets other than PUBLISH, but PACKET_ID
    (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK). `status` also gets how many rows are
    PUBLISH and their highest QoS."""
    n = 0
    pos = start
    capacity = table.shape[1]
    error = OK
    need = 0
    publishes = 0
    max_qos = 0
    while pos < end and n < capacity:
        length, header = _remaining_length(buf, pos, end)
        if header < 0:
            error = MALFORMED_LENGTH
            break
        if header == 0:
            break
        first = int(buf[pos])
        k = first >> 4
        f = first & 15
        error = _header_error(k, f, length)
        if error != OK:
            break
        total = header + length
        if pos + total > end:
            need = total
            break
        body = pos + header
        t_start = 0
        t_end = 0
        p_start = 0
        p_end = 0
        pid = 0
        q = 0
        if k == PUBLISH:
            q = (f >> 1) & 3
            t_end, p_start, pid, error = _publish_head(buf, body, length, q, end)
            if error != OK:
                break
            t_start = body + 2
            p_end = min(pos + total, p_start + max_payload + 1)
            publishes += 1
            max_qos = max(max_qos, q)
        elif k in (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK):
            pid = (int(buf[body]) << 8) | int(buf[body + 1])
        table[KIND, n] = k
        table[FLAGS, n] = f
        table[PACKET_START, n] = pos
        table[PACKET_END, n] = pos + total
        table[TOPIC_START, n] = t_start
        table[TOPIC_END, n] = t_end
        table[PAYLOAD_START, n] = p_start
        table[PAYLOAD_END, n] = p_end
        table[PAYLOAD_SIZE, n] = pos + total - p_start if k == PUBLISH else 0
        table[PACKET_ID, n] = pid
        table[QOS, n] = q
        table[DUP, n] = (f >> 3) & 1 if k == PUBLISH else 0
        n += 1
        pos += total
    status[CONSUMED] = pos
    status[ERROR] = error
    status[NEED] = need
    status[PUBLISHES] = publishes
    status[MAX_QOS] = max_qos
    return n


@njit(cache=True, nogil=True)
def publish_head(buf: np.ndarray, start: int, end: int, out: np.ndarray) -> int:
    """The layout of the PUBLISH at `start` from its first bytes alone (the payload need not be
    in): `out` = (topic start, topic end, payload start, packet end, packet id, QoS, DUP).
    Returns OK, an error code, or -1 while its head is not all in `buf[:end]`."""
    length, header = _remaining_length(buf, start, end)
    if header < 0:
        return MALFORMED_LENGTH
    if header == 0:
        return -1
    first = int(buf[start])
    if first >> 4 != PUBLISH:
        return UNEXPECTED_TYPE
    error = _header_error(PUBLISH, first & 15, length)
    if error != OK:
        return error
    q = (first >> 1) & 3
    body = start + header
    t_end, p_start, pid, error = _publish_head(buf, body, length, q, end)
    if error != OK:
        return error
    if p_start < 0:
        return -1
    out[0] = body + 2
    out[1] = t_end
    out[2] = p_start
    out[3] = body + length
    out[4] = pid
    out[5] = q
    out[6] = (first >> 3) & 1
    return OK


@njit(cache=True, nogil=True)
def write_pubacks(packet_id: np.ndarray, qos: np.ndarray, out: np.ndarray) -> int:
    """A PUBACK (0x40 0x02 id) into `out` per message of QoS 1, in order; returns the bytes
    written. `out` holds PUBACK_SIZE bytes per message at least."""
    w = 0
    for i in range(packet_id.shape[0]):
        if qos[i] == 1:
            pid = packet_id[i]
            out[w] = 0x40
            out[w + 1] = 2
            out[w + 2] = (pid >> 8) & 255
            out[w + 3] = pid & 255
            w += PUBACK_SIZE
    return w


# --- checked wrappers ------------------------------------------------------------------------


class FrameError(ValueError):
    """A packet no broker sends: the connection it came on cannot go on."""

    def __init__(self, code: int, offset: int) -> None:
        super().__init__(f"{ERRORS[code]} at byte {offset}")
        self.code = code
        self.offset = offset


class Scan(NamedTuple):
    rows: int
    """complete packets scanned: the first `rows` columns of `table`"""
    consumed: int
    """offset after the last of them"""
    need: int
    """length of the incomplete packet at `consumed` when its fixed header is in, else 0"""
    error: int
    """OK, or the code of the malformed packet at `consumed`"""
    publishes: int
    """how many of the rows are PUBLISH"""
    max_qos: int
    """their highest QoS (0 if none)"""
    table: np.ndarray
    """int64[COLUMNS, capacity]: `table[TOPIC_START, :rows]` and so on"""

    @property
    def full(self) -> bool:
        """Whether the table is full: there may be more packets after `consumed`."""
        return self.rows == int(self.table.shape[1])

    def check(self) -> None:
        """Raise FrameError if the scan stopped at a malformed packet."""
        if self.error != OK:
            raise FrameError(self.error, self.consumed)


class PublishHead(NamedTuple):
    topic_start: int
    topic_end: int
    payload_start: int
    packet_end: int
    packet_id: int
    qos: int
    dup: bool


def _check_buffer(buf: np.ndarray, start: int, end: int) -> None:
    if buf.dtype != np.uint8 or buf.ndim != 1 or not buf.flags.c_contiguous:
        raise TypeError("buf must be a contiguous 1-D uint8 array")
    if not 0 <= start <= end <= buf.shape[0]:
        raise ValueError(f"span {start}:{end} outside a buffer of {buf.shape[0]} bytes")


class FrameScanner:
    """A table for up to `rows` packets, filled by each `scan` anew."""

    def __init__(self, rows: int = 8192) -> None:
        if rows < 1:
            raise ValueError("rows must be at least 1")
        self.table = np.zeros((COLUMNS, rows), np.int64)
        self._status = np.zeros(5, np.int64)

    def scan(self, buf: np.ndarray, start: int, end: int,
             max_payload: int = MAX_REMAINING_LENGTH) -> Scan:
        """The complete packets of `buf[start:end]` (as many as the table holds), up to a
        malformed one (see `Scan.error`). `Scan.table` is this scanner's: copy what you keep."""
        _check_buffer(buf, start, end)
        if max_payload < 0:
            raise ValueError("max_payload >= 0")
        rows = scan_frames(buf, start, end, max_payload, self.table, self._status)
        consumed, error, need, publishes, max_qos = self._status.tolist()
        return Scan(int(rows), consumed, need, error, publishes, max_qos, self.table)


def read_publish_head(buf: np.ndarray, start: int, end: int) -> PublishHead | None:
    """The layout of the PUBLISH at `start`, or None while its head is incomplete; raises
    FrameError if it is malformed or not a PUBLISH."""
    _check_buffer(buf, start, end)
    out = np.zeros(7, np.int64)
    code = publish_head(buf, start, end, out)
    if code < 0:
        return None
    if code != OK:
        raise FrameError(code, start)
    v = [int(x) for x in out]
    return PublishHead(v[0], v[1], v[2], v[3], v[4], v[5], bool(v[6]))


def pubacks(packet_id: np.ndarray, qos: np.ndarray) -> bytes:
    """The PUBACKs of the QoS 1 messages among (packet_id, qos), in order, as one buffer."""
    if packet_id.shape != qos.shape or packet_id.ndim != 1:
        raise ValueError("packet_id and qos must be 1-D arrays of one length")
    if packet_id.shape[0] and (int(packet_id.min()) < 0 or int(packet_id.max()) > 0xFFFF):
        raise ValueError("packet ids are 16-bit")
    out = np.empty(PUBACK_SIZE * packet_id.shape[0], np.uint8)
    written = write_pubacks(packet_id, qos, out)
    return out[:written].tobytes()
