"""Processes of a test stack: the core as a `sensing run` subprocess (settings in the
environment), and the peak memory of any process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sensing.services import ServiceError

_CORE_MAIN = "import sys; from sensing.cli import main; sys.exit(main(sys.argv[1:]))"


def memory_kb(pid: int, field_name: str = "VmHWM") -> int:
    """A memory figure of a running process from /proc/<pid>/status, in kB (VmHWM: peak
    resident set; VmRSS: resident now); 0 if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class CoreProcess:
    """`sensing run` in its own process group, restartable, with its exits counted.

    Settings go through SENSING_* variables, as an operator's unit file would set them;
    `env` adds or overrides any (e.g. {"SENSING_MAX_PAYLOAD_BYTES": "65536"})."""

    broker_port: int
    store_url: str
    state_dir: Path
    client_id: str = "sensing-core-under-test"
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0
    crashes: list[int] = field(default_factory=list)
    """exit codes of the times it stopped without being told to"""
    peak_rss_kb: int = 0
    """the highest VmHWM seen of any of its runs"""

    @property
    def log_path(self) -> Path:
        return self.state_dir.parent / f"{self.state_dir.name}.log"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServiceError("the core is not running")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENSING_")}
        env.update({
            "SENSING_MQTT_PORT": str(self.broker_port),
            "SENSING_STORE_URL": self.store_url,
            "SENSING_STATE_DIR": str(self.state_dir),
            "SENSING_MQTT_CLIENT_ID": self.client_id,
            "SENSING_LOG_FORMAT": "json",
            "SENSING_STATS_INTERVAL_S": "0.5",
        })
        env.update(self.env)
        return env

    def start(self, timeout: float = 90.0) -> None:
        """Start and wait until it has subscribed (its log says "core running")."""
        if self.running:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", _CORE_MAIN, "run"],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.environment(),
                                         start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._exited()
                raise ServiceError(f"the core exited with {self.crashes[-1]} on start: "
                                   f"{self.log_tail(offset)}")
            if b"core running" in self._log_bytes(offset):
                return
            time.sleep(0.05)
        raise ServiceError(f"the core did not start in {timeout} s: {self.log_tail(offset)}")

    def _log_bytes(self, offset: int = 0) -> bytes:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read()
        except OSError:
            return b""

    def log_tail(self, offset: int = 0, chars: int = 1500) -> str:
        return self._log_bytes(offset).decode(errors="replace")[-chars:]

    def sample_memory(self) -> int:
        """Record and return the current run's peak RSS (kB)."""
        if self.running:
            self.peak_rss_kb = max(self.peak_rss_kb, memory_kb(self.pid))
        return self.peak_rss_kb

    def check_alive(self) -> bool:
        """False (and the exit counted) if it stopped on its own since the last look."""
        if self.proc is None:
            return False
        if self.proc.poll() is None:
            self.sample_memory()
            return True
        self._exited()
        return False

    def _exited(self) -> None:
        assert self.proc is not None
        self.crashes.append(self.proc.returncode)
        self.proc = None

    def send(self, sig: int) -> None:
        """Send `sig` to the core (SIGSTOP, SIGCONT, ...) without waiting."""
        self.sample_memory()
        os.kill(self.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Stop it with `sig` (SIGKILL: as a crash would) and return its exit code."""
        if self.proc is None:
            return None
        self.sample_memory()
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> CoreProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.stop()
