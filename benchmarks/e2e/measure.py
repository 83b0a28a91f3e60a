"""One pipeline x payload, on a fresh Mosquitto (the project's mosquitto.conf) and a fresh
VictoriaMetrics: the maximum rate, then alert latency at half of it; and the store's own limit.

Maximum rate: the publishers offer the phase's readings as fast as the broker takes them.
stored/s = readings found in the store / (when the store took its last row - when the first
byte was sent). "When the store took its last row" is the first poll (every POLL_S) that saw
the store's ingest counter at its final value; the counter moves the moment a write is taken,
so no query lag comes in. The run ends when the store holds every reading and its counter has
stood still for a moment, when it has stood still for `settle` s while the pipeline used
little CPU, or at `timeout`. CPU seconds
of the pipeline, the broker and the store are taken over the same window.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from e2e.alerts import AlertListener, Latency
from e2e.api import Pipeline, SeqSeries, StoredKeys
from e2e.fleet import PER_MESSAGE, ROUND_MS, Fleet, Phase, line_protocol
from e2e.procstat import cpu_seconds, current_rss_kb, peak_rss_kb, process_children
from e2e.publishing import Offer, PublisherGroup
from e2e.store import ingested_rows, tally, write_limit
from sensing.services import Mosquitto, VictoriaMetrics
from sensing.testing.counting import Tally

POLL_S = 0.2
QUIET_S = 0.6
"""the ingest counter still this long: time to count what the store holds"""
COUNT_EVERY_S = 10.0
BUSY_CPU = 0.5
"""a pipeline using more than half a core is still at work, even if the store hears
nothing from it (a compile, a long step): not yet settled"""
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
    in_window: int
    """readings stored by the end of the window (= stored unless late_rows)"""
    lost: int | None
    stored_twice: int | None
    unexpected: int | None
    seconds: float
    stored_per_s: float
    offered_per_s: float
    complete: bool
    """every reading stored before the run ended"""
    late_rows: bool
    """the store took readings of the run after it was called settled: the window (and so
    stored/s and CPU per reading) is wrong; raise --settle"""
    cpu_s: float
    broker_cpu_s: float
    store_cpu_s: float

    @property
    def publisher_bound(self) -> bool:
        return self.offered_per_s < 1.5 * self.stored_per_s

    @property
    def cpu_us_per_reading(self) -> float | None:
        return self.cpu_s / self.in_window * 1e6 if self.in_window else None

    @property
    def readings_per_cpu_s(self) -> float | None:
        return self.in_window / self.cpu_s if self.cpu_s > 0 else None


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
    start_rss_kb: int = 0
    """the pipeline's resident set once started, before its first reading: its runtime
    (interpreter, libraries, for the core numba's LLVM and the loaded kernels)"""
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


def _py_spy() -> str:
    """The venv's py-spy (it is pinned in requirements.lock), even when the venv is not on
    PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"


@contextlib.contextmanager
def _profiling(pids: list[int], out: Path | None, fmt: str) -> Iterator[None]:
    if out is None or not pids:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [_py_spy(), "record", "--pid", str(pids[0]), "--output", str(out), "--format", fmt,
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
    """The phase's readings found in the store, one by one (earlier phases' are left out)."""
    counts = phase.readings_per_device()
    if isinstance(pipeline, SeqSeries):
        index = {Fleet.name(d): d for d in range(phase.fleet.devices)}
        return tally(store, pipeline.seq_selector, index, phase.first_round, counts)
    if isinstance(pipeline, StoredKeys):
        keys = {k: n for k, n in pipeline.stored_keys(store).items()
                if k[3] >= phase.first_round}
        wanted = {(phase.fleet.gateway_name(d // phase.fleet.per_gateway), Fleet.name(d), 0,
                   phase.first_round + s) for d in range(phase.fleet.devices)
                  for s in range(int(counts[d]))}
        found = sum(1 for k in wanted if keys.get(k, 0) > 0)
        twice = sum(n - 1 for k, n in keys.items() if k in wanted and n > 1)
        other = sum(n for k, n in keys.items() if k not in wanted)
        return Tally(len(wanted), found, len(wanted) - found, twice, other)
    return None


@dataclass(slots=True)
class _Offered:
    offer: Offer
    first: _Sample
    last: _Sample
    """the first sample that saw the store's ingest counter at its final value"""
    stored_at_end: int
    """the phase's readings the store held when the run was called done"""


