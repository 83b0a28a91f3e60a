"""The pipelines under test: the sensing core as `sensing run`, the naive paho +
influxdb-client script, and Node-RED when its module is there (benchmarks/e2e/nodered.py)."""

from __future__ import annotations

import importlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from e2e.api import Pipeline
from e2e.store import count_samples
from sensing.services import ServiceError, VictoriaMetrics
from sensing.testing.processes import CoreProcess

NAIVE_SCRIPT = Path(__file__).with_name("naive_subscriber.py")
READING_SEQ = '{__name__="reading_seq"}'
PIPELINES = ("sensing", "naive", "node-red")


BENCH_CORE_ENV = {
    # CoreProcess reports stats twice a second, for tests; the default is once
    "SENSING_STATS_INTERVAL_S": "1.0",
    # The benchmark replays the fleet far faster than real time and pauses between its phases
    # (counting, building the next payloads). A gateway silent for offline.idle_s of wall time
    # has its event time follow the wall clock, which would call the whole replayed fleet
    # offline in the first pause: 100,000 alerts that no real deployment sees. The offline
    # watch still runs on every step; only that fallback waits longer.
    "SENSING_OFFLINE__IDLE_S": "86400",
}


class SensingCore:
    """`sensing run` with its default settings but BENCH_CORE_ENV (and the broker, store and
    state folder)."""

    name = "sensing"
    seq_selector = READING_SEQ

    def __init__(self) -> None:
        self._core: CoreProcess | None = None

    def start(self, broker_port: int, store_url: str, workdir: Path) -> None:
        self._core = CoreProcess(broker_port, store_url, workdir / "core-state",
                                 client_id="sensing-core", env=dict(BENCH_CORE_ENV))
        self._core.start(timeout=300)

    def pids(self) -> list[int]:
        return [self._core.pid] if self._core is not None and self._core.running else []

    def stored(self, store: VictoriaMetrics) -> int:
        return count_samples(store, READING_SEQ)

    def log_tail(self) -> str:
        return self._core.log_tail() if self._core is not None else ""

    def stop(self) -> None:
        if self._core is not None:
            self._core.stop()
            self._core = None


class NaiveScript:
    """benchmarks/e2e/naive_subscriber.py in its own process."""

    name = "naive"
    seq_selector = READING_SEQ

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = Path()

    def start(self, broker_port: int, store_url: str, workdir: Path) -> None:
        self._log = workdir / "naive.log"
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, str(NAIVE_SCRIPT), "--port", str(broker_port),
                 "--store-url", store_url, "--client-id", "naive-subscriber"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while b"ready" not in self._log.read_bytes():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"the naive subscriber did not start: {self.log_tail()}")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        return [self._proc.pid] if self._proc is not None and self._proc.poll() is None else []

    def stored(self, store: VictoriaMetrics) -> int:
        return count_samples(store, READING_SEQ)

    def log_tail(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def make(name: str) -> Pipeline | str:
    """The pipeline named `name`, or why it cannot run here."""
    if name == "sensing":
        return SensingCore()
    if name == "naive":
        return NaiveScript()
    if name == "node-red":
        try:
            module = importlib.import_module("e2e.nodered")
        except ModuleNotFoundError:
            return "not built"
        cls = module.NodeRed
        ok, reason = cls.available()
        if not ok:
            return str(reason)
        node_red: Pipeline = cls()
        install = getattr(node_red, "install", None)
        if install is not None:
            install()
        return node_red
    raise ValueError(f"unknown pipeline {name!r}: one of {', '.join(PIPELINES)}")
