"""What reaches the broker from a simulated fleet, message by message, on a simulated clock.

Each gateway is simulated as its edge agent behaves: every poll it numbers its devices' due
samples `(device, epoch, seq)` and sends them as one SNB1 message; while its link is down (a
`gateway.offline` incident) its broker sees the last will `offline`, and the agent keeps
sampling into its buffer, then sends `online` and the backlog when the link is back. On top
of that, `TransportFaults` break delivery the way real networks and firmware do:

- duplicates: a share of the messages arrives twice (QoS 1 redelivery, a flaky gateway);
- late delivery: a share arrives up to `late_max_s` later than sent, so out of order;
- malformed messages: broken payloads of every kind in `sensing_sim.faults`;
- restarts: a gateway's agent restarts, its devices continue under a new epoch, seqs from 0
  (with `down_s`, samples due while it is down are lost, as on a real gateway);
- clock skew: a gateway stamps its readings with a clock that is `skew_s` off.

And the fleet's own field cases (`sensing_sim.cases`): a device that reboots is silent, then
numbers its readings under a new epoch from seq 0; a device's late readings wait in a
backlog and reach the broker after newer ones; a gateway with a cadence's `batch_s` forwards
what it heard once every `batch_s`.

`FleetStream` is the one source of messages for the offline run, for recordings and (through
recordings) for replays; the same fleet, faults and seed give the same messages.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import orjson

from sensing.wire import snb1
from sensing.wire.topics import readings_topic, status_topic
from sensing_edge.drivers import SensorSample
from sensing_sim.faults import MALFORMED_REASONS, malformed_payload
from sensing_sim.fleet import Fleet, FleetDriver, Gateway

READINGS: Final = "readings"
STATUS: Final = "status"
DUPLICATE: Final = "duplicate"
KINDS_OF_MESSAGE: Final[tuple[str, ...]] = (READINGS, STATUS, DUPLICATE, *MALFORMED_REASONS)
"""what a message is: readings and status as an agent sends them, a duplicate of an earlier
message, or a malformed message (by the way it is broken)"""

BACKLOG_CHUNK: Final = 1000
"""readings per message when an agent sends its backlog after an outage"""
DUPLICATE_DELAY_MAX_S: Final = 5.0
_STREAM_TRANSPORT: Final = 4  # this module's random stream of the fleet's seed


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publish as the broker receives it."""

    at_ms: int
    """when it reaches the broker, on the simulated clock (ms since the Unix epoch)"""
    topic: str
    payload: bytes
    what: str
    """one of KINDS_OF_MESSAGE"""
    readings: int = 0
    """readings it carries (0 for status and malformed messages)"""
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Restart:
    gateway: str
    at_s: float
    down_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ClockSkew:
    gateway: str
    skew_s: float


@dataclass(frozen=True, slots=True)
class TransportFaults:
    """Faults of delivery; the default is a perfect network."""

    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    late_max_s: float = 30.0
    malformed: int = 0
    restarts: tuple[Restart, ...] = ()
    clock_skew: tuple[ClockSkew, ...] = ()

    def __post_init__(self) -> None:
        if not (0.0 <= self.duplicate_rate <= 1.0 and 0.0 <= self.late_rate <= 1.0):
            raise ValueError("duplicate_rate and late_rate must be between 0 and 1")
        if not (math.isfinite(self.late_max_s) and self.late_max_s > 0):
            raise ValueError("late_max_s must be positive")
        if self.malformed < 0:
            raise ValueError("malformed must be >= 0")
        if any(r.at_s < 0 or r.down_s < 0 for r in self.restarts):
            raise ValueError("a restart's at_s and down_s must be >= 0")
        if any(not math.isfinite(c.skew_s) for c in self.clock_skew):
            raise ValueError("skew_s must be a number")


@dataclass(slots=True)
class StreamCounts:
    """What the stream sent, by kind of message."""

    messages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS_OF_MESSAGE, 0))
    readings_sampled: int = 0
    readings_sent: int = 0
    """distinct readings sent (duplicates not counted again)"""
    duplicate_readings: int = 0
    late_messages: int = 0
    restarts: int = 0
    readings_buffered_at_end: int = 0
    """readings of gateways whose link was still down when the run ended (their agents keep
    them and would send them once back; the run does not wait)"""

    @property
    def malformed_sent(self) -> dict[str, int]:
        return {r: self.messages[r] for r in MALFORMED_REASONS}

    def to_dict(self) -> dict[str, object]:
        return {"messages": dict(self.messages), "readings_sampled": self.readings_sampled,
                "readings_sent": self.readings_sent,
                "duplicate_readings": self.duplicate_readings,
                "late_messages": self.late_messages, "restarts": self.restarts,
                "readings_buffered_at_end": self.readings_buffered_at_end,
                "malformed_sent": self.malformed_sent,
                "malformed_total": sum(self.malformed_sent.values())}


def status_payload(state: str, ts_ms: int) -> bytes:
    return orjson.dumps({"state": state, "ts": ts_ms})


