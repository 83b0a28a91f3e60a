"""Payload on a readings topic -> a checked batch, or reasons why (parts of) it cannot be used."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sensing.wire import binary, json_codec
from sensing.wire.batch import ReadingBatch, empty_batch
from sensing.wire.errors import Code, WireError
from sensing.wire.validate import (
    Rejected,
    has_bad_names,
    invalid_readings,
    select,
    select_named,
)


@dataclass(frozen=True, slots=True)
class Decoded:
    batch: ReadingBatch
    rejected: list[Rejected]
    """(index of the reading in the payload, reason, code) for every reading left out."""
    format: str

    @property
    def reason(self) -> str:
        """One dead-letter reason for the rejected readings."""
        shown = "; ".join(f"reading[{i}]: {r}" for i, r, _ in self.rejected[:5])
        more = len(self.rejected) - 5
        return shown + (f"; and {more} more" if more > 0 else "")

    @property
    def code(self) -> str:
        """One dead-letter code for the rejected readings: the first one's."""
        return self.rejected[0][2] if self.rejected else Code.PAYLOAD_INVALID.value


def decode_readings(payload: bytes, gateway: str, area: str, max_bytes: int,
                    now_ms: int | None = None) -> Decoded:
    """Decode JSON, SNB1 or SNB2. Raises WireError when nothing in the payload can be used.
    `now_ms`: the core's clock (readings more than MAX_FUTURE_MS ahead of it are refused);
    None for tools that check a recording on its own clock."""
    if len(payload) > max_bytes:
        raise WireError(f"payload of {len(payload)} bytes exceeds the limit of {max_bytes}",
                        Code.PAYLOAD_TOO_LARGE)
    if not payload:
        raise WireError("empty payload", Code.PAYLOAD_EMPTY)
    if binary.is_binary(payload):
        batch = binary.decode(payload)
        index: Sequence[int] = range(len(batch))
        rejected: list[Rejected] = []
        fmt = "snb1"  # the binary family, SNB1 or SNB2 (as the edge agent's setting names it)
    else:
        batch, index, rejected = json_codec.decode(payload, gateway, area)
        fmt = "json"
    invalid = invalid_readings(batch, now_ms)
    if invalid:
        keep = np.ones(len(batch), dtype=np.bool_)
        for row, reason, code in invalid:
            keep[row] = False
            rejected.append((index[row], reason, code))
        rejected.sort()
        # a refused name must not reach the registry: then the tables are cut down to the
        # names the kept readings use
        batch = select_named(batch, keep) if has_bad_names(batch) else select(batch, keep)
    elif has_bad_names(batch):
        # a bad name that no reading uses (an SNB table entry): no reading to refuse, but the
        # name must not reach the registry, where every later step would fail to format it
        batch = select_named(batch, np.ones(len(batch), dtype=np.bool_))
    if len(batch) == 0 and rejected:
        if len(rejected) == 1 and fmt == "json":
            raise WireError(rejected[0][1], rejected[0][2])
        whole = Decoded(empty_batch(), rejected, fmt)
        raise WireError(whole.reason, whole.code)
    return Decoded(batch, rejected, fmt)
