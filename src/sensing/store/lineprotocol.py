"""InfluxDB line protocol for readings and alert transitions, formatted a batch at a time.

Readings: measurement `reading`, tags area, gateway, device, kind; one float field per channel,
`battery`, and the integer fields `seq` and `epoch` (a channel whose name collides with these is
stored as `ch_<name>`; the wire refuses channels named `ch_seq`, `ch_epoch`, `ch_battery`, so no
two channels share a field); timestamp in ms. In VictoriaMetrics each field becomes a metric
`reading_<field>`, so counting samples of `reading_seq` counts stored readings.

A batch of readings becomes one bytes block in one kernel call (`sensing.kernels.lineproto`):
each device's tag prefix and each channel's field key are escaped and encoded once, when first
needed (again if a device moves to another gateway or area), and kept in byte arenas; the texts
of recent float values stay cached from batch to batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from sensing.arrays import grown
from sensing.kernels.lineproto import (
    FLOAT_MAX_CHARS,
    INT_MAX_CHARS,
    OUT_PADDING,
    PADDING,
    format_readings,
    group_by_reading,
    index_range,
    new_float_cache,
    stale_prefixes,
)
from sensing.registry import Registry
from sensing.wire.limits import RENAMED_PREFIX
from sensing.wire.limits import RESERVED_FIELDS as _RESERVED_NAMES
from sensing.wire.messages import Alert

RESERVED_FIELDS = frozenset(_RESERVED_NAMES)
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})
_LINE_FIXED = (len("battery=") + FLOAT_MAX_CHARS + len(",seq=i,epoch=i ") + 3 * INT_MAX_CHARS
               + 1)
"""bytes of a line besides its prefix and values, at most"""


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key. Line protocol cannot escape a line break
    there, so a name with a control character (or none at all) is refused: the wire's name
    rules (sensing.wire.limits) let none through, this is the second line of defence."""
    if not text or not text.isprintable():
        raise ValueError(f"{text[:40]!r} cannot be a line-protocol key or tag value")
    return text.translate(_TAG_ESCAPES)


def field_key(channel: str) -> str:
    """The field a channel is stored as: one for each name the wire accepts (it refuses the
    renamed fields as channel names, sensing.wire.limits.RENAMED_FIELDS)."""
    return escape_key(RENAMED_PREFIX + channel if channel in RESERVED_FIELDS else channel)


class ByteTable:
    """Byte strings by dense index in one growing arena, as a kernel reads them:
    `arena[ptr[i] : ptr[i] + length[i]]`, with PADDING bytes after the last one. Replacing an
    entry appends it anew."""

    def __init__(self, capacity: int = 1024) -> None:
        self.arena = np.zeros(64 * capacity, dtype=np.uint8)
        self.used = 0
        self.ptr = np.zeros(capacity, dtype=np.int64)
        self.length = np.zeros(capacity, dtype=np.int64)
        self.longest = 0

    def __len__(self) -> int:
        return int(self.ptr.shape[0])

    def reserve(self, n: int) -> None:
        self.ptr = grown(self.ptr, n)
        self.length = grown(self.length, n)

    def set(self, i: int, raw: bytes) -> None:
        self.reserve(i + 1)
        end = self.used + len(raw)
        self.arena = grown(self.arena, end + PADDING)
        self.arena[self.used : end] = np.frombuffer(raw, dtype=np.uint8)
        self.ptr[i] = self.used
        self.length[i] = len(raw)
        self.used = end
        self.longest = max(self.longest, len(raw))


def _within(index: np.ndarray, size: int) -> bool:
    """Whether every entry of a non-empty index array lies in 0 ..< size: the int32 arrays of
    the pipeline in one kernel pass, others as they are (a cast could wrap them)."""
    if index.dtype == np.int32 and index.flags.c_contiguous:
        low, high = index_range(index)
    else:
        low, high = int(index.min()), int(index.max())
    return low >= 0 and high < size


