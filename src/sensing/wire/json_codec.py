"""JSON readings (contract v1): one reading object or an array of them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from sensing.wire.errors import Code, WireError
from sensing.wire.limits import (
    MAX_CHANNELS_PER_MESSAGE,
    MAX_DEVICES_PER_MESSAGE,
    MAX_READINGS_PER_MESSAGE,
    MAX_VALUES_PER_MESSAGE,
    MAX_VALUES_PER_READING,
)

if TYPE_CHECKING:
    from sensing.wire.batch import ReadingBatch


_RANGE_CODE = {"seq": Code.SEQ_OUT_OF_RANGE, "epoch": Code.EPOCH_OUT_OF_RANGE,
               "ts": Code.TS_OUT_OF_RANGE}


def _int_field(obj: dict[str, Any], name: str, default: int | None = None) -> int:
    value = obj.get(name, default)
    if value is None:
        raise WireError(f"missing field {name!r}", Code.FIELD_MISSING)
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(f"{name!r} must be an integer, got {type(value).__name__}",
                        Code.FIELD_TYPE)
    if not -(2**63) <= value < 2**63:
        raise WireError(f"{name!r} out of the 64-bit range", _RANGE_CODE.get(name, Code.FIELD_TYPE))
    return value


def _ts_field(obj: dict[str, Any]) -> int:
    value = obj.get("ts")
    if value is None:
        raise WireError("missing field 'ts'", Code.FIELD_MISSING)
    if isinstance(value, str):
        try:
            if len(value) > 64:
                raise ValueError
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise WireError(f"'ts' {value[:40]!r} is not RFC 3339", Code.FIELD_TYPE) from None
        if parsed.tzinfo is None:
            raise WireError("'ts' RFC 3339 string needs a time zone offset", Code.FIELD_TYPE)
        return round(parsed.timestamp() * 1000)
    return _int_field(obj, "ts")


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(f"{what} must be a number, got {type(value).__name__}", Code.FIELD_TYPE)
    return float(value)


def device_and_kind(obj: dict[str, Any]) -> tuple[str, str]:
    """A reading object's `device` and `kind` fields, which must be strings."""
    device = obj.get("device")
    kind = obj.get("kind")
    if not isinstance(device, str):
        raise WireError("missing or non-string field 'device'",
                        Code.FIELD_MISSING if device is None else Code.FIELD_TYPE)
    if not isinstance(kind, str):
        raise WireError("missing or non-string field 'kind'",
                        Code.FIELD_MISSING if kind is None else Code.FIELD_TYPE)
    return device, kind


def parse_reading(obj: object, gateway: str, area: str) -> tuple[str, str, int, int, int,
                                                               dict[str, float], float | None]:
    """Type-check one reading object; range checks happen in `validate`."""
    if not isinstance(obj, dict):
        raise WireError(f"a reading must be an object, got {type(obj).__name__}", Code.FIELD_TYPE)
    if obj.get("gateway", gateway) != gateway:
        named = str(obj["gateway"])[:64]
        raise WireError(f"reading speaks for gateway {named!r}, topic is {gateway!r}",
                        Code.GATEWAY_MISMATCH)
    if obj.get("area", area) != area:
        raise WireError(f"reading speaks for area {str(obj['area'])[:64]!r}, topic is {area!r}",
                        Code.GATEWAY_MISMATCH)
    device, kind = device_and_kind(obj)
    raw_values = obj.get("values")
    if not isinstance(raw_values, dict):
        raise WireError("missing field 'values' (an object of channel: number)",
                        Code.FIELD_MISSING if raw_values is None else Code.FIELD_TYPE)
    if len(raw_values) > MAX_VALUES_PER_READING:
        raise WireError(f"more than {MAX_VALUES_PER_READING} values in one reading",
                        Code.TOO_MANY_VALUES)
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
) -> tuple[ReadingBatch, list[int], list[tuple[int, str, str]]]:
    """Decode a JSON payload: the batch, the array index of each of its readings, and
    (index, reason) of the items it had to reject. Raises WireError if it is not JSON at all.
    """
    from sensing.wire.batch import BatchBuilder  # here: the edge agent imports this module

    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"malformed JSON: {exc}", Code.JSON_MALFORMED) from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise WireError("empty array of readings", Code.BATCH_EMPTY)
    if len(items) > MAX_READINGS_PER_MESSAGE:
        raise WireError(f"{len(items)} readings in one message, more than "
                        f"{MAX_READINGS_PER_MESSAGE}", Code.TOO_MANY_READINGS)
    builder = BatchBuilder()
    kept: list[int] = []
    rejected: list[tuple[int, str, str]] = []
    for i, item in enumerate(items):
        try:
            builder.add(*parse_reading(item, gateway, area))
            kept.append(i)
        except WireError as exc:
            rejected.append((i, str(exc), exc.code))
    batch = builder.build()
    check_counts(len(batch.devices), len(batch.channels), batch.n_values)
    return batch, kept, rejected


def check_counts(n_devices: int, n_channels: int, n_values: int) -> None:
    """Refuse a whole message whose tables or values exceed the per-message limits."""
    if n_devices > MAX_DEVICES_PER_MESSAGE:
        raise WireError(f"{n_devices} devices in one message, more than "
                        f"{MAX_DEVICES_PER_MESSAGE}", Code.TOO_MANY_DEVICES)
    if n_channels > MAX_CHANNELS_PER_MESSAGE:
        raise WireError(f"{n_channels} channels in one message, more than "
                        f"{MAX_CHANNELS_PER_MESSAGE}", Code.TOO_MANY_CHANNELS)
    if n_values > MAX_VALUES_PER_MESSAGE:
        raise WireError(f"{n_values} values in one message, more than "
                        f"{MAX_VALUES_PER_MESSAGE}", Code.TOO_MANY_VALUES)


def encode(readings: list[dict[str, Any]]) -> bytes:
    """Readings as a JSON array (what a third-party broker or `mosquitto_sub` expects)."""
    return orjson.dumps(readings)
