"""The JSON lane: many JSON readings payloads decoded and interned in one pass.

The message-by-message path (`sensing.wire.decode` + `Registry.intern_checked`) is the
definition of what the core accepts; it costs tens of µs per message in Python. This lane is a
cache of its decisions: a message takes it only if the bulk scanner (`sensing.wire.
json_columns`) understands it wholly, every name in it was accepted before by the slow path for
the same gateway (`NameCache`: exact bytes compared, never a hash alone), each device is still
owned by that gateway in that area with that kind, and every reading is in range. Anything else
goes to the slow path, which dead-letters what it must and teaches the lane (`learn`) the names
it accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from sensing.kernels.columns import readings_allowed
from sensing.kernels.names import spans_equal
from sensing.packed_names import PackedNames
from sensing.registry import Names, Registry
from sensing.wire.batch import kept_values
from sensing.wire.json_columns import JsonColumns, ScanStatus, name_hash, scan_json
from sensing.wire.kinds import KINDS
from sensing.wire.limits import (
    MAX_CHANNEL_NAME,
    MAX_CHANNELS,
    MAX_CHANNELS_PER_MESSAGE,
    MAX_DEVICE_ID,
    MAX_DEVICES,
    MAX_DEVICES_PER_MESSAGE,
    MAX_VALUES_PER_READING,
    TS_MAX_MS,
    TS_MIN_MS,
)
from sensing.wire.name_cache import NameCache
from sensing.wire.validate import ts_limit


@dataclass(frozen=True, slots=True)
class LaneOut:
    """Readings of the messages the lane took, with global indices, and those it left."""

    dev: npt.NDArray[np.int32]
    epoch: npt.NDArray[np.int64]
    seq: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    battery: npt.NDArray[np.float64]
    value_row: npt.NDArray[np.int32]
    value_channel: npt.NDArray[np.int32]
    value: npt.NDArray[np.float64]
    message: npt.NDArray[np.int64]
    """per reading, its message's position among the lane's input"""
    gateway: npt.NDArray[np.int32]
    """per reading, its gateway's index"""
    area: npt.NDArray[np.int32]
    """per reading, the index of its topic's area"""
    slow: npt.NDArray[np.int64]
    """positions of the messages left to the message-by-message path"""

    @property
    def n_rows(self) -> int:
        return int(self.dev.shape[0])

    def renumbered(self, index: npt.NDArray[np.int64]) -> LaneOut:
        """The same with message positions `index[position]`."""
        return replace(self, message=index[self.message], slow=index[self.slow])

    def without(self, rows: npt.NDArray[np.bool_]) -> LaneOut:
        """The same without the readings of `rows` (and their values)."""
        keep = ~rows
        value_keep, value_row = kept_values(keep, self.value_row)
        return replace(self, dev=self.dev[keep], epoch=self.epoch[keep], seq=self.seq[keep],
                       ts=self.ts[keep], battery=self.battery[keep], value_row=value_row,
                       value_channel=self.value_channel[value_keep],
                       value=self.value[value_keep], message=self.message[keep],
                       gateway=self.gateway[keep], area=self.area[keep])


