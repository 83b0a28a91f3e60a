"""Scripted, labelled incidents: what a device measures while something is really wrong.

An `Incident` overrides its device's quiet signal from `start_s` (inclusive) to `end_s`
(exclusive), seconds since the run start; outside that window the device is quiet (but for
the walk to a chair before a `wearable.inactivity`). The incidents of a run are its labels:
the alert type and grade a correct core should raise.

Every alert type of the contract has incidents; some come in variants (`Incident.variant`):

- `wearable.vitals`: "spo2" (the default; SpO2 falls to 82-84 %), "hr_high" (heart rate
  races to 155-170 bpm, a tachyarrhythmia), "hr_low" (heart rate falls to 30-33 bpm, a heart
  block). All three are critical.
- `device.fault` (minor), on the channel the core's default fault checks watch for the
  device's kind (`FORMS`):
  "impossible" (the default): a broken sensor reports values it cannot measure: a smoke
  detector's CO cell reads -40..-60 ppm, a manhole's ultrasonic level sensor its no-echo
  99.9 m, a wristband's oximeter its "no reading" code 127 %;
  "stuck": the value freezes at `level` (a smoke detector's temperature, a wristband's
  heart rate by default);
  either of these on another channel of the device (`Incident.on_channel`, `CHANNEL_FORMS`):
  every channel where a frozen value means a broken sensor can be stuck (manhole tilt, water
  and gas; smoke obscuration, temperature and CO; wristband SpO2 and heart rate), each
  frozen at a value inside its quiet range after the noise it showed before, for tens of
  minutes; and impossible values can land on a channel whose alarm rules they would trip
  (obscuration 400 %/m, gas 150 % LEL, heart rate 255): the label is `device.fault` alone,
  and an alarm on such a value is a false positive;
  "drift": a smoke detector's thermistor drifts upwards at `DRIFT_C_PER_H` until it is
  `level` °C off (only smoke temperature: a wristband's SpO2 drifting by the 4 points the
  drift check needs would cross the hypoxaemia threshold first).
- `wearable.inactivity` (major): no steps and the wrist still at about 1.0 g. The label
  starts when the stillness begins: the wearer's last steps (to a chair or bed) show in
  the readings of the `INACTIVITY_LEAD_S` before the start, the one effect outside its
  window, so the core counts the stillness from the last reading before the start (a quiet
  wearer may have sat still for a while already). The core can only raise it once it has
  counted `INACTIVITY_LIMIT_S` (3 h) of stillness inside its daytime window (08:00-21:00 at
  UTC+8): about 3 h after the start at the earliest (`inactivity_raised_by_s` says when).
- `device.offline`: the device sends nothing in the window (`Incident.silences`); its grade
  is the core's for the device's kind (`DEVICE_OFFLINE_GRADE`). The core calls a device
  offline after its timeout (`device_timeout_s`: five of its kind's slow-end intervals, or of
  its own if longer, with a restart and a batching allowance; about 5 minutes for a smoke
  detector or a manhole sensor, 2.5 for a wristband) of silence measured on its gateway's
  watermark (`device_offline_needs_s`).
- `gateway.offline` (major): the gateway's link is down in the window; its `device` and
  `gateway` are both the gateway id (what the core's alert carries as device). It changes no
  reading: the transport drops the link (`Fleet.gateway_outages`).

Constants copied from the core (which imports numba, the simulator must not) are checked
against it in tests/sim/test_sim_rules_agree.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Final

from sensing.wire import KINDS, Grade
from sensing_sim.signals import CORE_UTC_OFFSET_H, DAY_S, HOUR_S

Values = dict[str, float]

INCIDENT_TYPES: Final[dict[str, tuple[str | None, Grade]]] = {
    # type: (kind of device it happens on, None for any; expected grade)
    "smoke.fire": ("smoke", Grade.MAJOR),  # one detector; two nearby would confirm: critical
    "smoke.co": ("smoke", Grade.CRITICAL),
    "manhole.displaced": ("manhole", Grade.CRITICAL),
    "manhole.overflow": ("manhole", Grade.CRITICAL),
    "manhole.gas": ("manhole", Grade.CRITICAL),
    "wearable.vitals": ("wearable", Grade.CRITICAL),
    "wearable.sos": ("wearable", Grade.CRITICAL),
    "wearable.fall": ("wearable", Grade.CRITICAL),
    "wearable.inactivity": ("wearable", Grade.MAJOR),
    "device.battery": (None, Grade.MAJOR),
    "device.fault": (None, Grade.MINOR),
    "device.offline": (None, Grade.MAJOR),  # by the device's kind: DEVICE_OFFLINE_GRADE
    "gateway.offline": (None, Grade.MAJOR),  # on a gateway, not a device
}

VARIANTS: Final[dict[str, tuple[str, ...]]] = {
    # type: its variants, the default first; types not named have one, ""
    "wearable.vitals": ("spo2", "hr_high", "hr_low"),
    "device.fault": ("impossible", "stuck", "drift"),
}


@dataclass(frozen=True, slots=True)
class Form:
    """What an incident type (and variant) does on one kind of device."""

    channel: str
    """the channel its level is measured on ("battery": the reading's battery field; "": no
    channel, the incident silences the device or its gateway)"""
    levels: tuple[float, float]
    """range of the incident's level (its peak, plateau or value), in the channel's unit;
    beyond the threshold of its expected grade in the core's default rules and checks"""
    length_s: float
    """typical length: enough for the core to raise the alert at its grade, sampling every
    10 s or faster (`device_offline_needs_s` for the offline one)"""


