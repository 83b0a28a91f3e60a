"""JSON readings (contract v1): one reading object or an array of them."""

from __future__ import annotations

import json
import re
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
        except (ValueError, OverflowError):
            raise WireError(f"'ts' {value[:40]!r} is not RFC 3339", Code.FIELD_TYPE) from None
        if parsed.tzinfo is None:
            raise WireError("'ts' RFC 3339 string needs a time zone offset", Code.FIELD_TYPE)
        return round(parsed.timestamp() * 1000)
    return _int_field(obj, "ts")


def _number(value: object, channel: str | None) -> float:
    """A value of `channel` (None: the battery) as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(f"{_what(channel)} must be a number, got {type(value).__name__}",
                        Code.FIELD_TYPE)
    try:
        return float(value)
    except OverflowError:  # an int beyond any float: none of the parsers below makes one
        raise WireError(f"{_what(channel)} is beyond the range of a float",
                        Code.VALUE_INVALID if channel is not None
                        else Code.BATTERY_OUT_OF_RANGE) from None


def _what(channel: str | None) -> str:
    return "battery" if channel is None else f"value {channel[:40]!r}"


def _shown(value: object) -> str:
    """A field's value for a reason: a string's start, else only its type (the repr of a
    deeply nested array would overflow the stack)."""
    return repr(value[:64]) if isinstance(value, str) else type(value).__name__


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
        raise WireError(f"reading speaks for gateway {_shown(obj['gateway'])}, topic is "
                        f"{gateway!r}", Code.GATEWAY_MISMATCH)
    if obj.get("area", area) != area:
        raise WireError(f"reading speaks for area {_shown(obj['area'])}, topic is {area!r}",
                        Code.GATEWAY_MISMATCH)
    device, kind = device_and_kind(obj)
    raw_values = obj.get("values")
    if not isinstance(raw_values, dict):
        raise WireError("missing field 'values' (an object of channel: number)",
                        Code.FIELD_MISSING if raw_values is None else Code.FIELD_TYPE)
    if len(raw_values) > MAX_VALUES_PER_READING:
        raise WireError(f"more than {MAX_VALUES_PER_READING} values in one reading",
                        Code.TOO_MANY_VALUES)
    values = {k: _number(v, k) for k, v in raw_values.items()}  # JSON keys are strings
    battery = obj.get("battery")
    return (
        device,
        kind,
        _int_field(obj, "epoch", 0),
        _int_field(obj, "seq"),
        _ts_field(obj),
        values,
        None if battery is None else _number(battery, None),
    )


def decode(
    payload: bytes, gateway: str, area: str
) -> tuple[ReadingBatch, list[int], list[tuple[int, str, str]]]:
    """Decode a JSON payload: the batch, the array index of each of its readings, and
    (index, reason) of the items it had to reject. Raises WireError if it is not JSON at all.
    """
    from sensing.wire.batch import BatchBuilder  # here: the edge agent imports this module

    doc = loads(payload)
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


def loads(payload: bytes) -> Any:
    """The JSON document of a payload, or WireError `json_malformed`. orjson refuses a whole
    document for one number beyond a float's range (`1e309`, or 400 digits); the stdlib's
    parser then reads it (only then: it is several times slower), the number as infinity,
    so that only its reading is refused (`value_invalid`), not the array's good ones."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        if "number" not in exc.msg:
            raise WireError(f"malformed JSON: {exc}", Code.JSON_MALFORMED) from None
    try:
        return _loads_wide_numbers(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeError, JSONDecodeError: ValueErrors
        raise WireError(f"malformed JSON: {str(exc)[:200]}", Code.JSON_MALFORMED) from None


_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def _loads_wide_numbers(payload: bytes) -> Any:
    """The stdlib's parse of what orjson reads, plus numbers beyond a float's range: strict
    UTF-8 without a BOM, no NaN or Infinity literals, no lone surrogates, integers beyond 64
    bits as floats (as orjson does). Raises ValueError or RecursionError for anything else."""
    text = payload.decode("utf-8")
    doc = json.loads(text, parse_int=_wide_int, parse_constant=_no_constant)
    if _ESCAPED_SURROGATE.search(text) is not None:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")  # a lone one cannot be encoded
    return doc


def _wide_int(text: str) -> int | float:
    """An integer of the 64-bit range as int, a longer one as float (int() of more than
    4,300 digits would raise, float() of them is infinity beyond 1.8e308)."""
    if len(text) <= 20:
        value = int(text)
        if -(2**63) <= value < 2**64:
            return value
    return float(text)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


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
