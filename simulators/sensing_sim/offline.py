"""A fleet fed straight into the core in this process: no broker, no store, a simulated clock.

Every `poll_s` of simulated time each gateway's devices are polled (as its edge agent would),
numbered `(device, epoch, seq)`, encoded as SNB1 and handed to `sensing.pipeline.Pipeline` as
that gateway's message; the alert transitions the core publishes are collected. A day of a
fleet runs in minutes, and the same seed gives the same alerts.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sensing.ingest.mqtt import Incoming
from sensing.pipeline import Pipeline
from sensing.settings import CoreSettings
from sensing.wire import topics
from sensing_edge.batching import NumberedSample, encode_batch
from sensing_sim.fleet import Fleet

_ALERTS = topics.ALERTS_FILTER.removesuffix("#")


@dataclass
class OfflineRun:
    """What an offline run produced."""

    start_ms: int
    sim_s: float
    readings: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    """every alert transition the core published, in order"""
    core: dict[str, object] = field(default_factory=dict)
    """the core's counters at the end"""
    wall_s: float = 0.0


def run_offline(fleet: Fleet, duration_s: float, *, start_ms: int, poll_s: float = 1.0,
                epoch: int = 1, state_dir: Path | None = None,
                progress: Callable[[float], None] | None = None) -> OfflineRun:
    """Run `fleet` for `duration_s` of simulated time from `start_ms` through a fresh core;
    `progress` is called with the simulated seconds done after each step."""
    if not duration_s > 0 or not poll_s > 0:
        raise ValueError("duration_s and poll_s must be positive")
    run = OfflineRun(start_ms=start_ms, sim_s=duration_s)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        settings = CoreSettings.model_construct(state_dir=state_dir or Path(tmp))
        pipe = Pipeline(settings)
        try:
            drivers = [(gw, fleet.driver(gw.id, start_ms)) for gw in fleet.gateways]
            next_seq: dict[str, int] = {}
            step_ms = round(poll_s * 1000)
            mid = 0
            for k in range(1, int(duration_s * 1000 // step_ms) + 1):
                now = start_ms + k * step_ms
                messages: list[Incoming] = []
                for gw, driver in drivers:
                    samples = driver.poll(now)
                    if not samples:
                        continue
                    numbered = []
                    for s in samples:
                        seq = next_seq.get(s.device, 0)
                        next_seq[s.device] = seq + 1
                        numbered.append(NumberedSample(s, epoch, seq))
                    mid += 1
                    messages.append(Incoming(topics.readings_topic(gw.area, gw.id),
                                             encode_batch(numbered, "snb1"), mid, 1, 0))
                    run.readings += len(samples)
                out = pipe.process(messages, now)
                run.alerts += [orjson.loads(p) for t, p in out.publish
                               if t.startswith(_ALERTS)]
                if progress is not None:
                    progress((now - start_ms) / 1000)
            run.core = pipe.stats.as_dict()
        finally:
            pipe.book.close()
    run.wall_s = time.perf_counter() - started
    return run