class JsonLane:
    """Resolves names through caches of the registry's own tables: a name the registry holds
    was accepted by the slow path once, and a device's owner, area and kind are checked
    against the registry on every reading, so the caches need only say which index a name
    has. They learn what the registry added since the last step (`sync`), and are sized for
    the registry's bounds, so they never fill up."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.devices = _Learned(registry.devices, MAX_DEVICES, MAX_DEVICE_ID)
        self.channels = _Learned(registry.channels, MAX_CHANNELS, MAX_CHANNEL_NAME)
        self.gateways = PackedNames(registry.gateways.names)
        self.areas = PackedNames(registry.areas.names)
        self.kinds = NameCache(64, 1024)
        for k, kind in enumerate(KINDS):
            self.kinds.insert(name_hash(kind.encode()), kind.encode(), k)
        self.lane_messages = 0
        """messages the lane took"""
        self.slow_messages = 0
        """messages it was given and left to the slow path"""

    def sync(self) -> None:
        """Learn the names the registry took since the last call."""
        for learned in (self.devices, self.channels, self.gateways, self.areas):
            learned.sync()

    def decode(self, buf: bytes | npt.NDArray[np.uint8], starts: npt.NDArray[np.int64],
               ends: npt.NDArray[np.int64], gateway: npt.NDArray[np.int32],
               area: npt.NDArray[np.int32], now: int) -> LaneOut:
        """The payloads `buf[starts[i]:ends[i]]`, JSON readings of `gateway[i]` in `area[i]`."""
        data = np.frombuffer(buf, dtype=np.uint8) if isinstance(buf, bytes) else buf
        self.sync()
        cols = scan_json(data, starts, ends)
        n_msg = starts.shape[0]
        slow = cols.status != ScanStatus.OK
        row_ok, dev, chan = self._rows_known(data, cols, gateway, area)
        unknown_channel = chan < 0
        if unknown_channel.any():
            row_ok[cols.value_reading[unknown_channel]] = False
        if not row_ok.all():
            slow[cols.reading_message[~row_ok]] = True
        value_row = cols.value_reading.astype(np.int32)
        ts_max = ts_limit(now)
        if not readings_allowed(cols.seq, cols.epoch, cols.ts, cols.battery, cols.value,
                                value_row, TS_MIN_MS, ts_max, MAX_VALUES_PER_READING):
            slow[cols.reading_message[_out_of_range(cols, ts_max)]] = True
        slow |= self._too_many_names(cols, chan, n_msg)
        n_slow = int(np.count_nonzero(slow))
        self.slow_messages += n_slow
        self.lane_messages += n_msg - n_slow
        out = LaneOut(dev, cols.epoch, cols.seq, cols.ts, cols.battery, value_row, chan,
                      cols.value, cols.reading_message, gateway[cols.reading_message],
                      area[cols.reading_message], np.flatnonzero(slow).astype(np.int64))
        return out.without(slow[cols.reading_message]) if n_slow else out

    def _rows_known(self, data: npt.NDArray[np.uint8], cols: JsonColumns,
                    gateway: npt.NDArray[np.int32], area: npt.NDArray[np.int32]
                    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int32],
                               npt.NDArray[np.int32]]:
        """Per reading: whether its device is known, still its gateway's, in its area, of
        its kind, and the names it repeats are the topic's; its device index and its values'
        channel indices (-1 where unknown)."""
        reg = self.registry
        g = gateway[cols.reading_message]
        a = area[cols.reading_message]
        dev = self.devices.cache.lookup(data, cols.device_hash, cols.device_start,
                                        cols.device_end)
        kind = self.kinds.lookup(data, cols.kind_hash, cols.kind_start, cols.kind_end)
        chan = self.channels.cache.lookup(data, cols.channel_hash, cols.channel_start,
                                          cols.channel_end)
        known = dev >= 0
        d = np.where(known, dev, 0)
        ok = (known & (reg.device_kind[d] == kind) & (reg.device_gateway[d] == g)
              & (reg.device_area[d] == a))
        ok &= _own_name(self.gateways, data, cols.gateway_start, cols.gateway_end, g)
        ok &= _own_name(self.areas, data, cols.area_start, cols.area_end, a)
        return ok, dev, chan

    def _too_many_names(self, cols: JsonColumns, chan: npt.NDArray[np.int32],
                        n_msg: int) -> npt.NDArray[np.bool_]:
        """Messages beyond the per-message bounds on distinct devices or channels: the slow
        path refuses them whole."""
        out = np.zeros(n_msg, dtype=np.bool_)
        per_message = np.bincount(cols.reading_message, minlength=n_msg)
        out |= per_message > MAX_DEVICES_PER_MESSAGE
        if len(self.registry.channels) > MAX_CHANNELS_PER_MESSAGE and chan.size:
            pairs = np.unique(cols.reading_message[cols.value_reading] * (1 << 20) + chan)
            out |= np.bincount(pairs >> 20, minlength=n_msg) > MAX_CHANNELS_PER_MESSAGE
        return out


def _out_of_range(cols: JsonColumns, ts_max: int) -> npt.NDArray[np.bool_]:
    """Readings `validate.invalid_readings` would refuse for their numbers."""
    bad = ((cols.seq < 0) | (cols.epoch < 0) | (cols.ts < TS_MIN_MS) | (cols.ts > TS_MAX_MS)
           | (cols.ts > ts_max) | (cols.battery < 0.0) | (cols.battery > 1.0))
    if cols.value.size:
        bad[cols.value_reading[~np.isfinite(cols.value)]] = True
        counts = np.bincount(cols.value_reading, minlength=bad.shape[0])
        bad |= counts > MAX_VALUES_PER_READING
        order_broken = np.flatnonzero(np.diff(cols.value_reading) < 0)
        bad[cols.value_reading[order_broken]] = True
    return bad


def _own_name(packed: PackedNames, data: npt.NDArray[np.uint8], start: npt.NDArray[np.int64],
              end: npt.NDArray[np.int64], owner: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
    """Readings that name no gateway (area), or the topic's own."""
    ok = np.empty(start.shape[0], dtype=np.bool_)
    if start.size and (start >= 0).any():
        spans_equal(data, start, end, packed.table, packed.offsets, owner, ok)
    else:
        ok.fill(True)
    return ok


class _Learned:
    """A NameCache of one of the registry's name tables, kept up with it."""

    def __init__(self, names: Names, max_names: int, max_length: int) -> None:
        self.names = names
        self.cache = NameCache(max_names, max_names * max_length)
        self.known = 0
        """names of the table in the cache"""
        self._clears = 0
        self.refused: list[int] = []
        """names the cache refused (crowded out of their probe): tried again once it grew"""
        self._refused_at = 0
        """the cache's slots when the refused names were last tried"""

    def sync(self) -> None:
        if self.cache.clears != self._clears:  # cannot happen within the bounds; if it did,
            self._clears = self.cache.clears  # learning all again restores it
            self.known = 0
            self.refused = []
        table = self.names.names
        for i in range(self.known, len(table)):
            if not self._learn(table, i):
                self.refused.append(i)
        self.known = len(table)
        if self.refused and self.cache.slots != self._refused_at:
            # names made to crowd one place of a small table may fit the doubled one
            self._refused_at = self.cache.slots
            self.refused = [i for i in self.refused if not self._learn(table, i)]

    def _learn(self, table: list[str], i: int) -> bool:
        raw = table[i].encode()
        return self.cache.insert(name_hash(raw), raw, i)
