"""Quiet, realistic per-kind sensor signals, with the everyday nuisances that must not alert.

A signal is a small stateful object per device, driven by a numpy Generator: called with
increasing times (seconds since the run start) it returns the device's channel values and
battery level. The same generator seed and the same sequence of times give the same samples.

Nuisances, by kind (all stay below any sensible alarm level):

- smoke: cooking smoke bumps obscuration to 1-3 %/m for about a minute (and CO and
  temperature a little); temperature follows a slow daily cycle. A share of the detectors
  hangs near a bathroom or an open kitchen: a hot shower or a boiling pot sends steam past
  them, obscuration 1-3 %/m for 3-8 minutes and the room 1-2 °C warmer, no CO (the contract's
  detector has no humidity channel: the humid air shows as obscuration and warmth only).
- manhole: a vehicle driving over the cover tilts it 3-6 degrees for one reading; rain
  raises the water slowly (water_m falls) but never above 1.25 m below the cover.

Resting floors: some channels legitimately sit still for hours in clean air, and a stuck
check must not take them for frozen sensors. A share of the gas heads (those whose clean-air
reading is lowest) suppresses readings under `MANHOLE_GAS_DEADBAND_LEL`, as many catalytic
and IR heads do: 0.0 % LEL for tens of minutes at a time, with a rare blip. A share of the
smoke detectors' CO cells report whole ppm: 0 in clean air, 1-2 while someone cooks.
- wearable: walking bouts raise heart rate (up to 110), acceleration (up to 1.5 g) and steps.
  At night the wearer sleeps (bedtime 21:30-23:30, up at 05:30-07:30, the signal's own time
  of day): heart rate 6-12 bpm under its resting level (never under 45), no steps, the wrist
  still at about 1.0 g but for turning over now and then, and once in a while a short walk
  to the bathroom. Sleeping is no `wearable.inactivity`: the core counts stillness only in
  its daytime window, and the daytime walks and fidgeting steps restart its count.

Time of day: `day_start_s` is the signal's time of day at t=0. The core reads time of day
as local time at UTC+8 (`CORE_UTC_OFFSET_H`); for the two clocks to agree, give a fleet the
`local_time_of_day_s` of its run's `start_ms`.
"""

from __future__ import annotations

import math
from typing import Final, Protocol

import numpy as np

DAY_S: Final = 86_400.0
HOUR_S: Final = 3_600.0

# Quiet-signal bounds, also the limits the tests hold the signals to.
SMOKE_OBSCURATION_QUIET_MAX: Final = 0.3
SMOKE_COOKING_PEAK: Final = (1.0, 3.0)
SMOKE_TEMP_RANGE: Final = (19.0, 25.0)
SMOKE_CO_MAX: Final = 5.0
SMOKE_STEAM_PEAK: Final = (1.0, 3.0)
SMOKE_STEAM_SHARE: Final = 0.3
"""share of smoke detectors near a bathroom or an open kitchen (they see steam)"""
SMOKE_STEAM_LENGTH_S: Final = (240.0, 480.0)
SMOKE_STEAM_WARMTH_C: Final = (1.0, 2.0)
MANHOLE_TILT_QUIET_MAX: Final = 1.0
MANHOLE_TRAFFIC_TILT: Final = (3.0, 6.0)
MANHOLE_WATER_RANGE: Final = (1.5, 3.0)
MANHOLE_WATER_RAIN_MIN: Final = 1.25
MANHOLE_GAS_MAX: Final = 2.0
MANHOLE_GAS_DEADBAND_LEL: Final = 1.0
"""heads with a zero deadband report 0.0 below this"""
MANHOLE_GAS_DEADBAND_BELOW: Final = 0.25
"""heads whose clean-air level is under this have the deadband (about 30 % of them)"""
SMOKE_CO_WHOLE_BELOW: Final = 0.5
"""CO cells whose clean-air level is under this report whole ppm, cut down (about a quarter
of them)"""
WEARABLE_HR_REST: Final = (55.0, 95.0)
WEARABLE_HR_WALK_MAX: Final = 110.0
WEARABLE_HR_SLEEP_MIN: Final = 45.0
WEARABLE_SLEEP_DIP: Final = (6.0, 12.0)
"""bpm under the resting heart rate while asleep"""
WEARABLE_BEDTIME_H: Final = (21.5, 23.5)
WEARABLE_WAKE_H: Final = (5.5, 7.5)
WEARABLE_ACCEL_TURN_MAX: Final = 1.3
"""turning over in bed: one reading up to this, no steps"""
WEARABLE_SPO2_RANGE: Final = (94.0, 99.0)
WEARABLE_ACCEL_WALK_MAX: Final = 1.5
BATTERY_QUIET_MIN: Final = 0.3
"""Quiet batteries never drain below this (wristbands get recharged, detectors last years);
only the `device.battery` incident goes lower."""

