"""Real Mosquitto and VictoriaMetrics processes on free loopback ports, for tests and the demo.

    with Mosquitto.start(workdir) as broker, VictoriaMetrics.start(workdir) as store:
        ... broker.port ... store.url ...

Both stop (and leave no process behind) when the block exits, and on `stop()`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import orjson

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MOSQUITTO_CONF = PROJECT_ROOT / "mosquitto.conf"
LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if found is None:
        raise ServiceError(
            f"{name} is not installed (apt-get install -y {name}); ./dev installs it"
        )
    return found


def _wait_for(
    check: object, what: str, proc: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise ServiceError(f"{what} did not become ready in {timeout} s: {log.read_text()[-2000:]}")


@dataclass
class _Service:
    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path = field(default=Path(), repr=False)

    def _spawn(self, argv: list[str], log_name: str) -> None:
        self.log_path = self.workdir / log_name
        log = self.log_path.open("ab")
        # Own process group: a Ctrl-C in the terminal reaches us, not the service directly,
        # so we stop it in order.
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        self.stop(signal.SIGKILL)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class Mosquitto(_Service):
    """Mosquitto with the project's mosquitto.conf, on a free loopback port."""

    conf_source: Path = DEFAULT_MOSQUITTO_CONF
    extra_conf: str = ""

    @classmethod
    def start(
        cls,
        workdir: Path,
        port: int | None = None,
        extra_conf: str = "",
        conf_source: Path = DEFAULT_MOSQUITTO_CONF,
    ) -> Mosquitto:
        workdir = Path(workdir) / "mosquitto"
        workdir.mkdir(parents=True, exist_ok=True)
        broker = cls(
            workdir=workdir,
            port=port or free_port(),
            conf_source=conf_source,
            extra_conf=extra_conf,
        )
        broker.restart()
        return broker

    def config_text(self) -> str:
        text = self.conf_source.read_text()
        text = re.sub(r"(?m)^listener\s+\d+.*$", f"listener {self.port} {LOOPBACK}", text)
        text = re.sub(
            r"(?m)^persistence_location\s+.*$", f"persistence_location {self.workdir}/", text
        )
        if os.geteuid() == 0:
            # As root Mosquitto switches to the `mosquitto` user, which cannot write the
            # persistence folder of a test or demo run; keep the caller's user instead.
            text += "\nuser root\n"
        return text + "\n" + self.extra_conf + "\n"

    def restart(self) -> None:
        """(Re)start on the same port with the same persistence folder."""
        self.stop()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        self._spawn([find_binary("mosquitto"), "-c", str(conf)], "mosquitto.log")
        assert self.proc is not None

        def accepting() -> bool:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5):
                return True

        _wait_for(accepting, "mosquitto", self.proc, self.log_path, 15.0)


@dataclass
class VictoriaMetrics(_Service):
    """VictoriaMetrics accepting the InfluxDB v2 write API, on a free loopback port."""

    @classmethod
    def start(cls, workdir: Path, port: int | None = None) -> VictoriaMetrics:
        workdir = Path(workdir) / "victoria-metrics"
        workdir.mkdir(parents=True, exist_ok=True)
        store = cls(workdir=workdir, port=port or free_port())
        store.restart()
        return store

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def restart(self) -> None:
        self.stop()
        self._spawn(
            [
                find_binary("victoria-metrics"),
                f"-httpListenAddr={LOOPBACK}:{self.port}",
                f"-storageDataPath={self.workdir / 'data'}",
                "-retentionPeriod=100y",
                # one sample per series and timestamp, as InfluxDB keeps one point: a reading
                # stored again (a crash after the store confirmed a step but before the dedup
                # journal heard of it) replaces itself instead of counting twice
                "-dedup.minScrapeInterval=1ms",
                "-search.latencyOffset=0s",
                "-search.disableCache",
                "-loggerLevel=ERROR",
            ],
            "victoria-metrics.log",
        )
        assert self.proc is not None

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as r:
                return bool(r.status == 200)

        _wait_for(healthy, "victoria-metrics", self.proc, self.log_path, 30.0)

    def flush(self) -> None:
        """Make everything ingested so far visible to queries."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass

    def export(self, match: str) -> list[dict[str, object]]:
        """Raw samples of every series matching the selector, via /api/v1/export."""
        self.flush()
        end = int(time.time()) + 100 * 86400  # readings may carry clock-skewed future times
        query = urllib.parse.urlencode({"match[]": match, "start": "0", "end": str(end)})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=60) as r:
            return [orjson.loads(line) for line in r.read().splitlines() if line.strip()]

    def count_samples(self, match: str) -> int:
        return sum(len(s["values"]) for s in self.export(match))  # type: ignore[misc,arg-type]

    def settled_count(self, match: str, expected: int, timeout: float = 15.0) -> int:
        """Count samples once the store has settled: newly created series take a moment to
        become searchable, so poll until `expected` is reached (or time runs out), then look
        once more to catch any surplus."""
        deadline = time.monotonic() + timeout
        count = self.count_samples(match)
        while count < expected and time.monotonic() < deadline:
            time.sleep(0.2)
            count = self.count_samples(match)
        time.sleep(0.5)
        return self.count_samples(match)


def terminate_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM a child started with start_new_session, then SIGKILL its group if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
