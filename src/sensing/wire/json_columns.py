"""JSON readings of many payloads decoded in one pass into columns: the fast lane before
`json_codec`, for the payloads it fully understands (sensing.kernels.jsonscan says which).

A message the lane takes (status OK) decodes to exactly the readings `json_codec.decode` gives
it, in order, none of them refused by the codec's type checks: `parse_reading`'s checks that
the lane does too are that a reading is an object; `device` and `kind` are strings; `seq` and
`ts` are present and, like `epoch` (default 0), integers of the 64-bit range (not floats, not
`true`, `ts` not a string); `values` is an object of at most MAX_VALUES_PER_READING numbers,
`battery` a number or null; and per message at most MAX_READINGS_PER_MESSAGE readings,
MAX_VALUES_PER_MESSAGE values and MAX_CHANNELS_PER_MESSAGE distinct channels (the lane takes
at most MAX_DEVICES_PER_MESSAGE readings, so it never needs to count distinct devices).
What stays with the caller, on these columns:
- a device's kind: each reading's `kind` span is its own, but the codec's batch gives a device
  the kind of its first reading in the message (BatchBuilder): build it the same way, or give
  a message whose device changes kind to the slow path;
- a reading's `gateway` and `area` (spans here, -1 when absent) must equal the topic's, else
  the codec refuses that reading: give such a message to the slow path;
- `validate.invalid_readings`' range and name checks: seq and epoch >= 0, ts bounds, battery
  in [0, 1] (values are always finite here: 1e400 is left to the slow path), device ids, kinds
  and channel names of the contract's alphabets (a name found in a NameCache that only holds
  names the slow path accepted needs no check);
- what `decode.decode_readings` does before the codec: the payload's size bound, an empty
  payload, a binary batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from sensing.kernels import jsonscan
from sensing.kernels.spans import span_bytes
from sensing.spare import Spares
from sensing.wire.limits import (
    MAX_CHANNELS_PER_MESSAGE,
    MAX_DEVICES_PER_MESSAGE,
    MAX_READINGS_PER_MESSAGE,
    MAX_VALUES_PER_MESSAGE,
    MAX_VALUES_PER_READING,
)

I8 = npt.NDArray[np.int8]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]


class ScanStatus(IntEnum):
    """A message's status: OK, or why the fast lane leaves it to the slow path."""

    OK = jsonscan.OK
    SYNTAX = jsonscan.SYNTAX
    STRING = jsonscan.STRING
    NUMBER = jsonscan.NUMBER
    FIELD = jsonscan.FIELD
    LIMIT = jsonscan.LIMIT
    EMPTY = jsonscan.EMPTY


@dataclass(frozen=True, slots=True)
class JsonColumns:
    """Messages `buf[starts[m]:ends[m]]` decoded into columns. Spans are offsets into `buf`.

    Per message: `status` (ScanStatus), its readings `message_start[m]:message_stop[m]`
    (none unless OK). Per reading: its message, spans and hashes (jsonscan.hash_name) of
    device and kind, spans of gateway and area (-1 when absent), epoch (0 when absent), seq,
    ts, battery (NaN when absent or null), its values `value_start[i]:value_stop[i]`. Per
    value: its reading, the channel name's span and hash, the value.
    """

    buf: U8
    status: I8
    message_start: I64
    message_stop: I64
    reading_message: I64
    device_start: I64
    device_end: I64
    device_hash: I64
    kind_start: I64
    kind_end: I64
    kind_hash: I64
    gateway_start: I64
    gateway_end: I64
    area_start: I64
    area_end: I64
    epoch: I64
    seq: I64
    ts: I64
    battery: F64
    value_start: I64
    value_stop: I64
    value_reading: I64
    channel_start: I64
    channel_end: I64
    channel_hash: I64
    value: F64

    @property
    def n_messages(self) -> int:
        return int(self.status.shape[0])

    @property
    def n_readings(self) -> int:
        return int(self.seq.shape[0])

    @property
    def n_values(self) -> int:
        return int(self.value.shape[0])

    def fallback(self) -> I64:
        """The messages left to the slow path."""
        return np.flatnonzero(self.status).astype(np.int64)

    def text(self, start: int, end: int) -> str:
        """The ASCII text of a span (the lane takes no other bytes in a string)."""
        return bytes(self.buf[start:end]).decode("ascii")


def pack_payloads(payloads: Sequence[bytes]) -> tuple[U8, I64, I64]:
    """Payloads joined into one buffer: (buf, starts, ends)."""
    buf = np.frombuffer(b"".join(payloads), dtype=np.uint8)
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
    ends = np.cumsum(lengths)
    return buf, ends - lengths, ends


def name_hash(name: bytes) -> int:
    """The hash the lane gives a name of these bytes (device_hash, kind_hash, channel_hash)."""
    return int(jsonscan.hash_name(np.frombuffer(name, dtype=np.uint8), 0, len(name)))