CORE_UTC_OFFSET_H: Final = 8.0
"""the local time the core reads time of day in (`InactivityParams.utc_offset_h`, China
Standard Time); tests/sim/test_sim_rules_agree.py checks the copy"""


def local_time_of_day_s(ts_ms: int, utc_offset_h: float = CORE_UTC_OFFSET_H) -> float:
    """Local time of day (seconds after midnight) at `ts_ms` (ms since the Unix epoch): pass
    a run's `start_ms` as a fleet's `day_start_s` for the signals' day to be the core's."""
    return (ts_ms / 1000.0 + utc_offset_h * HOUR_S) % DAY_S


class Signal(Protocol):
    """The quiet signal of one device."""

    kind: str

    def sample(self, t_s: float) -> tuple[dict[str, float], float]:
        """Channel values and battery (0..1) at `t_s` seconds since the run start.

        Call with non-decreasing `t_s`; each call advances the signal's random state.
        """
        ...


def _hit(rate_per_s: float, dt_s: float, u: float) -> bool:
    """Whether a Poisson event of the given rate happens in `dt_s`, from a uniform draw."""
    return u < -math.expm1(-rate_per_s * dt_s)


def _fold(x: float, lo: float, hi: float) -> float:
    """`x` folded back into [lo, hi] at its edges: a bounded value that keeps its noise (a
    clamp would hold a cold room's thermistor at exactly `lo` for an hour, which only a
    frozen sensor does)."""
    if x < lo:
        x = lo + (lo - x)
    elif x > hi:
        x = hi - (x - hi)
    return min(max(x, lo), hi)


def _bump(elapsed_s: float, length_s: float) -> float:
    """A smooth 0 -> 1 -> 0 bump over `length_s`; 0 outside it."""
    if elapsed_s < 0.0 or elapsed_s >= length_s:
        return 0.0
    return math.sin(math.pi * elapsed_s / length_s)


class _Base:
    """Shared state: the generator, the clock of the last sample and a draining battery."""

    kind = ""
    _drain_per_h: tuple[float, float] = (1e-5, 5e-5)
    _battery_start: tuple[float, float] = (0.6, 1.0)

    def __init__(self, rng: np.random.Generator, day_start_s: float = 10 * HOUR_S) -> None:
        self._rng = rng
        self._day_start_s = day_start_s
        self._last_t: float | None = None
        self._battery0 = float(rng.uniform(*self._battery_start))
        self._drain = float(rng.uniform(*self._drain_per_h)) / HOUR_S

    def _step(self, t_s: float) -> float:
        """Seconds since the previous sample (0 for the first)."""
        dt = 0.0 if self._last_t is None else max(0.0, t_s - self._last_t)
        self._last_t = t_s
        return dt

    def _battery(self, t_s: float) -> float:
        """Drains linearly; recharged to full on reaching BATTERY_QUIET_MIN."""
        span = 1.0 - BATTERY_QUIET_MIN
        used = (1.0 - self._battery0 + self._drain * t_s) % span
        return round(1.0 - used, 3)

    def _time_of_day_s(self, t_s: float) -> float:
        return (self._day_start_s + t_s) % DAY_S