ANY: Final = ""
"""the kind key of a form that is the same on every kind of device"""

FORMS: Final[Mapping[tuple[str, str], Mapping[str, Form]]] = {
    # (type, variant): kind (ANY: every kind) -> form
    ("smoke.fire", ""): {"smoke": Form("obscuration", (21.0, 25.0), 60.0)},  # dense: 20+ %/m
    ("smoke.co", ""): {"smoke": Form("co_ppm", (350.0, 500.0), 60.0)},
    ("manhole.displaced", ""): {"manhole": Form("tilt_deg", (35.0, 60.0), 30.0)},
    ("manhole.overflow", ""): {"manhole": Form("water_m", (0.1, 0.1), 60.0)},  # below cover
    ("manhole.gas", ""): {"manhole": Form("gas_lel", (30.0, 40.0), 40.0)},
    # severe hypoxaemia: under 85 %
    ("wearable.vitals", "spo2"): {"wearable": Form("spo2", (82.0, 84.0), 40.0)},
    ("wearable.vitals", "hr_high"): {"wearable": Form("heart_rate", (155.0, 170.0), 60.0)},
    ("wearable.vitals", "hr_low"): {"wearable": Form("heart_rate", (30.0, 33.0), 60.0)},
    ("wearable.sos", ""): {"wearable": Form("sos", (1.0, 1.0), 10.0)},
    # accel_g of the impact (a fall from standing: 3-6 g)
    ("wearable.fall", ""): {"wearable": Form("accel_g", (3.0, 4.5), 40.0)},
    ("wearable.inactivity", ""): {"wearable": Form("steps", (0.0, 0.0), 3.5 * HOUR_S)},
    ("device.battery", ""): {ANY: Form("battery", (0.03, 0.03), 30.0)},
    ("device.fault", "impossible"): {
        "smoke": Form("co_ppm", (-60.0, -40.0), 60.0),
        "manhole": Form("water_m", (99.9, 99.9), 60.0),
        "wearable": Form("spo2", (127.0, 127.0), 60.0),
    },
    ("device.fault", "stuck"): {
        "smoke": Form("temp_c", (20.5, 22.5), 6.5 * HOUR_S),
        "wearable": Form("heart_rate", (66.0, 78.0), 45 * 60.0),
    },
    ("device.fault", "drift"): {"smoke": Form("temp_c", (8.0, 12.0), 16 * HOUR_S)},
    ("device.offline", ""): {ANY: Form("", (0.0, 0.0), 360.0)},
    ("gateway.offline", ""): {ANY: Form("", (0.0, 0.0), 120.0)},
}

