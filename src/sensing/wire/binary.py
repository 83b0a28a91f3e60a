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
    tables = payload[HEADER_SIZE : HEADER_SIZE + tables_len]
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
    offset = HEADER_SIZE + tables_len
    cols: dict[str, np.ndarray] = {}
    for name, dtype, per_reading in _COLUMNS:
        count = n_read if per_reading else n_val
        raw = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
        offset += raw.nbytes
        cols[name] = raw.astype(_NATIVE[name])
    if n_read and int(cols["device"].max()) >= n_dev:
        raise WireError("SNB1 device index out of range")
    if n_val and int(cols["value_channel"].max()) >= n_chan:
        raise WireError("SNB1 channel index out of range")
    if n_val and int(cols["value_row"].max()) >= n_read:
        raise WireError("SNB1 value row out of range")
    return ReadingBatch(
        devices=tuple(devices),
        kinds=tuple(kinds),
        channels=tuple(channels),
        device=cols["device"],
        epoch=cols["epoch"],
        seq=cols["seq"],
        ts=cols["ts"],
        battery=cols["battery"],
        value_row=cols["value_row"],
        value_channel=cols["value_channel"],
        value=cols["value"],
    )