_READING_COLS, _VALUE_COLS = Spares(np.int64), Spares(np.int64)
_BATTERY, _VALUES = Spares(np.float64), Spares(np.float64)
"""the scan's output, megabytes a step: reused once the step is done with it (sensing.spare)"""
_MIN_READING_BYTES = len(b'{"device":"","kind":"","seq":0,"ts":0,"values":{}}')
_MIN_VALUE_BYTES = len(b'"":0,')
_SEEN_SLOTS = 1 << (4 * (MAX_CHANNELS_PER_MESSAGE + 1) - 1).bit_length()


def scan_json(buf: U8 | bytes, starts: I64, ends: I64) -> JsonColumns:
    """Decode the messages `buf[starts[m]:ends[m]]` (see JsonColumns). Raises ValueError if
    the arrays are not of the expected kinds or a span does not lie in `buf`."""
    if not isinstance(buf, np.ndarray):
        buf = np.frombuffer(buf, dtype=np.uint8)
    if buf.dtype != np.uint8 or buf.ndim != 1:
        raise ValueError(f"buf must be a 1-D uint8 array, got {buf.dtype} of {buf.ndim} dims")
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    ends = np.ascontiguousarray(ends, dtype=np.int64)
    if starts.ndim != 1 or starts.shape != ends.shape:
        raise ValueError(f"starts and ends must be 1-D of one length, got shapes "
                         f"{starts.shape} and {ends.shape}")
    outside, total = span_bytes(buf.shape[0], starts, ends)
    if outside >= 0:
        raise ValueError(f"span {outside} ({starts[outside]}, {ends[outside]}) is not inside "
                         f"the buffer of {buf.shape[0]} bytes")
    n = starts.shape[0]
    readings = n + total // (2 * _MIN_READING_BYTES)
    reading_cols = _READING_COLS.empty(jsonscan.READING_ROWS * readings).reshape(
        jsonscan.READING_ROWS, readings)
    n_values = 16 + total // (4 * _MIN_VALUE_BYTES)
    value_cols = _VALUE_COLS.empty(jsonscan.VALUE_ROWS * n_values).reshape(
        jsonscan.VALUE_ROWS, n_values)
    battery = _BATTERY.empty(readings)
    values = _VALUES.empty(n_values)
    status = np.empty(n, dtype=np.int8)
    message_readings = np.empty((2, n), dtype=np.int64)
    seen_stamp = np.zeros(_SEEN_SLOTS, dtype=np.int64)
    seen_value = np.empty(_SEEN_SLOTS, dtype=np.int64)
    m = r = v = 0
    while True:
        m, r, v = jsonscan.scan_messages(
            buf, starts, ends, m, r, v, reading_cols, battery, value_cols, values, status,
            message_readings, seen_stamp, seen_value,
            min(MAX_READINGS_PER_MESSAGE, MAX_DEVICES_PER_MESSAGE), MAX_VALUES_PER_READING,
            MAX_VALUES_PER_MESSAGE, MAX_CHANNELS_PER_MESSAGE)
        if m == n:
            break
        # message m did not fit: room for what it can hold at most, and to spare
        size = int(ends[m] - starts[m])
        reading_cols, battery = _grown(reading_cols, battery, r, r + size // _MIN_READING_BYTES)
        value_cols, values = _grown(value_cols, values, v, v + size // _MIN_VALUE_BYTES + 1)
    rows, vrows = reading_cols[:, :r], value_cols[:, :v]
    return JsonColumns(
        buf=buf,
        status=status,
        message_start=message_readings[0],
        message_stop=message_readings[1],
        reading_message=rows[jsonscan.R_MESSAGE],
        device_start=rows[jsonscan.R_DEVICE_START],
        device_end=rows[jsonscan.R_DEVICE_END],
        device_hash=rows[jsonscan.R_DEVICE_HASH],
        kind_start=rows[jsonscan.R_KIND_START],
        kind_end=rows[jsonscan.R_KIND_END],
        kind_hash=rows[jsonscan.R_KIND_HASH],
        gateway_start=rows[jsonscan.R_GATEWAY_START],
        gateway_end=rows[jsonscan.R_GATEWAY_END],
        area_start=rows[jsonscan.R_AREA_START],
        area_end=rows[jsonscan.R_AREA_END],
        epoch=rows[jsonscan.R_EPOCH],
        seq=rows[jsonscan.R_SEQ],
        ts=rows[jsonscan.R_TS],
        battery=battery[:r],
        value_start=rows[jsonscan.R_VALUE_START],
        value_stop=rows[jsonscan.R_VALUE_STOP],
        value_reading=vrows[jsonscan.V_READING],
        channel_start=vrows[jsonscan.V_NAME_START],
        channel_end=vrows[jsonscan.V_NAME_END],
        channel_hash=vrows[jsonscan.V_NAME_HASH],
        value=values[:v],
    )


def _grown(cols: npt.NDArray[np.int64], floats: F64, used: int, need: int
           ) -> tuple[npt.NDArray[np.int64], F64]:
    """Columns of at least `need` entries (twice as many as before at least), the first
    `used` copied."""
    size = max(need + 1, 2 * cols.shape[1])
    wider = np.empty((cols.shape[0], size), dtype=np.int64)
    wider[:, :used] = cols[:, :used]
    longer = np.empty(size, dtype=np.float64)
    longer[:used] = floats[:used]
    return wider, longer