STUCK_S: Final = 45 * 60.0
"""how long a stuck sensor stays frozen by default: tens of minutes, longer than a
maintenance technician would let a frozen reading pass (the core's stuck checks: about
30 min and a count of readings)"""

CHANNEL_FORMS: Final[Mapping[tuple[str, str], Mapping[tuple[str, str], Form]]] = {
    # (type, variant): (kind, channel) -> form, for an incident on a channel of its own
    # (`Incident.on_channel`); the forms of FORMS are among them
    ("device.fault", "stuck"): {
        # frozen at a value inside the channel's quiet range, off its resting floor (a gas
        # head at 0 % LEL in clean air, a CO cell at 0 ppm may sit still for days)
        ("smoke", "obscuration"): Form("obscuration", (0.06, 0.1), STUCK_S),
        ("smoke", "temp_c"): FORMS[("device.fault", "stuck")]["smoke"],
        ("smoke", "co_ppm"): Form("co_ppm", (1.0, 2.0), STUCK_S),
        ("manhole", "tilt_deg"): Form("tilt_deg", (0.2, 0.5), STUCK_S),
        ("manhole", "water_m"): Form("water_m", (1.9, 2.6), STUCK_S),
        ("manhole", "gas_lel"): Form("gas_lel", (0.3, 0.6), STUCK_S),
        ("wearable", "spo2"): Form("spo2", (96.0, 96.0), STUCK_S),  # whole %
        ("wearable", "heart_rate"): FORMS[("device.fault", "stuck")]["wearable"],
    },
    ("device.fault", "impossible"): {
        # what broken sensors and firmware report, beyond what the sensor can measure; the
        # first four would trip an alarm rule of their channel if taken for measurements
        ("smoke", "obscuration"): Form("obscuration", (400.0, 400.0), 60.0),  # %/m
        ("smoke", "temp_c"): Form("temp_c", (200.0, 200.0), 60.0),  # the unit melts first
        ("manhole", "gas_lel"): Form("gas_lel", (150.0, 150.0), 60.0),  # LEL scale is 0-100
        ("wearable", "heart_rate"): Form("heart_rate", (255.0, 255.0), 60.0),  # 0xFF: none
        ("smoke", "co_ppm"): FORMS[("device.fault", "impossible")]["smoke"],
        ("manhole", "tilt_deg"): Form("tilt_deg", (250.0, 250.0), 60.0),  # upside down: 180
        ("manhole", "water_m"): FORMS[("device.fault", "impossible")]["manhole"],
        ("wearable", "spo2"): FORMS[("device.fault", "impossible")]["wearable"],
    },
}

# -- what the simulator copies from the core (checked in tests/sim/test_sim_rules_agree.py) --

DEVICE_OFFLINE_GRADE: Final[dict[str, Grade]] = {
    "smoke": Grade.MAJOR, "manhole": Grade.MINOR, "wearable": Grade.MAJOR}
"""`sensing.pipeline.OFFLINE_GRADE`"""
OFFLINE_MIN_TIMEOUT_S: Final = 60.0
OFFLINE_FACTOR: Final = 5.0
OFFLINE_LATENESS_S: Final = 5.0
OFFLINE_IDLE_S: Final = 10.0
OFFLINE_RESTART_S: Final = 100.0
OFFLINE_BATCH_DELAY_S: Final = 10.0
OFFLINE_INTERVALS_S: Final[dict[str, float]] = {"smoke": 60.0, "manhole": 60.0, "wearable": 30.0}
"""`sensing.detect.offline.OfflinePolicy`: min_timeout_s, factor, lateness_s, idle_s,
restart_s, batch_delay_s, intervals_s (`DEFAULT_INTERVALS_S`)"""
INACTIVITY_LIMIT_S: Final = 3 * HOUR_S
INACTIVITY_DAY_H: Final = (8.0, 21.0)
"""`sensing.detect.inactivity.InactivityParams`: limit_s, (day_start_h, day_end_h); its
utc_offset_h is `signals.CORE_UTC_OFFSET_H`"""
DRIFT_WARMUP_S: Final = DAY_S
"""`sensing.detect.fault.DriftParams.warmup_s`: a drift incident starts at least this long
after its device's first reading, or the check has no baseline to see it against"""

