"""What the contract allows of a reading's names and times, for every codec and the edge
agent's local input (no numpy here: the edge agent imports it)."""

from __future__ import annotations

from sensing.wire.kinds import KINDS

MAX_DEVICE_ID = 128
TS_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
TS_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


def bad_device_reason(device: str, kind: str) -> str | None:
    """Why a (device, kind) pair breaks the contract, or None."""
    if not device or len(device) > MAX_DEVICE_ID or not device.isprintable():
        return f"device id {device[:40]!r} must be 1-{MAX_DEVICE_ID} printable characters"
    if kind not in KINDS:
        return f"device {device!r}: unknown kind {kind[:40]!r} (expected one of {', '.join(KINDS)})"
    return None