class SmokeSignal(_Base):
    """Home smoke/heat/CO detector: obscuration %/m, temp_c, co_ppm."""

    kind = "smoke"
    _drain_per_h = (5e-6, 2e-5)
    COOKING_PER_S: Final = 1.0 / (2 * HOUR_S)
    STEAM_PER_S: Final = 1.0 / (6 * HOUR_S)
    TEMP_DRIFT_S: Final = 600.0

    def __init__(self, rng: np.random.Generator, day_start_s: float = 10 * HOUR_S) -> None:
        super().__init__(rng, day_start_s)
        self._obscuration0 = float(rng.uniform(0.02, 0.12))
        self._temp0 = float(rng.uniform(20.5, 22.5))
        self._temp_drift = 0.0
        self._co0 = float(rng.uniform(0.0, 2.0))
        self.whole_ppm = self._co0 < SMOKE_CO_WHOLE_BELOW
        """its CO cell reports whole ppm: 0 in clean air"""
        self._cooking_start = -math.inf
        self._cooking_len = 0.0
        self._cooking_peak = 0.0
        self.steamy = bool(rng.random() < SMOKE_STEAM_SHARE)
        """near a bathroom or an open kitchen: sees steam now and then"""
        self._steam_start = -math.inf
        self._steam_len = 0.0
        self._steam_peak = 0.0
        self._steam_warmth = 0.0

    def sample(self, t_s: float) -> tuple[dict[str, float], float]:
        dt = self._step(t_s)
        u = self._rng.random(8).tolist()
        n = self._rng.standard_normal(3).tolist()
        cooking = _bump(t_s - self._cooking_start, self._cooking_len)
        if cooking == 0.0 and _hit(self.COOKING_PER_S, dt, u[0]):
            self._cooking_start, self._cooking_len = t_s, 45.0 + 45.0 * u[1]
            self._cooking_peak = SMOKE_COOKING_PEAK[0] + (
                SMOKE_COOKING_PEAK[1] - SMOKE_COOKING_PEAK[0]
            ) * u[2]
        steam = _bump(t_s - self._steam_start, self._steam_len)
        if self.steamy and steam == 0.0 and _hit(self.STEAM_PER_S, dt, u[4]):
            lo, hi = SMOKE_STEAM_LENGTH_S
            self._steam_start, self._steam_len = t_s, lo + (hi - lo) * u[5]
            lo, hi = SMOKE_STEAM_PEAK
            self._steam_peak = lo + (hi - lo) * u[6]
            lo, hi = SMOKE_STEAM_WARMTH_C
            self._steam_warmth = lo + (hi - lo) * u[7]
        quiet = min(SMOKE_OBSCURATION_QUIET_MAX, self._obscuration0 + abs(0.03 * n[0]))
        # cooking and steam at once do not add up: the detector sees the denser of the two
        obscuration = quiet + max(self._cooking_peak * cooking, self._steam_peak * steam)
        daily = math.sin(2 * math.pi * (self._time_of_day_s(t_s) - 9 * HOUR_S) / DAY_S)
        # Room air wanders slowly (Ornstein-Uhlenbeck, sd 0.2 °C, ~10 min): no jumps between
        # readings that a rate-of-rise heat detector (~8 °C/min) could mistake for a fire.
        keep = math.exp(-dt / self.TEMP_DRIFT_S)
        self._temp_drift = keep * self._temp_drift + 0.2 * math.sqrt(1 - keep * keep) * n[1]
        temp = (self._temp0 + 1.5 * daily + self._temp_drift + 0.5 * cooking
                + self._steam_warmth * steam)
        co = self._co0 + abs(0.4 * n[2]) + 2.0 * cooking * u[3]
        values = {
            "obscuration": round(obscuration, 2),
            "temp_c": round(_fold(temp, *SMOKE_TEMP_RANGE), 2),
            "co_ppm": (float(math.floor(min(max(co, 0.0), SMOKE_CO_MAX))) if self.whole_ppm
                       else round(min(max(co, 0.0), SMOKE_CO_MAX), 1)),
        }
        return values, self._battery(t_s)


