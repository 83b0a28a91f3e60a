"""SNB1, the project's compact columnar batch format (documented in docs/binary-batch.md).

Layout, all integers little-endian:

    header   24 bytes  b"SNB1", u8 version=1, u8 flags=0, u16 n_devices, u16 n_channels,
                       u16 reserved=0, u32 n_readings, u32 n_values, u32 tables_len
    tables   tables_len bytes (a multiple of 8):
               per device:  u8 len, id (UTF-8), u8 len, kind (UTF-8)
               per channel: u8 len, name (UTF-8)
               zero padding
    columns  i64 ts[n_readings], i64 seq[n_readings], f64 battery[n_readings] (NaN = none),
             f64 value[n_values], u32 epoch[n_readings], u32 value_row[n_values],
             u16 device[n_readings], u16 value_channel[n_values]

A payload is SNB1 if and only if it starts with the magic; JSON never does.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

import numpy as np

from sensing.wire.batch import ReadingBatch
from sensing.wire.errors import WireError

MAGIC = b"SNB1"
VERSION = 1
_HEADER = struct.Struct("<4sBBHHHIII")
HEADER_SIZE = _HEADER.size
MAX_TABLE_ENTRIES = 65535

_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    # (field, little-endian dtype, per reading (True) or per value (False))
    ("ts", "<i8", True),
    ("seq", "<i8", True),
    ("battery", "<f8", True),
    ("value", "<f8", False),
    ("epoch", "<u4", True),
    ("value_row", "<u4", False),
    ("device", "<u2", True),
    ("value_channel", "<u2", False),
)
_NATIVE = {
    "ts": np.int64,
    "seq": np.int64,
    "value": np.float64,
    "epoch": np.int64,
    "value_row": np.int32,
    "battery": np.float64,
    "device": np.int32,
    "value_channel": np.int32,
}

_WIDENED = ("device", "epoch", "value_row", "value_channel")
"""the columns narrower on the wire than in memory, in `widen_wire_indices`' order"""


def is_binary(payload: bytes) -> bool:
    return payload[:4] == MAGIC


def _pack_names(names: tuple[str, ...], what: str) -> bytes:
    out = bytearray()
    for name in names:
        raw = name.encode()
        if not 0 < len(raw) < 256:
            raise WireError(f"{what} {name!r} must be 1-255 bytes of UTF-8")
        out.append(len(raw))
        out += raw
    return bytes(out)


def encode(batch: ReadingBatch) -> bytes:
    """Encode a batch; raises WireError if it does not fit the format's limits."""
    if len(batch.devices) > MAX_TABLE_ENTRIES or len(batch.channels) > MAX_TABLE_ENTRIES:
        raise WireError("SNB1 holds at most 65535 devices and channels per batch")
    if len(batch) and (batch.epoch.min() < 0 or batch.epoch.max() > 0xFFFFFFFF):
        raise WireError("epoch must fit in 32 bits")
    tables = bytearray()
    for device, kind in zip(batch.devices, batch.kinds, strict=True):
        tables += _pack_names((device,), "device id") + _pack_names((kind,), "kind")
    tables += _pack_names(batch.channels, "channel")
    tables += b"\0" * (-len(tables) % 8)
    header = _HEADER.pack(
        MAGIC,
        VERSION,
        0,
        len(batch.devices),
        len(batch.channels),
        0,
        len(batch),
        batch.n_values,
        len(tables),
    )
    parts = [header, bytes(tables)]
    for name, dtype, _ in _COLUMNS:
        parts.append(np.ascontiguousarray(getattr(batch, name), dtype=dtype).tobytes())
    return b"".join(parts)


def _unpack_names(tables: bytes, pos: int, count: int, what: str) -> tuple[list[str], int]:
    names: list[str] = []
    for _ in range(count):
        if pos >= len(tables):
            raise WireError(f"SNB1 table truncated in {what}s")
        n = tables[pos]
        raw = tables[pos + 1 : pos + 1 + n]
        if n == 0 or len(raw) != n:
            raise WireError(f"SNB1 table truncated in {what}s")
        try:
            names.append(raw.decode())
        except UnicodeDecodeError:
            raise WireError(f"SNB1 {what} is not UTF-8") from None
        pos += 1 + n
    return names, pos


Tables = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]
"""device ids, their kinds, channel names"""


def _parse_tables_slowly(tables: bytes, n_dev: int, n_chan: int) -> Tables:
    """Name by name, failing with the reason of the first bad name."""
    pos = 0
    devices: list[str] = []
    kinds: list[str] = []
    for _ in range(n_dev):
        (device,), pos = _unpack_names(tables, pos, 1, "device")
        (kind,), pos = _unpack_names(tables, pos, 1, "kind")
        devices.append(device)
        kinds.append(kind)
    channels, pos = _unpack_names(tables, pos, n_chan, "channel")
    if any(tables[pos:]):
        raise WireError("SNB1 table padding is not zero")
    return tuple(devices), tuple(kinds), tuple(channels)


def _entry_starts_in_bulk(table: np.ndarray, count: int) -> np.ndarray | None:
    """Where the `count` entries start, if every length byte is below 32 and no name holds
    such a byte (short names of printable text): then the starts are exactly the bytes 1..31,
    confirmed by each one's length pointing at the next. None: walk the table instead."""
    starts = np.flatnonzero((table > 0) & (table < 32))
    if starts.size != count or not count or starts[0] != 0:
        return None
    following = starts + 1 + table[starts]
    if not np.array_equal(following[:-1], starts[1:]):
        return None
    return np.append(starts, following[-1])


