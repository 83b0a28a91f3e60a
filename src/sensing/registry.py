"""Interns device, channel, gateway and area names into dense indices, once per name."""

from __future__ import annotations

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
        found = list(map(self.index.get, names))
        if None in found:
            found = [self.intern(n) if i is None else i for n, i in zip(names, found, strict=True)]
        return np.array(found, dtype=np.int32)


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
        self._tables: dict[tuple[int, int], tuple[tuple[str, ...], tuple[str, ...],
                                                  npt.NDArray[np.int32], npt.NDArray[np.int8]]] = {}
        """device tables seen, by the identity of their tuples (the decoder hands out the same
        tuples for the same table), holding the tuples so that their ids stay theirs"""
        self.max_tables = 1024

    def _grow(self, n: int) -> None:
        self.device_kind = grown(self.device_kind, n, -1)
        self.device_gateway = grown(self.device_gateway, n, -1)
        self.device_area = grown(self.device_area, n, -1)

    def intern_batch(
        self, batch: ReadingBatch, gateway: str, area: str
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Global device index per reading and global channel index per value.

        A device is attached to the gateway and area it last reported through.
        """
        table, kinds = self._device_table(batch.devices, batch.kinds)
        self._grow(len(self.devices))
        self.device_kind[table] = kinds
        self.device_gateway[table] = self.gateways.intern(gateway)
        self.device_area[table] = self.areas.intern(area)
        channels = self.channels.lookup(batch.channels)
        dev = table[batch.device] if len(batch) else np.zeros(0, np.int32)
        chan = channels[batch.value_channel] if batch.n_values else np.zeros(0, np.int32)
        return dev, chan

    def _device_table(self, devices: tuple[str, ...], kinds: tuple[str, ...]
                      ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int8]]:
        """Global index and kind index of each entry of a batch's device table, remembered per
        distinct table: gateways send the same table (the same decoded tuples) again and again.
        """
        key = (id(devices), id(kinds))  # hashing the tuples would cost a step per name
        hit = self._tables.get(key)
        if hit is None or hit[0] is not devices or hit[1] is not kinds:
            if len(self._tables) >= self.max_tables:
                self._tables.clear()
            hit = self._tables[key] = (
                devices, kinds, self.devices.lookup(devices),
                np.array(list(map(self.kind_index.__getitem__, kinds)), dtype=np.int8))
        return hit[2], hit[3]

    def describe(self, device: int) -> tuple[str, str, str, str]:
        """(device id, kind, gateway, area) of a device index."""
        return (
            self.devices.names[device],
            KINDS[int(self.device_kind[device])],
            self.gateways.names[int(self.device_gateway[device])],
            self.areas.names[int(self.device_area[device])],
        )