class ManholeSignal(_Base):
    """Manhole-cover sensor: tilt_deg, water_m (below the cover), gas_lel."""

    kind = "manhole"
    _drain_per_h = (1e-5, 4e-5)
    TRAFFIC_PER_S: Final = 2.0 / HOUR_S
    RAIN_PER_S: Final = 1.0 / (8 * HOUR_S)

    def __init__(self, rng: np.random.Generator, day_start_s: float = 10 * HOUR_S) -> None:
        super().__init__(rng, day_start_s)
        self._tilt0 = float(rng.uniform(0.1, 0.6))
        self._water0 = float(rng.uniform(1.8, 2.8))
        self._gas0 = float(rng.uniform(0.1, 0.6))
        self.deadband = self._gas0 < MANHOLE_GAS_DEADBAND_BELOW
        """its gas head reports 0.0 below MANHOLE_GAS_DEADBAND_LEL"""
        self._bumped = False
        self._rain_start = -math.inf
        self._rain_len = 0.0
        self._rain_rise = 0.0

    def sample(self, t_s: float) -> tuple[dict[str, float], float]:
        dt = self._step(t_s)
        u = self._rng.random(5).tolist()
        n = self._rng.standard_normal(3).tolist()
        # A car over the cover shows in one reading only, never two in a row.
        self._bumped = not self._bumped and _hit(self.TRAFFIC_PER_S, dt, u[0])
        if self._bumped:
            lo, hi = MANHOLE_TRAFFIC_TILT
            tilt = lo + (hi - lo) * u[1]
        else:
            tilt = min(MANHOLE_TILT_QUIET_MAX, max(0.0, self._tilt0 + 0.1 * n[0]))
        rain = _bump(t_s - self._rain_start, self._rain_len)
        if rain == 0.0 and _hit(self.RAIN_PER_S, dt, u[2]):
            self._rain_start, self._rain_len = t_s, 20 * 60.0 + 40 * 60.0 * u[3]
            room = max(0.0, self._water0 - MANHOLE_WATER_RAIN_MIN - 0.05)
            self._rain_rise = min(0.8, room) * (0.3 + 0.7 * u[4])
        water = self._water0 - self._rain_rise * rain + 0.005 * n[1]
        water = min(max(water, MANHOLE_WATER_RAIN_MIN), MANHOLE_WATER_RANGE[1])
        gas = min(MANHOLE_GAS_MAX, max(0.0, self._gas0 + abs(0.3 * n[2])))
        if self.deadband and gas < MANHOLE_GAS_DEADBAND_LEL:
            gas = 0.0
        values = {"tilt_deg": round(tilt, 2), "water_m": round(water, 3), "gas_lel": round(gas, 2)}
        return values, self._battery(t_s)