def _entry_starts(tables: bytes, count: int) -> list[int] | None:
    """Where the `count` entries start, then where the padding starts; None if truncated."""
    starts = [0] * (count + 1)
    pos = 0
    end = len(tables)
    for i in range(count):
        if pos >= end:
            return None
        starts[i] = pos
        pos += 1 + tables[pos]
    starts[count] = pos
    return starts


def _parse_tables(tables: bytes, n_dev: int, n_chan: int) -> Tables:
    """All names at once: find the length bytes, make them NUL and decode the whole table in
    one call (UTF-8 is self-synchronising, so it decodes exactly when every name does). Any
    doubt (a NUL inside a name, a bad name, truncation) goes name by name."""
    count = 2 * n_dev + n_chan
    table = np.frombuffer(tables, dtype=np.uint8)
    starts: np.ndarray | list[int] | None = _entry_starts_in_bulk(table, count)
    if starts is None:
        starts = _entry_starts(tables, count)
        if starts is None:
            return _parse_tables_slowly(tables, n_dev, n_chan)
    pos = int(starts[-1])
    starts = starts[:-1]
    if pos > len(tables) or any(tables[pos:]) or tables.count(0, 0, pos):
        return _parse_tables_slowly(tables, n_dev, n_chan)
    raw = table[:pos].copy()
    lengths = raw[starts]
    if not lengths.all():
        return _parse_tables_slowly(tables, n_dev, n_chan)
    raw[starts] = 0
    try:
        names = raw.tobytes().decode().split("\0")
    except UnicodeDecodeError:
        return _parse_tables_slowly(tables, n_dev, n_chan)
    return (tuple(names[1 : 2 * n_dev : 2]), tuple(names[2 : 2 * n_dev + 1 : 2]),
            tuple(names[2 * n_dev + 1 :]))


class _TableCache:
    """Parsed name tables by their exact bytes, least recently used out first: a gateway
    sends the same table batch after batch, so most payloads cost a dict hit and a memcmp
    here. The key holds only the table's ends (hashing all of it costs more than the rest of
    the decode); a hit is confirmed against the whole table."""

    def __init__(self, max_bytes: int = 32 << 20, max_tables: int = 4096) -> None:
        self._tables: OrderedDict[tuple[int, int, int, bytes, bytes],
                                  tuple[bytes, Tables]] = OrderedDict()
        self._bytes = 0
        self.max_bytes = max_bytes
        self.max_tables = max_tables

    def get(self, payload: bytes, n_dev: int, n_chan: int, start: int = 0,
            end: int | None = None) -> Tables:
        """The names of the table `payload[start:end]`, compared in place on a hit."""
        end = len(payload) if end is None else end
        key = (n_dev, n_chan, end - start, payload[start : min(start + 64, end)],
               payload[max(end - 64, start) : end])
        hit = self._tables.get(key)
        if hit is not None and payload.startswith(hit[0], start):
            self._tables.move_to_end(key)
            return hit[1]
        tables = bytes(payload[start:end])
        parsed = _parse_tables(tables, n_dev, n_chan)
        old = self._tables.pop(key, None)
        if old is not None:
            self._bytes -= len(old[0])
        self._tables[key] = (tables, parsed)
        self._bytes += len(tables)
        while self._bytes > self.max_bytes or len(self._tables) > self.max_tables:
            _, (raw, _) = self._tables.popitem(last=False)
            self._bytes -= len(raw)
        return parsed


_TABLES = _TableCache()


def decode(payload: bytes) -> ReadingBatch:
    """Decode and check an SNB1 payload; raises WireError with a reason."""
    if len(payload) < HEADER_SIZE:
        raise WireError("SNB1 payload shorter than its header")
    magic, version, _flags, n_dev, n_chan, _res, n_read, n_val, tables_len = _HEADER.unpack_from(
        payload
    )
    if magic != MAGIC:
        raise WireError("not an SNB1 payload")
    if version != VERSION:
        raise WireError(f"unsupported SNB1 version {version}")
    columns_len = n_read * (8 + 8 + 8 + 4 + 2) + n_val * (8 + 4 + 2)
    if tables_len % 8 or HEADER_SIZE + tables_len + columns_len != len(payload):
        raise WireError("SNB1 length does not match its header")
    devices, kinds, channels = _TABLES.get(payload, n_dev, n_chan, HEADER_SIZE,
                                           HEADER_SIZE + tables_len)
    offset = HEADER_SIZE + tables_len
    raw: dict[str, np.ndarray] = {}
    for name, dtype, per_reading in _COLUMNS:
        count = n_read if per_reading else n_val
        raw[name] = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
        offset += raw[name].nbytes
    # the narrow columns are widened (the others stay read-only views of the payload) and
    # their indices checked in the same pass; imported here, as the edge agent imports this
    # module to encode and must not load numba
    from sensing.kernels.columns import widen_wire_indices

    cols = {name: a if a.dtype == _NATIVE[name] else a.astype(_NATIVE[name])
            for name, a in raw.items() if name not in _WIDENED}
    cols |= {name: np.empty(raw[name].shape[0], dtype=_NATIVE[name]) for name in _WIDENED}
    dev_hi, row_hi, chan_hi = widen_wire_indices(*(raw[name] for name in _WIDENED),
                                                 *(cols[name] for name in _WIDENED))
    if dev_hi >= n_dev:
        raise WireError("SNB1 device index out of range")
    if chan_hi >= n_chan:
        raise WireError("SNB1 channel index out of range")
    if row_hi >= n_read:
        raise WireError("SNB1 value row out of range")
    return ReadingBatch(
        devices=devices,
        kinds=kinds,
        channels=channels,
        device=cols["device"],
        epoch=cols["epoch"],
        seq=cols["seq"],
        ts=cols["ts"],
        battery=cols["battery"],
        value_row=cols["value_row"],
        value_channel=cols["value_channel"],
        value=cols["value"],
    )
