"""Malformed messages for a gateway's readings topic: each breaks the contract in one way.

They name phantom devices (`sim-fault-NNNN`), never a device of the fleet, so a consumer that
wrongly accepted one cannot confuse it with a real reading.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

MALFORMED_REASONS: Final[tuple[str, ...]] = (
    "malformed_json",
    "wrong_type",
    "missing_field",
    "nan_value",
    "oversize",
    "foreign_gateway",
)
OVERSIZE_BYTES: Final = 2 * 1024 * 1024


def _reading(n: int, ts_ms: int) -> dict[str, object]:
    return {
        "device": f"sim-fault-{n:04d}",
        "kind": "smoke",
        "seq": n,
        "epoch": 0,
        "ts": ts_ms,
        "values": {"obscuration": 0.1, "temp_c": 21.0, "co_ppm": 0.5},
        "battery": 0.9,
    }


def malformed_payload(reason: str, n: int, ts_ms: int, other_gateway: str) -> bytes:
    """Payload number `n` broken by `reason` (one of MALFORMED_REASONS).

    `other_gateway` is the gateway a `foreign_gateway` reading claims to come from; it must
    differ from the gateway whose topic the payload is published on.
    """
    reading = _reading(n, ts_ms)
    if reason == "malformed_json":
        return orjson.dumps(reading)[:-7]
    if reason == "wrong_type":
        reading["seq"] = str(n)
    elif reason == "missing_field":
        del reading["ts"]
    elif reason == "nan_value":
        # JSON has no NaN; a broken encoder writes the bare literal anyway.
        return orjson.dumps(reading).replace(b'"obscuration":0.1', b'"obscuration":NaN')
    elif reason == "oversize":
        # A well-formed reading, padded with an unknown field beyond any sane size limit.
        reading["pad"] = ""
        base = len(orjson.dumps(reading))
        reading["pad"] = "x" * (OVERSIZE_BYTES - base)
    elif reason == "foreign_gateway":
        reading["gateway"] = other_gateway
    else:
        raise ValueError(f"unknown malformed reason {reason!r} (one of {MALFORMED_REASONS})")
    return orjson.dumps(reading)


class CountsMalformed:
    """For a run's report (a dataclass) with `malformed_sent` by reason: their total, also in
    `to_dict`."""

    __slots__ = ()
    malformed_sent: dict[str, int]

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed_sent.values())

    def to_dict(self: DataclassInstance) -> dict[str, Any]:
        out = asdict(self)
        out["malformed_total"] = sum(out["malformed_sent"].values())
        return out
