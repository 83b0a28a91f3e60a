"""Columnar batches of readings: the one shape readings travel in from decode to store."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Readings of one message in column form.

    Per reading: `device` (index into `devices`), `epoch`, `seq`, `ts` (ms), `battery`
    (NaN when absent). Values in long form: `value_row` (index of the reading),
    `value_channel` (index into `channels`), `value`.
    """

    devices: tuple[str, ...]
    kinds: tuple[str, ...]
    channels: tuple[str, ...]
    device: I32
    epoch: I64
    seq: I64
    ts: I64
    battery: F64
    value_row: I32
    value_channel: I32
    value: F64

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    @property
    def n_values(self) -> int:
        return int(self.value.shape[0])

    def reading(self, i: int) -> dict[str, object]:
        """Reading `i` as a contract dict (slow path: tests, tools, JSON output)."""
        mask = self.value_row == i
        out: dict[str, object] = {
            "device": self.devices[int(self.device[i])],
            "kind": self.kinds[int(self.device[i])],
            "seq": int(self.seq[i]),
            "epoch": int(self.epoch[i]),
            "ts": int(self.ts[i]),
            "values": {
                self.channels[int(c)]: float(v)
                for c, v in zip(self.value_channel[mask], self.value[mask], strict=True)
            },
        }
        if not math.isnan(self.battery[i]):
            out["battery"] = float(self.battery[i])
        return out

    def readings(self) -> list[dict[str, object]]:
        return [self.reading(i) for i in range(len(self))]


@dataclass(slots=True)
class BatchBuilder:
    """Accumulates readings one by one (edge agents, the JSON decoder) and freezes them."""

    _device_index: dict[str, int] = field(default_factory=dict)
    _kinds: list[str] = field(default_factory=list)
    _channel_index: dict[str, int] = field(default_factory=dict)
    _device: list[int] = field(default_factory=list)
    _epoch: list[int] = field(default_factory=list)
    _seq: list[int] = field(default_factory=list)
    _ts: list[int] = field(default_factory=list)
    _battery: list[float] = field(default_factory=list)
    _value_row: list[int] = field(default_factory=list)
    _value_channel: list[int] = field(default_factory=list)
    _value: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._seq)

    def add(
        self,
        device: str,
        kind: str,
        epoch: int,
        seq: int,
        ts: int,
        values: dict[str, float],
        battery: float | None = None,
    ) -> None:
        d = self._device_index.get(device)
        if d is None:
            d = self._device_index[device] = len(self._kinds)
            self._kinds.append(kind)
        row = len(self._seq)
        self._device.append(d)
        self._epoch.append(epoch)
        self._seq.append(seq)
        self._ts.append(ts)
        self._battery.append(math.nan if battery is None else battery)
        for name, v in values.items():
            c = self._channel_index.get(name)
            if c is None:
                c = self._channel_index[name] = len(self._channel_index)
            self._value_row.append(row)
            self._value_channel.append(c)
            self._value.append(v)

    def build(self) -> ReadingBatch:
        return ReadingBatch(
            devices=tuple(self._device_index),
            kinds=tuple(self._kinds),
            channels=tuple(self._channel_index),
            device=np.asarray(self._device, dtype=np.int32),
            epoch=np.asarray(self._epoch, dtype=np.int64),
            seq=np.asarray(self._seq, dtype=np.int64),
            ts=np.asarray(self._ts, dtype=np.int64),
            battery=np.asarray(self._battery, dtype=np.float64),
            value_row=np.asarray(self._value_row, dtype=np.int32),
            value_channel=np.asarray(self._value_channel, dtype=np.int32),
            value=np.asarray(self._value, dtype=np.float64),
        )


def empty_batch() -> ReadingBatch:
    return BatchBuilder().build()


def kept_values(keep: npt.NDArray[np.bool_], value_row: npt.NDArray[np.int32]
                ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int32]]:
    """For the readings where `keep` is true: which values stay, and their readings' rows
    renumbered among the kept readings."""
    new_row = (np.cumsum(keep, dtype=np.int64) - 1).astype(np.int32)
    value_keep = keep[value_row]
    return value_keep, new_row[value_row[value_keep]]
