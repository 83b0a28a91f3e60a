"""Numbered samples `(device, epoch, seq)` (numbered by the buffer) and encoding a batch of them
for the readings topic, cut into payloads the core takes (`encode_fitting`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sensing.wire import WireError, json_codec, snb1
from sensing.wire.limits import (
    MAX_CHANNELS_PER_MESSAGE,
    MAX_DEVICES_PER_MESSAGE,
    MAX_READINGS_PER_MESSAGE,
    MAX_VALUES_PER_MESSAGE,
)

from .drivers import SensorSample

PayloadFormat = Literal["snb1", "json"]

DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20
"""the core's default `max_payload_bytes` (sensing.settings.CoreSettings; a test keeps the two
equal): a larger payload is dead-lettered whole (`payload_too_large`)"""
MIN_PAYLOAD_BYTES = 16_384
"""the smallest payload bound the agent accepts: any reading the contract allows (a 128-byte
device id, 64 values of 64-byte channel names) encodes alone to less in either format (a test
checks it), so a smaller bound would drop valid readings"""
MAX_MQTT_PAYLOAD_BYTES = 268_435_455 - 65_536
"""MQTT's bound on a packet, less room for the topic and header"""


@dataclass(frozen=True, slots=True)
class NumberedSample:
    """A sample with the name the contract gives it: `(device, epoch, seq)`."""

    sample: SensorSample
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class Segment:
    """`readings[start:stop]` of a batch given to `encode_fitting`: their payload, or None if
    they cannot be sent (a single reading: `reason` says why)."""

    start: int
    stop: int
    payload: bytes | None
    reason: str = ""


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
    refuses a corrupted batch whole instead of storing wrong readings. No bound on the size:
    see `encode_fitting`."""
    if payload_format == "json":
        return json_codec.encode([reading_dict(n) for n in readings])
    return snb1.encode_readings(
        (n.sample.device, n.sample.kind, n.epoch, n.seq, n.sample.ts, n.sample.values,
         n.sample.battery) for n in readings)


def over_message_limits(readings: Sequence[NumberedSample]) -> str | None:
    """Why one message of these readings would break the contract's per-message counts
    (sensing.wire.limits: readings, values, distinct devices and channels), or None."""
    if len(readings) > MAX_READINGS_PER_MESSAGE:
        return f"{len(readings)} readings, more than {MAX_READINGS_PER_MESSAGE} per message"
    channels: set[str] = set()
    n_values = 0
    for n in readings:
        values = n.sample.values
        n_values += len(values)
        channels.update(values)
    if n_values > MAX_VALUES_PER_MESSAGE:
        return f"{n_values} values, more than {MAX_VALUES_PER_MESSAGE} per message"
    if len(channels) > MAX_CHANNELS_PER_MESSAGE:
        return f"{len(channels)} channels, more than {MAX_CHANNELS_PER_MESSAGE} per message"
    if len(readings) > MAX_DEVICES_PER_MESSAGE:  # fewer readings cannot name more devices
        devices = len({n.sample.device for n in readings})
        if devices > MAX_DEVICES_PER_MESSAGE:
            return f"{devices} devices, more than {MAX_DEVICES_PER_MESSAGE} per message"
    return None


def encode_fitting(
    readings: Sequence[NumberedSample], payload_format: PayloadFormat, max_bytes: int
) -> list[Segment]:
    """The readings as payloads of at most `max_bytes` within the contract's per-message
    counts, in order, covering every reading once. A batch that does not fit is cut: into as
    many equal parts as its size calls for when it is only too large, else in halves, again
    until each part fits; a single reading that cannot be sent at all (too large alone, or one
    the format cannot hold) is a Segment without payload, with the reason."""
    out: list[Segment] = []
    _fit(readings, 0, len(readings), payload_format, max_bytes, out)
    return out


def _fit(readings: Sequence[NumberedSample], start: int, stop: int,
         payload_format: PayloadFormat, max_bytes: int, out: list[Segment]) -> None:
    part = readings[start:stop]
    reason = over_message_limits(part)
    parts = 2
    if reason is None:
        try:
            payload = encode_batch(part, payload_format)
        except WireError as exc:
            reason = str(exc)
        else:
            if len(payload) <= max_bytes:
                out.append(Segment(start, stop, payload))
                return
            reason = f"a payload of {len(payload)} bytes, more than the limit of {max_bytes}"
            parts = max(2, -(-len(payload) * 11 // (max_bytes * 10)))  # 10 % to spare
    count = stop - start
    if count == 1:
        out.append(Segment(start, stop, None, reason))
        return
    parts = min(parts, count)
    for i in range(parts):
        _fit(readings, start + count * i // parts, start + count * (i + 1) // parts,
             payload_format, max_bytes, out)
