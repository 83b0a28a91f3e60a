"""The benchmark's fleet and its payloads, built before any timing starts.

Devices 0 ..< n: kind d % 3 (smoke, manhole, wearable), gateway d // (n / gateways), ten gateways
to an area; every device always reports through its own gateway. A phase sends `n_readings`
readings round by round: round r holds one reading of every device (seq = seq_base + r,
ts = ts_base + r * round_ms + a few ms per device), gateway after gateway, each gateway's devices
cut into messages of the payload's size; the last round may stop part way. Values are quiet and
noisy at a sensor's resolution; alarms are wearables pressing SOS (sos = 1), which every
pipeline under test raises at once, their `ts` written at the moment they are sent.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from sensing.wire import binary, topics
from sensing.wire.batch import ReadingBatch
from sensing.wire.kinds import KIND_CHANNELS, KINDS
from sensing.wire.limits import MAX_DEVICES, MAX_DEVICES_PER_GATEWAY
from sensing.wire.snb1 import HEADER, VERSION

ROUND_MS = 60_000
"""event time between two readings of a device: a report a minute"""
GATEWAYS_PER_AREA = 10
ALARM_TS_PLACEHOLDER = 9_999_999_999_999
"""an alarm's ts until it is sent (13 digits, as every ts of this century)"""
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
    seq_base: int
    ts_base_ms: int
    alarms: int = 0
    round_ms: int = ROUND_MS

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
        """How many readings each device sends: seqs seq_base ..< seq_base + count."""
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
    alarm_ts_offset: int = -1
    """where the alarm's ts is in the payload (-1: no alarm): 13 ASCII digits in JSON, a
    little-endian int64 in SNB1"""
    alarm_device: str = ""
    alarm_binary: bool = False


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


def _columns(devs: npt.NDArray[np.int64], seq: int, ts0: int, rng: np.random.Generator,
             alarm_devices: set[int]) -> _Columns:
    kinds = (devs % 3).astype(np.int64)
    per = np.array([c.size for c in _KIND_CHANNELS])[kinds]
    value_row = np.repeat(np.arange(devs.size, dtype=np.int32), per)
    first = np.concatenate([[0], np.cumsum(per)[:-1]])
    slot = np.arange(value_row.size) - first[value_row]
    table = np.full((len(KINDS), 5), -1, dtype=np.int32)
    for k, chans in enumerate(_KIND_CHANNELS):
        table[k, : chans.size] = chans
    channel = table[kinds[value_row], slot]
    base, noise, step, floor = (_SIGNAL[channel, i] for i in range(4))
    level = np.maximum(base + noise * rng.standard_normal(value_row.size), floor)
    value = np.round(level / step) / np.round(1 / step)
    alarm_rows = sorted(int(i) for i in np.flatnonzero(np.isin(devs, list(alarm_devices))))
    if alarm_rows:
        value[np.isin(value_row, alarm_rows) & (channel == _SOS)] = 1.0
    battery = np.round(np.clip(0.9 + 0.03 * rng.standard_normal(devs.size), 0.3, 1.0),
                       2).astype(np.float64)
    return _Columns(
        dev=devs, seq=np.full(devs.size, seq, dtype=np.int64),
        ts=ts0 + (devs % 1000) * 7, battery=battery, value_row=value_row,
        value_channel=channel.astype(np.int32), value=value, alarm_rows=alarm_rows,
        names=[Fleet.name(d) for d in devs.tolist()])


def _json_readings(cols: _Columns, gateway: str, area: str) -> list[dict[str, object]]:
    values: list[dict[str, float]] = [{} for _ in range(cols.dev.size)]
    for row, c, v in zip(cols.value_row.tolist(), cols.value_channel.tolist(),
                         cols.value.tolist(), strict=True):
        values[row][CHANNELS[c]] = v
    out: list[dict[str, object]] = []
    for i, (d, seq, ts, battery) in enumerate(zip(cols.dev.tolist(), cols.seq.tolist(),
                                                  cols.ts.tolist(), cols.battery.tolist(),
                                                  strict=True)):
        out.append({"device": cols.names[i], "kind": KINDS[d % 3], "seq": seq, "epoch": 0,
                    "ts": ts, "values": values[i], "battery": battery, "gateway": gateway,
                    "area": area})
    for i in cols.alarm_rows:
        out[i]["ts"] = ALARM_TS_PLACEHOLDER
    return out


