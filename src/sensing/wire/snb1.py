"""The SNB batch layouts, and an encoder that needs no numpy (the edge agent's: a gateway keeps
its memory for readings, numpy costs it 12 MB). `sensing.wire.binary` decodes them into numpy
columns and encodes `ReadingBatch`es with the same layout; docs/binary-batch.md describes it.

SNB1 layout, all integers little-endian:

    header   24 bytes  b"SNB1", u8 version=1, u8 flags=0, u16 n_devices, u16 n_channels,
                       u16 reserved=0, u32 n_readings, u32 n_values, u32 tables_len
    tables   tables_len bytes (a multiple of 8):
               per device:  u8 len, id (UTF-8), u8 len, kind (UTF-8)
               per channel: u8 len, name (UTF-8)
               zero padding
    columns  i64 ts[n_readings], i64 seq[n_readings], f64 battery[n_readings] (NaN = none),
             f64 value[n_values], u32 epoch[n_readings], u32 value_row[n_values],
             u16 device[n_readings], u16 value_channel[n_values]

SNB2 is SNB1 with b"SNB2" and version=2 in its header and a trailer: u32 CRC-32 (zlib's, the
IEEE polynomial) of every byte before it, so that a corrupted batch is refused whole. Encoders
write SNB2; the core reads both.

A payload is an SNB batch if and only if it starts with one of the magics; JSON never does.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Mapping

from sensing.wire.errors import Code, WireError

MAGIC = b"SNB1"
VERSION = 1
MAGIC_SNB2 = b"SNB2"
VERSION_SNB2 = 2
MAGICS = {MAGIC: VERSION, MAGIC_SNB2: VERSION_SNB2}
CHECKSUM = struct.Struct("<I")
CHECKSUM_SIZE = CHECKSUM.size
HEADER = struct.Struct("<4sBBHHHIII")
HEADER_SIZE = HEADER.size
MAX_TABLE_ENTRIES = 65535

READING_BYTES = 8 + 8 + 8 + 4 + 2
VALUE_BYTES = 8 + 4 + 2

COLUMNS: tuple[tuple[str, str, bool], ...] = (
    # (field, little-endian dtype, per reading (True) or per value (False)), in payload order
    ("ts", "<i8", True),
    ("seq", "<i8", True),
    ("battery", "<f8", True),
    ("value", "<f8", False),
    ("epoch", "<u4", True),
    ("value_row", "<u4", False),
    ("device", "<u2", True),
    ("value_channel", "<u2", False),
)
_ARRAY_CODE = {"<i8": "q", "<f8": "d", "<u4": "I", "<u2": "H"}
if any(array(code).itemsize != int(dtype[2]) for dtype, code in _ARRAY_CODE.items()):
    raise ImportError("this platform's array item sizes do not match SNB1's columns")

Reading = tuple[str, str, int, int, int, Mapping[str, float], float | None]
"""(device, kind, epoch, seq, ts, values, battery or None)"""


def pack_names(names: Iterable[str], what: str) -> bytes:
    out = bytearray()
    for name in names:
        packed = _packed.get(name)
        if packed is None:
            raw = name.encode()
            if not 0 < len(raw) < 256:
                raise WireError(f"{what} {name[:40]!r} must be 1-255 bytes of UTF-8",
                                Code.NAME_INVALID)
            if len(_packed) >= _PACKED_MAX:
                _packed.clear()
            packed = _packed[name] = bytes((len(raw),)) + raw
        out += packed
    return bytes(out)


_packed: dict[str, bytes] = {}
"""names as packed before: a gateway's batches name the same devices again and again"""
_PACKED_MAX = 100_000


def is_batch(payload: bytes) -> bool:
    """Whether the payload is an SNB batch (SNB1 or SNB2), by its magic."""
    return payload[:4] in MAGICS


def header_and_tables(devices: Iterable[tuple[str, str]], channels: Iterable[str],
                      n_devices: int, n_channels: int, n_readings: int, n_values: int,
                      version: int = VERSION_SNB2) -> bytes:
    if n_devices > MAX_TABLE_ENTRIES or n_channels > MAX_TABLE_ENTRIES:
        raise WireError("SNB holds at most 65535 devices and channels per batch",
                        Code.TOO_MANY_DEVICES if n_devices > MAX_TABLE_ENTRIES
                        else Code.TOO_MANY_CHANNELS)
    tables = bytearray()
    for device, kind in devices:
        tables += pack_names((device,), "device id") + pack_names((kind,), "kind")
    tables += pack_names(channels, "channel")
    tables += b"\0" * (-len(tables) % 8)
    magic = MAGIC_SNB2 if version == VERSION_SNB2 else MAGIC
    return HEADER.pack(magic, version, 0, n_devices, n_channels, 0, n_readings, n_values,
                       len(tables)) + bytes(tables)


