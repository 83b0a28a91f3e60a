"""Run a fleet live against a broker: one real edge agent per gateway.

    report = run_live(fleet, LiveOptions(port=1883, duration_s=60, duplicate_rate=0.02,
                                         malformed=6))
    report = run_live(district, LiveOptions(port=1883, duration_s=120, processes=None))

Each agent has its own MQTT client and threads. A small fleet runs in this process; a large
one is shared out over worker processes (`processes`; None picks `default_processes`), each
rebuilding the fleet from its spec and running the agents of a contiguous run of gateways
(`sensing_sim.live_workers`). One process holds at most about 300 agents: paho's network
loop uses select(), blind to file descriptors from 1,024 on.

Faults are injected beside the agents by separate MQTT clients: duplicates re-publish a
fraction of the agents' batches on the same topic (in the agents' process), malformed
messages are spread over the run on the gateways' readings topics (from this process). A
gateway with `gateway.offline` incidents (`Fleet.gateway_outages`) reaches the broker through
a loopback relay that cuts its link in each incident's window (`sensing_sim.live_relay`): the
broker publishes the agent's last will, the agent buffers and delivers after it reconnects.
Every injected fault is counted in the `LiveReport`.

With `responders` (a directory), the directory's people answer the core's dispatch beside the
fleet (`sensing_sim.responders`): they take, reach and dispose of its cases on the wall clock.
Once the fleet stops they go on until every case they heard of is closed, or
`RespondersSetup.linger_s` passes; the report's `responders` says what they did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from sensing.wire.topics import readings_topic
from sensing_edge.agent import wall_clock_ms
from sensing_edge.batching import PayloadFormat
from sensing_sim.faults import MALFORMED_REASONS, CountsMalformed, malformed_payload
from sensing_sim.fleet import Fleet
from sensing_sim.live_shard import (
    FaultClient,
    LiveError,
    Shard,
    ShardCounters,
    auto_poll_interval,
    check_reachable,
)
from sensing_sim.live_workers import WorkerPool, default_processes
from sensing_sim.responders_live import (
    LiveResponders,
    RespondersSetup,
    WallClock,
    linger_until_settled,
    start_responders,
)

__all__ = ["LiveError", "LiveOptions", "LiveProgress", "LiveReport", "RespondersSetup",
           "default_processes", "run_live"]

CONNECT_S_PER_AGENT = 0.05
"""added to connect_timeout_s per agent for the agents' first connections"""
LAUNCH_TIMEOUT_S = 180.0
"""how long worker processes may take to build their fleet and agents"""


@dataclass(frozen=True, slots=True)
class LiveOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    duration_s: float = 60.0
    duplicate_rate: float = 0.0
    """fraction of published batches re-published once more"""
    malformed: int = 0
    """malformed messages, spread over the run, cycling through MALFORMED_REASONS"""
    payload_format: PayloadFormat = "snb1"
    epoch: int | None = None
    """epoch of every device's readings; None: seconds since the Unix epoch at the start,
    so each run is a fresh restart of the fleet and never repeats an earlier run's names"""
    batch_max_readings: int = 200
    batch_max_age_s: float = 0.5
    connect_timeout_s: float = 10.0
    stop_timeout_s: float = 10.0
    progress_every_s: float = 5.0
    processes: int | None = 1
    """processes the agents run in: 1, this one; more, worker processes (the gateways
    shared out in contiguous runs); None, `default_processes(fleet)`"""
    poll_interval_s: float | None = None
    """how often each agent polls its devices; None: `auto_poll_interval` (a tenth of the
    fleet's sampling interval, 0.1-1 s)"""
    reconnect_max_s: float | None = None
    """the agents' longest wait between reconnect attempts; None: the agent's default"""
    confirm: Literal["core", "broker"] = "broker"
    """when the agents delete a reading: at the broker's PUBACK (the fleet needs no core), or
    when the core confirms it stored it, as deployed gateways do (sensing_edge.agent)"""
    worker_log_level: str = "WARNING"
    """log level of the agents in worker processes (on stderr)"""

    def __post_init__(self) -> None:
        if not 0.0 <= self.duplicate_rate <= 1.0:
            raise ValueError("duplicate_rate must be between 0 and 1")
        if self.malformed < 0:
            raise ValueError("malformed must be >= 0")
        if not self.duration_s > 0:
            raise ValueError("duration_s must be positive")
        if self.processes is not None and self.processes < 1:
            raise ValueError("processes must be at least 1")
        if self.poll_interval_s is not None and not self.poll_interval_s > 0:
            raise ValueError("poll_interval_s must be positive")


