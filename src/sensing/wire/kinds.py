"""Sensor kinds and their known channels (contract v1). Unknown channels are still accepted."""

from __future__ import annotations

from typing import Final

KIND_CHANNELS: Final[dict[str, tuple[str, ...]]] = {
    "smoke": ("obscuration", "temp_c", "co_ppm"),
    "manhole": ("tilt_deg", "water_m", "gas_lel"),
    "wearable": ("heart_rate", "spo2", "accel_g", "steps", "sos"),
}
KINDS: Final[tuple[str, ...]] = tuple(KIND_CHANNELS)

CHANNEL_UNITS: Final[dict[str, str]] = {
    "obscuration": "%/m",
    "temp_c": "°C",
    "co_ppm": "ppm",
    "tilt_deg": "°",
    "water_m": "m",
    "gas_lel": "% LEL",
    "heart_rate": "bpm",
    "spo2": "%",
    "accel_g": "g",
    "steps": "steps",
    "sos": "",
}
