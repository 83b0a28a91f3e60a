"""Publisher processes for one phase: each takes every P-th gateway (so a device's readings
leave in seq order on one connection), builds its frames, and all start together."""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from e2e.fleet import Phase
from e2e.publisher import DEFAULT_WINDOW, PublisherResult, PublisherSpec, run

READY_TIMEOUT_S = 600.0
START_DELAY_S = 0.2
"""between the start signal and the first frame, so every publisher starts on the same tick"""


class PublishError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Offer:
    """What the publishers of a phase did, together."""

    readings: int
    messages: int
    bytes: int
    t_first: float
    t_last: float
    t_acked: float
    alarms: dict[str, int]

    @property
    def offered_per_s(self) -> float:
        """Readings written per second, first byte to last (the publishers' pace)."""
        return self.readings / max(self.t_last - self.t_first, 1e-6)


class PublisherGroup:
    def __init__(self, phase: Phase, broker_port: int, publishers: int,
                 rate: float | None = None, window: int = DEFAULT_WINDOW) -> None:
        gateways = phase.fleet.gateways
        if not 1 <= publishers <= min(gateways, 64):
            raise PublishError(f"publishers must be 1 ..= {min(gateways, 64)}")
        if rate is not None and not rate > 0:
            raise PublishError("a fixed rate must be positive")
        self.phase = phase
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[BaseProcess] = []
        self._conns: list[Connection] = []
        per_device = phase.readings_per_device()
        per_gateway = per_device.reshape(gateways, -1).sum(axis=1)
        for p in range(publishers):
            mine = tuple(range(p, gateways, publishers))
            share = float(per_gateway[list(mine)].sum()) / phase.n_readings
            spec = PublisherSpec(p, broker_port, phase, mine,
                                 None if rate is None else rate * share, window)
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(target=run, args=(spec, child), daemon=True,
                                     name=f"bench-publisher-{p}")
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def _receive(self, conn: Connection, timeout: float) -> tuple[str, object]:
        if not conn.poll(timeout):
            raise PublishError(f"a publisher said nothing for {timeout:.0f} s")
        try:
            kind, value = conn.recv()
        except EOFError:
            raise PublishError("a publisher died") from None
        if kind == "error":
            raise PublishError(str(value))
        return str(kind), value

    def wait_ready(self) -> int:
        """Wait until every publisher has built its frames and connected; their readings."""
        return sum(int(self._receive(c, READY_TIMEOUT_S)[1]) for c in self._conns)  # type: ignore[call-overload]

    def go(self) -> float:
        start = time.time() + START_DELAY_S
        for c in self._conns:
            c.send(("go", start))
        return start

    def results(self, timeout: float) -> Offer:
        deadline = time.monotonic() + timeout
        done: list[PublisherResult] = []
        for c in self._conns:
            _, value = self._receive(c, max(1.0, deadline - time.monotonic()))
            assert isinstance(value, PublisherResult)
            done.append(value)
        alarms: dict[str, int] = {}
        for r in done:
            alarms.update(r.alarms)
        return Offer(
            readings=sum(r.readings for r in done), messages=sum(r.messages for r in done),
            bytes=sum(r.bytes for r in done), t_first=min(r.t_first for r in done),
            t_last=max(r.t_last for r in done), t_acked=max(r.t_acked for r in done),
            alarms=alarms)

    def poll_done(self) -> bool:
        """Whether every publisher has reported (without taking the reports)."""
        return all(c.poll(0) for c in self._conns)

    def close(self) -> None:
        for c in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                c.send(("stop", 0.0))
        for p in self._procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        for c in self._conns:
            c.close()