@dataclass(frozen=True, slots=True)
class LiveProgress:
    elapsed_s: float
    readings_sampled: int
    readings_sent_unique: int
    readings_acked: int
    duplicate_readings: int
    malformed_sent: int
    gateways_online: int = 0
    gateways: int = 0
    cases_open: int | None = None
    """cases the simulated responders know of that are not closed; None: no responders"""
    responder_actions: int = 0
    lingering: bool = False
    """the fleet has stopped; the responders go on until every case is closed"""


@dataclass(slots=True)
class LiveReport(CountsMalformed):
    """What a live run did; `to_json()` for files and `--json`."""

    broker: str
    gateways: int
    devices: int
    interval_s: float
    seed: int
    epoch: int
    payload_format: str
    start_ms: int
    end_ms: int
    duration_s: float
    stopping_ms: int
    """when the agents began to stop: from then on each says `offline` (and the core raises
    gateway.offline for it), the run's own shutdown rather than an incident"""
    stopped_early: bool
    all_acked: bool
    """every batch of every agent was acknowledged by the broker before it stopped"""
    readings_sampled: int
    readings_sent_unique: int
    """distinct (device, epoch, seq) the agents published (each batch decoded and tallied)"""
    readings_acked: int
    batches_published: int
    duplicate_batches_injected: int
    duplicate_readings_injected: int
    malformed_sent: dict[str, int]
    incidents: list[dict[str, object]] = field(default_factory=list)
    """the labels that started within the run; `start_s`/`end_s` from `start_ms`,
    `ts_start`/`ts_end` in ms"""
    processes: int = 1
    poll_interval_s: float = 0.1
    readings_published: int = 0
    """readings in batches the agents handed to MQTT (their own count)"""
    connects: int = 0
    """successful connections of all agents (one each, more after outages)"""
    outages: list[dict[str, object]] = field(default_factory=list)
    """link outages as the relays carried them out (`sensing_sim.live_relay.OutageRecord`)"""
    sim_cpu_s: float = 0.0
    """CPU time (user + system) of the simulator's processes"""
    sim_max_rss_mb: float = 0.0
    """the peak resident memory of the simulator's processes, added up"""
    errors: list[str] = field(default_factory=list)
    """worker processes that did not stop in time (their last counters stand in)"""
    responders: dict[str, Any] | None = None
    """what the simulated responders did (`ResponderSim.report`, `LiveResponders.report`);
    None: none ran"""
    linger_s: float = 0.0
    """how long the responders went on after the fleet stopped"""


    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)


class _Shards(Protocol):
    """Where the agents run: this process (`_LocalShard`) or workers (`WorkerPool`)."""

    def launch(self, timeout: float) -> None: ...
    def start(self, start_ms: int) -> None: ...
    def counters(self) -> ShardCounters: ...
    def stop(self, timeout: float) -> ShardCounters: ...
    def close(self) -> None: ...


class _LocalShard:
    def __init__(self, shard: Shard) -> None:
        self.shard = shard

    def launch(self, timeout: float) -> None:
        pass

    def start(self, start_ms: int) -> None:
        self.shard.start(start_ms)

    def counters(self) -> ShardCounters:
        return self.shard.counters()

    def stop(self, timeout: float) -> ShardCounters:
        return self.shard.stop(timeout)

    def close(self) -> None:
        pass