# -- effects -----------------------------------------------------------------------------------

FIRE_TEMP_RISE_C_PER_MIN: Final = 15.0
FIRE_TEMP_MAX_C: Final = 95.0
FIRE_RAMP_S: Final = 30.0
FIRE_WOBBLE: Final = 0.03
"""once built up, fire smoke wavers by this fraction of the level"""
GAS_RAMP_S: Final = 20.0
CO_RAMP_S: Final = 10.0
OVERFLOW_RAMP_S: Final = 30.0
VITALS_RAMP_S: Final = 10.0
HR_RAMP_S: Final = 5.0
"""tachy- and bradyarrhythmias set in within a few beats"""
HR_WOBBLE: Final = (2.0, 1.0)
"""bpm either side of the level (hr_high, hr_low): a racing or failing heart is not flat"""
FALL_IMPACT_S: Final = 10.0
"""the readings of the first seconds carry the impact's peak (accel_g is the peak since the
previous reading: every device sampling at least every 10 s shows it), then the wearer lies
still"""
FALL_STILL_G: Final = 1.0
INACTIVITY_LEAD_S: Final = 60.0
"""the wearer walks to a chair or bed in the last minute before the stillness: steps in
every reading of it (devices sampling at least every minute show them)"""
STILL_WOBBLE_G: Final = 0.02
"""a still wrist (lying after a fall, inactive) reads 1.0 g up to this much more"""
DRIFT_C_PER_H: Final = 1.0
"""how fast a drifting thermistor walks off (°C per hour), up to the incident's level"""

# Derived, for the default variant of each type where its form does not depend on the kind
# of device (device.fault's default depends on it: see FORMS).


def _default_forms() -> dict[str, Form]:
    out = {}
    for type_ in INCIDENT_TYPES:
        forms = list(FORMS[(type_, VARIANTS.get(type_, ("",))[0])].values())
        if len(forms) == 1:
            out[type_] = forms[0]
    return out


_DEFAULT_FORMS: Final = _default_forms()
LEVEL_RANGES: Final[dict[str, tuple[float, float]]] = {
    t: f.levels for t, f in _DEFAULT_FORMS.items()}
INCIDENT_CHANNEL: Final[dict[str, str]] = {t: f.channel for t, f in _DEFAULT_FORMS.items()}
TYPICAL_LENGTH_S: Final[dict[str, float]] = {
    t: max(f.length_s for (t2, v), fs in FORMS.items() if t2 == t
           and v == VARIANTS.get(t, ("",))[0] for f in fs.values())
    for t in INCIDENT_TYPES}
"""of the default variant (the longest over kinds of device)"""


def default_variant(type_: str) -> str:
    return VARIANTS.get(type_, ("",))[0]


def kinds_of(type_: str, variant: str = "", channel: str = "") -> tuple[str, ...]:
    """Kinds of device an incident of this type and variant (on `channel`, if given) can
    happen on."""
    variant = variant or default_variant(type_)
    if channel:
        on = CHANNEL_FORMS.get((type_, variant), {})
        return tuple(k for k in KINDS if (k, channel) in on)
    forms = FORMS[(type_, variant)]
    return KINDS if ANY in forms else tuple(k for k in KINDS if k in forms)


