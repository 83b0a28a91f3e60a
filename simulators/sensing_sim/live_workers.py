"""Worker processes of a live run, each running a `Shard` of the fleet's gateways.

    pool = WorkerPool(fleet, options, epoch, processes=4)
    pool.launch(timeout=120)       # each worker rebuilds the fleet and its agents
    pool.start(start_ms)           # every agent starts, on one time zero
    pool.counters()                # the shards' counters, added up
    pool.stop(timeout=10)          # every agent flushes and waits for its PUBACKs
    pool.close()

A worker gets the fleet as its recipe (`FleetRecipe`: the spec and the incidents, a few kB)
and builds it again: the same spec gives the same devices, phases and signals in every
process. It builds drivers and agents for its own gateways only. Workers are spawned (no
fork: the parent may have threads) and ignore SIGINT (Ctrl-C reaches the whole process group):
the parent stops them, or they stop when its end of the pipe closes.

Messages over each worker's pipe: to the worker ("start", start_ms), ("counters", None),
("stop", timeout_s); from it ("ready", None), ("counters", dict), ("done", dict),
("error", text).
"""

from __future__ import annotations

import contextlib
import gc
import math
import multiprocessing as mp
import signal
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from sensing_sim.cases import WristBang
from sensing_sim.fleet import Fleet, FleetSpec
from sensing_sim.incidents import Incident
from sensing_sim.live_shard import (
    FD_LIMIT,
    LiveError,
    Shard,
    ShardCounters,
    fds_needed,
    process_usage,
)

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from sensing_sim.live import LiveOptions

AGENTS_PER_PROCESS = 125
"""agents one process runs by default. Each agent has two threads that wake on every poll,
batch and PUBACK and release the GIL around every socket and SQLite call; with a few hundred
agents in one process the GIL's hand-overs, not the CPU, bound it (measured: 2 processes of
250 agents, 5,000 readings/s, fell behind and never caught up; 4 of 125 kept up)"""
STOP_GRACE_S = 120.0
"""how much longer than the agents' stop timeout a worker may take to stop them all"""
FD_BUDGET = FD_LIMIT - 124
"""what the planner lets one process use of FD_LIMIT (a margin for what it does not count)"""


@dataclass(frozen=True, slots=True)
class FleetRecipe:
    """What rebuilds a fleet in another process: its spec, its incidents and nuisances (a
    live run leaves out reboots and late readings: the transport's, not the devices')."""

    spec: FleetSpec
    incidents: tuple[Incident, ...]
    nuisances: tuple[WristBang, ...] = ()

    @classmethod
    def of(cls, fleet: Fleet) -> FleetRecipe:
        return cls(fleet.spec, fleet.incidents, fleet.nuisances)

    def build(self) -> Fleet:
        fleet = Fleet(self.spec)
        for incident in self.incidents:
            fleet.add_incident(incident)
        for nuisance in self.nuisances:
            fleet.add_nuisance(nuisance)
        if fleet.incidents != self.incidents:
            raise LiveError("the fleet rebuilt in a worker has other incidents than the parent's")
        return fleet


def min_processes(fleet: Fleet) -> int:
    """The fewest processes whose shards keep their file descriptors below FD_LIMIT."""
    return max(1, math.ceil(fds_needed(fleet, fleet.gateways) / FD_BUDGET))


def default_processes(fleet: Fleet) -> int:
    """One process per AGENTS_PER_PROCESS gateways (at least `min_processes`): a fleet of
    up to that many runs in the caller's process (1)."""
    return max(math.ceil(len(fleet.gateways) / AGENTS_PER_PROCESS), min_processes(fleet))


