"""One pipeline x payload, on a fresh Mosquitto (the project's mosquitto.conf) and a fresh
VictoriaMetrics: the maximum rate, then alert latency at half of it; and the store's own limit.

Maximum rate: the publishers offer the phase's readings as fast as the broker takes them.
stored/s = readings found in the store / (when the store took its last row - when the first
byte was sent). "When the store took its last row" is the first poll (every POLL_S) that saw
the store's ingest counter at its final value; the counter moves the moment a write is taken,
so no query lag comes in. The run ends when the store holds every reading and its counter has
stood still for a moment, when it has stood still for `settle` s, or at `timeout`. CPU seconds
of the pipeline, the broker and the store are taken over the same window.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from e2e.alerts import AlertListener, Latency
from e2e.api import Pipeline, SeqSeries, StoredKeys
from e2e.fleet import PER_MESSAGE, ROUND_MS, Fleet, Phase, line_protocol
from e2e.procstat import cpu_seconds, peak_rss_kb, process_children
from e2e.publishing import Offer, PublisherGroup
from e2e.store import Tally, ingested_rows, tally, write_limit
from sensing.services import Mosquitto, VictoriaMetrics

POLL_S = 0.2
QUIET_S = 0.6
"""the ingest counter still this long: time to count what the store holds"""
COUNT_EVERY_S = 10.0
LATENCY_ROUND_MS = 1_000
MAX_LATENCY_READINGS = 5_000_000
ROWS_PER_READING = (3 + 3 + 5) / 3 + 3
"""fields the core writes per reading of the fleet, on average: for the progress estimate"""

Progress = Callable[[str, int, int], None]
"""(what, done, total): a phase's progress, for the display"""


@dataclass(frozen=True, slots=True)
class Settings:
    fleet: Fleet
    readings: dict[str, int]
    """per payload, for the maximum rate"""
    publishers: int
    settle_s: float
    timeout_s: float
    latency_s: float
    alarms: int
    profile_dir: Path | None = None
    profile_format: str = "flamegraph"


@dataclass(frozen=True, slots=True)
class MaxRate:
    sent: int
    stored: int
    lost: int | None
    stored_twice: int | None
    unexpected: int | None
    seconds: float
    stored_per_s: float
    offered_per_s: float
    complete: bool
    """every reading stored before the run ended"""
    cpu_s: float
    broker_cpu_s: float
    store_cpu_s: float

    @property
    def publisher_bound(self) -> bool:
        return self.offered_per_s < 1.5 * self.stored_per_s

    @property
    def cpu_us_per_reading(self) -> float | None:
        return self.cpu_s / self.stored * 1e6 if self.stored else None

    @property
    def readings_per_cpu_s(self) -> float | None:
        return self.stored / self.cpu_s if self.cpu_s > 0 else None


@dataclass(frozen=True, slots=True)
class LatencyRun:
    rate: float
    """readings/s asked for"""
    offered_per_s: float
    readings: int
    latency: Latency


@dataclass(slots=True)
class Result:
    pipeline: str
    payload: str
    max_rate: MaxRate | None = None
    latency: LatencyRun | None = None
    peak_rss_kb: int = 0
    skipped: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class _Sample:
    t: float
    rows: int
    cpu: float
    broker_cpu: float
    store_cpu: float


class _Probe:
    def __init__(self, pipeline: Pipeline, broker: Mosquitto, store: VictoriaMetrics) -> None:
        self.pipeline, self.broker, self.store = pipeline, broker, store
        self.peak_kb = 0

    def _pid(self, service: Mosquitto | VictoriaMetrics) -> list[int]:
        return [service.proc.pid] if service.proc is not None else []

    def sample(self) -> _Sample:
        children = process_children()
        pids = self.pipeline.pids()
        self.peak_kb = max(self.peak_kb, peak_rss_kb(pids))
        return _Sample(time.time(), ingested_rows(self.store), cpu_seconds(pids, children),
                       cpu_seconds(self._pid(self.broker), children),
                       cpu_seconds(self._pid(self.store), children))


