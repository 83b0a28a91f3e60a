"""Payload on a readings topic -> a checked batch, or reasons why (parts of) it cannot be used."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sensing.wire import binary, json_codec
from sensing.wire.batch import ReadingBatch, empty_batch
from sensing.wire.errors import WireError
from sensing.wire.validate import invalid_readings, select


@dataclass(frozen=True, slots=True)
class Decoded:
    batch: ReadingBatch
    rejected: list[tuple[int, str]]
    """(index of the reading in the payload, reason) for every reading left out."""
    format: str

    @property
    def reason(self) -> str:
        """One dead-letter reason for the rejected readings."""
        shown = "; ".join(f"reading[{i}]: {r}" for i, r in self.rejected[:5])
        more = len(self.rejected) - 5
        return shown + (f"; and {more} more" if more > 0 else "")


def decode_readings(payload: bytes, gateway: str, area: str, max_bytes: int) -> Decoded:
    """Decode JSON or SNB1. Raises WireError when nothing in the payload can be used."""
    if len(payload) > max_bytes:
        raise WireError(f"payload of {len(payload)} bytes exceeds the limit of {max_bytes}")
    if not payload:
        raise WireError("empty payload")
    if binary.is_binary(payload):
        batch = binary.decode(payload)
        index: Sequence[int] = range(len(batch))
        rejected: list[tuple[int, str]] = []
        fmt = "snb1"
    else:
        batch, index, rejected = json_codec.decode(payload, gateway, area)
        fmt = "json"
    invalid = invalid_readings(batch)
    if invalid:
        keep = np.ones(len(batch), dtype=np.bool_)
        for row, reason in invalid:
            keep[row] = False
            rejected.append((index[row], reason))
        rejected.sort()
        batch = select(batch, keep)
    if len(batch) == 0 and rejected:
        if len(rejected) == 1 and fmt == "json":
            raise WireError(rejected[0][1])
        raise WireError(Decoded(empty_batch(), rejected, fmt).reason)
    return Decoded(batch, rejected, fmt)
