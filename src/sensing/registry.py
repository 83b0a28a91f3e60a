"""Interns device, channel, gateway and area names into dense indices, once per name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import numpy.typing as npt

from sensing.arrays import grown
from sensing.wire.batch import ReadingBatch
from sensing.wire.errors import Code
from sensing.wire.kinds import KINDS
from sensing.wire.limits import (
    MAX_CHANNELS,
    MAX_CHANNELS_PER_GATEWAY,
    MAX_DEVICES,
    MAX_DEVICES_PER_GATEWAY,
)
from sensing.wire.table_cache import ByIdentity


class Names:
    """A growing table of names with dense indices."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def intern(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            i = self.index[name] = len(self.names)
            self.names.append(name)
        return i

    def lookup(self, names: tuple[str, ...] | list[str]) -> npt.NDArray[np.int32]:
        """Indices of `names`, interning new ones: a dict hit per known name."""
        try:
            return np.fromiter(map(self.index.__getitem__, names), dtype=np.int32,
                               count=len(names))
        except KeyError:
            return np.array([self.intern(n) for n in names], dtype=np.int32)


@dataclass(slots=True)
class _Table:
    """A device table seen before: the global index and kind index of each entry (-1: a device
    its gateway may not introduce, see `Registry`), and what it last set."""

    index: npt.NDArray[np.int32]
    kind: npt.NDArray[np.int8]
    complete: bool
    """every entry has an index"""
    unknown_kind: bool
    """some entry names a kind the contract does not know"""
    placed: tuple[int, int, int] = (-1, -1, -1)
    """(gateway, area, registry changes) when it last set its devices' attributes"""
    foreign: npt.NDArray[np.bool_] | None = None
    """per entry, whether another gateway owns the device, as of `placed` (None: no entry)"""


@dataclass(slots=True)
class _ChannelTable:
    index: npt.NDArray[np.int32]
    complete: bool


@dataclass(frozen=True, slots=True)
class Refused:
    """Readings of a batch that name a device or channel their gateway may not introduce."""

    rows: npt.NDArray[np.bool_]
    reason: str
    code: str