def _offer(s: Settings, probe: _Probe, phase: Phase, label: str, progress: Progress,
           profile: Path | None = None) -> _Offered:
    """Offer the phase as fast as the broker takes it and wait until the store holds it (or
    settles, or time runs out)."""
    pipeline, store, n = probe.pipeline, probe.store, phase.n_readings
    group = PublisherGroup(phase, probe.broker.port, s.publishers)
    try:
        progress(f"{label}: building payloads", 0, n)
        group.wait_ready()
        before = pipeline.stored(store)
        rows_before = ingested_rows(store)
        with _profiling(pipeline.pids(), profile, s.profile_format):
            first = probe.sample()
            group.go()
            offer: Offer | None = None
            samples = [first]
            stored, last_count, busy_at = 0, 0.0, first.t
            while True:
                time.sleep(POLL_S)
                cur = probe.sample()
                samples.append(cur)
                if offer is None and group.poll_done():
                    offer = group.results(60)
                quiet = cur.t - next(x.t for x in samples if x.rows == cur.rows)
                prev = samples[-2]
                if (cur.cpu - prev.cpu) / max(cur.t - prev.t, 1e-3) > BUSY_CPU:
                    busy_at = cur.t
                idle = cur.t - max(busy_at, cur.t - quiet)
                progress(label, min(int((cur.rows - rows_before) / ROWS_PER_READING), n), n)
                if offer is not None and ((quiet >= QUIET_S and cur.t - last_count >= 1.0)
                                          or cur.t - last_count >= COUNT_EVERY_S):
                    stored, last_count = pipeline.stored(store) - before, time.time()
                    if stored >= n and quiet >= QUIET_S:
                        break
                if (offer is not None and idle >= s.settle_s) or cur.t - first.t > s.timeout_s:
                    stored = pipeline.stored(store) - before
                    break
            if offer is None:
                offer = group.results(60)
    finally:
        group.close()
    return _Offered(offer, first, next(x for x in samples if x.rows == samples[-1].rows),
                    stored)


def _max_rate(s: Settings, probe: _Probe, phase: Phase, progress: Progress,
              profile: Path | None) -> MaxRate:
    done = _offer(s, probe, phase, "max rate", progress, profile)
    offer, first, last = done.offer, done.first, done.last
    progress("counting", phase.n_readings, phase.n_readings)
    exact = _exact(probe.pipeline, probe.store, phase)
    stored = exact.stored if exact is not None else probe.pipeline.stored(probe.store)
    # more of the phase's readings than when the run was called done: they came later
    late_rows = stored > done.stored_at_end
    in_window = min(stored, done.stored_at_end)
    seconds = max(last.t - offer.t_first, 1e-6)
    return MaxRate(
        sent=offer.readings, stored=stored, in_window=in_window,
        lost=exact.lost if exact else None,
        stored_twice=exact.stored_twice if exact else None,
        unexpected=exact.unexpected if exact else None,
        seconds=seconds, stored_per_s=in_window / seconds, offered_per_s=offer.offered_per_s,
        complete=stored >= offer.readings, late_rows=late_rows, cpu_s=last.cpu - first.cpu,
        broker_cpu_s=last.broker_cpu - first.broker_cpu,
        store_cpu_s=last.store_cpu - first.store_cpu)


