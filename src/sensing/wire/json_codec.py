"""JSON readings (contract v1): one reading object or an array of them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from sensing.wire.errors import WireError

if TYPE_CHECKING:
    from sensing.wire.batch import ReadingBatch


def _int_field(obj: dict[str, Any], name: str, default: int | None = None) -> int:
    value = obj.get(name, default)
    if value is None:
        raise WireError(f"missing field {name!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(f"{name!r} must be an integer, got {type(value).__name__}")
    if not -(2**63) <= value < 2**63:
        raise WireError(f"{name!r} out of the 64-bit range")
    return value


def _ts_field(obj: dict[str, Any]) -> int:
    value = obj.get("ts")
    if value is None:
        raise WireError("missing field 'ts'")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise WireError(f"'ts' {value[:40]!r} is not RFC 3339") from None
        if parsed.tzinfo is None:
            raise WireError("'ts' RFC 3339 string needs a time zone offset")
        return round(parsed.timestamp() * 1000)
    return _int_field(obj, "ts")


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(f"{what} must be a number, got {type(value).__name__}")
    return float(value)


def device_and_kind(obj: dict[str, Any]) -> tuple[str, str]:
    """A reading object's `device` and `kind` fields, which must be strings."""
    device = obj.get("device")
    kind = obj.get("kind")
    if not isinstance(device, str):
        raise WireError("missing or non-string field 'device'")
    if not isinstance(kind, str):
        raise WireError("missing or non-string field 'kind'")
    return device, kind


def parse_reading(obj: object, gateway: str, area: str) -> tuple[str, str, int, int, int,
                                                               dict[str, float], float | None]:
    """Type-check one reading object; range checks happen in `validate`."""
    if not isinstance(obj, dict):
        raise WireError(f"a reading must be an object, got {type(obj).__name__}")
    if obj.get("gateway", gateway) != gateway:
        named = str(obj["gateway"])[:64]
        raise WireError(f"reading speaks for gateway {named!r}, topic is {gateway!r}")
    if obj.get("area", area) != area:
        raise WireError(f"reading speaks for area {str(obj['area'])[:64]!r}, topic is {area!r}")
    device, kind = device_and_kind(obj)
    raw_values = obj.get("values")
    if not isinstance(raw_values, dict):
        raise WireError("missing field 'values' (an object of channel: number)")
    values = {str(k): _number(v, f"value {str(k)[:40]!r}") for k, v in raw_values.items()}
    battery = obj.get("battery")
    return (
        device,
        kind,
        _int_field(obj, "epoch", 0),
        _int_field(obj, "seq"),
        _ts_field(obj),
        values,
        None if battery is None else _number(battery, "battery"),
    )


def decode(
    payload: bytes, gateway: str, area: str
) -> tuple[ReadingBatch, list[int], list[tuple[int, str]]]:
    """Decode a JSON payload: the batch, the array index of each of its readings, and
    (index, reason) of the items it had to reject. Raises WireError if it is not JSON at all.
    """
    from sensing.wire.batch import BatchBuilder  # here: the edge agent imports this module

    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"malformed JSON: {exc}") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise WireError("empty array of readings")
    builder = BatchBuilder()
    kept: list[int] = []
    rejected: list[tuple[int, str]] = []
    for i, item in enumerate(items):
        try:
            builder.add(*parse_reading(item, gateway, area))
            kept.append(i)
        except WireError as exc:
            rejected.append((i, str(exc)))
    return builder.build(), kept, rejected


def encode(readings: list[dict[str, Any]]) -> bytes:
    """Readings as a JSON array (what a third-party broker or `mosquitto_sub` expects)."""
    return orjson.dumps(readings)