def channels_of(type_: str, variant: str = "") -> tuple[tuple[str, str], ...]:
    """(kind, channel) an incident of this type and variant can be put on with
    `Incident.on_channel`; empty if it has no channel of its own to choose."""
    return tuple(CHANNEL_FORMS.get((type_, variant or default_variant(type_)), {}))


def form_of(type_: str, variant: str = "", kind: str | None = None,
            channel: str = "") -> Form | None:
    """The form on `kind` (and `channel`, if given: `CHANNEL_FORMS`); with kind None, the
    form if it is the same on every kind."""
    if channel:
        if kind is None:
            return None
        return CHANNEL_FORMS.get((type_, variant or default_variant(type_)), {}).get(
            (kind, channel))
    forms = FORMS[(type_, variant or default_variant(type_))]
    if ANY in forms:
        return forms[ANY]
    if kind is None:
        return next(iter(forms.values())) if len(forms) == 1 else None
    return forms.get(kind)


def device_timeout_s(kind: str | None, interval_s: float) -> float:
    """How long the core lets a device of `kind` sampling every `interval_s` stay silent
    (`sensing.kernels.offline.device_timeout`): five of its cadence (its own interval or its
    kind's slow-end one, the longer), at least a restart's silence plus a cadence and at
    least a minute, plus a gateway's batching delay. Kind None: the longest over kinds."""
    if kind is None:
        return max(device_timeout_s(k, interval_s) for k in OFFLINE_INTERVALS_S)
    cadence = max(interval_s, OFFLINE_INTERVALS_S.get(kind, OFFLINE_MIN_TIMEOUT_S))
    return max(OFFLINE_MIN_TIMEOUT_S, OFFLINE_FACTOR * cadence,
               OFFLINE_RESTART_S + cadence) + OFFLINE_BATCH_DELAY_S


def device_offline_needs_s(interval_s: float, kind: str | None = None) -> float:
    """How long a device sampling every `interval_s` must stay silent for the core to call it
    offline: its timeout (from its last reading, at most an interval before the silence),
    the watermark's lateness, the idle time after which a gateway's watermark follows the
    clock (when the device is alone under its gateway), and an interval to spare."""
    return (device_timeout_s(kind, interval_s) + OFFLINE_LATENESS_S + OFFLINE_IDLE_S
            + interval_s)


def inactivity_raised_by_s(run_start_ms: int, start_s: float, interval_s: float = 0.0,
                           limit_s: float = INACTIVITY_LIMIT_S) -> float:
    """When (seconds since the run start) the core's inactivity check has counted `limit_s`
    of stillness that began at `start_s`, plus one reading interval: it counts only in its
    local daytime window, from the later of the stillness' start and the day's start, and
    raises at a daytime reading; stillness reaching the day's end before `limit_s` is
    counted again from the next morning."""
    day_start, day_end = (h * HOUR_S for h in INACTIVITY_DAY_H)
    t = start_s
    for _ in range(3):
        tod = (run_start_ms / 1000.0 + t + CORE_UTC_OFFSET_H * HOUR_S) % DAY_S
        if tod < day_start:
            t += day_start - tod
            tod = day_start
        elif tod >= day_end:
            t += DAY_S - tod + day_start
            tod = day_start
        if tod + limit_s + interval_s < day_end:
            return t + limit_s + interval_s
        t += DAY_S - tod + day_start
    raise ValueError(f"{limit_s} s of stillness never fits the core's daytime window")


def _channels_hint(type_: str, variant: str) -> str:
    channels = sorted({c for _, c in channels_of(type_, variant)})
    return f" (one of {', '.join(channels)})" if channels else " (it has no channel to choose)"


def _ramp(start: float, end: float, elapsed_s: float, ramp_s: float) -> float:
    return end if ramp_s <= 0 else start + (end - start) * min(1.0, elapsed_s / ramp_s)