class LineFormatter:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._prefix = ByteTable()
        self._prefix_of = np.full((1024, 2), -1, dtype=np.int32)
        """(gateway, area) each device's prefix was built for; -1: not built"""
        self._keys = ByteTable(64)
        """field keys with their "=" """
        self._n_keys = 0
        self._float_cache = new_float_cache()
        self._out = np.zeros(1 << 16, dtype=np.uint8)

    def _prefixes(self, dev: npt.NDArray[np.int32]) -> None:
        """Build the prefix of every device of the batch that has none, or an outdated one."""
        reg = self.registry
        n = len(reg.devices)
        self._prefix_of = grown(self._prefix_of, n, -1)
        stale = stale_prefixes(dev, reg.device_gateway, reg.device_area, self._prefix_of)
        if not stale.size:
            return
        for d in np.unique(stale).tolist():
            name, kind, gw, area_name = reg.describe(d)
            self._prefix.set(d, (
                f"reading,area={escape_key(area_name)},gateway={escape_key(gw)},"
                f"device={escape_key(name)},kind={escape_key(kind)} ").encode())
            self._prefix_of[d] = (reg.device_gateway[d], reg.device_area[d])

    def _field_keys(self) -> None:
        names = self.registry.channels.names
        for c in range(self._n_keys, len(names)):
            self._keys.set(c, f"{field_key(names[c])}=".encode())
        self._n_keys = len(names)

    def readings(
        self,
        dev: np.ndarray,
        epoch: np.ndarray,
        seq: np.ndarray,
        ts: np.ndarray,
        battery: np.ndarray,
        value_row: np.ndarray,
        value_channel: np.ndarray,
        value: np.ndarray,
    ) -> bytes:
        """One line per reading, separated by newlines (none after the last); b"" for none.
        Device and channel indices are the registry's; values must be finite."""
        n, m = dev.shape[0], value.shape[0]
        if not (epoch.shape[0] == seq.shape[0] == ts.shape[0] == battery.shape[0] == n):
            raise ValueError("dev, epoch, seq, ts and battery must have the same length")
        if not (value_row.shape[0] == value_channel.shape[0] == m):
            raise ValueError("value_row, value_channel and value must have the same length")
        if not n:
            return b""
        if not _within(dev, len(self.registry.devices)):
            raise IndexError("device index unknown to the registry")
        if m and not _within(value_row, n):
            raise IndexError("value row outside the batch")
        if m and not _within(value_channel, len(self.registry.channels)):
            raise IndexError("channel index unknown to the registry")
        dev = np.ascontiguousarray(dev, dtype=np.int32)
        self._prefixes(dev)
        self._field_keys()
        bound = (n * (self._prefix.longest + _LINE_FIXED)
                 + m * (self._keys.longest + FLOAT_MAX_CHARS + 1) + OUT_PADDING)
        if bound > self._out.shape[0]:
            self._out = np.zeros(max(bound, 2 * self._out.shape[0]), dtype=np.uint8)
        start, order, grouped = group_by_reading(n, np.ascontiguousarray(value_row,
                                                                         dtype=np.int32))
        size = format_readings(
            dev, np.ascontiguousarray(epoch, dtype=np.int64),
            np.ascontiguousarray(seq, dtype=np.int64), np.ascontiguousarray(ts, dtype=np.int64),
            np.ascontiguousarray(battery, dtype=np.float64), start, order, grouped,
            np.ascontiguousarray(value_channel, dtype=np.int32),
            np.ascontiguousarray(value, dtype=np.float64),
            self._prefix.arena, self._prefix.ptr, self._prefix.length,
            self._keys.arena, self._keys.ptr, self._keys.length, *self._float_cache, self._out)
        return self._out[:size].tobytes()

    @staticmethod
    def case_event(doc: Mapping[str, Any]) -> str:
        """One change of a case (the `sensing/v1/cases/{area}` message): measurement `case`,
        one series per case, event and author; its time the dispatch clock's."""
        tags = [f"{k}={escape_key(str(doc[k]))}" for k in (
            "area", "gateway", "device", "type", "case_id", "event", "state")]
        by = str(doc.get("by") or "_")
        tags.append(f"by={escape_key(by if by.isprintable() else '_')}")
        if doc.get("outcome"):
            tags.append(f"outcome={escape_key(str(doc['outcome']))}")
        if isinstance(doc.get("step"), int):  # two steps may fall due in one tick
            tags.append(f"step={int(doc['step'])}")
        members = len(doc.get("members") or ())
        return f"case,{','.join(tags)} members={members}i,ts={int(doc['ts'])}i {int(doc['ts'])}"

    @staticmethod
    def alert(alert: Alert) -> str:
        value = "" if alert.value is None else f"value={float(alert.value)!r},"
        return (
            f"alert,area={escape_key(alert.area)},gateway={escape_key(alert.gateway)},"
            f"device={escape_key(alert.device)},type={escape_key(alert.type)},"
            f"grade={alert.grade.value},state={alert.state.value},alert_id={alert.alert_id} "
            f"{value}ts_event={alert.ts_event}i {alert.ts_raised}"
        )
