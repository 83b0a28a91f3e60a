"""Interns device, channel, gateway and area names into dense indices, once per name."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat

import numpy as np
import numpy.typing as npt

from sensing.arrays import grown
from sensing.wire.batch import ReadingBatch
from sensing.wire.kinds import KINDS


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
    """A device table seen before: its tuples (held, so that their ids stay theirs), the global
    index and kind index of each entry, and what it last set."""

    devices: tuple[str, ...]
    kinds: tuple[str, ...]
    index: npt.NDArray[np.int32]
    kind: npt.NDArray[np.int8]
    placed: tuple[int, int, int] = (-1, -1, -1)
    """(gateway, area, registry changes) when it last set its devices' attributes"""


class Registry:
    """Everything the core knows about each device, as arrays indexed by device index."""

    def __init__(self, capacity: int = 1024) -> None:
        self.devices = Names()
        self.channels = Names()
        self.gateways = Names()
        self.areas = Names()
        self.kind_index = {k: i for i, k in enumerate(KINDS)}
        self.device_kind = np.full(capacity, -1, dtype=np.int8)
        self.device_gateway = np.full(capacity, -1, dtype=np.int32)
        self.device_area = np.full(capacity, -1, dtype=np.int32)
        self._tables: dict[tuple[int, int], _Table] = {}
        """device tables seen, by the identity of their tuples (the decoder hands out the same
        tuples for the same table)"""
        self._channel_tables: dict[int, tuple[tuple[str, ...], npt.NDArray[np.int32]]] = {}
        self.max_tables = 1024
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
        """Global device index per reading and global channel index per value.

        A device is attached to the gateway and area it last reported through.
        """
        table = self._device_table(batch.devices, batch.kinds)
        self._grow(len(self.devices))
        self._place(table, self.gateways.intern(gateway), self.areas.intern(area))
        channels = self._channel_table(batch.channels)
        dev = table.index[batch.device] if len(batch) else np.zeros(0, np.int32)
        chan = channels[batch.value_channel] if batch.n_values else np.zeros(0, np.int32)
        return dev, chan

    def _place(self, table: _Table, gateway: int, area: int) -> None:
        """Set the kind, gateway and area of the table's devices. Skipped when the table set
        the same gateway and area last time and no table has changed anything since: a
        gateway's steady stream of the same table costs nothing here."""
        if table.placed == (gateway, area, self._changes):
            return
        index = table.index
        if table.placed[:2] != (gateway, area) or (
                (self.device_gateway[index] != gateway).any()
                or (self.device_area[index] != area).any()
                or (self.device_kind[index] != table.kind).any()):
            self.device_kind[index] = table.kind
            self.device_gateway[index] = gateway
            self.device_area[index] = area
            self._changes += 1
        table.placed = (gateway, area, self._changes)

    def _device_table(self, devices: tuple[str, ...], kinds: tuple[str, ...]) -> _Table:
        """The batch's device table, interned once per distinct table: gateways send the same
        table (the same decoded tuples) again and again."""
        key = (id(devices), id(kinds))  # hashing the tuples would cost a step per name
        hit = self._tables.get(key)
        if hit is None or hit.devices is not devices or hit.kinds is not kinds:
            if len(self._tables) >= self.max_tables:
                self._tables.clear()
            hit = self._tables[key] = _Table(
                devices, kinds, self.devices.lookup(devices),
                # -1 for a kind the contract does not know: its readings are dead-lettered by
                # validation, but the table still names it
                np.fromiter(map(self.kind_index.get, kinds, repeat(-1)), dtype=np.int8,
                            count=len(kinds)))
        return hit

    def _channel_table(self, channels: tuple[str, ...]) -> npt.NDArray[np.int32]:
        """Global indices of a batch's channel table, remembered like device tables."""
        hit = self._channel_tables.get(id(channels))
        if hit is None or hit[0] is not channels:
            if len(self._channel_tables) >= self.max_tables:
                self._channel_tables.clear()
            hit = self._channel_tables[id(channels)] = (channels, self.channels.lookup(channels))
        return hit[1]

    def describe(self, device: int) -> tuple[str, str, str, str]:
        """(device id, kind, gateway, area) of a device index ("" for an unknown kind)."""
        kind = int(self.device_kind[device])
        return (
            self.devices.names[device],
            KINDS[kind] if kind >= 0 else "",
            self.gateways.names[int(self.device_gateway[device])],
            self.areas.names[int(self.device_area[device])],
        )