@dataclass(frozen=True, slots=True)
class Incident:
    """One labelled incident on one device (or, for `gateway.offline`, one gateway)."""

    type: str
    device: str
    gateway: str
    area: str
    start_s: float
    end_s: float
    grade: Grade
    """the grade a correct core raises the alert with"""
    level: float
    """peak, plateau or value of the incident's channel (see FORMS); NaN when it depends on
    the device's kind and that is not known yet (`Fleet.add_incident` fills it in)"""
    variant: str = ""
    """see VARIANTS; "" is the type's default, and is replaced by its name"""
    device_kind: str | None = None
    """the kind of the device it happens on; None until known (`for_kind`)"""
    on_channel: str = ""
    """the channel it is on when it is not its form's (`CHANNEL_FORMS`: a device.fault on
    any channel of the device); "" for the form's own"""
    stays_open: bool = False
    """the alert must stay open from its raise to the incident's end (`end_s`): readings
    that arrive late with ordinary values (a gateway's backlog) inside the incident must not
    resolve it; the score counts an alert resolved before the end as resolved early"""

    def __post_init__(self) -> None:
        if self.type not in INCIDENT_TYPES:
            raise ValueError(f"unknown incident type {self.type!r}")
        variants = VARIANTS.get(self.type, ("",))
        if not self.variant:
            object.__setattr__(self, "variant", variants[0])
        elif self.variant not in variants:
            raise ValueError(f"{self.type} has no variant {self.variant!r}"
                             + (f" (one of {', '.join(variants)})" if variants[0] else ""))
        if not 0.0 <= self.start_s < self.end_s:
            raise ValueError(f"incident window [{self.start_s}, {self.end_s}) is empty")
        if self.on_channel and not self.kinds:
            raise ValueError(f"{self.label} cannot be put on channel {self.on_channel!r}"
                             + _channels_hint(self.type, self.variant))
        if self.device_kind is not None and self.device_kind not in self.kinds:
            on = f" on {self.on_channel}" if self.on_channel else ""
            raise ValueError(f"{self.label}{on} cannot happen on a {self.device_kind} device"
                             + (_channels_hint(self.type, self.variant)
                                if self.on_channel else ""))
        if math.isnan(self.level) and form_of(self.type, self.variant, self.device_kind,
                                              self.on_channel) is not None:
            raise ValueError("level must be a number")

    @classmethod
    def of(
        cls, type: str, device: str, gateway: str, area: str, start_s: float,
        end_s: float | None = None, level: float | None = None, *, variant: str = "",
        kind: str | None = None, channel: str = "", stays_open: bool = False,
    ) -> Incident:
        """An incident with its type's expected grade, typical length and mid-range level.

        `kind`, the kind of the device, settles what depends on it (device.offline's grade,
        device.fault's channel and level); `Fleet.add_incident` settles it when not given.
        `channel`: on that channel of the device instead of the form's (`CHANNEL_FORMS`).
        """
        if type not in INCIDENT_TYPES:
            raise ValueError(f"unknown incident type {type!r} (one of {', '.join(INCIDENT_TYPES)})")
        variant = variant or default_variant(type)
        if (type, variant) not in FORMS:
            raise ValueError(f"{type} has no variant {variant!r}")
        if channel and not kinds_of(type, variant, channel):
            raise ValueError(f"{type} ({variant}) cannot be put on channel {channel!r}"
                             + _channels_hint(type, variant))
        kind = kind or INCIDENT_TYPES[type][0]
        if kind is None and channel and len(kinds_of(type, variant, channel)) == 1:
            kind = kinds_of(type, variant, channel)[0]
        form = form_of(type, variant, kind, channel)
        if kind is not None and form is None:
            on = f" on {channel}" if channel else ""
            raise ValueError(f"{type} ({variant}){on} cannot happen on a {kind} device")
        if form is None:
            length = max(f.length_s for f in FORMS[(type, variant)].values())
            mid = math.nan
        else:
            length, mid = form.length_s, round(sum(form.levels) / 2, 6)
        grade = INCIDENT_TYPES[type][1]
        if type == "device.offline" and kind is not None:
            grade = DEVICE_OFFLINE_GRADE.get(kind, grade)
        return cls(
            type=type, device=device, gateway=gateway, area=area, start_s=start_s,
            end_s=start_s + length if end_s is None else end_s, grade=grade,
            level=mid if level is None else level, variant=variant, device_kind=kind,
            on_channel=channel, stays_open=stays_open,
        )

    def for_kind(self, kind: str) -> Incident:
        """This incident on a device of `kind`: fills in `device_kind`, a level left to the
        kind (NaN) and device.offline's grade (the core's for the kind, unless another grade
        than the default was set)."""
        if kind not in self.kinds:
            raise ValueError(f"{self.label} cannot happen on a {kind} device")
        if self.device_kind == kind:
            return self
        if self.device_kind is not None:
            raise ValueError(f"{self.label} is on a {self.device_kind} device, not {kind}")
        form = form_of(self.type, self.variant, kind, self.on_channel)
        assert form is not None
        level = round(sum(form.levels) / 2, 6) if math.isnan(self.level) else self.level
        grade = self.grade
        if self.type == "device.offline" and grade == INCIDENT_TYPES[self.type][1]:
            grade = DEVICE_OFFLINE_GRADE.get(kind, grade)
        return replace(self, device_kind=kind, level=level, grade=grade)

    @property
    def label(self) -> str:
        """The type, with the variant if the type has variants."""
        return f"{self.type} ({self.variant})" if self.variant else self.type

    @property
    def kind(self) -> str | None:
        """Kind of device the incident type happens on; None if any."""
        return INCIDENT_TYPES[self.type][0]

    @property
    def kinds(self) -> tuple[str, ...]:
        """Kinds of device this incident (its type, variant and channel) can happen on."""
        return kinds_of(self.type, self.variant, self.on_channel)

    @property
    def form(self) -> Form:
        form = form_of(self.type, self.variant, self.device_kind, self.on_channel)
        if form is None:
            raise ValueError(f"{self.label} on {self.device}: the kind of device is not known")
        return form

    @property
    def channel(self) -> str:
        """The channel its level is measured on (see `Form.channel`)."""
        return self.form.channel

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s

    @property
    def effect_start_s(self) -> float:
        """When it starts to change the device's readings: its start, but for the walk to
        a chair before a `wearable.inactivity` (`INACTIVITY_LEAD_S`)."""
        if self.type == "wearable.inactivity":
            return max(0.0, self.start_s - INACTIVITY_LEAD_S)
        return self.start_s

    def silences(self, t_s: float) -> bool:
        """Whether the device sends nothing at `t_s` (a `device.offline` incident's window)."""
        return self.type == "device.offline" and self.start_s <= t_s < self.end_s

    def apply(self, t_s: float, values: Values, battery: float,
              since_s: float | None = None) -> tuple[Values, float]:
        """The device's reading at `t_s` with this incident, from its quiet reading;
        `since_s`: the time of the device's previous reading, if any."""
        if not self.effect_start_s <= t_s < self.end_s:
            return values, battery
        elapsed = t_s - self.start_s
        if self.type == "wearable.fall" and since_s is not None and since_s < self.start_s:
            # accel_g is the peak since the previous reading: the first reading after the
            # impact carries it, however long the device's interval
            elapsed = 0.0
        return _EFFECTS[self.type](self, elapsed, dict(values), battery)

    def to_dict(self, run_start_ms: int | None = None) -> dict[str, object]:
        """JSON-ready label; with `run_start_ms`, also the window as `ts_start`/`ts_end` (ms)."""
        out: dict[str, object] = asdict(self)
        out["grade"] = self.grade.value
        if run_start_ms is not None:
            out["ts_start"] = run_start_ms + round(self.start_s * 1000)
            out["ts_end"] = run_start_ms + round(self.end_s * 1000)
        return out