def _snb1(cols: _Columns) -> bytes:
    ts = cols.ts.copy()
    ts[cols.alarm_rows] = ALARM_TS_PLACEHOLDER
    batch = ReadingBatch(
        devices=tuple(cols.names), kinds=tuple(KINDS[d % 3] for d in cols.dev.tolist()),
        channels=CHANNELS, device=np.arange(cols.dev.size, dtype=np.int32),
        epoch=np.zeros(cols.dev.size, dtype=np.int64), seq=cols.seq, ts=ts,
        battery=cols.battery, value_row=cols.value_row, value_channel=cols.value_channel,
        value=cols.value)
    return binary.encode(batch, version=VERSION)


def _snb1_message(cols: _Columns, topic: bytes) -> Message:
    raw = _snb1(cols)
    if not cols.alarm_rows:
        return Message(topic, raw, cols.dev.size)
    row = cols.alarm_rows[0]
    offset = HEADER.size + HEADER.unpack_from(raw)[-1] + 8 * row
    assert struct.unpack_from("<q", raw, offset)[0] == ALARM_TS_PLACEHOLDER
    return Message(topic, raw, cols.dev.size, offset, cols.names[row], alarm_binary=True)


def _json_message(readings: list[dict[str, object]], single: bool, topic: bytes) -> Message:
    raw = orjson.dumps(readings[0] if single else readings)
    marker = b'"ts":%d' % ALARM_TS_PLACEHOLDER
    at = raw.find(marker)
    if at < 0:
        return Message(topic, raw, len(readings))
    device = next(str(r["device"]) for r in readings if r["ts"] == ALARM_TS_PLACEHOLDER)
    return Message(topic, raw, len(readings), at + len(b'"ts":'), device)


def messages(phase: Phase, gateways: list[int]) -> Iterator[Message]:
    """The phase's messages of `gateways`, in sending order (round by round)."""
    fleet, per_msg = phase.fleet, PER_MESSAGE[phase.payload]
    counts = phase.readings_per_device()
    alarm_rounds: dict[int, set[int]] = {}
    for r, d in phase.alarm_positions():
        alarm_rounds.setdefault(r, set()).add(d)
    for r in range(phase.rounds):
        for g in gateways:
            lo = g * fleet.per_gateway
            in_round = np.arange(lo, lo + fleet.per_gateway, dtype=np.int64)
            in_round = in_round[counts[in_round] > r]
            if not in_round.size:
                continue
            rng = np.random.default_rng([g, phase.seq_base + r])
            cols = _columns(in_round, phase.seq_base + r,
                            phase.ts_base_ms + r * phase.round_ms, rng,
                            alarm_rounds.get(r, set()))
            topic = fleet.topic(g)
            if phase.payload == "snb":
                for start in range(0, in_round.size, per_msg):
                    yield _snb1_message(cols.rows(start, start + per_msg), topic)
                continue
            readings = _json_readings(cols, fleet.gateway_name(g), fleet.area_name(g))
            for start in range(0, len(readings), per_msg):
                yield _json_message(readings[start : start + per_msg], per_msg == 1, topic)


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
            in_round = np.arange(lo, lo + fleet.per_gateway, dtype=np.int64)
            in_round = in_round[counts[in_round] > r]
            if not in_round.size:
                continue
            cols = _columns(in_round, phase.seq_base + r, phase.ts_base_ms + r * phase.round_ms,
                            np.random.default_rng([g, phase.seq_base + r]), set())
            tags = f"area={fleet.area_name(g)},gateway={fleet.gateway_name(g)}"
            fields: list[list[str]] = [[] for _ in range(in_round.size)]
            for row, c, v in zip(cols.value_row.tolist(), cols.value_channel.tolist(),
                                 cols.value.tolist(), strict=True):
                fields[row].append(f"{CHANNELS[c]}={v!r}")
            for i, (d, seq, ts, battery) in enumerate(zip(
                    in_round.tolist(), cols.seq.tolist(), cols.ts.tolist(),
                    cols.battery.tolist(), strict=True)):
                lines.append(
                    f"reading,{tags},device={cols.names[i]},kind={KINDS[d % 3]} "
                    f"{','.join(fields[i])},battery={battery!r},seq={seq}i,epoch=0i {ts}"
                    .encode())
    return [b"\n".join(lines[i : i + lines_per_body])
            for i in range(0, len(lines), lines_per_body)]
