"""One processing step of the core without its I/O: decode -> dedup -> detect -> grade."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import orjson
import structlog
from pydantic import ValidationError

from sensing.alerts.book import AlertBook, UnknownAlert
from sensing.alerts.lifecycle import Lifecycle
from sensing.dedup.window import (
    EPOCH_LIMIT,
    MAX_EPOCH_JUMP,
    MAX_SEQ_JUMP,
    SEQ_LIMIT,
    DedupWindow,
)
from sensing.detect.engine import ConditionChange, DetectionEngine, Readings
from sensing.detect.offline import OfflineWatch
from sensing.detect.overrides import load_overrides
from sensing.dispatch.cases import Action
from sensing.dispatch.engine import ActionRefused, ActionRequest, DispatchEngine, DispatchOut
from sensing.dispatch.policy import load_routing
from sensing.dispatch.silences import Silence
from sensing.ingest.received import Incoming, Received
from sensing.json_lane import JsonLane, LaneOut
from sensing.kernels.dedup import ADMITTED, DUPLICATE, EPOCH_JUMP, SEQ_JUMP, TOO_OLD
from sensing.registry import Refused, Registry
from sensing.settings import CoreSettings
from sensing.store.lineprotocol import LineFormatter
from sensing.wire import topics
from sensing.wire.batch import kept_values
from sensing.wire.confirm import StoredChunk
from sensing.wire.decode import Decoded, decode_readings
from sensing.wire.errors import Code, WireError
from sensing.wire.limits import MAX_AREAS, MAX_FUTURE_MS, MAX_GATEWAYS, MAX_STATUS_BYTES
from sensing.wire.messages import (
    Ack,
    Alert,
    AlertState,
    DeadLetter,
    GatewayStatus,
    Grade,
    SilenceRequest,
)
from sensing.wire.validate import select

log = structlog.get_logger("sensing.core")

GATEWAY_OFFLINE = "gateway.offline"
DEVICE_OFFLINE = "device.offline"
_OBJECT, _ARRAY = ord("{"), ord("[")
_MAX_ROUTES = 100_000
"""readings topics remembered for the JSON lane (one per gateway in a sane fleet)"""
OFFLINE_GRADE = {"smoke": Grade.MAJOR, "manhole": Grade.MINOR, "wearable": Grade.MAJOR}
"""a silent smoke detector or wristband leaves someone unprotected; a manhole sensor less so"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class CoreStats:
    messages: int = 0
    readings_received: int = 0
    readings_stored: int = 0
    duplicates_dropped: int = 0
    readings_rejected: int = 0
    readings_late: int = 0
    """stored, but too old for the dedup window to place and not fed to the detectors"""
    deadletters: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    """transitions by "type/grade/state" """

    def as_dict(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "readings_received": self.readings_received,
            "readings_stored": self.readings_stored,
            "duplicates_dropped": self.duplicates_dropped,
            "readings_rejected": self.readings_rejected,
            "readings_late": self.readings_late,
            "deadletters": self.deadletters,
            "alerts": dict(self.alerts),
        }


@dataclass
class _Step:
    """Everything one processing step produces before it is stored and published."""

    received: Received

    dev: list[np.ndarray] = field(default_factory=list)
    epoch: list[np.ndarray] = field(default_factory=list)
    seq: list[np.ndarray] = field(default_factory=list)
    ts: list[np.ndarray] = field(default_factory=list)
    battery: list[np.ndarray] = field(default_factory=list)
    value_row: list[np.ndarray] = field(default_factory=list)
    value_channel: list[np.ndarray] = field(default_factory=list)
    value: list[np.ndarray] = field(default_factory=list)
    message: list[np.ndarray] = field(default_factory=list)
    """per reading, the index of its message in the step (dead letters, confirmations)"""
    route: list[np.ndarray] = field(default_factory=list)
    """per reading, the gateway and area of its topic: `gateway << 32 | area` (indices)"""
    n_rows: int = 0
    lines: list[str | bytes] = field(default_factory=list)
    publish: list[tuple[str, bytes]] = field(default_factory=list)
    """dead letters: published at once, not kept (the broker delivers their input again)"""
    announce: list[tuple[str, bytes]] = field(default_factory=list)
    """alert and dispatch messages: kept in the outbox until the broker has them"""
    admitted: tuple[np.ndarray, np.ndarray, np.ndarray] = (
        np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64))
    alerts: list[Alert] = field(default_factory=list)


_COPY_BYTES_PER_MESSAGE = 1024
"""below this many bytes per message a step's buffer is copied whole to cut topics from
(a bytes() of a slice of a view costs about 0.1 µs more per topic; a copy, 0.08 ns a byte)"""


