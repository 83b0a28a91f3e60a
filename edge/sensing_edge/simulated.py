"""Simulated sensors with quiet, plausible baseline signals (no incidents: see sensing_sim).

Every channel is a mean-reverting random walk clipped to its normal range; each device
samples every `interval_s`, phase-shifted at random so a fleet does not report in bursts.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from sensing.wire.kinds import KINDS

from .drivers import SensorSample


@dataclass(frozen=True, slots=True)
class Baseline:
    """A channel's quiet behaviour: mean, random step per sample, normal range, rounding."""

    channel: str
    mean: float
    step: float
    lo: float
    hi: float
    digits: int


BASELINES: Mapping[str, tuple[Baseline, ...]] = {
    "smoke": (
        Baseline("obscuration", 0.1, 0.03, 0.0, 0.3, 3),
        Baseline("temp_c", 22.0, 0.15, 20.0, 24.0, 2),
        Baseline("co_ppm", 1.0, 0.3, 0.0, 3.0, 2),
    ),
    "manhole": (
        Baseline("tilt_deg", 0.4, 0.05, 0.0, 1.0, 2),
        Baseline("water_m", 2.2, 0.02, 1.5, 3.0, 3),
        Baseline("gas_lel", 0.3, 0.1, 0.0, 1.0, 2),
    ),
    "wearable": (
        Baseline("heart_rate", 75.0, 2.0, 60.0, 90.0, 0),
        Baseline("spo2", 97.0, 0.3, 95.0, 99.0, 1),
        Baseline("accel_g", 1.0, 0.03, 0.9, 1.2, 2),
    ),
}
MAX_STEPS = 20
"""wearable `steps` per reading: uniform 0..MAX_STEPS; `sos` is always 0."""
REVERSION = 0.1
"""share of the distance to the mean a walk moves back each sample"""
BATTERY_DRAIN = 1e-5
"""battery lost per sample"""


@dataclass(slots=True)
class _Device:
    device: str
    kind: str
    phase: float
    battery: float
    state: list[float] = field(default_factory=list)


class SimulatedDriver:
    """A `Driver` for a fleet of simulated devices of the contract's kinds."""

    def __init__(self, devices: list[tuple[str, str]], interval_s: float, seed: int) -> None:
        if not interval_s > 0 or not math.isfinite(interval_s):
            raise ValueError(f"interval_s must be a positive number of seconds, got {interval_s}")
        ids = [d for d, _ in devices]
        if len(set(ids)) != len(ids):
            raise ValueError("device ids must be unique")
        unknown = sorted({k for _, k in devices if k not in BASELINES})
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; expected some of {', '.join(KINDS)}")
        self.interval_ms = max(1, round(interval_s * 1000))
        self._rng = random.Random(seed)
        self._devices = [self._new_device(d, k) for d, k in devices]
        self._due: list[tuple[int, int]] = []  # heap of (next due ms, device index)
        self._started = False

    def __len__(self) -> int:
        return len(self._devices)

    def poll(self, now_ms: int) -> list[SensorSample]:
        if not self._started:
            self._started = True
            self._due = [
                (now_ms + int(dev.phase * self.interval_ms), i)
                for i, dev in enumerate(self._devices)
            ]
            heapq.heapify(self._due)
        out: list[SensorSample] = []
        while self._due and self._due[0][0] <= now_ms:
            due, i = self._due[0]
            out.append(self._sample(self._devices[i], now_ms))
            missed = (now_ms - due) // self.interval_ms  # a late poll yields one sample
            heapq.heapreplace(self._due, (due + (missed + 1) * self.interval_ms, i))
        return out

    def _new_device(self, device: str, kind: str) -> _Device:
        rng = self._rng
        dev = _Device(device, kind, phase=rng.random(), battery=rng.uniform(0.85, 0.95))
        dev.state = [
            min(b.hi, max(b.lo, b.mean + rng.gauss(0.0, b.step))) for b in BASELINES[kind]
        ]
        return dev

    def _sample(self, dev: _Device, now_ms: int) -> SensorSample:
        rng = self._rng
        values: dict[str, float] = {}
        for j, b in enumerate(BASELINES[dev.kind]):
            x = dev.state[j] + REVERSION * (b.mean - dev.state[j]) + rng.gauss(0.0, b.step)
            dev.state[j] = x = min(b.hi, max(b.lo, x))
            values[b.channel] = round(x, b.digits)
        if dev.kind == "wearable":
            values["steps"] = float(rng.randint(0, MAX_STEPS))
            values["sos"] = 0.0
        dev.battery = max(0.0, dev.battery - BATTERY_DRAIN)
        return SensorSample(dev.device, dev.kind, now_ms, values, round(dev.battery, 4))


def make_fleet(count: int, mix: Mapping[str, float], prefix: str) -> list[tuple[str, str]]:
    """`count` (device id, kind) pairs split by the weights in `mix` (largest remainder).

    Ids are `{prefix}-{kind}-{n:05d}`, e.g. `gw-1-smoke-00003`.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    unknown = sorted(k for k in mix if k not in BASELINES)
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; expected some of {', '.join(KINDS)}")
    if any(not (w >= 0 and math.isfinite(w)) for w in mix.values()):
        raise ValueError("mix weights must be finite and not negative")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("mix weights must not all be zero")
    exact = {k: count * w / total for k, w in mix.items()}
    counts = {k: math.floor(x) for k, x in exact.items()}
    by_remainder = sorted(mix, key=lambda k: exact[k] - counts[k], reverse=True)
    for k in by_remainder[: count - sum(counts.values())]:
        counts[k] += 1
    return [(f"{prefix}-{kind}-{n:05d}", kind) for kind in mix for n in range(counts[kind])]