Effect = Callable[[Incident, float, Values, float], tuple[Values, float]]


def _fire(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    wobble = FIRE_WOBBLE * inc.level * math.sin(e / 3.0)
    v["obscuration"] = round(_ramp(v.get("obscuration", 0.0), inc.level, e, FIRE_RAMP_S)
                             + (wobble if e >= FIRE_RAMP_S else 0.0), 2)
    temp = v.get("temp_c", 21.0) + FIRE_TEMP_RISE_C_PER_MIN * e / 60.0
    v["temp_c"] = round(min(temp, FIRE_TEMP_MAX_C), 1)
    v["co_ppm"] = round(v.get("co_ppm", 0.0) + min(25.0, 0.5 * e), 1)
    return v, battery


def _co(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    v["co_ppm"] = round(_ramp(v.get("co_ppm", 0.0), inc.level, e, CO_RAMP_S), 1)
    return v, battery


def _displaced(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    v["tilt_deg"] = round(inc.level + 0.5 * math.sin(e), 2)
    return v, battery


def _overflow(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    v["water_m"] = round(_ramp(v.get("water_m", 2.0), inc.level, e, OVERFLOW_RAMP_S), 3)
    return v, battery


def _gas(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    v["gas_lel"] = round(_ramp(v.get("gas_lel", 0.0), inc.level, e, GAS_RAMP_S), 2)
    return v, battery


def _vitals(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    if inc.variant == "spo2":
        v["spo2"] = float(round(_ramp(v.get("spo2", 97.0), inc.level, e, VITALS_RAMP_S)))
        return v, battery
    wobble = HR_WOBBLE[0] if inc.variant == "hr_high" else HR_WOBBLE[1]
    hr = _ramp(v.get("heart_rate", 70.0), inc.level, e, HR_RAMP_S)
    if e >= HR_RAMP_S:
        hr += wobble * math.sin(e / 4.0)
    v["heart_rate"] = float(round(hr))
    return v, battery


def _fall(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    if e < FALL_IMPACT_S:
        v["accel_g"] = inc.level
    else:  # lying on the floor: gravity alone, a little wrist tremor, no steps
        v["accel_g"] = round(FALL_STILL_G + STILL_WOBBLE_G * math.sin(e), 2)
        v["steps"] = 0.0
    return v, battery


def _inactivity(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    if e < 0:  # walking to the chair or bed
        v["steps"] = max(v.get("steps", 0.0), 2.0)
        v["accel_g"] = max(v.get("accel_g", 1.0), 1.2)
        return v, battery
    # sitting or lying still: gravity alone at the wrist, no steps (heart rate as it was)
    v["accel_g"] = round(FALL_STILL_G + STILL_WOBBLE_G * abs(math.sin(e / 7.0)), 2)
    v["steps"] = 0.0
    return v, battery


def _sos(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    v["sos"] = inc.level
    return v, battery


def _battery(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    return v, inc.level


def _fault(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    channel = inc.channel
    if inc.variant == "drift":
        offset = min(inc.level, DRIFT_C_PER_H * e / HOUR_S)
        v[channel] = round(v.get(channel, 0.0) + offset, 2)
    else:  # impossible, stuck: the channel reports the level, whatever it measures
        v[channel] = inc.level
    return v, battery


def _unchanged(inc: Incident, e: float, v: Values, battery: float) -> tuple[Values, float]:
    # device.offline: the device sends nothing (see `silences`); gateway.offline: the
    # transport drops the gateway's link
    return v, battery


_EFFECTS: Final[dict[str, Effect]] = {
    "smoke.fire": _fire,
    "smoke.co": _co,
    "manhole.displaced": _displaced,
    "manhole.overflow": _overflow,
    "manhole.gas": _gas,
    "wearable.vitals": _vitals,
    "wearable.sos": _sos,
    "wearable.fall": _fall,
    "wearable.inactivity": _inactivity,
    "device.battery": _battery,
    "device.fault": _fault,
    "device.offline": _unchanged,
    "gateway.offline": _unchanged,
}
