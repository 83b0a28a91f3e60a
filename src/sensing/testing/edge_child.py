"""An edge agent with lockstep sensors, as a test's subprocess (or in process via
`LockstepDriver`): every tick each device reports once, so within one run's epoch tick k is
seq k of every device, and what a run committed is a prefix of its ticks.

    python -m sensing.testing.edge_child --gateway gw-1 --area fault --broker-port 1883 \\
        --buffer /tmp/edge/buffer.db --devices 50 --interval 0.2 [--duration 5]

Light like the agent itself: no numpy here. On SIGTERM (or after --duration) it stops
cleanly and prints its counts as one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

import orjson

from sensing_edge import AgentSettings, GatewayAgent, SensorSample

QUIET_SMOKE = {"obscuration": 0.1, "temp_c": 22.0, "co_ppm": 1.0}


class LockstepDriver:
    """`devices` smoke detectors `{gateway}-dev-<i>` that all report every `interval_s`; the
    first tick is at the first poll. `paused` stops the ticks (before a clean stop, so that
    `emitted` is exactly what the agent numbered)."""

    def __init__(self, gateway: str, devices: int, interval_s: float) -> None:
        self.names = [f"{gateway}-dev-{i}" for i in range(devices)]
        self.interval_ms = max(1, int(interval_s * 1000))
        self.next_ms: int | None = None
        self.ticks = 0
        self.paused = False
        self._lock = threading.Lock()

    def poll(self, now_ms: int) -> list[SensorSample]:
        with self._lock:
            if self.paused:
                return []
            if self.next_ms is None:
                self.next_ms = now_ms
            out: list[SensorSample] = []
            while self.next_ms <= now_ms:
                out.extend(SensorSample(name, "smoke", self.next_ms, dict(QUIET_SMOKE), 0.9)
                           for name in self.names)
                self.ticks += 1
                self.next_ms += self.interval_ms
            return out

    def pause(self) -> int:
        """Stop ticking; returns the ticks emitted."""
        with self._lock:
            self.paused = True
            return self.ticks


def agent_settings(gateway: str, area: str, port: int, buffer: Path,
                   **overrides: Any) -> AgentSettings:
    """Settings of a test's agent: quick reconnects and, where the agent waits for the core's
    store confirmations, quick resends of what the core never confirmed."""
    fields = AgentSettings.model_fields
    values: dict[str, Any] = {"gateway": gateway, "area": area, "broker_port": port,
                              "buffer_path": buffer, "reconnect_min_s": 0.2,
                              "reconnect_max_s": 1.0, "poll_interval_s": 0.05}
    for name, value in (("confirm_timeout_s", 2.0), ("confirm_timeout_max_s", 4.0)):
        if name in fields:
            values[name] = value
    values.update(overrides)
    return AgentSettings.model_validate(values)


def main(argv: list[str] | None = None) -> int:
    from sensing.logs import configure
    from sensing.process import stop_on_signals

    p = argparse.ArgumentParser(prog="python -m sensing.testing.edge_child",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gateway", required=True)
    p.add_argument("--area", required=True)
    p.add_argument("--broker-port", type=int, required=True)
    p.add_argument("--buffer", type=Path, required=True)
    p.add_argument("--devices", type=int, default=50)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--duration", type=float, default=None)
    p.add_argument("--stop-timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    configure("json", "WARNING")
    driver = LockstepDriver(args.gateway, args.devices, args.interval)
    agent = GatewayAgent(agent_settings(args.gateway, args.area, args.broker_port, args.buffer),
                         [driver])
    stop = threading.Event()
    with stop_on_signals(stop):
        agent.start()
        print(orjson.dumps({"started": True, "epoch": agent.epoch}).decode(), flush=True)
        stop.wait(args.duration)
    ticks = driver.pause()
    clean = agent.stop(args.stop_timeout)
    stats = agent.stats()
    print(orjson.dumps({"epoch": agent.epoch, "ticks": ticks, "clean": clean,
                        "sampled": stats.readings_sampled}).decode(), flush=True)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