@contextlib.contextmanager
def _profiling(pids: list[int], out: Path | None, fmt: str) -> Iterator[None]:
    if out is None or not pids:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["py-spy", "record", "--pid", str(pids[0]), "--output", str(out), "--format", fmt,
         "--rate", "100", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")


def _exact(pipeline: Pipeline, store: VictoriaMetrics, phase: Phase) -> Tally | None:
    counts = phase.readings_per_device()
    if isinstance(pipeline, SeqSeries):
        index = {Fleet.name(d): d for d in range(phase.fleet.devices)}
        return tally(store, pipeline.seq_selector, index, phase.seq_base, counts)
    if isinstance(pipeline, StoredKeys):
        keys = pipeline.stored_keys(store)
        wanted = {(phase.fleet.gateway_name(d // phase.fleet.per_gateway), Fleet.name(d), 0,
                   phase.seq_base + s) for d in range(phase.fleet.devices)
                  for s in range(int(counts[d]))}
        found = sum(1 for k in wanted if keys.get(k, 0) > 0)
        twice = sum(n - 1 for k, n in keys.items() if k in wanted and n > 1)
        other = sum(n for k, n in keys.items() if k not in wanted)
        return Tally(len(wanted), found, len(wanted) - found, twice, other)
    return None


def _max_rate(s: Settings, probe: _Probe, payload: str, progress: Progress,
              profile: Path | None) -> tuple[MaxRate, Phase]:
    pipeline, broker, store = probe.pipeline, probe.broker, probe.store
    n = s.readings[payload]
    rounds = -(-n // s.fleet.devices)
    # the last round just before now: the gap to the paced run's readings stays far below
    # the offline timeout (5 report intervals, at least a minute)
    now = int(time.time() * 1000)
    phase = Phase(s.fleet, payload, n, 0, now - (rounds - 1) * ROUND_MS - 10_000)
    group = PublisherGroup(phase, broker.port, s.publishers)
    try:
        progress("building payloads", 0, n)
        group.wait_ready()
        rows_before = ingested_rows(store)
        with _profiling(pipeline.pids(), profile, s.profile_format):
            first = probe.sample()
            group.go()
            offer: Offer | None = None
            samples = [first]
            stored, last_count = 0, 0.0
            while True:
                time.sleep(POLL_S)
                cur = probe.sample()
                samples.append(cur)
                if offer is None and group.poll_done():
                    offer = group.results(60)
                moved = next(x.t for x in samples if x.rows == cur.rows)
                quiet = cur.t - moved
                estimate = int((cur.rows - rows_before) / ROWS_PER_READING)
                progress("max rate", max(stored, min(estimate, n)), n)
                if offer is not None and ((quiet >= QUIET_S and cur.t - last_count >= 1.0)
                                          or cur.t - last_count >= COUNT_EVERY_S):
                    stored, last_count = pipeline.stored(store), time.time()
                    if stored >= n and quiet >= QUIET_S:
                        break
                if offer is not None and quiet >= s.settle_s:
                    break
                if cur.t - first.t > s.timeout_s:
                    break
            if offer is None:
                offer = group.results(60)
    finally:
        group.close()
    last = next(x for x in samples if x.rows == samples[-1].rows)
    progress("counting", n, n)
    exact = _exact(pipeline, store, phase)
    stored = exact.stored if exact is not None else pipeline.stored(store)
    seconds = max(last.t - offer.t_first, 1e-6)
    result = MaxRate(
        sent=offer.readings, stored=stored,
        lost=exact.lost if exact else None,
        stored_twice=exact.stored_twice if exact else None,
        unexpected=exact.unexpected if exact else None,
        seconds=seconds, stored_per_s=stored / seconds, offered_per_s=offer.offered_per_s,
        complete=stored >= offer.readings, cpu_s=last.cpu - first.cpu,
        broker_cpu_s=last.broker_cpu - first.broker_cpu,
        store_cpu_s=last.store_cpu - first.store_cpu)
    return result, phase


def _latency(s: Settings, pipeline: Pipeline, broker: Mosquitto, listener: AlertListener,
             before: Phase, rate: float, progress: Progress) -> LatencyRun:
    n = int(min(MAX_LATENCY_READINGS, max(rate * s.latency_s, PER_MESSAGE[before.payload])))
    rounds = -(-n // s.fleet.devices)
    phase = Phase(s.fleet, before.payload, n, before.seq_base + before.rounds,
                  int(time.time() * 1000) - rounds * LATENCY_ROUND_MS, alarms=s.alarms,
                  round_ms=LATENCY_ROUND_MS)
    group = PublisherGroup(phase, broker.port, s.publishers, rate=rate)
    try:
        progress("latency: building", 0, n)
        group.wait_ready()
        mark = listener.mark()
        start = group.go()
        while not group.poll_done():
            time.sleep(POLL_S)
            progress("latency", int(min(n, (time.time() - start) * rate)), n)
            if time.time() - start > 3 * s.latency_s + s.timeout_s:
                break
        offer = group.results(60)
    finally:
        group.close()
    deadline = time.time() + s.settle_s
    while time.time() < deadline:
        if listener.latency(offer.alarms, mark).alerts_matched >= len(offer.alarms):
            break
        time.sleep(POLL_S)
    progress("latency", n, n)
    return LatencyRun(rate, offer.offered_per_s, offer.readings,
                      listener.latency(offer.alarms, mark))


def measure(s: Settings, pipeline: Pipeline, payload: str, workdir: Path,
            progress: Progress) -> Result:
    """Both phases of one pipeline x payload on a fresh broker and store."""
    result = Result(pipeline.name, payload)
    workdir.mkdir(parents=True, exist_ok=True)
    with Mosquitto.start(workdir) as broker, VictoriaMetrics.start(workdir) as store:
        listener = AlertListener(broker.port)
        try:
            progress(f"starting {pipeline.name}", 0, 1)
            pipeline.start(broker.port, store.url, workdir)
            profile = None
            if s.profile_dir is not None and pipeline.name == "sensing":
                ext = "svg" if s.profile_format == "flamegraph" else "json"
                profile = s.profile_dir / f"profile-{payload}.{ext}"
            probe = _Probe(pipeline, broker, store)
            result.max_rate, phase = _max_rate(s, probe, payload, progress, profile)
            probe.sample()
            if result.max_rate.stored and s.latency_s > 0:
                result.latency = _latency(s, pipeline, broker, listener, phase,
                                          result.max_rate.stored_per_s / 2, progress)
            probe.sample()
            result.peak_rss_kb = probe.peak_kb
        finally:
            listener.stop()
            pipeline.stop()
    return result


def store_limit(workdir: Path, fleet: Fleet, readings: int, progress: Progress) -> float:
    """Readings/s a fresh VictoriaMetrics takes of the core's line protocol, written straight
    to /api/v2/write from this process in requests of 10,000 lines."""
    rounds = -(-readings // fleet.devices)
    phase = Phase(fleet, "snb", readings, 0, int(time.time() * 1000) - rounds * ROUND_MS)
    progress("store limit: building lines", 0, readings)
    bodies = line_protocol(phase)
    workdir.mkdir(parents=True, exist_ok=True)
    with VictoriaMetrics.start(workdir) as store:
        progress("store limit", 0, readings)
        rate = write_limit(store, bodies, readings)
        progress("store limit", readings, readings)
    return rate