class _Edge:
    """One gateway's edge agent, in simulated time."""

    def __init__(self, fleet: Fleet, gateway: Gateway, start_ms: int, epoch: int,
                 faults: TransportFaults) -> None:
        self.gateway = gateway
        self.driver: FleetDriver = fleet.driver(gateway.id, start_ms)
        self.start_ms = start_ms
        self.epoch = epoch
        self.seqs: dict[str, int] = {}
        self.readings_topic = readings_topic(gateway.area, gateway.id)
        self.status_topic = status_topic(gateway.area, gateway.id)
        self.skew_ms = sum(round(c.skew_s * 1000) for c in faults.clock_skew
                           if c.gateway == gateway.id)
        self.restarts = sorted((start_ms + round(r.at_s * 1000),
                                start_ms + round((r.at_s + r.down_s) * 1000))
                               for r in faults.restarts if r.gateway == gateway.id)
        self.outages = sorted((start_ms + round(i.start_s * 1000), start_ms + round(i.end_s * 1000))
                              for i in fleet.gateway_outages(gateway.id))
        self.link_up = True
        self.backlog: list[snb1.Reading] = []
        cadence = fleet.spec.cadence_of(gateway.id) if fleet.spec.cadences else None
        self.batch_ms = round(cadence.batch_s * 1000) if cadence is not None else 0
        self.next_send_ms = start_ms + self.batch_ms
        self.unsent: list[snb1.Reading] = []
        # (device, first ms, ms back); a device's epochs after its reboots
        self.reboots = sorted((r.device, start_ms + round(r.at_s * 1000),
                               start_ms + round((r.at_s + r.down_s) * 1000))
                              for r in fleet.reboots_of(gateway.id))
        self.device_epochs: dict[str, int] = {}
        self.rebooted: set[tuple[str, int]] = set()
        # (device, from ms, to ms, arrival ms, the readings held)
        self.held: list[tuple[str, int, int, int, list[snb1.Reading]]] = [
            (h.device, start_ms + round(h.from_s * 1000), start_ms + round(h.to_s * 1000),
             start_ms + round(h.arrive_s * 1000), [])
            for h in fleet.late_readings_of(gateway.id)]

    def _link_down_at(self, now_ms: int) -> bool:
        return any(a <= now_ms < b for a, b in self.outages)

    def step(self, now_ms: int, counts: StreamCounts) -> list[Message]:
        out: list[Message] = []
        samples = self.driver.poll(now_ms)
        counts.readings_sampled += len(samples)
        while self.restarts and self.restarts[0][0] <= now_ms:
            _, back = self.restarts[0]
            if now_ms < back:
                return out  # the agent is down: what the devices measured is not taken
            self.restarts.pop(0)
            self.epoch += 1
            self.seqs.clear()
            counts.restarts += 1
        numbered: list[snb1.Reading] = []
        if self.reboots or self.held:
            numbered = self._number_cases(samples, now_ms)
        else:
            for s in samples:
                seq = self.seqs.get(s.device, 0)
                self.seqs[s.device] = seq + 1
                numbered.append((s.device, s.kind, self.epoch, seq, s.ts + self.skew_ms,
                                 s.values, s.battery))
        down = self._link_down_at(now_ms)
        if down != (not self.link_up):
            self.link_up = not down
            # The broker publishes the last will when the link drops; the agent itself says
            # `online` when it is back. Both are stamped with the gateway's own clock.
            out.append(Message(now_ms, self.status_topic,
                               status_payload("offline" if down else "online",
                                              now_ms + self.skew_ms), STATUS, retain=True))
        if down:
            self.backlog += numbered
            return out
        if self.batch_ms:
            self.unsent += numbered
            if now_ms < self.next_send_ms:
                return out
            while self.next_send_ms <= now_ms:
                self.next_send_ms += self.batch_ms
            numbered, self.unsent = self.unsent, []
        pending, self.backlog = self.backlog + numbered, []
        for i in range(0, len(pending), BACKLOG_CHUNK):
            chunk = pending[i:i + BACKLOG_CHUNK]
            out.append(Message(now_ms, self.readings_topic, snb1.encode_readings(chunk),
                               READINGS, len(chunk)))
        return out

    def _number_cases(self, samples: list[SensorSample], now_ms: int) -> list[snb1.Reading]:
        """Number samples with reboots (silence, then a new epoch from seq 0) and late
        readings (held back until their arrival) on this gateway."""
        numbered: list[snb1.Reading] = []
        for s in samples:
            rebooting = False
            for device, down_ms, back_ms in self.reboots:
                if device == s.device and down_ms <= s.ts:
                    if s.ts < back_ms:
                        rebooting = True  # the firmware restarts: nothing is sent
                    elif (device, down_ms) not in self.rebooted:
                        self.rebooted.add((device, down_ms))
                        self.device_epochs[device] = self.device_epochs.get(device, 0) + 1
                        self.seqs.pop(device, None)
            if rebooting:
                continue
            seq = self.seqs.get(s.device, 0)
            self.seqs[s.device] = seq + 1
            reading: snb1.Reading = (s.device, s.kind, self.epoch + self.device_epochs.get(
                s.device, 0), seq, s.ts + self.skew_ms, s.values, s.battery)
            hold = next((h for h in self.held if h[0] == s.device and h[1] <= s.ts < h[2]),
                        None)
            if hold is not None:
                hold[4].append(reading)
            else:
                numbered.append(reading)
        due = [h for h in self.held if h[3] <= now_ms and h[4]]
        if due:  # the backlog arrives: older readings first
            late = [r for h in due for r in h[4]]
            for h in due:
                h[4].clear()
            numbered = late + numbered
        return numbered