def plan_shards(fleet: Fleet, processes: int) -> list[list[str]]:
    """The gateways of each process: contiguous runs of nearly equal length."""
    gws = fleet.gateways
    if not 1 <= processes <= len(gws):
        raise ValueError(f"processes must be between 1 and the number of gateways ({len(gws)})")
    bounds = [len(gws) * k // processes for k in range(processes + 1)]
    shards = [[gw.id for gw in gws[bounds[k]:bounds[k + 1]]] for k in range(processes)]
    for ids in shards:
        if fds_needed(fleet, [fleet.gateway(g) for g in ids]) > FD_BUDGET:
            raise ValueError(f"{len(ids)} gateways in one process are too many (paho's select() "
                             f"sees file descriptors below {FD_LIMIT} only): use at least "
                             f"{min_processes(fleet)} processes")
    return shards


def _worker(conn: Connection, recipe: FleetRecipe, gateway_ids: list[str],
            options: LiveOptions, epoch: int, index: int) -> None:
    """A worker process: build the shard, report ready, then serve the parent's requests."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    from sensing.logs import configure

    configure("console", options.worker_log_level)
    shard: Shard | None = None
    try:
        fleet = recipe.build()
        shard = Shard(fleet, [fleet.gateway(g) for g in gateway_ids], options, epoch, index)
        del fleet
        gc.collect()
        gc.freeze()  # the fleet's objects live for the whole run: no need to scan them again
        conn.send(("ready", None))
        while True:
            try:
                kind, arg = conn.recv()
            except EOFError:  # the parent is gone
                kind, arg = "stop", options.stop_timeout_s
            if kind == "start":
                shard.start(int(arg))
            elif kind == "counters":
                conn.send(("counters", shard.counters().to_dict()))
            elif kind == "stop":
                final = shard.stop(float(arg))
                with contextlib.suppress(OSError, EOFError):
                    conn.send(("done", final.to_dict()))
                return
    except BaseException as exc:  # reported to the parent, which raises it
        text = str(exc) if isinstance(exc, LiveError) else traceback.format_exc()
        with contextlib.suppress(OSError, EOFError):
            conn.send(("error", text))
        if shard is not None:
            shard.stop(options.stop_timeout_s)


class WorkerPool:
    """Worker processes running the shards of one live run."""

    def __init__(self, fleet: Fleet, options: LiveOptions, epoch: int, processes: int) -> None:
        self.options = options
        self.plan = plan_shards(fleet, processes)
        self._recipe = FleetRecipe.of(fleet)
        self._epoch = epoch
        self._procs: list[BaseProcess] = []
        self._conns: list[Connection] = []
        self._last: list[ShardCounters] = [ShardCounters() for _ in self.plan]
        self._final: ShardCounters | None = None
        self.errors: list[str] = []
        """workers that failed to stop in time (their last counters stand in)"""

    def launch(self, timeout: float) -> None:
        """Spawn the workers and wait until each has built its shard."""
        ctx = mp.get_context("spawn")
        for index, ids in enumerate(self.plan):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker, name=f"sensing-sim-live-{index}", daemon=True,
                args=(child, self._recipe, ids, self.options, self._epoch, index),
            )
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        deadline = time.monotonic() + timeout
        for index in range(len(self._conns)):
            self._expect(index, "ready", deadline)

    def start(self, start_ms: int) -> None:
        for conn in self._conns:
            conn.send(("start", start_ms))

    def counters(self, timeout: float = 3.0) -> ShardCounters:
        """The shards' counters added up, with this process's CPU and memory; a worker that
        does not answer in `timeout` counts with its last answer."""
        if self._final is not None:
            return self._final
        for conn in self._conns:
            conn.send(("counters", None))
        deadline = time.monotonic() + timeout
        for index in range(len(self._conns)):
            doc = self._expect(index, "counters", deadline, missing_ok=True)
            if doc is not None:
                self._last[index] = ShardCounters.from_dict(doc)
        return self._sum(self._last)

    def stop(self, timeout: float) -> ShardCounters:
        """Stop every shard (their agents flush and wait up to `timeout` s for PUBACKs)."""
        if self._final is not None:
            return self._final
        for conn in self._conns:
            with contextlib.suppress(OSError, EOFError):
                conn.send(("stop", timeout))
        deadline = time.monotonic() + timeout + STOP_GRACE_S
        for index in range(len(self._conns)):
            try:
                doc = self._expect(index, "done", deadline)
            except LiveError as exc:  # counted with its last answer, and not all acked
                self.errors.append(str(exc))
                self._last[index].all_acked = False
                continue
            assert doc is not None
            self._last[index] = ShardCounters.from_dict(doc)
        self._final = self._sum(self._last)
        return self._final

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        for proc in self._procs:
            proc.join(5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)

    def _sum(self, parts: Sequence[ShardCounters]) -> ShardCounters:
        total = ShardCounters()
        for part in parts:
            total = total.merge(part)
        cpu, rss = process_usage()
        total.cpu_s = round(total.cpu_s + cpu, 3)
        total.max_rss_mb = round(total.max_rss_mb + rss, 1)
        total.processes = len(parts)
        return total

    def _expect(self, index: int, kind: str, deadline: float,
                missing_ok: bool = False) -> dict[str, Any] | None:
        """The worker's next message, which must be `kind`; raises LiveError on its error,
        its death or the deadline (None on the deadline when `missing_ok`)."""
        conn, proc = self._conns[index], self._procs[index]
        while True:
            remaining = deadline - time.monotonic()
            try:
                ready = conn.poll(max(0.0, min(remaining, 0.5)))
                message = conn.recv() if ready else None
            except (EOFError, OSError):
                raise LiveError(f"live worker {index} ended (exit code {proc.exitcode})") from None
            if message is not None:
                got, arg = message
                if got == "error":
                    raise LiveError(f"live worker {index}: {arg}")
                if got == kind:
                    return arg  # type: ignore[no-any-return]
                continue  # a late answer to an earlier request
            if not proc.is_alive():
                raise LiveError(f"live worker {index} ended (exit code {proc.exitcode})")
            if time.monotonic() >= deadline:
                if missing_ok:
                    return None
                raise LiveError(f"live worker {index} did not answer ({kind}) in time")
