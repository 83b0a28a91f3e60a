"""The delivery loop: pending notifications from the outbox out through their channels.

One pump thread owns the outbox's connection: it hands due notifications to each channel's
bounded queue and records every outcome. Each channel has its own worker threads, so a
channel that is down or slow holds only its own workers. Within a channel, two bounds keep
one bad route (an HTTP origin, an Apprise account: `route_key`) from delaying the others:

- at most `per_route_inflight` notifications of one route are in flight at once, so a route
  that hangs holds at most that many of the channel's `workers` (the others keep serving
  other routes: a live receiver waits at most for a free worker, never for a dead one);
- after `breaker_failures` consecutive retry outcomes a route's breaker opens: its
  notifications stay pending, unattempted, for `breaker_cooldown_ms`, then one probe goes
  (half-open); a sent or a permanent answer closes it again.

A retry waits `backoff_ms` (capped exponential with jitter, or longer if the receiver asked
with Retry-After); a notification fails for good after `max_attempts` attempts or
`max_age_ms` after its first. Nothing is marked before its outcome is known: a notification in
flight when the process stops is still queued/retrying in the outbox and goes again after the
restart, with the same idempotency key.

Every time the loop keeps (first attempt, next attempt) is on its own clock, so notifications
may be queued on any clock (the case's, the fleet's in a replay): a queued one is due at once.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog
from pydantic import BaseModel, ConfigDict, Field

from sensing.dispatch.channels.base import Channel, SendOutcome
from sensing.dispatch.outbox import AttemptResult, Due, Outbox

log = structlog.get_logger("sensing.dispatch.deliver")

Clock = Callable[[], int]
"""milliseconds since the Unix epoch"""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    base_ms: int = Field(default=1000, ge=1, le=3_600_000)
    """delay after the first failed attempt (before jitter)"""
    cap_ms: int = Field(default=60_000, ge=1, le=86_400_000)
    jitter: float = Field(default=0.5, ge=0.0, le=1.0)
    """each delay is shortened by a random fraction up to this, so retries of many
    notifications to one recovering receiver spread out instead of arriving together"""
    max_attempts: int = Field(default=12, ge=1, le=1000)
    max_age_ms: int = Field(default=1_800_000, ge=1)
    """a notification not sent this long after its first attempt is failed: the escalation
    has moved on (one never tried is not: it waits for its route, or its case's cancel)"""


def nominal_backoff_ms(attempt: int, policy: RetryPolicy) -> int:
    """Delay after the `attempt`-th failed attempt (1-based), before jitter:
    base, 2 base, 4 base, ... capped."""
    doubling = min(max(attempt, 1) - 1, 40)  # 2**40 s is past any cap: no huge integers
    return min(policy.cap_ms, policy.base_ms << doubling)


def backoff_ms(attempt: int, policy: RetryPolicy, u: float) -> int:
    """`nominal_backoff_ms` shortened by `u * jitter` of itself (`u` uniform in [0, 1))."""
    nominal = nominal_backoff_ms(attempt, policy)
    return max(1, round(nominal * (1.0 - policy.jitter * min(max(u, 0.0), 1.0))))


class DeliveryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    workers: int = Field(default=4, ge=1, le=64)
    """sender threads per channel"""
    queue_size: int = Field(default=64, ge=1, le=10_000)
    """notifications handed to a channel and not yet taken by a worker, at most"""
    per_route_inflight: int = Field(default=1, ge=1, le=64)
    breaker_failures: int = Field(default=3, ge=1, le=1000)
    breaker_cooldown_ms: int = Field(default=30_000, ge=0, le=3_600_000)
    poll_ms: int = Field(default=250, ge=1, le=60_000)
    """how often the outbox is looked at when nobody calls `wake` (retries falling due)"""
    max_breakers: int = Field(default=10_000, ge=1)
    """routes with failures remembered at most (beyond: the oldest is forgotten)"""


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    open_until_ms: int = 0


@dataclass(frozen=True, slots=True)
class _Done:
    due: Due
    outcome: SendOutcome
    finished_ms: int
    duration_ms: int


@dataclass(slots=True)
class _Lane:
    channel: Channel
    queue: queue.Queue[Due]
    threads: list[threading.Thread] = field(default_factory=list)


class Deliverer:
    """Runs the loop in threads: `start()`, `wake()` after enqueuing, `stop()`.

    The outbox must have a connection of its own (open it by path): the pump commits on it
    from its thread, which must not commit another component's transaction."""

    def __init__(self, outbox: Outbox, channels: Iterable[Channel],
                 policy: DeliveryPolicy | None = None, clock: Clock = wall_clock_ms,
                 rng: random.Random | None = None) -> None:
        self.outbox = outbox
        self.policy = policy or DeliveryPolicy()
        self.clock = clock
        """the delivery clock: attempts and retries are timed on it"""
        self._rng = rng or random.Random()
        self._lanes = {c.name: _Lane(c, queue.Queue(self.policy.queue_size)) for c in channels}
        self._done: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._pump: threading.Thread | None = None
        self._inflight: dict[str, Due] = {}  # by notification_id
        self._channel_load: Counter[str] = Counter()
        self._route_load: Counter[str] = Counter()
        self._breakers: dict[str, _Breaker] = {}
        self.outcomes: Counter[str] = Counter()
        """sent / retry / failed / expired since start (for tests and the core's stats)"""

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._pump is not None:
            raise RuntimeError("already started")
        for name, lane in self._lanes.items():
            for i in range(self.policy.workers):
                t = threading.Thread(target=self._work, args=(lane,), daemon=True,
                                     name=f"deliver-{name}-{i}")
                lane.threads.append(t)
                t.start()
        self._pump = threading.Thread(target=self._run, daemon=True, name="deliver-pump")
        self._pump.start()
        log.info("delivery started", channels=sorted(self._lanes),
                 workers=self.policy.workers, per_route_inflight=self.policy.per_route_inflight)

    def wake(self) -> None:
        """Look at the outbox now (new notifications were committed)."""
        self._wakeup.set()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Let the sends in progress finish (each is bounded by its channel's timeouts) and
        record them; what is still queued stays pending in the outbox for the next start."""
        self._stopping.set()
        self._wakeup.set()
        deadline = time.monotonic() + timeout_s
        if self._pump is not None:
            self._pump.join(max(0.0, deadline - time.monotonic()))
        for lane in self._lanes.values():
            for t in lane.threads:
                t.join(max(0.0, deadline - time.monotonic()))
        self._record_done()
        stuck = sum(t.is_alive() for lane in self._lanes.values() for t in lane.threads)
        log.info("delivery stopped", in_flight_left=len(self._inflight), stuck_workers=stuck)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # --- the pump ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                self._record_done()
                now = self.clock()
                for name, lane in self._lanes.items():
                    self._fill(name, lane, now)
            except Exception:  # a database hiccup (locked too long): the next round retries
                log.exception("delivery round failed")
            self._wakeup.wait(self.policy.poll_ms / 1000)

    def _blocked_routes(self, now: int) -> set[str]:
        limit = self.policy.per_route_inflight
        blocked = {k for k, n in self._route_load.items() if n >= limit}
        for key, b in self._breakers.items():
            if b.failures >= self.policy.breaker_failures and (
                    now < b.open_until_ms or self._route_load[key] > 0):
                blocked.add(key)  # open, or half-open with its one probe out
        return blocked

    def _fill(self, name: str, lane: _Lane, now: int) -> None:
        free = lane.queue.maxsize - lane.queue.qsize()
        if free <= 0:
            return
        blocked = self._blocked_routes(now)
        chosen: list[str] = []
        taken: Counter[str] = Counter()
        for c in self.outbox.candidates(now, name, free + self._channel_load[name], blocked):
            key = c.route_key
            if c.notification_id in self._inflight or key in blocked:
                continue
            age = 0 if c.first_attempt_ms is None else now - c.first_attempt_ms
            if age > self.policy.retry.max_age_ms:
                if self.outbox.give_up(c.notification_id, now,
                                       f"expired: not sent {age} ms after the first attempt"):
                    self.outcomes["expired"] += 1
                    log.warning("notification expired", notification_id=c.notification_id,
                                route=key)
                continue
            chosen.append(c.notification_id)
            taken[key] += 1
            if self._route_load[key] + taken[key] >= self._route_limit(key):
                blocked.add(key)
            if len(chosen) == free:
                break
        for due in self.outbox.load(chosen, now):
            self._inflight[due.notification.notification_id] = due
            self._channel_load[name] += 1
            self._route_load[due.route_key] += 1
            lane.queue.put_nowait(due)

    def _route_limit(self, key: str) -> int:
        b = self._breakers.get(key)
        if b is not None and b.failures >= self.policy.breaker_failures:
            return 1  # half-open: one probe
        return self.policy.per_route_inflight

    def _record_done(self) -> None:
        results: list[AttemptResult] = []
        while True:
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                break
            results.append(self._settle(done))
        if results:
            self.outbox.record(results)

    def _settle(self, done: _Done) -> AttemptResult:
        due, outcome, now = done.due, done.outcome, done.finished_ms
        n = due.notification
        key = due.route_key
        del self._inflight[n.notification_id]
        self._channel_load[n.contact.channel] -= 1
        self._route_load[key] -= 1
        if self._route_load[key] <= 0:
            del self._route_load[key]
        attempt = due.attempts + 1
        ctx = {"notification_id": n.notification_id, "case_id": n.case_id, "route": key,
               "responder": n.responder, "role": n.role, "attempt": attempt,
               "duration_ms": done.duration_ms}
        if outcome.outcome != "retry":
            self._breakers.pop(key, None)  # the receiver answered
            self.outcomes[outcome.outcome] += 1
            if outcome.outcome == "sent":
                log.info("notification sent", **ctx)
            else:
                log.warning("notification failed", reason=outcome.reason, **ctx)
            return AttemptResult(n.notification_id, now, outcome.outcome, outcome.reason,
                                 done.duration_ms)
        self._trip(key, now)
        if attempt >= self.policy.retry.max_attempts:
            self.outcomes["failed"] += 1
            reason = f"gave up after {attempt} attempts: {outcome.reason}"
            log.warning("notification failed", reason=reason, **ctx)
            return AttemptResult(n.notification_id, now, "failed", reason, done.duration_ms)
        delay = backoff_ms(attempt, self.policy.retry, self._rng.random())
        delay = max(delay, outcome.retry_after_ms or 0)
        self.outcomes["retry"] += 1
        log.warning("notification will be retried", reason=outcome.reason, delay_ms=delay,
                    **ctx)
        return AttemptResult(n.notification_id, now, "retry", outcome.reason, done.duration_ms,
                             next_attempt_ms=now + delay)

    def _trip(self, key: str, now: int) -> None:
        b = self._breakers.pop(key, None) or _Breaker()
        self._breakers[key] = b  # most recently failing last: the first is the one to forget
        b.failures += 1
        if b.failures >= self.policy.breaker_failures:
            if b.failures == self.policy.breaker_failures:
                log.warning("route failing: its breaker opens", route=key,
                            failures=b.failures, cooldown_ms=self.policy.breaker_cooldown_ms)
            b.open_until_ms = now + self.policy.breaker_cooldown_ms
        while len(self._breakers) > self.policy.max_breakers:
            del self._breakers[next(iter(self._breakers))]

    # --- the workers -------------------------------------------------------------------------

    def _work(self, lane: _Lane) -> None:
        while not self._stopping.is_set():
            try:
                due = lane.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            started = time.monotonic()
            try:
                outcome = lane.channel.send(due.notification)
            except Exception as e:  # a channel bug must not kill its worker
                log.exception("channel raised", channel=lane.channel.name)
                outcome = SendOutcome.retry(f"channel raised {type(e).__name__}")
            took = round((time.monotonic() - started) * 1000)
            self._done.put(_Done(due, outcome, self.clock(), took))
            if not self._wakeup.is_set():
                self._wakeup.set()