class FleetStream:
    """The messages a fleet sends over `duration_s` from `start_ms`, in arrival order.

    Iterate `steps()`: for every poll (each `poll_s` of simulated time) the poll's time and
    the messages that reach the broker by then, in arrival order. `counts` grows as you go.
    """

    def __init__(self, fleet: Fleet, duration_s: float, *, start_ms: int,
                 faults: TransportFaults | None = None, poll_s: float = 1.0,
                 epoch: int = 1) -> None:
        if not duration_s > 0 or not poll_s > 0:
            raise ValueError("duration_s and poll_s must be positive")
        self.fleet = fleet
        self.duration_s = duration_s
        self.start_ms = start_ms
        self.faults = faults or TransportFaults()
        self.poll_ms = round(poll_s * 1000)
        self.epoch = epoch
        self.counts = StreamCounts()
        self._rng = np.random.default_rng([fleet.spec.seed, _STREAM_TRANSPORT])

    @property
    def end_ms(self) -> int:
        return self.start_ms + round(self.duration_s * 1000)

    def _malformed_schedule(self) -> list[tuple[int, str, Gateway]]:
        n, gws = self.faults.malformed, self.fleet.gateways
        return [(self.start_ms + round(self.duration_s * 1000 * (k + 1) / (n + 1)),
                 MALFORMED_REASONS[k % len(MALFORMED_REASONS)], gws[k % len(gws)])
                for k in range(n)]

    def steps(self) -> Iterator[tuple[int, list[Message]]]:
        f = self.faults
        edges = [_Edge(self.fleet, gw, self.start_ms, self.epoch, f) for gw in self.fleet.gateways]
        malformed = self._malformed_schedule()
        made = 0
        queue: list[tuple[int, int, Message]] = []  # (arrival, order, message)
        order = 0

        def send(m: Message) -> None:
            nonlocal order
            heapq.heappush(queue, (m.at_ms, order, m))
            order += 1

        for edge in edges:
            send(Message(self.start_ms, edge.status_topic,
                         status_payload("online", self.start_ms + edge.skew_ms), STATUS,
                         retain=True))
        n_steps = int(self.duration_s * 1000 // self.poll_ms)
        for k in range(1, n_steps + 1):
            now = self.start_ms + k * self.poll_ms
            for edge in edges:
                for m in edge.step(now, self.counts):
                    self._deliver(m, send)
            while malformed and malformed[0][0] <= now:
                at, reason, gw = malformed.pop(0)
                others = [g for g in self.fleet.gateways if g.id != gw.id]
                other = others[0].id if others else f"{gw.id}-other"
                payload = malformed_payload(reason, made, at, other)
                made += 1
                send(Message(at, readings_topic(gw.area, gw.id), payload, reason))
            arrived: list[Message] = []
            while queue and queue[0][0] <= now:
                arrived.append(heapq.heappop(queue)[2])
            for m in arrived:
                self.counts.messages[m.what] += 1
            yield now, arrived
        self.counts.readings_buffered_at_end = sum(
            len(e.backlog) + len(e.unsent) + sum(len(h[4]) for h in e.held) for e in edges)
        # What is still on its way (late or duplicated near the end) arrives after the run.
        rest = [heapq.heappop(queue)[2] for _ in range(len(queue))]
        for m in rest:
            self.counts.messages[m.what] += 1
        if rest:
            yield max(m.at_ms for m in rest), rest

    def _deliver(self, m: Message, send: Callable[[Message], None]) -> None:
        f, rng = self.faults, self._rng
        if m.what == READINGS:
            self.counts.readings_sent += m.readings
            if f.late_rate > 0 and rng.random() < f.late_rate:
                delay = int(rng.integers(1000, round(f.late_max_s * 1000) + 1))
                m = Message(m.at_ms + delay, m.topic, m.payload, m.what, m.readings, m.retain)
                self.counts.late_messages += 1
            send(m)
            if f.duplicate_rate > 0 and rng.random() < f.duplicate_rate:
                delay = int(rng.integers(0, round(DUPLICATE_DELAY_MAX_S * 1000) + 1))
                send(Message(m.at_ms + delay, m.topic, m.payload, DUPLICATE, m.readings))
                self.counts.duplicate_readings += m.readings
            return
        send(m)