class Registry:
    """Everything the core knows about each device, as arrays indexed by device index.

    A device belongs to the gateway that first reported it (`device_gateway`): readings of it
    that come through another gateway are refused (`gateway_mismatch`), so that no gateway can
    speak for another's devices (move their dedup window, open their alerts, tag their lines).
    Its owner may move it to another area (a gateway moves with its devices). With
    `devices_follow_gateway`, a device instead belongs to whichever gateway reported it last.

    Bounded: a gateway may introduce at most `max_devices_per_gateway` device ids and
    `max_channels_per_gateway` channel names over the core's lifetime, and there are at most
    `max_devices` devices and `max_channels` channels in all (the detectors' channels are
    known from the start); names beyond get no index (their readings are refused by the
    caller), names known already always pass. Remembered tables are bounded in bytes.
    """

    def __init__(self, capacity: int = 1024,
                 max_devices_per_gateway: int = MAX_DEVICES_PER_GATEWAY,
                 max_channels_per_gateway: int = MAX_CHANNELS_PER_GATEWAY,
                 max_devices: int = MAX_DEVICES, max_channels: int = MAX_CHANNELS,
                 max_table_bytes: int = 16 << 20,
                 devices_follow_gateway: bool = False) -> None:
        self.devices_follow_gateway = devices_follow_gateway
        self.devices = Names()
        self.channels = Names()
        self.gateways = Names()
        self.areas = Names()
        self.kind_index = {k: i for i, k in enumerate(KINDS)}
        self.device_kind = np.full(capacity, -1, dtype=np.int8)
        self.device_gateway = np.full(capacity, -1, dtype=np.int32)
        self.device_area = np.full(capacity, -1, dtype=np.int32)
        self.max_devices_per_gateway = max_devices_per_gateway
        self.max_channels_per_gateway = max_channels_per_gateway
        self.max_devices = max_devices
        self.max_channels = max_channels
        self.introduced_devices = np.zeros(64, dtype=np.int64)
        """per gateway: the device ids it introduced"""
        self.introduced_channels = np.zeros(64, dtype=np.int64)
        self._tables: ByIdentity[_Table] = ByIdentity(max_table_bytes)
        """device tables seen, by the identity of their tuples (the decoder hands out the same
        tuples for the same table)"""
        self._channel_tables: ByIdentity[_ChannelTable] = ByIdentity(max_table_bytes)
        self._changes = 0
        """how many times a table changed some device's kind, gateway or area"""

    def _grow(self, n: int) -> None:
        if n > self.device_kind.shape[0]:
            self.device_kind = grown(self.device_kind, n, -1)
            self.device_gateway = grown(self.device_gateway, n, -1)
            self.device_area = grown(self.device_area, n, -1)

    def intern_batch(
        self, batch: ReadingBatch, gateway: str, area: str
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Global device index per reading and global channel index per value (-1 for a name
        the gateway may not introduce: see `intern_checked`)."""
        dev, chan, _ = self.intern_checked(batch, gateway, area)
        return dev, chan

    def intern_bounded(
        self, batch: ReadingBatch, gateway: str, area: str
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], Refused | None]:
        """As `intern_checked`, with its first refusal for the gateway's bounds only (None: no
        reading names a device or channel beyond them)."""
        dev, chan, refused = self.intern_checked(batch, gateway, area)
        bounds = [r for r in refused if r.code != Code.GATEWAY_MISMATCH.value]
        return dev, chan, bounds[0] if bounds else None

    def intern_checked(
        self, batch: ReadingBatch, gateway: str, area: str
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], tuple[Refused, ...]]:
        """As `intern_batch`, and the readings the caller must refuse (none, the usual case):
        those naming a device or channel beyond the gateway's bounds, and those naming a device
        another gateway owns. Each reading is in one refusal at most."""
        g = self.gateways.intern(gateway)
        if g >= self.introduced_devices.shape[0]:
            self.introduced_devices = grown(self.introduced_devices, g + 1)
            self.introduced_channels = grown(self.introduced_channels, g + 1)
        table = self._device_table(batch.devices, batch.kinds, g)
        self._grow(len(self.devices))
        self._place(table, g, self.areas.intern(area))
        channels = self._channel_table(batch.channels, g)
        dev = table.index[batch.device] if len(batch) else np.zeros(0, np.int32)
        chan = channels.index[batch.value_channel] if batch.n_values else np.zeros(0, np.int32)
        if table.complete and channels.complete and table.foreign is None:
            return dev, chan, ()
        refused: list[Refused] = []
        taken = np.zeros(len(batch), dtype=np.bool_)
        if not table.complete and (dev < 0).any():
            taken = dev < 0
            refused.append(Refused(
                taken, f"gateway {gateway!r} introduced {self.max_devices_per_gateway} "
                f"devices already (or the core knows {self.max_devices})",
                Code.TOO_MANY_DEVICES.value))
        if table.foreign is not None and len(batch):
            rows = table.foreign[batch.device]
            if rows.any():
                taken = taken | rows
                refused.append(Refused(rows, self._foreign_reason(dev[rows], gateway),
                                       Code.GATEWAY_MISMATCH.value))
        if not channels.complete and (chan < 0).any():
            rows = np.zeros(len(batch), dtype=np.bool_)
            rows[batch.value_row[chan < 0]] = True
            rows &= ~taken
            if rows.any():
                refused.append(Refused(
                    rows, f"gateway {gateway!r} introduced {self.max_channels_per_gateway} "
                    f"channel names already (or the core knows {self.max_channels})",
                    Code.TOO_MANY_CHANNELS.value))
        return dev, chan, tuple(refused)

    def _foreign_reason(self, devices: npt.NDArray[np.int32], gateway: str) -> str:
        d = int(devices[0])
        name, _, owner, area = self.describe(d)
        others = int(np.unique(devices).shape[0]) - 1
        more = f" (and {others} more devices of other gateways)" if others else ""
        return (f"device {name!r} belongs to gateway {owner!r} (area {area!r}){more}, not to "
                f"{gateway!r}: a gateway speaks only for the devices it reported first")

    def _place(self, table: _Table, gateway: int, area: int) -> None:
        """Set the kind, gateway and area of the table's devices that `gateway` owns or
        introduces, and note the entries another gateway owns (`table.foreign`). Skipped when
        the table was placed for the same gateway and area last time and no table has changed
        anything since (ownership included): a gateway's steady stream of the same table costs
        nothing here."""
        if table.placed == (gateway, area, self._changes):
            return
        index, kind = table.index, table.kind
        table.foreign = None
        if not self.devices_follow_gateway:
            owner = self.device_gateway[index]
            if index.size and not (owner == gateway).all():
                # -1: a device new to the core (or with no index: refused for the bounds)
                foreign = (owner != gateway) & (owner >= 0) & (index >= 0)
                if foreign.any():
                    table.foreign = foreign
                    index, kind = index[~foreign], kind[~foreign]
        if not table.complete or table.unknown_kind:
            # entries with no index or an unknown kind (their readings are refused) set nothing:
            # a device's known kind must not become unknown, its stored lines need one
            placeable = (index >= 0) & (kind >= 0)
            index, kind = index[placeable], kind[placeable]
        # a table placed before counts only a real change: one of another gateway's devices,
        # sent by both again and again, must not cost every other table its shortcut
        if table.placed[0] < 0 or (
                (self.device_gateway[index] != gateway).any()
                or (self.device_area[index] != area).any()
                or (self.device_kind[index] != kind).any()):
            self.device_kind[index] = kind
            self.device_gateway[index] = gateway
            self.device_area[index] = area
            self._changes += 1
        table.placed = (gateway, area, self._changes)

    def _device_table(self, devices: tuple[str, ...], kinds: tuple[str, ...],
                      gateway: int) -> _Table:
        """The batch's device table, interned once per distinct table: gateways send the same
        table (the same decoded tuples) again and again. A table some of whose devices had
        no room is resolved again each time (their gateway may have room now, or another
        gateway may have introduced them)."""
        hit = self._tables.get((devices, kinds))
        if hit is None or not hit.complete:
            index = self._resolve(self.devices, devices, self.introduced_devices, gateway,
                                  self.max_devices_per_gateway, self.max_devices)
            # -1 for a kind the contract does not know: its readings are dead-lettered by
            # validation, but the table still names it
            kind = np.fromiter(map(self.kind_index.get, kinds, repeat(-1)), dtype=np.int8,
                               count=len(kinds))
            hit = self._tables.put((devices, kinds), _Table(
                index, kind, bool(index.size == 0 or index.min() >= 0),
                bool(kind.size and kind.min() < 0)), extra_bytes=5 * len(devices))
        return hit

    def _channel_table(self, channels: tuple[str, ...], gateway: int) -> _ChannelTable:
        """Global indices of a batch's channel table, remembered like device tables."""
        hit = self._channel_tables.get((channels,))
        if hit is None or not hit.complete:
            index = self._resolve(self.channels, channels, self.introduced_channels, gateway,
                                  self.max_channels_per_gateway, self.max_channels)
            hit = self._channel_tables.put((channels,), _ChannelTable(
                index, bool(index.size == 0 or index.min() >= 0)), extra_bytes=4 * len(channels))
        return hit

    @staticmethod
    def _resolve(table: Names, names: tuple[str, ...], introduced: npt.NDArray[np.int64],
                 gateway: int, per_gateway: int, in_all: int) -> npt.NDArray[np.int32]:
        """Indices of `names`, interning new ones while `gateway` may introduce more (counted
        in `introduced`); -1 for the others."""
        try:
            return np.fromiter(map(table.index.__getitem__, names), dtype=np.int32,
                               count=len(names))
        except KeyError:
            pass
        out = np.empty(len(names), dtype=np.int32)
        room = min(per_gateway - int(introduced[gateway]), in_all - len(table))
        for k, name in enumerate(names):
            i = table.index.get(name)
            if i is None:
                if room <= 0:
                    out[k] = -1
                    continue
                i = table.intern(name)
                room -= 1
                introduced[gateway] += 1
            out[k] = i
        return out

    def placement(self) -> dict[str, npt.NDArray[np.generic]]:
        """Each device's gateway (its owner), area and kind, with the names they index: for a
        snapshot that `restore_placement` reads (sensing.dedup.journal)."""
        n = len(self.devices)
        return {"placed_gateways": np.array(self.gateways.names, dtype=np.str_),
                "placed_areas": np.array(self.areas.names, dtype=np.str_),
                "device_gateway": self.device_gateway[:n].copy(),
                "device_area": self.device_area[:n].copy(),
                "device_kind": self.device_kind[:n].copy()}

    def restore_placement(self, snapshot: Mapping[str, npt.NDArray[np.generic]]) -> None:
        """Take back what `placement` saved, for devices interned in the same order (the dedup
        snapshot's names): a restarted core still knows which gateway owns each device.
        Entries that do not fit (out of range, an unknown kind) stay unplaced."""
        gateways = [self.gateways.intern(str(g)) for g in snapshot["placed_gateways"].tolist()]
        areas = [self.areas.intern(str(a)) for a in snapshot["placed_areas"].tolist()]
        n = min(len(self.devices), int(snapshot["device_gateway"].shape[0]),
                int(snapshot["device_area"].shape[0]), int(snapshot["device_kind"].shape[0]))
        self._grow(len(self.devices))
        g = snapshot["device_gateway"][:n].astype(np.int64)
        a = snapshot["device_area"][:n].astype(np.int64)
        k = snapshot["device_kind"][:n].astype(np.int64)
        fits = np.flatnonzero((g >= 0) & (g < len(gateways)) & (a >= 0) & (a < len(areas))
                              & (k >= 0) & (k < len(KINDS)))
        self.device_gateway[fits] = np.array(gateways, dtype=np.int32)[g[fits]]
        self.device_area[fits] = np.array(areas, dtype=np.int32)[a[fits]]
        self.device_kind[fits] = k[fits].astype(np.int8)
        self._changes += 1
        if len(self.gateways) > self.introduced_devices.shape[0]:
            self.introduced_devices = grown(self.introduced_devices, len(self.gateways))
            self.introduced_channels = grown(self.introduced_channels, len(self.gateways))

    def describe(self, device: int) -> tuple[str, str, str, str]:
        """(device id, kind, gateway, area) of a device index ("" for an unknown kind)."""
        kind = int(self.device_kind[device])
        return (
            self.devices.names[device],
            KINDS[kind] if kind >= 0 else "",
            self.gateways.names[int(self.device_gateway[device])],
            self.areas.names[int(self.device_area[device])],
        )