class _LiveRun:
    """One live run: where its agents run, malformed messages, its clock and its counters."""

    def __init__(self, fleet: Fleet, options: LiveOptions, stop: threading.Event,
                 responders: RespondersSetup | None = None) -> None:
        self.fleet, self.options, self.stop = fleet, options, stop
        self.responders_setup = responders
        self.responders: LiveResponders | None = None
        self.responders_report: dict[str, Any] | None = None
        self.linger_s = 0.0
        self.epoch = int(time.time()) if options.epoch is None else options.epoch
        self.processes = options.processes or default_processes(fleet)
        self.shards: _Shards = (
            _LocalShard(Shard(fleet, fleet.gateways, options, self.epoch))
            if self.processes == 1 else WorkerPool(fleet, options, self.epoch, self.processes))
        self.faults = FaultClient(options.host, options.port) if options.malformed > 0 else None
        n = options.malformed
        self.malformed_due = [  # (seconds into the run, reason, gateway), evenly spread
            (options.duration_s * (k + 1) / (n + 1), MALFORMED_REASONS[k % len(MALFORMED_REASONS)],
             fleet.gateways[k % len(fleet.gateways)])
            for k in range(n)
        ]
        self.malformed_made = 0
        self.start_ms = wall_clock_ms()
        self.t0 = time.monotonic()
        self.final = ShardCounters()
        self.stopping_ms = 0
        self.stopped_t: float | None = None
        """when the fleet had stopped (the responders may linger on)"""

    def run(self, progress: Callable[[LiveProgress], None] | None) -> None:
        o = self.options
        completed = False
        try:
            self.shards.launch(LAUNCH_TIMEOUT_S)
            if self.faults is not None:
                self.faults.connect(o.connect_timeout_s)
            self.start_ms = wall_clock_ms()
            self.t0 = time.monotonic()
            self._start_responders()
            self.shards.start(self.start_ms)
            self._wait_connected()
            next_progress = o.progress_every_s
            while not self.stop.is_set():
                elapsed = time.monotonic() - self.t0
                if elapsed >= o.duration_s:
                    break
                self._send_due_malformed(elapsed)
                if progress is not None and elapsed >= next_progress:
                    next_progress += o.progress_every_s
                    progress(self.progress(elapsed))
                self.stop.wait(min(0.1, o.duration_s - elapsed))
            completed = True
        finally:
            self.stopping_ms = wall_clock_ms()
            if self.responders is not None:
                self.responders.shutdown_from(self.stopping_ms)
            try:
                self.final = self.shards.stop(o.stop_timeout_s)
            finally:
                if self.faults is not None:
                    self.faults.close(o.stop_timeout_s)
                self.shards.close()
                self.stopped_t = time.monotonic()
                self._finish_responders(progress if completed else None, linger=completed)

    def _start_responders(self) -> None:
        setup, o = self.responders_setup, self.options
        if setup is None:
            return
        labels = [i.to_dict(self.start_ms) for i in self.fleet.incidents]
        try:
            self.responders = start_responders(setup, labels, o.host, o.port, WallClock(),
                                               self.fleet.spec.seed, o.connect_timeout_s)
        except RuntimeError as exc:
            raise LiveError(str(exc)) from None

    def _finish_responders(self, progress: Callable[[LiveProgress], None] | None,
                           linger: bool) -> None:
        """Let the responders close their cases (unless the run was stopped or failed), then
        stop them."""
        responders, setup = self.responders, self.responders_setup
        if responders is None or setup is None:
            return
        o = self.options

        def tick(_: float) -> None:
            if progress is not None:
                progress(self.progress(time.monotonic() - self.t0, lingering=True))

        try:
            if linger:
                self.linger_s = linger_until_settled(responders, setup.linger_s, self.stop,
                                                     tick, o.progress_every_s)
        finally:
            self.responders_report = responders.stop(o.stop_timeout_s)

    def _wait_connected(self) -> None:
        """Until every agent is connected, but those whose link is cut this early."""
        o = self.options
        cut_early = sum(1 for gw in self.fleet.gateways if any(
            i.start_s < o.connect_timeout_s for i in self.fleet.gateway_outages(gw.id)))
        wanted = len(self.fleet.gateways) - cut_early
        # hundreds of agents connecting at once in busy processes take their time
        deadline = time.monotonic() + o.connect_timeout_s + CONNECT_S_PER_AGENT * wanted
        while self.shards.counters().connected < wanted:
            if time.monotonic() >= deadline:
                raise LiveError(f"the edge agents could not connect to {o.host}:{o.port}")
            if self.stop.wait(0.05):
                return

    def _send_due_malformed(self, elapsed: float) -> None:
        gateways, due = self.fleet.gateways, self.malformed_due
        while self.faults is not None and due and due[0][0] <= elapsed:
            _, reason, gw = due.pop(0)
            other = gateways[(gateways.index(gw) + 1) % len(gateways)].id
            other = other if other != gw.id else f"{gw.id}-other"
            payload = malformed_payload(reason, self.malformed_made, wall_clock_ms(), other)
            self.faults.publish(readings_topic(gw.area, gw.id), payload, reason, 1)
            self.malformed_made += 1

    def _with_malformed(self, counters: ShardCounters) -> ShardCounters:
        counters = ShardCounters.from_dict(counters.to_dict())
        if self.faults is not None:
            self.faults.tally(counters)
        return counters

    def progress(self, elapsed: float, lingering: bool = False) -> LiveProgress:
        c = self._with_malformed(self.final if lingering else self.shards.counters())
        r = self.responders
        return LiveProgress(
            elapsed_s=round(elapsed, 1),
            readings_sampled=c.readings_sampled,
            readings_sent_unique=c.readings_sent_unique,
            readings_acked=c.readings_acked,
            duplicate_readings=c.duplicate_readings,
            malformed_sent=sum(c.malformed.values()),
            gateways_online=0 if lingering else c.connected,
            gateways=len(self.fleet.gateways),
            cases_open=None if r is None else r.open_cases(),
            responder_actions=0 if r is None else r.counts.published,
            lingering=lingering,
        )

    def report(self) -> LiveReport:
        c = self._with_malformed(self.final)
        o, spec = self.options, self.fleet.spec
        # the fleet's run, without the responders' lingering after it
        duration = (self.stopped_t or time.monotonic()) - self.t0
        return LiveReport(
            broker=f"{o.host}:{o.port}",
            gateways=len(self.fleet.gateways),
            devices=len(self.fleet.devices),
            interval_s=spec.interval_s,
            seed=spec.seed,
            epoch=self.epoch,
            payload_format=o.payload_format,
            start_ms=self.start_ms,
            end_ms=wall_clock_ms(),
            duration_s=round(duration, 3),
            stopping_ms=self.stopping_ms,
            stopped_early=self.stop.is_set(),
            all_acked=c.all_acked,
            readings_sampled=c.readings_sampled,
            readings_sent_unique=c.readings_sent_unique,
            readings_acked=c.readings_acked,
            batches_published=c.batches_published,
            duplicate_batches_injected=c.duplicate_batches,
            duplicate_readings_injected=c.duplicate_readings,
            malformed_sent=c.malformed,
            incidents=[i.to_dict(self.start_ms) for i in self.fleet.incidents
                       if i.start_s < max(o.duration_s, duration)],
            processes=self.processes,
            poll_interval_s=(o.poll_interval_s if o.poll_interval_s is not None
                             else auto_poll_interval(spec.interval_s)),
            readings_published=c.readings_published,
            connects=c.connects,
            outages=sorted(c.outages, key=_outage_order),
            sim_cpu_s=c.cpu_s,
            sim_max_rss_mb=c.max_rss_mb,
            errors=list(getattr(self.shards, "errors", [])),
            responders=self.responders_report,
            linger_s=self.linger_s,
        )


def _outage_order(record: dict[str, Any]) -> tuple[str, float]:
    return str(record["gateway"]), float(record["start_s"])


def run_live(
    fleet: Fleet,
    options: LiveOptions,
    *,
    stop: threading.Event | None = None,
    progress: Callable[[LiveProgress], None] | None = None,
    responders: RespondersSetup | None = None,
) -> LiveReport:
    """Run the fleet for `options.duration_s` (or until `stop` is set), stop every agent
    cleanly (waiting for PUBACKs) and report. Blocks; `progress` is called every
    `options.progress_every_s` from this thread.

    With `responders`, the directory's simulated people answer the core's dispatch during
    the run and, after it, for up to `responders.linger_s` until every case is closed.

    Raises LiveError if the broker cannot be reached or a worker process fails, ValueError
    if `options.processes` cannot hold the fleet.
    """
    check_reachable(options.host, options.port, options.connect_timeout_s)
    live = _LiveRun(fleet, options, stop or threading.Event(), responders)
    live.run(progress)
    return live.report()
