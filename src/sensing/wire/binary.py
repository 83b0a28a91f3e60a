"""SNB1 and SNB2, the project's compact columnar batch formats (docs/binary-batch.md; the
layout is in `sensing.wire.snb1`, with an encoder that needs no numpy): decoding into numpy
columns, and encoding a `ReadingBatch`.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict

import numpy as np

from sensing.wire.batch import ReadingBatch
from sensing.wire.errors import Code, WireError
from sensing.wire.kinds import KINDS
from sensing.wire.limits import (
    MAX_CHANNELS_PER_MESSAGE,
    MAX_DEVICES_PER_MESSAGE,
    MAX_READINGS_PER_MESSAGE,
    MAX_VALUES_PER_MESSAGE,
)
from sensing.wire.snb1 import (
    CHECKSUM,
    CHECKSUM_SIZE,
    COLUMNS,
    HEADER,
    HEADER_SIZE,
    MAGICS,
    READING_BYTES,
    VALUE_BYTES,
    VERSION_SNB2,
    header_and_tables,
    is_batch,
    with_checksum,
)
from sensing.wire.table_cache import names_bytes

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
    return is_batch(payload)


def encode(batch: ReadingBatch, version: int = VERSION_SNB2) -> bytes:
    """Encode a batch as SNB2 (or SNB1); raises WireError if it does not fit the format."""
    if len(batch) and (batch.epoch.min() < 0 or batch.epoch.max() > 0xFFFFFFFF):
        raise WireError("epoch must fit in 32 bits", Code.EPOCH_OUT_OF_RANGE)
    head = header_and_tables(zip(batch.devices, batch.kinds, strict=True), batch.channels,
                             len(batch.devices), len(batch.channels), len(batch),
                             batch.n_values, version)
    parts = [head]
    for name, dtype, _ in COLUMNS:
        parts.append(np.ascontiguousarray(getattr(batch, name), dtype=dtype).tobytes())
    return with_checksum(b"".join(parts), version)


def _unpack_names(tables: bytes, pos: int, count: int, what: str) -> tuple[list[str], int]:
    names: list[str] = []
    for _ in range(count):
        if pos >= len(tables):
            raise WireError(f"SNB table truncated in {what}s", Code.BATCH_MALFORMED)
        n = tables[pos]
        raw = tables[pos + 1 : pos + 1 + n]
        if n == 0 or len(raw) != n:
            raise WireError(f"SNB table truncated in {what}s", Code.BATCH_MALFORMED)
        try:
            names.append(raw.decode())
        except UnicodeDecodeError:
            raise WireError(f"SNB {what} is not UTF-8", Code.NAME_INVALID) from None
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
        raise WireError("SNB table padding is not zero", Code.BATCH_MALFORMED)
    return tuple(devices), _shared_kinds(kinds), tuple(channels)


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
    return (tuple(names[1 : 2 * n_dev : 2]), _shared_kinds(names[2 : 2 * n_dev + 1 : 2]),
            tuple(names[2 * n_dev + 1 :]))


_KIND_NAMES = {k: k for k in KINDS}


def _shared_kinds(kinds: list[str]) -> tuple[str, ...]:
    """The kinds column with each known kind as one shared str: a table of 1,000 devices holds
    three kind objects, not 1,000 (and the caches that keep it count it so)."""
    return tuple(map(_KIND_NAMES.get, kinds, kinds))


class _TableCache:
    """Parsed name tables by their exact bytes, least recently used out first: a gateway
    sends the same table batch after batch, so most payloads cost a dict hit and a memcmp
    here. The key holds only the table's ends (hashing all of it costs more than the rest of
    the decode); a hit is confirmed against the whole table. Bounded by an estimate of the
    bytes it holds: the raw tables and their parsed names."""

    def __init__(self, max_bytes: int = 16 << 20, max_tables: int = 4096) -> None:
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
            self._bytes -= _cost(old[0], old[1])
        self._tables[key] = (tables, parsed)
        self._bytes += _cost(tables, parsed)
        while self._bytes > self.max_bytes or len(self._tables) > self.max_tables:
            _, (raw, names) = self._tables.popitem(last=False)
            self._bytes -= _cost(raw, names)
        return parsed


def _cost(raw: bytes, names: Tables) -> int:
    """Bytes a cached table holds, at most: its raw bytes, then its names."""
    return 2 * len(raw) + names_bytes(*names)


_TABLES = _TableCache()


def decode(payload: bytes) -> ReadingBatch:
    """Decode and check an SNB1 or SNB2 payload; raises WireError with a reason and code."""
    if len(payload) < HEADER_SIZE:
        raise WireError("SNB payload shorter than its header", Code.BATCH_MALFORMED)
    magic, version, _flags, n_dev, n_chan, _res, n_read, n_val, tables_len = HEADER.unpack_from(
        payload
    )
    expected = MAGICS.get(magic)
    if expected is None:
        raise WireError("not an SNB payload", Code.BATCH_MALFORMED)
    trailer = 0
    if expected == VERSION_SNB2:
        trailer = CHECKSUM_SIZE
        if len(payload) < HEADER_SIZE + trailer or CHECKSUM.unpack_from(
                payload, len(payload) - trailer)[0] != zlib.crc32(
                memoryview(payload)[: len(payload) - trailer]):
            raise WireError("SNB2 checksum does not match: the batch is corrupt",
                            Code.BATCH_CORRUPT)
    if version != expected:
        raise WireError(f"unsupported {magic.decode()} version {version}", Code.BATCH_MALFORMED)
    columns_len = n_read * READING_BYTES + n_val * VALUE_BYTES
    if tables_len % 8 or HEADER_SIZE + tables_len + columns_len + trailer != len(payload):
        raise WireError("SNB length does not match its header", Code.BATCH_MALFORMED)
    if not n_read:
        raise WireError("SNB batch of no readings", Code.BATCH_EMPTY)
    if n_read > MAX_READINGS_PER_MESSAGE:
        raise WireError(f"{n_read} readings in one message, more than "
                        f"{MAX_READINGS_PER_MESSAGE}", Code.TOO_MANY_READINGS)
    if n_val > MAX_VALUES_PER_MESSAGE:
        raise WireError(f"{n_val} values in one message, more than {MAX_VALUES_PER_MESSAGE}",
                        Code.TOO_MANY_VALUES)
    if n_dev > MAX_DEVICES_PER_MESSAGE:
        raise WireError(f"a table of {n_dev} devices, more than {MAX_DEVICES_PER_MESSAGE}",
                        Code.TOO_MANY_DEVICES)
    if n_chan > MAX_CHANNELS_PER_MESSAGE:
        raise WireError(f"a table of {n_chan} channels, more than {MAX_CHANNELS_PER_MESSAGE}",
                        Code.TOO_MANY_CHANNELS)
    devices, kinds, channels = _TABLES.get(payload, n_dev, n_chan, HEADER_SIZE,
                                           HEADER_SIZE + tables_len)
    offset = HEADER_SIZE + tables_len
    raw: dict[str, np.ndarray] = {}
    for name, dtype, per_reading in COLUMNS:
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
        raise WireError("SNB device index out of range", Code.BATCH_MALFORMED)
    if chan_hi >= n_chan:
        raise WireError("SNB channel index out of range", Code.BATCH_MALFORMED)
    if row_hi >= n_read:
        raise WireError("SNB value row out of range", Code.BATCH_MALFORMED)
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
