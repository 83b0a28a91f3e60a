"""The simulated responders on a broker: one paho client for everyone of the directory.

    responders = LiveResponders("127.0.0.1", 1883, ResponderSim(directory, truth), WallClock())
    responders.start(timeout=10)
    ...                                    # the fleet runs; the core dispatches
    responders.wait_settled(600, stop)     # every case it heard of closed, or 600 s
    report = responders.stop(timeout=10)

It subscribes to `sensing/v1/dispatch/#`, `sensing/v1/cases/#` and the dead letters of acks
(`sensing/v1/deadletter/_/ack`, to count its refused actions), feeds `ResponderSim` and
publishes the actions it plans, each on its person's `sensing/v1/ack/{responder}`, QoS 1.

Time: live, the wall clock (`WallClock`), as the core escalates. Replaying a recording, the
fleet's clock (`FleetClock`): the core's case messages carry it in `ts`; between them it runs
on at the replay's speed, and a delay of N simulated seconds takes N / speed wall seconds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from pydantic import ValidationError

from sensing.dispatch.directory import Directory
from sensing.wire import topics
from sensing_sim.responders import Behaviour, CaseMessage, DispatchMessage, ResponderSim, Truth

CASES_FILTER: Final = f"{topics.PREFIX}/cases/#"
ACK_DEADLETTER_TOPIC: Final = topics.deadletter_topic("_", "ack")
MAX_MESSAGE_BYTES: Final = 256 * 1024
"""larger messages on the topics listened to are skipped (a case or alert object is ~1 KB)"""
QUIET_S: Final = 10.0
"""`settled` needs this long without a new case message (the core may still be publishing
the cases of the run's own end)"""
TICK_S: Final = 0.5


class Clock(Protocol):
    def now_ms(self) -> int: ...
    def observe(self, ts_ms: int) -> None: ...
    def wall_s_until(self, due_ms: int) -> float: ...


class WallClock:
    """Milliseconds since the Unix epoch, as the core's clock in live operation."""

    kind = "wall"

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def observe(self, ts_ms: int) -> None:
        pass

    def wall_s_until(self, due_ms: int) -> float:
        return (due_ms - self.now_ms()) / 1000


class FleetClock:
    """The fleet's clock in a replay: the latest case time heard, running on at `speed`
    simulated seconds per wall second (never backwards). Before any case, the wall clock."""

    kind = "fleet"

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._anchor: tuple[int, float] | None = None
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            anchor = self._anchor
        if anchor is None:
            return time.time_ns() // 1_000_000
        ts, mono = anchor
        return ts + round((time.monotonic() - mono) * 1000 * self.speed)

    def observe(self, ts_ms: int) -> None:
        if self._anchor is None or ts_ms > self.now_ms():
            with self._lock:
                self._anchor = (ts_ms, time.monotonic())

    def wall_s_until(self, due_ms: int) -> float:
        return (due_ms - self.now_ms()) / 1000 / self.speed


@dataclass(frozen=True, slots=True)
class RespondersSetup:
    """What `sensing_sim.live.run_live` needs to run the responders beside the fleet."""

    directory: Directory
    behaviour: Behaviour = field(default_factory=Behaviour)
    seed: int | None = None
    """None: the fleet's seed"""
    linger_s: float = 3600.0
    """after the fleet stops, how long the responders go on until every case is closed"""


@dataclass(slots=True)
class _Counts:
    dispatch: int = 0
    cases: int = 0
    refusals: int = 0
    invalid: int = 0
    published: int = 0


class LiveResponders:
    """The responders' MQTT client and the thread that acts when actions fall due."""

    def __init__(self, host: str, port: int, sim: ResponderSim, clock: Clock,
                 quiet_s: float = QUIET_S) -> None:
        self.host, self.port = host, port
        self.quiet_s = quiet_s
        self.sim = sim
        self.clock = clock
        self.counts = _Counts()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._failure: list[str] = []
        self._last_case = time.monotonic()
        self._acting: set[str] = set()
        self._inflight: list[mqtt.MQTTMessageInfo] = []
        self._thread = threading.Thread(target=self._run, name="sim-responders", daemon=True)
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"sensing-sim-responders-{uuid.uuid4().hex[:12]}")
        self._client.max_inflight_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # -- paho's thread ---------------------------------------------------------------------

    def _on_connect(self, c: mqtt.Client, u: object, flags: object, rc: Any,
                    p: object) -> None:
        if rc.is_failure:
            self._failure.append(f"the broker refused the connection: {rc}")
            self._subscribed.set()
            return
        c.subscribe([(topics.DISPATCH_FILTER, 1), (CASES_FILTER, 1),
                     (ACK_DEADLETTER_TOPIC, 1)])

    def _on_subscribe(self, c: mqtt.Client, u: object, mid: int, codes: Any,
                      p: object) -> None:
        if any(code.is_failure for code in codes):
            self._failure.append(f"the broker refused the subscriptions: {codes}")
        self._subscribed.set()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if len(msg.payload) > MAX_MESSAGE_BYTES:
            self.counts.invalid += 1
            return
        try:
            doc = orjson.loads(msg.payload)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            with self._cond:
                self._take_in(msg.topic, doc)
                self._cond.notify()
        except (ValueError, ValidationError):  # orjson.JSONDecodeError is a ValueError
            self.counts.invalid += 1

    def _take_in(self, topic: str, doc: dict[str, Any]) -> None:
        if topic.startswith(topics.DISPATCH_FILTER[:-1]):
            dispatch = DispatchMessage.model_validate(doc)
            self.counts.dispatch += 1
            self.sim.on_dispatch(dispatch, self.clock.now_ms())
        elif topic.startswith(CASES_FILTER[:-1]):
            case = CaseMessage.model_validate(doc)
            self.counts.cases += 1
            self._last_case = time.monotonic()
            self.clock.observe(case.ts)
            self.sim.on_case(case, self.clock.now_ms())
        elif topic == ACK_DEADLETTER_TOPIC:
            who = topics.ack_responder(str(doc.get("topic", "")))
            if who is not None and who in self._acting:
                self.counts.refusals += 1
                self.sim.on_refusal(str(doc.get("code", "")))

    # -- the acting thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                actions = self.sim.due(self.clock.now_ms())
                due = self.sim.next_due_ms()
            for action in actions:
                topic, payload = action.message()
                self._acting.add(action.responder)
                info = self._client.publish(topic, payload, qos=1)
                if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self.counts.published += 1
                    self._inflight = [i for i in self._inflight if not i.is_published()]
                    self._inflight.append(info)
            wait = TICK_S if due is None else min(TICK_S, max(0.0, self.clock.wall_s_until(due)))
            with self._cond:
                self._cond.wait(wait)

    # -- the caller's --------------------------------------------------------------------------

    def start(self, timeout: float) -> None:
        """Connect, subscribe and start acting; RuntimeError if the broker does not let it."""
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise RuntimeError(f"responders: cannot connect to {self.host}:{self.port}: "
                               f"{exc}") from exc
        self._client.loop_start()
        if not self._subscribed.wait(timeout) or self._failure:
            self._client.loop_stop()
            raise RuntimeError("responders: " + (self._failure[0] if self._failure else
                               f"no answer from {self.host}:{self.port} in {timeout:g} s"))
        self._thread.start()

    def shutdown_from(self, ms: int) -> None:
        with self._cond:
            self.sim.shutdown_from(ms)

    def open_cases(self) -> int:
        with self._cond:
            return self.sim.open_cases()

    def settled(self) -> bool:
        """Every case heard of is closed, and no case message came for `quiet_s`."""
        with self._cond:
            return (self.sim.open_cases() == 0
                    and time.monotonic() - self._last_case >= self.quiet_s)

    def wait_settled(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.settled():
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop.wait(min(left, 0.2))):
                return False
            if stop is None:
                time.sleep(min(left, 0.2))
        return True

    def stop(self, timeout: float) -> dict[str, Any]:
        """Stop acting, wait for the broker to take what was published, report."""
        self._stopping.set()
        with self._cond:
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        for info in list(self._inflight):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            info.wait_for_publish(left)
        self._client.disconnect()
        self._client.loop_stop()
        return self.report()

    def report(self) -> dict[str, Any]:
        with self._cond:
            out = self.sim.report()
        c = self.counts
        unconfirmed = sum(1 for i in self._inflight if not i.is_published())
        return {**out, "clock": getattr(self.clock, "kind", "wall"),
                "heard": {"dispatch": c.dispatch, "cases": c.cases, "refusals": c.refusals,
                          "invalid": c.invalid},
                "published": c.published, "unconfirmed": unconfirmed}