def _latency(s: Settings, probe: _Probe, listener: AlertListener, phase: Phase, rate: float,
             progress: Progress, profile: Path | None = None) -> LatencyRun:
    n = phase.n_readings
    group = PublisherGroup(phase, probe.broker.port, s.publishers, rate=rate)
    try:
        progress("latency: building payloads", 0, n)
        group.wait_ready()
        mark = listener.mark()
        with _profiling(probe.pipeline.pids(), profile, s.profile_format):
            start = group.go()
            while not group.poll_done():
                time.sleep(POLL_S)
                progress("latency", int(min(n, max(0.0, time.time() - start) * rate)), n)
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


def _rounds(readings: int, fleet: Fleet) -> int:
    return -(-readings // fleet.devices)


def measure(s: Settings, pipeline: Pipeline, payload: str, workdir: Path,
            progress: Progress) -> Result:
    """One pipeline x payload on a fresh broker and store: a warm-up round (every device
    once, so that the store has its series and the pipeline knows the fleet, as in a running
    deployment), the maximum rate, then alert latency at half of it; on one timeline."""
    result = Result(pipeline.name, payload)
    workdir.mkdir(parents=True, exist_ok=True)
    fleet, n = s.fleet, s.readings[payload]
    max_rounds = _rounds(n, fleet)
    latency_rounds = _rounds(MAX_LATENCY_READINGS, fleet) if s.latency_s else 0
    t0 = int(time.time() * 1000) - (2 + max_rounds + latency_rounds) * ROUND_MS
    warm_payload = "array" if payload == "single" else payload
    with Mosquitto.start(workdir) as broker, VictoriaMetrics.start(workdir) as store:
        listener = AlertListener(broker.port)
        try:
            progress(f"starting {pipeline.name}", 0, 1)
            pipeline.start(broker.port, store.url, workdir)
            result.start_rss_kb = current_rss_kb(pipeline.pids())
            probe = _Probe(pipeline, broker, store)
            _offer(s, probe, Phase(fleet, warm_payload, fleet.devices, 0, t0), "warm-up",
                   progress)
            profile = None
            if s.profile_dir is not None and pipeline.name == "sensing":
                ext = "svg" if s.profile_format == "flamegraph" else "json"
                profile = s.profile_dir / f"profile-{payload}.{ext}"
            result.max_rate = _max_rate(s, probe, Phase(fleet, payload, n, 1, t0), progress,
                                        profile)
            if result.max_rate.stored and s.latency_s > 0:
                rate = result.max_rate.stored_per_s / 2
                readings = int(min(MAX_LATENCY_READINGS,
                                   max(rate * s.latency_s, PER_MESSAGE[payload])))
                phase = Phase(fleet, payload, readings, 1 + max_rounds, t0, alarms=s.alarms)
                paced = profile.with_stem(f"{profile.stem}-paced") if profile else None
                result.latency = _latency(s, probe, listener, phase, rate, progress, paced)
            probe.sample()
            result.peak_rss_kb = probe.peak_kb
        finally:
            listener.stop()
            pipeline.stop()
    return result


def store_limit(workdir: Path, fleet: Fleet, readings: int, progress: Progress) -> float:
    """Readings/s a fresh VictoriaMetrics takes of the core's line protocol, written straight
    to /api/v2/write from this process in requests of 10,000 lines over a few connections at
    once, after a warm-up round that creates every series (as the pipelines get)."""
    t0 = int(time.time() * 1000) - (2 + _rounds(readings, fleet)) * ROUND_MS
    progress("store limit: building lines", 0, readings)
    warm = line_protocol(Phase(fleet, "snb", fleet.devices, 0, t0))
    bodies = line_protocol(Phase(fleet, "snb", readings, 1, t0))
    workdir.mkdir(parents=True, exist_ok=True)
    with VictoriaMetrics.start(workdir) as store:
        progress("store limit: warm-up", 0, readings)
        write_limit(store, warm)
        progress("store limit", 0, readings)
        t = time.perf_counter()
        write_limit(store, bodies)
        rate = readings / (time.perf_counter() - t)
        progress("store limit", readings, readings)
    return rate