def with_checksum(body: bytes, version: int) -> bytes:
    """The batch as sent: SNB2 gets its CRC-32 trailer, SNB1 stays as it is."""
    return body + CHECKSUM.pack(zlib.crc32(body)) if version == VERSION_SNB2 else body


def shift_ts(payload: bytes, shift_ms: int) -> bytes:
    """The SNB1 or SNB2 batch with every reading's `ts` moved by `shift_ms` (an SNB2 batch
    checksummed anew); raises WireError if it is not a well-formed batch."""
    if len(payload) < HEADER_SIZE or not is_batch(payload):
        raise WireError("not an SNB batch", Code.BATCH_MALFORMED)
    magic, _version, _, _, _, _, n_readings, n_values, tables_len = HEADER.unpack_from(payload)
    v2 = MAGICS[magic] == VERSION_SNB2
    body_len = (HEADER_SIZE + tables_len + READING_BYTES * n_readings + VALUE_BYTES * n_values)
    if body_len + (CHECKSUM_SIZE if v2 else 0) != len(payload):
        raise WireError("SNB length does not match its header", Code.BATCH_MALFORMED)
    if v2 and CHECKSUM.unpack_from(payload, body_len)[0] != zlib.crc32(
            memoryview(payload)[:body_len]):
        raise WireError("SNB2 checksum does not match", Code.BATCH_CORRUPT)
    at = HEADER_SIZE + tables_len
    ts: array[int] = array("q", payload[at : at + 8 * n_readings])
    if sys.byteorder != "little":
        ts.byteswap()
    try:
        moved = array("q", (t + shift_ms for t in ts))
    except OverflowError:
        raise WireError("ts moved out of the 64-bit range", Code.TS_OUT_OF_RANGE) from None
    if sys.byteorder != "little":
        moved.byteswap()
    body = payload[:at] + moved.tobytes() + payload[at + 8 * n_readings : body_len]
    return with_checksum(body, VERSION_SNB2 if v2 else VERSION)


def encode_readings(readings: Iterable[Reading], version: int = VERSION_SNB2) -> bytes:
    """SNB2 (or SNB1) bytes of these readings, in order (devices and channels numbered as they
    first appear, as `sensing.wire.batch.BatchBuilder` does: the bytes are the same as
    `binary.encode(builder.build())`); raises WireError if they do not fit the format."""
    device_index: dict[str, int] = {}
    kinds: list[str] = []
    channel_index: dict[str, int] = {}
    code = {name: _ARRAY_CODE[dtype] for name, dtype, _ in COLUMNS}
    ts: array[int] = array(code["ts"])
    seq: array[int] = array(code["seq"])
    battery: array[float] = array(code["battery"])
    value: array[float] = array(code["value"])
    epoch: array[int] = array(code["epoch"])
    value_row: array[int] = array(code["value_row"])
    device: array[int] = array(code["device"])
    channel: array[int] = array(code["value_channel"])
    cols: dict[str, array[int] | array[float]] = {
        "ts": ts, "seq": seq, "battery": battery, "value": value, "epoch": epoch,
        "value_row": value_row, "device": device, "value_channel": channel}
    try:
        for row, (name, kind, ep, sq, t, values, bat) in enumerate(readings):
            d = device_index.get(name)
            if d is None:
                d = device_index[name] = len(kinds)
                kinds.append(kind)
            device.append(d)
            epoch.append(ep)
            seq.append(sq)
            ts.append(t)
            battery.append(math.nan if bat is None else bat)
            for channel_name, v in values.items():
                c = channel_index.get(channel_name)
                if c is None:
                    c = channel_index[channel_name] = len(channel_index)
                value_row.append(row)
                channel.append(c)
                value.append(v)
    except OverflowError as exc:  # an index past 65535, or an epoch past 32 bits
        if len(device_index) > MAX_TABLE_ENTRIES or len(channel_index) > MAX_TABLE_ENTRIES:
            raise WireError("SNB holds at most 65535 devices and channels per batch",
                            Code.TOO_MANY_DEVICES) from None
        raise WireError(f"a number does not fit SNB (epoch must fit in 32 bits): {exc}",
                        Code.EPOCH_OUT_OF_RANGE) from None
    head = header_and_tables(zip(device_index, kinds, strict=True), channel_index,
                             len(device_index), len(channel_index), len(seq), len(value),
                             version)
    if sys.byteorder != "little":
        for column in cols.values():
            column.byteswap()
    return with_checksum(head + b"".join(cols[name].tobytes() for name, _, _ in COLUMNS),
                         version)
