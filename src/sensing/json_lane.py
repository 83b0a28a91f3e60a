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
from sensing.registry import Registry
from sensing.wire.batch import ReadingBatch, kept_values
from sensing.wire.json_columns import JsonColumns, ScanStatus, name_hash, scan_json
from sensing.wire.kinds import KINDS
from sensing.wire.limits import (
    MAX_CHANNELS_PER_MESSAGE,
    MAX_DEVICES_PER_MESSAGE,
    MAX_VALUES_PER_READING,
    TS_MAX_MS,
    TS_MIN_MS,
)
from sensing.wire.name_cache import NameCache, salted_key
from sensing.wire.validate import ts_limit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
"""as name_cache.salted_key mixes a salt in: odd, so g -> g * golden is a bijection of 64-bit
words, and (gateway, name) keys of one name never collide across gateways"""
_GATEWAY_NAME = 0x25A5_0000_0000_0001
_AREA_NAME = 0x1A5A_0000_0000_0003
"""stand-ins for a name's hash in the keys of a gateway's (an area's) own name"""


def _keys(hashes: npt.NDArray[np.int64], salt: npt.NDArray[np.int32]) -> npt.NDArray[np.uint64]:
    """`salted_key` of each hash with its own salt."""
    keys: npt.NDArray[np.uint64] = np.ascontiguousarray(hashes, dtype=np.int64).view(
        np.uint64) ^ (salt.astype(np.uint64) * _GOLDEN)
    return keys


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
    def __init__(self, registry: Registry, max_entries: int = 1 << 20) -> None:
        self.registry = registry
        self.devices = NameCache(max_entries)
        """(gateway, device id) -> device index"""
        self.channels = NameCache(max_entries // 16)
        """channel name -> channel index (known names pass for any gateway)"""
        self.names = NameCache(max_entries // 16)
        """the gateway's and the area's own names, for readings that repeat them"""
        self.lane_messages = 0
        """messages the lane took"""
        self.slow_messages = 0
        """messages it was given and left to the slow path"""
        self.kinds = NameCache(64)
        for k, kind in enumerate(KINDS):
            self.kinds.insert(name_hash(kind.encode()), kind.encode(), k)

    def learn(self, batch: ReadingBatch, dev: npt.NDArray[np.int32],
              chan: npt.NDArray[np.int32], gateway: int, gateway_name: str, area: int,
              area_name: str) -> None:
        """Names the slow path accepted for `gateway` (every reading of `batch` kept)."""
        entries, first = np.unique(batch.device, return_index=True)
        for entry, d in zip(entries.tolist(), dev[first].tolist(), strict=True):
            raw = batch.devices[entry].encode()
            self.devices.insert(salted_key(name_hash(raw), gateway), raw, d)
        entries, first = np.unique(batch.value_channel, return_index=True)
        for entry, c in zip(entries.tolist(), chan[first].tolist(), strict=True):
            raw = batch.channels[entry].encode()
            self.channels.insert(name_hash(raw), raw, c)
        self.names.insert(salted_key(_GATEWAY_NAME, gateway), gateway_name.encode(), gateway)
        self.names.insert(salted_key(_AREA_NAME, area), area_name.encode(), area)

    def warm(self) -> None:
        """Learn every name the registry holds (a restarted core's, from its snapshot and
        journal): each is an accepted name, and the lane still checks each device's owner,
        area and kind against the registry."""
        reg = self.registry
        n = len(reg.devices)
        owner = reg.device_gateway[:n].tolist()
        for d, (name, g) in enumerate(zip(reg.devices.names, owner, strict=True)):
            if g >= 0:
                raw = name.encode()
                self.devices.insert(salted_key(name_hash(raw), g), raw, d)
        for c, name in enumerate(reg.channels.names):
            raw = name.encode()
            self.channels.insert(name_hash(raw), raw, c)
        for g, name in enumerate(reg.gateways.names):
            self.names.insert(salted_key(_GATEWAY_NAME, g), name.encode(), g)
        for a, name in enumerate(reg.areas.names):
            self.names.insert(salted_key(_AREA_NAME, a), name.encode(), a)

    def decode(self, buf: bytes | npt.NDArray[np.uint8], starts: npt.NDArray[np.int64],
               ends: npt.NDArray[np.int64], gateway: npt.NDArray[np.int32],
               area: npt.NDArray[np.int32], now: int) -> LaneOut:
        """The payloads `buf[starts[i]:ends[i]]`, JSON readings of `gateway[i]` in `area[i]`."""
        data = np.frombuffer(buf, dtype=np.uint8) if isinstance(buf, bytes) else buf
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
        dev = self.devices.lookup(data, _keys(cols.device_hash, g), cols.device_start,
                                  cols.device_end)
        kind = self.kinds.lookup(data, cols.kind_hash, cols.kind_start, cols.kind_end)
        chan = self.channels.lookup(data, cols.channel_hash, cols.channel_start,
                                    cols.channel_end)
        known = dev >= 0
        d = np.where(known, dev, 0)
        ok = (known & (reg.device_kind[d] == kind) & (reg.device_gateway[d] == g)
              & (reg.device_area[d] == a))
        ok &= self._own_name(data, cols.gateway_start, cols.gateway_end, g, _GATEWAY_NAME)
        ok &= self._own_name(data, cols.area_start, cols.area_end, a, _AREA_NAME)
        return ok, dev, chan

    def _own_name(self, data: npt.NDArray[np.uint8], start: npt.NDArray[np.int64],
                  end: npt.NDArray[np.int64], owner: npt.NDArray[np.int32],
                  stand_in: int) -> npt.NDArray[np.bool_]:
        """Readings that name no gateway (area), or the topic's own."""
        named = start >= 0
        if not named.any():
            return np.ones(start.shape[0], dtype=np.bool_)
        keys = _keys(np.full(start.shape[0], stand_in, dtype=np.int64), owner)
        found = self.names.lookup(data, keys[named], start[named], end[named])
        ok = np.ones(start.shape[0], dtype=np.bool_)
        ok[named] = found == owner[named]
        return ok

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
