"""A fleet fed straight into the core in this process: no broker, no store, a simulated clock.

The messages of a `FleetStream` (each gateway's readings every `poll_s` of simulated time, as
its edge agent sends them, with any transport faults) or of a recording are handed to
`sensing.pipeline.Pipeline` in arrival order; the alert transitions and dead letters the core
publishes are collected. A day of a fleet runs in minutes, and the same seed gives the same
alerts.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sensing.ingest.mqtt import Incoming
from sensing.pipeline import Pipeline
from sensing.settings import CoreSettings
from sensing.wire import topics
from sensing_sim.fleet import Fleet
from sensing_sim.transport import FleetStream, Message, TransportFaults

_ALERTS = topics.ALERTS_FILTER.removesuffix("#")
_DEADLETTER = topics.DEADLETTER_FILTER.removesuffix("#")


@dataclass
class OfflineRun:
    """What an offline run produced."""

    start_ms: int
    sim_s: float
    readings: int = 0
    """readings in the messages the core was given (duplicates included)"""
    messages: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    """every alert transition the core published, in order"""
    deadletters: list[dict[str, Any]] = field(default_factory=list)
    """every dead letter the core published, in order"""
    sent: dict[str, object] = field(default_factory=dict)
    """what the stream sent (`StreamCounts.to_dict`); empty for a recording"""
    core: dict[str, object] = field(default_factory=dict)
    """the core's counters at the end"""
    wall_s: float = 0.0


def feed_core(steps: Iterable[tuple[int, Iterable[Message]]], run: OfflineRun, *,
              state_dir: Path | None = None,
              progress: Callable[[float], None] | None = None) -> OfflineRun:
    """Hand each step's messages to a fresh core at the step's time; fills `run`."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        settings = CoreSettings.model_construct(state_dir=state_dir or Path(tmp))
        pipe = Pipeline(settings)
        try:
            mid = 0
            for now, arrived in steps:
                messages: list[Incoming] = []
                for m in arrived:
                    mid += 1
                    messages.append(Incoming(m.topic, m.payload, mid, 1, 0))
                    run.readings += m.readings
                run.messages += len(messages)
                out = pipe.process(messages, now)
                for t, p in out.messages:
                    if t.startswith(_ALERTS):
                        run.alerts.append(orjson.loads(p))
                    elif t.startswith(_DEADLETTER):
                        run.deadletters.append(orjson.loads(p))
                if progress is not None:
                    progress(min(run.sim_s, (now - run.start_ms) / 1000))
            run.core = pipe.stats.as_dict()
        finally:
            pipe.book.close()
    run.wall_s = time.perf_counter() - started
    return run


def run_offline(fleet: Fleet, duration_s: float, *, start_ms: int, poll_s: float = 1.0,
                epoch: int = 1, faults: TransportFaults | None = None,
                state_dir: Path | None = None,
                progress: Callable[[float], None] | None = None) -> OfflineRun:
    """Run `fleet` for `duration_s` of simulated time from `start_ms` through a fresh core;
    `progress` is called with the simulated seconds done after each step."""
    stream = FleetStream(fleet, duration_s, start_ms=start_ms, faults=faults, poll_s=poll_s,
                         epoch=epoch)
    run = OfflineRun(start_ms=start_ms, sim_s=duration_s)
    feed_core(stream.steps(), run, state_dir=state_dir, progress=progress)
    run.sent = stream.counts.to_dict()
    return run
