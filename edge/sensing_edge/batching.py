"""Numbered samples `(device, epoch, seq)` (numbered by the buffer) and encoding a batch of them
for the readings topic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sensing.wire import json_codec, snb1

from .drivers import SensorSample

PayloadFormat = Literal["snb1", "json"]


@dataclass(frozen=True, slots=True)
class NumberedSample:
    """A sample with the name the contract gives it: `(device, epoch, seq)`."""

    sample: SensorSample
    epoch: int
    seq: int


def reading_dict(n: NumberedSample) -> dict[str, Any]:
    """One reading as a contract v1 JSON object."""
    s = n.sample
    out: dict[str, Any] = {
        "device": s.device,
        "kind": s.kind,
        "seq": n.seq,
        "epoch": n.epoch,
        "ts": s.ts,
        "values": s.values,
    }
    if s.battery is not None:
        out["battery"] = s.battery
    return out


def encode_batch(readings: Sequence[NumberedSample], payload_format: PayloadFormat) -> bytes:
    """A binary batch or a JSON array; raises sensing.wire.WireError if the batch cannot hold
    them. The `snb1` format writes SNB2 (SNB1 with a CRC-32, docs/binary-batch.md): the core
    refuses a corrupted batch whole instead of storing wrong readings."""
    if payload_format == "json":
        return json_codec.encode([reading_dict(n) for n in readings])
    return snb1.encode_readings(
        (n.sample.device, n.sample.kind, n.epoch, n.seq, n.sample.ts, n.sample.values,
         n.sample.battery) for n in readings)