class WearableSignal(_Base):
    """Elder-care wristband: heart_rate, spo2, accel_g, steps (since last reading), sos."""

    kind = "wearable"
    _drain_per_h = (0.004, 0.01)
    _battery_start = (0.4, 1.0)
    WALK_PER_S_DAY: Final = 1.0 / (30 * 60.0)
    WALK_PER_S_NIGHT: Final = 1.0 / (4 * HOUR_S)
    BATHROOM_PER_S: Final = 1.0 / (6 * HOUR_S)
    """a short walk while asleep (and back to bed)"""
    TURN_PER_S: Final = 1.0 / HOUR_S
    HR_SETTLE_S: Final = 30.0
    HR_SLEEP_SETTLE_S: Final = 600.0
    """falling asleep and waking take minutes, not seconds"""

    def __init__(self, rng: np.random.Generator, day_start_s: float = 10 * HOUR_S) -> None:
        super().__init__(rng, day_start_s)
        self._hr_rest = float(rng.uniform(60.0, 78.0))
        self._hr = self._hr_rest
        self._spo2 = float(rng.uniform(95.5, 98.0))
        self._walk_start = -math.inf
        self._walk_len = 0.0
        self._walk_hr = 0.0
        self._cadence = float(rng.uniform(1.4, 1.9))
        self._bedtime_s = float(rng.uniform(*WEARABLE_BEDTIME_H)) * HOUR_S
        self._wake_s = float(rng.uniform(*WEARABLE_WAKE_H)) * HOUR_S
        self._sleep_dip = float(rng.uniform(*WEARABLE_SLEEP_DIP))

    def _walk_rate(self, t_s: float) -> float:
        daytime = 7 * HOUR_S <= self._time_of_day_s(t_s) < 21 * HOUR_S
        return self.WALK_PER_S_DAY if daytime else self.WALK_PER_S_NIGHT

    def asleep(self, t_s: float) -> bool:
        """In bed, between this wearer's bedtime and getting-up time (the signal's clock)."""
        tod = self._time_of_day_s(t_s)
        return tod >= self._bedtime_s or tod < self._wake_s

    def sample(self, t_s: float) -> tuple[dict[str, float], float]:
        dt = self._step(t_s)
        u = self._rng.random(7).tolist()
        n = self._rng.standard_normal(3).tolist()
        asleep = self.asleep(t_s)
        walking = 0.0 <= t_s - self._walk_start < self._walk_len
        if not walking and _hit(self.BATHROOM_PER_S if asleep else self._walk_rate(t_s), dt,
                                u[0]):
            if asleep:  # a couple of minutes to the bathroom and back
                self._walk_start, self._walk_len = t_s, 60.0 + 120.0 * u[1]
                self._walk_hr = 8.0 + 8.0 * u[2]
            else:
                self._walk_start, self._walk_len = t_s, 180.0 + 720.0 * u[1]
                self._walk_hr = 15.0 + 15.0 * u[2]
            walking = True
        sleeping = asleep and not walking
        target = self._hr_rest + (self._walk_hr if walking else 0.0)
        target -= self._sleep_dip if sleeping else 0.0
        settle = self.HR_SLEEP_SETTLE_S if asleep and not walking else self.HR_SETTLE_S
        self._hr += (target - self._hr) * -math.expm1(-dt / settle)
        hr_max = WEARABLE_HR_WALK_MAX if walking else WEARABLE_HR_REST[1]
        hr_min = WEARABLE_HR_SLEEP_MIN if asleep else WEARABLE_HR_REST[0]
        hr = min(max(self._hr + 1.5 * n[0], hr_min), hr_max)
        spo2 = min(max(self._spo2 + 0.6 * n[1], WEARABLE_SPO2_RANGE[0]), WEARABLE_SPO2_RANGE[1])
        if walking:
            accel = 1.15 + (WEARABLE_ACCEL_WALK_MAX - 1.15) * u[3]
            steps = round(self._cadence * dt * (0.8 + 0.4 * u[4]))
        elif sleeping:
            turning = _hit(self.TURN_PER_S, dt, u[6])
            accel = (1.1 + (WEARABLE_ACCEL_TURN_MAX - 1.1) * u[3] if turning
                     else min(1.05, 1.0 + abs(0.01 * n[2])))
            steps = 0
        else:
            accel = min(1.1, 1.0 + abs(0.03 * n[2]))
            steps = 1 + int(4 * u[4]) if u[5] < 0.05 else 0
        values = {
            "heart_rate": float(round(hr)),
            "spo2": float(round(spo2)),
            "accel_g": round(accel, 2),
            "steps": float(steps),
            "sos": 0.0,
        }
        return values, self._battery(t_s)


SIGNALS: Final[dict[str, type[SmokeSignal | ManholeSignal | WearableSignal]]] = {
    "smoke": SmokeSignal,
    "manhole": ManholeSignal,
    "wearable": WearableSignal,
}


def make_signal(kind: str, rng: np.random.Generator, day_start_s: float = 10 * HOUR_S) -> Signal:
    """The quiet signal of a device of `kind`; `day_start_s` is the time of day at t=0."""
    try:
        cls = SIGNALS[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(SIGNALS)})") from None
    return cls(rng, day_start_s)
