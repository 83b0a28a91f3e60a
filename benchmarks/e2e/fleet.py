"""The benchmark's fleet and its payloads, built before any timing starts.

Devices 0 ..< n: kind d % 3 (smoke, manhole, wearable), gateway d // (n / gateways), ten gateways
to an area; every device always reports through its own gateway. Readings follow one timeline,
a replay of the fleet faster than real time: in round k every device reports once, with
seq = k and ts = t0 + k * ROUND_MS + its place among its gateway's devices (so each gateway's
event time only moves forward). A phase sends `n_readings` readings from round `first_round`
on; within a round the gateways take turns message by message, as gateways sending at once
would; the last round may stop part way. Values are quiet and noisy at a sensor's resolution;
alarms are wearables pressing SOS (sos = 1), which every pipeline under test raises at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from sensing.wire import binary, topics
from sensing.wire.batch import ReadingBatch
from sensing.wire.kinds import KIND_CHANNELS, KINDS
from sensing.wire.limits import MAX_DEVICES, MAX_DEVICES_PER_GATEWAY
from sensing.wire.snb1 import VERSION

ROUND_MS = 20_000
"""event time between two readings of a device. A device heard once is called offline by the
core after a minute of event time without a word, so two rounds and the spread within one must
fit in a minute"""
GATEWAYS_PER_AREA = 10
ALARM_KIND = "wearable"
ALARM_CHANNEL = "sos"

PER_MESSAGE = {"single": 1, "array": 100, "snb": 1000}
"""readings per message of each payload"""
PAYLOADS = tuple(PER_MESSAGE)

CHANNELS: tuple[str, ...] = tuple(c for k in KINDS for c in KIND_CHANNELS[k])
# quiet level, noise, resolution and floor of each channel, in CHANNELS' order
_SIGNAL = np.array([
    (0.15, 0.03, 0.01, 0.0),  # obscuration %/m (far below any alarm)
    (22.0, 0.5, 0.1, -40.0),  # temp_c
    (2.0, 1.0, 1.0, 0.0),  # co_ppm
    (0.5, 0.3, 0.1, 0.0),  # tilt_deg
    (2.0, 0.05, 0.01, 0.0),  # water_m
    (0.5, 0.3, 0.1, 0.0),  # gas_lel
    (72.0, 6.0, 1.0, 30.0),  # heart_rate
    (97.0, 1.0, 1.0, 0.0),  # spo2
    (1.0, 0.2, 0.01, 0.0),  # accel_g
    (5.0, 4.0, 1.0, 0.0),  # steps
    (0.0, 0.0, 1.0, 0.0),  # sos
])
_KIND_CHANNELS = [np.array([CHANNELS.index(c) for c in KIND_CHANNELS[k]], dtype=np.int32)
                  for k in KINDS]
_SOS = CHANNELS.index(ALARM_CHANNEL)
_WEARABLE = KINDS.index(ALARM_KIND)


class FleetError(ValueError):
    """A fleet or phase the benchmark cannot build, with the reason."""


@dataclass(frozen=True, slots=True)
class Fleet:
    devices: int
    gateways: int

    def __post_init__(self) -> None:
        if not 3 <= self.devices <= MAX_DEVICES:
            raise FleetError(f"devices must be 3 ..= {MAX_DEVICES:,}, not {self.devices:,}")
        if not 1 <= self.gateways <= self.devices // 3 or self.devices % self.gateways:
            raise FleetError(f"{self.gateways:,} gateways cannot share {self.devices:,} devices "
                             "evenly, at least 3 each")
        if self.per_gateway > MAX_DEVICES_PER_GATEWAY:
            raise FleetError(f"at most {MAX_DEVICES_PER_GATEWAY:,} devices per gateway")

    @property
    def per_gateway(self) -> int:
        return self.devices // self.gateways

    @staticmethod
    def name(d: int) -> str:
        return f"{KINDS[d % 3]}-{d:06d}"

    @staticmethod
    def gateway_name(g: int) -> str:
        return f"gw-{g:04d}"

    @staticmethod
    def area_name(g: int) -> str:
        return f"area-{g // GATEWAYS_PER_AREA:03d}"

    def topic(self, g: int) -> bytes:
        return topics.readings_topic(self.area_name(g), self.gateway_name(g)).encode()


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase's readings: which devices, how many, numbered from where."""

    fleet: Fleet
    payload: str
    n_readings: int
    first_round: int
    t0_ms: int
    """the timeline's start: round k is at t0_ms + k * ROUND_MS"""
    alarms: int = 0

    def __post_init__(self) -> None:
        if self.payload not in PER_MESSAGE:
            raise FleetError(f"payload must be one of {', '.join(PAYLOADS)}")
        if self.n_readings < 1:
            raise FleetError("a phase needs at least one reading")
        if self.alarms < 0:
            raise FleetError("alarms cannot be negative")

    @property
    def rounds(self) -> int:
        return -(-self.n_readings // self.fleet.devices)

    def readings_per_device(self) -> npt.NDArray[np.int64]:
        """How many readings each device sends, in rounds first_round, first_round + 1, ..."""
        full, rest = divmod(self.n_readings, self.fleet.devices)
        out = np.full(self.fleet.devices, full, dtype=np.int64)
        out[:rest] += 1
        return out

    def alarm_positions(self) -> list[tuple[int, int]]:
        """(round, device) of each alarm: spread evenly over the phase, one per wearable and
        at most one per message (fewer than asked if the phase has too few)."""
        if not self.alarms:
            return []
        n, d_all = self.n_readings, self.fleet.devices
        used: set[int] = set()
        used_messages: set[tuple[int, int, int]] = set()
        out: list[tuple[int, int]] = []
        for k in range(self.alarms):
            i = (2 * k + 1) * n // (2 * self.alarms)
            r, d = divmod(i, d_all)
            d += (_WEARABLE - d % 3) % 3
            while d < d_all and (d in used or self._message_of(r, d) in used_messages):
                d += 3
            if d >= d_all or r * d_all + d >= n:
                continue
            used.add(d)
            used_messages.add(self._message_of(r, d))
            out.append((r, d))
        return out

    def _message_of(self, r: int, d: int) -> tuple[int, int, int]:
        per_gw = self.fleet.per_gateway
        return r, d // per_gw, (d % per_gw) // PER_MESSAGE[self.payload]

    def alarm_devices(self) -> set[int]:
        return {d for _, d in self.alarm_positions()}


@dataclass(slots=True)
class Message:
    topic: bytes
    payload: bytes
    readings: int
    alarm_device: str = ""
    """the device whose alarm the message carries, if any"""


@dataclass(slots=True)
class _Columns:
    """Readings of one gateway in one round; values grouped by reading, in reading order."""

    dev: npt.NDArray[np.int64]
    seq: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    battery: npt.NDArray[np.float64]
    value_row: npt.NDArray[np.int32]
    value_channel: npt.NDArray[np.int32]
    value: npt.NDArray[np.float64]
    alarm_rows: list[int]
    names: list[str]

    def rows(self, lo: int, hi: int) -> _Columns:
        a, b = np.searchsorted(self.value_row, [lo, hi])
        return _Columns(self.dev[lo:hi], self.seq[lo:hi], self.ts[lo:hi],
                        self.battery[lo:hi], self.value_row[a:b] - lo,
                        self.value_channel[a:b], self.value[a:b],
                        [r - lo for r in self.alarm_rows if lo <= r < hi], self.names[lo:hi])


def _columns(fleet: Fleet, devs: npt.NDArray[np.int64], k: int, t0_ms: int,
             alarm_devices: set[int]) -> _Columns:
    """Round k's readings of `devs` (devices of one gateway, ascending)."""
    rng = np.random.default_rng([int(devs[0]), k])
    kinds = (devs % 3).astype(np.int64)
    per = np.array([c.size for c in _KIND_CHANNELS])[kinds]
    value_row = np.repeat(np.arange(devs.size, dtype=np.int32), per)
    first = np.concatenate([[0], np.cumsum(per)[:-1]])
    slot = np.arange(value_row.size) - first[value_row]
    table = np.full((len(KINDS), 5), -1, dtype=np.int32)
    for kind, chans in enumerate(_KIND_CHANNELS):
        table[kind, : chans.size] = chans
    channel = table[kinds[value_row], slot]
    base, noise, step, floor = (_SIGNAL[channel, i] for i in range(4))
    level = np.maximum(base + noise * rng.standard_normal(value_row.size), floor)
    value = np.round(level / step) / np.round(1 / step)
    alarm_rows = sorted(int(i) for i in np.flatnonzero(np.isin(devs, list(alarm_devices))))
    if alarm_rows:
        value[np.isin(value_row, alarm_rows) & (channel == _SOS)] = 1.0
    battery = np.round(np.clip(0.9 + 0.03 * rng.standard_normal(devs.size), 0.3, 1.0),
                       2).astype(np.float64)
    # a gateway's devices report one after another over half a round
    spread = ROUND_MS // (2 * fleet.per_gateway)
    return _Columns(
        dev=devs, seq=np.full(devs.size, k, dtype=np.int64),
        ts=t0_ms + k * ROUND_MS + (devs % fleet.per_gateway) * spread, battery=battery,
        value_row=value_row, value_channel=channel.astype(np.int32), value=value,
        alarm_rows=alarm_rows, names=[Fleet.name(d) for d in devs.tolist()])


def _json_readings(cols: _Columns, gateway: str, area: str) -> list[dict[str, object]]:
    values: list[dict[str, float]] = [{} for _ in range(cols.dev.size)]
    for row, c, v in zip(cols.value_row.tolist(), cols.value_channel.tolist(),
                         cols.value.tolist(), strict=True):
        values[row][CHANNELS[c]] = v
    return [{"device": cols.names[i], "kind": KINDS[d % 3], "seq": seq, "epoch": 0, "ts": ts,
             "values": values[i], "battery": battery, "gateway": gateway, "area": area}
            for i, (d, seq, ts, battery) in enumerate(zip(
                cols.dev.tolist(), cols.seq.tolist(), cols.ts.tolist(), cols.battery.tolist(),
                strict=True))]


def _snb1(cols: _Columns, topic: bytes) -> Message:
    batch = ReadingBatch(
        devices=tuple(cols.names), kinds=tuple(KINDS[d % 3] for d in cols.dev.tolist()),
        channels=CHANNELS, device=np.arange(cols.dev.size, dtype=np.int32),
        epoch=np.zeros(cols.dev.size, dtype=np.int64), seq=cols.seq, ts=cols.ts,
        battery=cols.battery, value_row=cols.value_row, value_channel=cols.value_channel,
        value=cols.value)
    alarm = cols.names[cols.alarm_rows[0]] if cols.alarm_rows else ""
    return Message(topic, binary.encode(batch, version=VERSION), cols.dev.size, alarm)


def _gateway_messages(phase: Phase, g: int, r: int, counts: npt.NDArray[np.int64],
                      alarms: set[int]) -> list[Message]:
    """Gateway g's messages of the phase's round r."""
    fleet, per_msg = phase.fleet, PER_MESSAGE[phase.payload]
    lo = g * fleet.per_gateway
    devs = np.arange(lo, lo + fleet.per_gateway, dtype=np.int64)
    devs = devs[counts[devs] > r]
    if not devs.size:
        return []
    cols = _columns(fleet, devs, phase.first_round + r, phase.t0_ms, alarms)
    topic = fleet.topic(g)
    if phase.payload == "snb":
        return [_snb1(cols.rows(i, i + per_msg), topic) for i in range(0, devs.size, per_msg)]
    readings = _json_readings(cols, fleet.gateway_name(g), fleet.area_name(g))
    alarm_names = {cols.names[i] for i in cols.alarm_rows}
    out = []
    for i in range(0, len(readings), per_msg):
        part = readings[i : i + per_msg]
        alarm = next((str(x["device"]) for x in part if x["device"] in alarm_names), "")
        out.append(Message(topic, orjson.dumps(part[0] if per_msg == 1 else part), len(part),
                           alarm))
    return out


def messages(phase: Phase, gateways: list[int]) -> Iterator[Message]:
    """The phase's messages of `gateways`, in sending order: round by round, the gateways
    taking turns message by message."""
    counts = phase.readings_per_device()
    alarm_rounds: dict[int, set[int]] = {}
    for r, d in phase.alarm_positions():
        alarm_rounds.setdefault(r, set()).add(d)
    for r in range(phase.rounds):
        per_gateway = [_gateway_messages(phase, g, r, counts, alarm_rounds.get(r, set()))
                       for g in gateways]
        for turn in range(max((len(m) for m in per_gateway), default=0)):
            for msgs in per_gateway:
                if turn < len(msgs):
                    yield msgs[turn]


def line_protocol(phase: Phase, lines_per_body: int = 10_000) -> list[bytes]:
    """The phase's readings as the core writes them (measurement `reading`, tags area,
    gateway, device, kind; the channels, battery, seq and epoch; ms), in request bodies of
    `lines_per_body` lines: what the store is offered when nothing stands in between."""
    fleet = phase.fleet
    counts = phase.readings_per_device()
    lines: list[bytes] = []
    for r in range(phase.rounds):
        for g in range(fleet.gateways):
            lo = g * fleet.per_gateway
            devs = np.arange(lo, lo + fleet.per_gateway, dtype=np.int64)
            devs = devs[counts[devs] > r]
            if not devs.size:
                continue
            cols = _columns(fleet, devs, phase.first_round + r, phase.t0_ms, set())
            tags = f"area={fleet.area_name(g)},gateway={fleet.gateway_name(g)}"
            fields: list[list[str]] = [[] for _ in range(devs.size)]
            for row, c, v in zip(cols.value_row.tolist(), cols.value_channel.tolist(),
                                 cols.value.tolist(), strict=True):
                fields[row].append(f"{CHANNELS[c]}={v!r}")
            for i, (d, seq, ts, battery) in enumerate(zip(
                    devs.tolist(), cols.seq.tolist(), cols.ts.tolist(),
                    cols.battery.tolist(), strict=True)):
                lines.append(
                    f"reading,{tags},device={cols.names[i]},kind={KINDS[d % 3]} "
                    f"{','.join(fields[i])},battery={battery!r},seq={seq}i,epoch=0i {ts}"
                    .encode())
    return [b"\n".join(lines[i : i + lines_per_body])
            for i in range(0, len(lines), lines_per_body)]