def start_responders(setup: RespondersSetup, labels: Sequence[Mapping[str, Any]], host: str,
                     port: int, clock: Clock, default_seed: int, timeout_s: float
                     ) -> LiveResponders:
    """The responders of `setup`, connected and acting, with `labels` (on `clock`'s time) as
    their ground truth; RuntimeError if the broker does not let them."""
    seed = default_seed if setup.seed is None else setup.seed
    responders = LiveResponders(host, port, ResponderSim(setup.directory, Truth(labels),
                                                         setup.behaviour, seed), clock)
    responders.start(timeout_s)
    return responders


def linger_until_settled(responders: LiveResponders, linger_s: float, stop: threading.Event,
           tick: Callable[[float], None] | None = None, every_s: float = 5.0) -> float:
    """Let the responders go on until every case they heard of is closed, `linger_s` passes or
    `stop` is set; `tick(seconds lingered)` every `every_s`. Returns the seconds lingered."""
    started = time.monotonic()
    next_tick = 0.0
    while not stop.is_set() and not responders.settled():
        lingered = time.monotonic() - started
        if lingered >= linger_s:
            break
        if tick is not None and lingered >= next_tick:
            next_tick += every_s
            tick(lingered)
        stop.wait(min(0.2, linger_s - lingered))
    return round(time.monotonic() - started, 3)