@dataclass(frozen=True, slots=True)
class StepOutput:
    lines: list[str | bytes]
    """line protocol to spool (and so store) before anything is acknowledged"""
    publish: list[tuple[str, bytes]]
    """(topic, payload) dead letters to publish at QoS 1"""
    admitted: tuple[np.ndarray, np.ndarray, np.ndarray]
    """(device, epoch, seq) of the readings admitted, for the dedup journal"""
    announce: list[tuple[str, bytes]] = field(default_factory=list)
    """(topic, payload) alert and dispatch messages, to publish at once and keep in the
    outbox until the broker confirms them"""
    handled: list[StoredChunk] = field(default_factory=list)
    """per message, the readings the core has handled (admitted, duplicate or refused):
    confirmed to their gateway once the step is stored"""

    @property
    def messages(self) -> list[tuple[str, bytes]]:
        """Everything the step publishes: alerts and dispatch, then dead letters."""
        return self.announce + self.publish


class Pipeline:
    """Everything the core does to a batch of messages, without the I/O: decode, dedup,
    detect, grade, and the lines and messages that result."""

    def __init__(self, settings: CoreSettings, book: AlertBook | None = None,
                 json_lane: bool = True) -> None:
        """`json_lane=False`: every message takes the message-by-message path (the lane's
        reference in the tests)."""
        self.settings = settings
        self.registry = Registry(devices_follow_gateway=settings.devices_follow_gateway)
        self.dedup = DedupWindow()
        self.engine = DetectionEngine(self.registry,
                                      overrides=load_overrides(settings.detectors_file))
        self.book = book or AlertBook()
        self.dispatch = DispatchEngine(self.book, None if settings.directory_file is None
                                       else load_routing(settings.directory_file))
        self.lifecycle = Lifecycle(self.book, settings.lifecycle, latching=frozenset(
            d.spec.type for d in self.engine.detectors if d.spec.latching))
        self.offline = OfflineWatch(settings.offline)
        self.formatter = LineFormatter(self.registry)
        self.json_lane = JsonLane(self.registry)
        self._lane_on = json_lane
        self._routes: dict[bytes, tuple[int, int]] = {}
        """readings topic -> gateway index, for the JSON lane (see `_known_route`)"""
        self.stats = CoreStats()

    def process(self, messages: Received | list[Incoming], now: int) -> StepOutput:
        """Never raises on input: a message whose handling raises is dead-lettered
        (`internal_error`) and the step goes on."""
        received = messages if isinstance(messages, Received) else \
            Received.from_messages(messages)
        step = _Step(received)
        fast, fast_route, slow = self._sort_out(received)
        lane: LaneOut | None = None
        decoded: dict[int, tuple[Incoming, Decoded]] = {}
        try:  # the lane changes nothing before _take_lane: on a failure its messages go slow
            if fast:
                lane = self._json_lane(step, fast, fast_route, now)
            if lane is not None and lane.slow.size:
                slow = sorted(slow + lane.slow.tolist())
            if lane is not None and lane.n_rows and slow:
                decoded, named = self._predecode(step, slow, now)
                lane, slow = self._apart(lane, named, slow)
        except Exception:
            log.exception("the JSON lane failed; its messages take the message-by-message path")
            lane, decoded = None, {}
            slow = sorted(set(slow) | set(fast))
        for i in slow:
            self._one(step, i, now, decoded.get(i))
        if lane is not None and lane.n_rows:
            self._take_lane(step, lane, now)
        if len(step.message) > 1:
            self._in_message_order(step)
        try:
            self._readings(step, now)
        except Exception as exc:
            # the batch's lines formatted so far are still stored; its messages get a dead
            # letter each, so the failure is seen, and are acknowledged
            rows = np.unique(np.concatenate(step.message)).tolist() if step.message else []
            self._failed(step, [received.incoming(i) for i in rows], "batch", exc)
        try:
            self._timers(step, now)
            self._dispatched(step, self.dispatch.tick(self._dispatch_clock(now)))
        except Exception:
            log.exception("timers failed; they run again next step")
        self.stats.messages += len(received)
        return StepOutput(step.lines, step.publish, step.admitted, step.announce,
                          self._handled(step))

    def _sort_out(self, received: Received
                  ) -> tuple[list[int], list[tuple[int, int]], list[int]]:
        """The messages that may take the JSON lane (JSON readings of a known gateway within
        the size bound) with their (gateway, area); the others."""
        fast: list[int] = []
        fast_route: list[tuple[int, int]] = []
        slow: list[int] = []
        routes = self._routes
        if not routes:
            return fast, fast_route, list(range(len(received)))
        data = np.frombuffer(received.buf, np.uint8) if isinstance(received.buf, bytes) \
            else received.buf
        start, end = received.payload_start, received.payload_end
        held = (end > start) & (received.payload_size <= self.settings.max_payload_bytes)
        opener = np.zeros(len(received), np.uint8)
        opener[held] = data[start[held]]
        json_like = ((opener == _OBJECT) | (opener == _ARRAY)).tolist()
        buf = received.buf
        # topics cut from one copy of the step while messages are small; from a view when
        # they are large (copying megabytes of arrays costs more than a bytes() per topic)
        raw = buf if isinstance(buf, bytes) else (
            buf.tobytes() if buf.nbytes <= _COPY_BYTES_PER_MESSAGE * len(received)
            else buf.data)
        for i, a, b in zip(range(len(received)), received.topic_start.tolist(),
                           received.topic_end.tolist(), strict=True):
            route = routes.get(bytes(raw[a:b])) if json_like[i] else None
            if route is not None:
                fast.append(i)
                fast_route.append(route)
            else:
                slow.append(i)
        return fast, fast_route, slow

    def _one(self, step: _Step, i: int, now: int,
             decoded: tuple[Incoming, Decoded] | None = None) -> None:
        m = step.received.incoming(i) if decoded is None else decoded[0]
        try:
            if decoded is None:
                self._route(m, i, step, now)
            else:
                parsed = topics.parse_gateway_topic(m.topic)
                assert parsed is not None
                self._decode(m, i, parsed.gateway, parsed.area, step, now, decoded[1])
        except Exception as exc:
            self._failed(step, [m], "message", exc)

    def _predecode(self, step: _Step, slow: list[int], now: int
                   ) -> tuple[dict[int, tuple[Incoming, Decoded]], set[str]]:
        """The slow path's readings messages, decoded (not yet interned), and the device ids
        they name: which known devices they name decides what the lane may take (`_apart`).
        Only those of known gateways and areas are kept for the slow path to reuse: the first
        message of a new gateway or area still goes through `_route`'s bounds. A new gateway
        (`devices_follow_gateway`) or a new area (a move) changes a device's placement too."""
        out: dict[int, tuple[Incoming, Decoded]] = {}
        named: set[str] = set()
        for i in slow:
            m = step.received.incoming(i)
            parsed = topics.parse_gateway_topic(m.topic)
            if parsed is None or parsed.leaf != "readings" or not parsed.valid_names:
                continue
            try:
                decoded = decode_readings(m.payload, parsed.gateway, parsed.area,
                                          self.settings.max_payload_bytes, now_ms=now)
            except Exception:  # decoded again, and dead-lettered, by the slow path
                continue
            named.update(decoded.batch.devices)
            if (parsed.gateway in self.registry.gateways.index
                    and parsed.area in self.registry.areas.index):
                out[i] = (m, decoded)
        return out, named

    def _apart(self, lane: LaneOut, named: set[str], slow: list[int]
               ) -> tuple[LaneOut, list[int]]:
        """The lane's messages that share no device with a slow-path message, and the slow
        path's messages with the others added. The slow path may change a device's owner,
        area or kind, and the lane's checks hold only for devices it leaves alone: a lane
        message sharing a device with a slow one is handled with it, in message order."""
        index = self.registry.devices.index
        touched = {index[name] for name in named if name in index}
        moved: set[int] = set()
        while touched:
            clash = np.isin(lane.dev, np.fromiter(touched, np.int32, len(touched)))
            if not clash.any():
                break
            messages = np.unique(lane.message[clash])
            moved.update(messages.tolist())
            taken = np.isin(lane.message, messages)
            touched = set(lane.dev[taken].tolist()) - touched
            lane = lane.without(taken)
        return lane, sorted(slow + list(moved))

    def warm_json_lane(self) -> None:
        """After a restart: the JSON lane learns the names and readings topics the registry
        knows, so that known devices take it from their first message on."""
        if not self._lane_on:
            return
        self.json_lane.sync()
        reg = self.registry
        n = len(reg.devices)
        placed = (reg.device_gateway[:n] >= 0) & (reg.device_area[:n] >= 0)
        pairs = np.unique(reg.device_gateway[:n][placed].astype(np.int64) << 32
                          | reg.device_area[:n][placed])
        for route in pairs.tolist()[:_MAX_ROUTES]:
            gateway, area = reg.gateways.names[route >> 32], reg.areas.names[route & 0xFFFF_FFFF]
            self._known_route(topics.readings_topic(area, gateway), gateway, area)

    def _known_route(self, topic: str, gateway: str, area: str) -> None:
        """Remember a readings topic whose gateway and area are interned: its next messages
        may take the JSON lane. Bounded: forgotten wholesale when full (only a shortcut)."""
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()
        self._routes[topic.encode()] = (self.registry.gateways.index[gateway],
                                        self.registry.areas.index[area])

    def _json_lane(self, step: _Step, fast: list[int], fast_route: list[tuple[int, int]],
                   now: int) -> LaneOut:
        """Decode the JSON lane's messages in one pass (nothing is changed yet): their
        readings, and the messages it leaves to the message-by-message path, numbered as in
        the step."""
        received = step.received
        index = np.asarray(fast, dtype=np.int64)
        route = np.asarray(fast_route, dtype=np.int32).reshape(-1, 2)
        out = self.json_lane.decode(received.buf, received.payload_start[index],
                                    received.payload_end[index],
                                    np.ascontiguousarray(route[:, 0]),
                                    np.ascontiguousarray(route[:, 1]), now)
        return out.renumbered(index)

    def _take_lane(self, step: _Step, lane: LaneOut, now: int) -> None:
        self.offline.ensure_capacity(len(self.registry.devices), len(self.registry.gateways))
        self.offline.seen_rows(lane.dev, lane.ts, lane.gateway, now)
        self._add_chunk(step, lane.dev, lane.epoch, lane.seq, lane.ts, lane.battery,
                        lane.value_row, lane.value_channel, lane.value, lane.message,
                        lane.gateway.astype(np.int64) << 32 | lane.area)

    def _add_chunk(self, step: _Step, dev: np.ndarray, epoch: np.ndarray, seq: np.ndarray,
                   ts: np.ndarray, battery: np.ndarray, value_row: np.ndarray,
                   value_channel: np.ndarray, value: np.ndarray, message: np.ndarray,
                   route: np.ndarray) -> None:
        step.dev.append(dev)
        step.epoch.append(epoch)
        step.seq.append(seq)
        step.ts.append(ts)
        step.battery.append(battery)
        step.value_row.append(value_row + step.n_rows)
        step.value_channel.append(value_channel)
        step.value.append(value)
        step.message.append(message)
        step.route.append(route)
        step.n_rows += dev.shape[0]

    @staticmethod
    def _in_message_order(step: _Step) -> None:
        """Put the chunks' readings in the order of their messages (lanes interleave them):
        detectors see a device's readings in the order they came."""
        message = np.concatenate(step.message)
        if (message[1:] >= message[:-1]).all():
            return
        order = np.argsort(message, kind="stable")
        value_row = np.concatenate(step.value_row)
        new_row = np.empty_like(order)
        new_row[order] = np.arange(order.shape[0])
        value_order = np.argsort(new_row[value_row], kind="stable")
        for name in ("dev", "epoch", "seq", "ts", "battery", "route"):
            setattr(step, name, [np.concatenate(getattr(step, name))[order]])
        step.message = [message[order]]
        step.value_row = [new_row[value_row][value_order].astype(np.int32)]
        step.value_channel = [np.concatenate(step.value_channel)[value_order]]
        step.value = [np.concatenate(step.value)[value_order]]

    def _failed(self, step: _Step, messages: list[Incoming], what: str,
                exc: Exception) -> None:
        log.exception(f"{what} handling failed", error=type(exc).__name__)
        reason = f"the core failed on this input: {type(exc).__name__}: {str(exc)[:200]}"
        for m in messages:
            parsed = topics.parse_gateway_topic(m.topic)
            area, gateway = (parsed.area, parsed.gateway) if parsed and parsed.valid_names \
                else ("_", "_")
            self._dead(step, m, area, gateway, reason, Code.INTERNAL_ERROR)

    def _handled(self, step: _Step) -> list[StoredChunk]:
        """The step's readings by the gateway and area of their topics."""
        if not step.n_rows:
            return []
        reg = self.registry
        route = np.concatenate(step.route)
        dev, epoch = np.concatenate(step.dev), np.concatenate(step.epoch)
        seq = np.concatenate(step.seq)
        routes, which = np.unique(route, return_inverse=True)
        if routes.shape[0] == 1:
            g, a = int(routes[0]) >> 32, int(routes[0]) & 0xFFFF_FFFF
            return [(reg.areas.names[a], reg.gateways.names[g], reg.devices.names, dev, epoch,
                     seq)]
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(routes.shape[0] + 1)).tolist()
        out: list[StoredChunk] = []
        for k, r in enumerate(routes.tolist()):
            rows = order[bounds[k]:bounds[k + 1]]
            out.append((reg.areas.names[r & 0xFFFF_FFFF], reg.gateways.names[r >> 32],
                        reg.devices.names, dev[rows], epoch[rows], seq[rows]))
        return out

    def _timers(self, step: _Step, now: int) -> None:
        """Event-time timers: silent devices, hold times, flapping."""
        reg = self.registry
        n_dev, n_gw = len(reg.devices), len(reg.gateways)
        self.offline.ensure_capacity(n_dev, n_gw)
        self.offline.assign(reg, self.engine.overrides)
        for change in self.offline.scan(reg.device_gateway, n_dev, n_gw, now):
            device, kind, gateway, area = reg.describe(change.device)
            grade = OFFLINE_GRADE.get(kind, Grade.MAJOR) if change.offline else None
            # both times on the gateway's event-time clock (its watermark), not the wall's
            self._emit_all(step, self.lifecycle.condition(
                device=device, alert_type=DEVICE_OFFLINE, grade=grade, gateway=gateway,
                area=area, ts_event=change.silent_since, ts=change.silent_since, value=None,
                reason=f"no reading for {change.silent_ms / 1000:.0f} s of its gateway's time"
                if change.offline else "reporting again", now=now))
        marks = self.offline.watermarks(n_gw, now)
        index = reg.gateways.index

        def watermark(gateway: str) -> int:
            g = index.get(gateway)
            return now if g is None else int(marks[g])

        self._emit_all(step, self.lifecycle.tick(watermark, now, self.engine.event_time))

    def _emit_all(self, step: _Step, alerts: list[Alert]) -> None:
        for alert in alerts:
            self._emit(step, alert, alert.ts_raised)


    # -- per message ----------------------------------------------------------------------

    def _route(self, m: Incoming, i: int, step: _Step, now: int) -> None:
        if m.topic == topics.ACK_TOPIC or topics.ack_responder(m.topic) is not None:
            self._ack(m, step, now)
            return
        if m.topic.startswith(topics.SILENCES_FILTER[:-1]):
            self._silence(m, step, now)
            return
        parsed = topics.parse_gateway_topic(m.topic)
        if parsed is None or not parsed.valid_names or parsed.leaf not in ("readings", "status"):
            self._unusable_topic(m, step)
        elif self._too_many_names(parsed.area, parsed.gateway):
            self._dead(step, m, parsed.area, parsed.gateway, f"the core knows {MAX_GATEWAYS} "
                       f"gateways or {MAX_AREAS} areas already; this one is new",
                       Code.TOO_MANY_GATEWAYS)
        elif parsed.leaf == "readings":
            self._decode(m, i, parsed.gateway, parsed.area, step, now)
        else:
            self._status(m, parsed.gateway, parsed.area, step, now)

    def _too_many_names(self, area: str, gateway: str) -> bool:
        """Whether a new gateway or area would pass the core's bounds (each costs it state)."""
        reg = self.registry
        return ((gateway not in reg.gateways.index and len(reg.gateways) >= MAX_GATEWAYS)
                or (area not in reg.areas.index and len(reg.areas) >= MAX_AREAS))

    def _unusable_topic(self, m: Incoming, step: _Step) -> None:
        """A message on a topic the core cannot attribute to a gateway: its dead letter goes
        to `sensing/v1/deadletter/_/{gateway}` (`_` too when the gateway is no valid name)."""
        parts = m.topic.split("/")
        gateway = parts[3] if len(parts) == 5 and topics.is_valid_name(parts[3]) else "_"
        if len(parts) == 5 and parts[:2] == ["sensing", "v1"] and \
                parts[2] in topics.RESERVED_AREAS:
            self._dead(step, m, "_", gateway, f"area {parts[2]!r} is reserved for the core's "
                       "own topics", Code.AREA_RESERVED)
        else:
            self._dead(step, m, "_", gateway, "not a sensing/v1/{area}/{gateway}/readings or "
                       "status topic with area and gateway of [A-Za-z0-9_-]{1,64}",
                       Code.TOPIC_INVALID)

    def _dead(self, step: _Step, m: Incoming, area: str, gateway: str, reason: str,
              code: str) -> None:
        self.stats.deadletters += 1
        log.warning("dead letter", area=area, gateway=gateway, code=code, reason=reason[:300])
        step.publish.append((topics.deadletter_topic(area, gateway), DeadLetter.of(
            reason, m.topic, m.payload, code, m.sent_size).to_json()))

    def _decode(self, m: Incoming, i: int, gateway: str, area: str, step: _Step,
                now: int, decoded: Decoded | None = None) -> None:
        try:
            if m.sent_size > len(m.payload):  # cut by the session: beyond any bound we take
                raise WireError(f"payload of {m.sent_size} bytes exceeds the limit of "
                                f"{self.settings.max_payload_bytes}", Code.PAYLOAD_TOO_LARGE)
            if decoded is None:
                decoded = decode_readings(m.payload, gateway, area,
                                          self.settings.max_payload_bytes, now_ms=now)
        except WireError as exc:
            self.stats.readings_rejected += 1
            self._dead(step, m, area, gateway, str(exc), exc.code)
            return
        if decoded.rejected:
            self.stats.readings_rejected += len(decoded.rejected)
            self._dead(step, m, area, gateway, decoded.reason, decoded.code)
        batch = decoded.batch
        if not len(batch):
            return
        dev, chan, refused = self.registry.intern_checked(batch, gateway, area)
        g = self.registry.gateways.index[gateway]
        if refused:  # names beyond the gateway's bounds, devices of another gateway
            keep = self._refuse(step, m, gateway, area, refused)
            value_keep, _ = kept_values(keep, batch.value_row)
            batch, dev, chan = select(batch, keep), dev[keep], chan[value_keep]
            if not len(batch):
                return
        elif decoded.format == "json" and not decoded.rejected and self._lane_on:
            # its gateway's next messages may take the JSON lane
            self._known_route(m.topic, gateway, area)
        self.offline.ensure_capacity(len(self.registry.devices), len(self.registry.gateways))
        # the step's clock, not the wall's: a simulated fleet runs on its own
        self.offline.seen(dev, batch.ts, g, now)
        n = len(batch)
        route = g << 32 | self.registry.areas.index[area]
        self._add_chunk(step, dev, batch.epoch, batch.seq, batch.ts, batch.battery,
                        batch.value_row, chan, batch.value, np.full(n, i, dtype=np.int64),
                        np.full(n, route, dtype=np.int64))

    def _refuse(self, step: _Step, m: Incoming, gateway: str, area: str,
                refused: tuple[Refused, ...]) -> np.ndarray:
        """A dead letter per refusal (each names its own readings); the readings to keep."""
        keep = np.ones(refused[0].rows.shape[0], dtype=np.bool_)
        for r in refused:
            n_refused = int(np.count_nonzero(r.rows))
            self.stats.readings_rejected += n_refused
            self._dead(step, m, area, gateway, f"{n_refused} readings refused: {r.reason}",
                       r.code)
            keep &= ~r.rows
        return keep

    def _status(self, m: Incoming, gateway: str, area: str, step: _Step, now: int) -> None:
        if not m.payload:
            return  # a cleared retained status
        if len(m.payload) > MAX_STATUS_BYTES:
            self._dead(step, m, area, gateway, f"status of {len(m.payload)} bytes, more than "
                       f"{MAX_STATUS_BYTES}", Code.STATUS_INVALID)
            return
        try:
            status = GatewayStatus.model_validate_json(m.payload)
        except ValidationError as exc:
            self._dead(step, m, area, gateway, f"bad status: {exc.errors()[0]['msg']}",
                       Code.STATUS_INVALID)
            return
        if status.ts > now + MAX_FUTURE_MS:
            self._dead(step, m, area, gateway, f"status ts more than {MAX_FUTURE_MS // 1000} s "
                       "ahead of the core's clock", Code.STATUS_INVALID)
            return
        offline = status.state == "offline"
        g = self.registry.gateways.intern(gateway)
        self.offline.ensure_capacity(len(self.registry.devices), len(self.registry.gateways))
        # the status's own clock: its ts, never ahead of the core's (nor, offline, before the
        # gateway's newest reading: a last will carries the time the gateway connected)
        ts = self.offline.gateway_status(g, online=not offline, ts=status.ts, now_wall=now)
        self._emit_all(step, self.lifecycle.condition(
            device=gateway, alert_type=GATEWAY_OFFLINE, grade=Grade.MAJOR if offline else None,
            gateway=gateway, area=area, ts_event=ts, ts=ts, value=None,
            reason="gateway went offline (status or last will)" if offline
            else "gateway back online", now=now))

    def _ack(self, m: Incoming, step: _Step, now: int) -> None:
        """An ack on `sensing/v1/ack/{responder}` speaks only for that responder (the secure
        broker lets each user write only its own); with `ack_requires_identity` the contract's
        bare `sensing/v1/ack`, which anyone may write, is refused."""
        try:
            ack = Ack.model_validate_json(m.payload)
        except ValidationError as exc:
            self._dead(step, m, "_", "ack", f"bad ack: {exc.errors()[0]['msg']}",
                       Code.ACK_INVALID)
            return
        responder = topics.ack_responder(m.topic)
        if responder is None and self.settings.ack_requires_identity:
            self._dead(step, m, "_", "ack", "acks must come on sensing/v1/ack/{responder} "
                       "(ack_requires_identity)", Code.ACK_FORGED)
            return
        if responder is not None and ack.by != responder:
            self._dead(step, m, "_", "ack", f"ack by {ack.by[:128]!r} sent on the ack topic "
                       f"of {responder[:128]!r}", Code.ACK_FORGED)
            return
        request = ActionRequest(Action(ack.action), ack.by, ack.alert_id, ack.outcome or "",
                                ack.note or "", ack.to or "")
        try:
            self._act(step, request, now)
        except UnknownAlert as exc:
            self._dead(step, m, "_", "ack", f"unknown or closed alert {exc.args[0]}",
                       Code.ACK_UNKNOWN_ALERT)
        except ActionRefused as exc:
            self._dead(step, m, "_", "ack", str(exc), exc.code)

    def _act(self, step: _Step, request: ActionRequest, now: int) -> None:
        """A person's action: on the case (`sensing.dispatch`), then on its alerts."""
        case = self.dispatch.cases.of_alert(request.target)
        if case is None:  # an alert with no case: the contract's ack and resolve only
            if request.action not in (Action.ACK, Action.RESOLVE):
                raise UnknownAlert(request.target)
            self._person_marks(step, [request.target], request, now)
            return
        case, out = self.dispatch.act(request, self._dispatch_clock(now))
        if request.action == Action.ACK:
            self._person_marks(step, [a for a in case.members if a == request.target]
                               or [case.members[0]], request, now, quiet=True)
        elif request.action in (Action.RESOLVE, Action.DISPOSE):
            self._person_marks(step, self.dispatch.cases.member_ids(case.case_id), request, now,
                               quiet=True)
        self._dispatched(step, out)

    def _person_marks(self, step: _Step, alert_ids: list[str], request: ActionRequest,
                      now: int, quiet: bool = False) -> None:
        """Acknowledge (ack) or resolve (resolve, dispose) these alerts in `request.by`'s
        name; with `quiet`, those already closed are passed over (the case took the action)."""
        action: Literal["ack", "resolve"] = "ack" if request.action == Action.ACK else "resolve"
        for alert_id in alert_ids:
            try:
                alert = self.book.ack(Ack(alert_id=alert_id, by=request.by, action=action), now)
            except UnknownAlert:
                if quiet:
                    continue
                raise
            if action == "resolve":
                self.lifecycle.resolve_now(alert.device, alert.type)
                device = self.registry.devices.index.get(alert.device)
                if device is not None:
                    self.engine.forget(device, alert.type)
            self._emit(step, alert, now)

    def _silence(self, m: Incoming, step: _Step, now: int) -> None:
        """A silence from an operator, on `sensing/v1/silences/{responder}`."""
        author = topics.silence_author(m.topic)
        try:
            if author is None:
                raise ActionRefused(Code.SILENCE_INVALID,
                                    "silences come on sensing/v1/silences/{responder}")
            request = SilenceRequest.model_validate_json(m.payload)
            ts = self._dispatch_clock(now)
            if request.action == "remove":
                self.dispatch.remove_silence(request.silence_id or "", author)
                return
            silence = Silence(device=request.device, area=request.area, type=request.type,
                              author=author, reason=request.reason,
                              starts_ms=request.starts_ms or ts, ends_ms=request.ends_ms or 0)
            self.dispatch.add_silence(silence, ts)
            log.info("silence", silence_id=silence.silence_id, author=author,
                     device=silence.device, area=silence.area, type=silence.type,
                     ends_ms=silence.ends_ms)
        except ValidationError as exc:
            self._dead(step, m, "_", "silence", f"bad silence: {exc.errors()[0]['msg']}",
                       Code.SILENCE_INVALID)
        except ActionRefused as exc:
            self._dead(step, m, "_", "silence", str(exc), exc.code)

    def _dispatch_clock(self, now: int) -> int:
        """The dispatch engine's time: the wall clock, or in a replay (`dispatch_clock =
        "fleet"`) the newest event time of any gateway, so that a replayed fleet gives the same
        dispatch record however fast it is played."""
        if self.settings.dispatch_clock == "wall":
            return now
        n = len(self.registry.gateways)
        marks = self.offline.gw_max_ts[:n]
        return int(marks.max()) if n and int(marks.max()) >= 0 else now

    def _dispatched(self, step: _Step, out: DispatchOut) -> None:
        """Publish what the dispatch engine decided; store its case changes and alerts."""
        for alert in out.alerts:
            self._emit(step, alert, alert.ts_raised, dispatched=True)
        step.announce.extend(out.announce)
        for topic, payload in out.announce:
            if topic.startswith(topics.CASES_FILTER[:-1]):
                step.lines.append(self.formatter.case_event(orjson.loads(payload)))

    # -- per batch ------------------------------------------------------------------------

    def _readings(self, step: _Step, now: int) -> None:
        if not step.n_rows:
            return
        dev = np.concatenate(step.dev)
        epoch = np.concatenate(step.epoch)
        seq = np.concatenate(step.seq)
        self.dedup.ensure_capacity(len(self.registry.devices))
        verdict = self.dedup.classify(dev, epoch, seq, now // 1000)
        self.stats.readings_received += int(verdict.shape[0])
        self.stats.duplicates_dropped += int(np.count_nonzero(verdict == DUPLICATE))
        refused = (verdict == SEQ_JUMP) | (verdict == EPOCH_JUMP)
        if refused.any():
            self._refused(step, refused, verdict, dev, epoch, seq)
        # Too old for the window (an earlier epoch, or 1,024 seqs behind): a gateway's backlog
        # after a restart or a long outage. It cannot be proven new, but storing it again is
        # harmless (the store keeps one sample per series and timestamp), so it is stored;
        # it is not fed to the detectors, whose state has moved past it.
        admitted = verdict == ADMITTED
        stored = admitted | (verdict == TOO_OLD)
        late = int(np.count_nonzero(verdict == TOO_OLD))
        ts, value_row = np.concatenate(step.ts), np.concatenate(step.value_row)
        battery, channel = np.concatenate(step.battery), np.concatenate(step.value_channel)
        value = np.concatenate(step.value)
        s = Readings.kept(stored, dev, ts, battery, value_row, channel, value)
        s_epoch, s_seq = (epoch, seq) if stored.all() else (epoch[stored], seq[stored])
        step.lines.append(self.formatter.readings(
            s.dev, s_epoch, s_seq, s.ts, s.battery, s.value_row, s.value_channel, s.value))
        self.stats.readings_stored += int(s.dev.shape[0])
        self.stats.readings_late += late
        if late:
            log.info("late readings stored without detection", readings=late)
            r = Readings.kept(admitted, dev, ts, battery, value_row, channel, value)
            epoch, seq = epoch[admitted], seq[admitted]
        else:
            r, epoch, seq = s, s_epoch, s_seq
        step.admitted = (r.dev, epoch, seq)
        for change in self.engine.process(r):
            self._condition(change, step, now)

    def _refused(self, step: _Step, refused: np.ndarray, verdict: np.ndarray, dev: np.ndarray,
                 epoch: np.ndarray, seq: np.ndarray) -> None:
        """A dead letter per message and code for readings too far ahead of their device's
        window (sensing.kernels.dedup): neither stored nor detected on."""
        rows = np.flatnonzero(refused)
        self.stats.readings_rejected += int(rows.shape[0])
        message_of = np.concatenate(step.message)[rows]
        names = self.registry.devices.names
        for c in np.unique(message_of).tolist():
            m = step.received.incoming(c)
            parsed = topics.parse_gateway_topic(m.topic)
            area, gateway = (parsed.area, parsed.gateway) if parsed is not None else ("_", "_")
            mine = rows[message_of == c]
            for code, jump in ((SEQ_JUMP, Code.SEQ_JUMP), (EPOCH_JUMP, Code.EPOCH_JUMP)):
                hit = mine[verdict[mine] == code]
                if not hit.size:
                    continue
                i = int(hit[0])
                what = (f"seq more than {MAX_SEQ_JUMP:,} ahead of the device's newest, or at "
                        f"least {SEQ_LIMIT}" if jump == Code.SEQ_JUMP else
                        f"epoch more than {MAX_EPOCH_JUMP:,} ahead of the device's and later "
                        f"than the clock allows, or at least {EPOCH_LIMIT}")
                self._dead(step, m, area, gateway,
                           f"{hit.size} reading(s) refused ({what}), e.g. device "
                           f"{names[int(dev[i])]!r} epoch {int(epoch[i])} seq {int(seq[i])}",
                           jump)

    def _condition(self, change: ConditionChange, step: _Step, now: int) -> None:
        device, _kind, gateway, area = self.registry.describe(change.device)
        self._emit_all(step, self.lifecycle.condition(
            device=device, alert_type=change.type, grade=change.grade, gateway=gateway,
            area=area, ts_event=change.ts_event, ts=change.ts, value=round(change.value, 4),
            reason=change.reason, now=now, own_clock=True))

    def _emit(self, step: _Step, alert: Alert, now: int, dispatched: bool = False) -> None:
        """Store and publish one recorded alert transition; the dispatch engine hears it
        (unless the engine caused it: `dispatched`)."""
        self.stats.alerts[f"{alert.type}/{alert.grade.value}/{alert.state.value}"] += 1
        step.lines.append(self.formatter.alert(alert))
        step.announce.append((topics.alerts_topic(alert.area), alert.to_json()))
        if not dispatched and alert.state != AlertState.ACKNOWLEDGED:
            self._dispatched(step, self.dispatch.on_alert(alert, self._dispatch_clock(now)))
