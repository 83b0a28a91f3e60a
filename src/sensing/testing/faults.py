"""The fault matrix: one fault per row against a fresh real stack (Mosquitto, VictoriaMetrics,
`sensing run` as a subprocess), readings from real edge agents (durable buffer files) or a
paho publisher at QoS 1, counted in the store, with an SOS published during the fault and the
wall time until its alert measured.

A row passes when nothing sent is lost, nothing is stored twice, the SOS is alerted, and
where the fault is a store outage, alerted within ALERT_BOUND_S (alerts never wait for the
store)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
import structlog

from sensing.services import Mosquitto, VictoriaMetrics
from sensing.testing.counting import ReadingKey, Tally, settle
from sensing.testing.edge_child import LockstepDriver, agent_settings
from sensing.testing.hostile import quiet_values
from sensing.testing.processes import CoreProcess
from sensing.testing.traffic import Publisher, Recorder
from sensing.wire import snb1
from sensing_edge import GatewayAgent, SensorSample

log = structlog.get_logger("sensing.testing.faults")

AREA = "fault"
SOS_GATEWAY = "sos-probe"
ALERT_BOUND_S = 5.0
"""an SOS published during a store outage must be alerted within this"""


@dataclass(frozen=True, slots=True)
class Scale:
    agents: int = 2
    devices: int = 20
    """per agent (or per batch of the publisher)"""
    interval_s: float = 0.2
    warm_s: float = 2.0
    fault_s: float = 3.0
    after_s: float = 2.0
    batches: int = 50
    """publisher rows: batches of `devices` readings"""


CI_SCALE = Scale()
FULL_SCALE = Scale(agents=4, devices=100, interval_s=0.25, warm_s=5.0, fault_s=10.0,
                   after_s=5.0, batches=500)


@dataclass
class RowResult:
    fault: str
    source: str
    sent: int = 0
    stored: int = 0
    lost: int = 0
    stored_twice: int = 0
    unexpected: int = 0
    alert_delay_s: float | None = None
    """None: no alert for the SOS at all"""
    alert_bound_s: float | None = None
    alerts_doubled: int = 0
    """SOS presses raised under more than one alert_id (a redelivered message with the same
    alert_id is no second alert)"""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        in_time = self.alert_delay_s is not None and (
            self.alert_bound_s is None or self.alert_delay_s <= self.alert_bound_s)
        return (self.lost == 0 and self.stored_twice == 0 and self.sent > 0
                and self.stored == self.sent and in_time and self.alerts_doubled == 0)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


class Stack:
    """A fresh broker, store and core, an alert recorder and an SOS probe."""

    def __init__(self, workdir: Path, scale: Scale) -> None:
        self.workdir = workdir
        self.scale = scale
        self.broker = Mosquitto.start(workdir)
        self.store = VictoriaMetrics.start(workdir)
        self.core = CoreProcess(self.broker.port, self.store.url, workdir / "core")
        self.core.start()
        self.recorder = Recorder(self.broker.port, "sensing/v1/alerts/#",
                                 "sensing/v1/core/stats", "sensing/v1/deadletter/#",
                                 client_id="fault-recorder")
        self.broker_started = time.monotonic()
        # SOS presses come from a wristband behind an edge agent of their own, as they would
        # in the field: what the broker loses the agent sends again until the core confirms
        self.probe = GatewayAgent(agent_settings(SOS_GATEWAY, AREA, self.broker.port,
                                                 workdir / "sos" / "buffer.db"), [])
        self.probe.start()
        self.agents: list[tuple[GatewayAgent, LockstepDriver]] = []
        self.sos_sent: dict[str, float] = {}
        self.stop_seconds: float | None = None
        """how long the core took to stop on SIGTERM, where a row stops it"""

    # -- traffic ------------------------------------------------------------------------

    def start_agents(self) -> None:
        for i in range(self.scale.agents):
            gateway = f"edge-{i}"
            driver = LockstepDriver(gateway, self.scale.devices, self.scale.interval_s)
            agent = GatewayAgent(agent_settings(
                gateway, AREA, self.broker.port, self.workdir / f"edge-{i}" / "buffer.db"),
                [driver])
            agent.start()
            if not agent.wait_connected(15):
                raise TimeoutError(f"agent {gateway} did not connect")
            self.agents.append((agent, driver))

    def finish_agents(self, timeout: float = 60.0) -> tuple[set[ReadingKey], list[str]]:
        """Stop the agents cleanly; the readings they numbered."""
        expected: set[ReadingKey] = set()
        notes: list[str] = []
        ticks = {id(d): d.pause() for _, d in self.agents}
        for agent, driver in self.agents:
            if not agent.stop(timeout):
                notes.append(f"{agent.settings.gateway} stopped with readings unconfirmed")
            for name in driver.names:
                expected.update((agent.settings.gateway, name, agent.epoch, s)
                                for s in range(ticks[id(driver)]))
        return expected, notes

    def sos(self, label: str) -> None:
        """An SOS press on a wristband of its own, published at once by the probe's agent
        (buffered while the broker is down)."""
        device = f"sos-{label}"
        sample = SensorSample(device, "wearable", time.time_ns() // 1_000_000,
                              {**quiet_values("wearable"), "sos": 1.0}, 0.9)
        self.sos_sent[device] = time.monotonic()
        self.probe.publish_now([sample])

    def wait_broker_saved(self) -> None:
        """Let the broker write its first snapshot (autosave_interval 5 s in mosquitto.conf)
        so that the core's persistent session is in it, as it is in a broker that has run for
        a while: a crash loses what came since the last snapshot, not the sessions."""
        time.sleep(max(0.0, self.broker_started + 6.0 - time.monotonic()))

    def alert_delay(self, timeout: float = 60.0) -> float | None:
        """The longest wall time from an SOS's publish to its raised alert; None if one was
        never alerted within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            delays: dict[str, float] = {}
            for heard, doc in self.recorder.json("sensing/v1/alerts/"):
                device = doc.get("device")
                if (doc.get("type") == "wearable.sos" and doc.get("state") == "raised"
                        and isinstance(device, str) and device in self.sos_sent):
                    delays.setdefault(device, heard.at - self.sos_sent[device])
            if len(delays) == len(self.sos_sent):
                return round(max(delays.values(), default=0.0), 2)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def alerts_doubled(self) -> int:
        ids: dict[str, set[str]] = {}
        for _, doc in self.recorder.json("sensing/v1/alerts/"):
            device = doc.get("device")
            if doc.get("type") == "wearable.sos" and doc.get("state") == "raised" and \
                    isinstance(device, str) and device in self.sos_sent:
                ids.setdefault(device, set()).add(str(doc.get("alert_id")))
        return sum(len(v) - 1 for v in ids.values())

    def core_stats(self) -> dict[str, object]:
        docs = [doc for _, doc in self.recorder.json("sensing/v1/core/stats")]
        return docs[-1] if docs else {}

    def tally(self, expected: set[ReadingKey], timeout: float = 30.0) -> Tally:
        gateways = {k[0] for k in expected}
        stored = settle(self.store, f'area="{AREA}"', expected, timeout)
        mine = type(stored)({k: n for k, n in stored.items() if k[0] in gateways})
        return Tally.of(expected, mine)

    def close(self) -> None:
        for agent, _ in self.agents:
            with contextlib.suppress(Exception):
                agent.stop(1.0)
        with contextlib.suppress(Exception):
            self.probe.stop(1.0)
        with contextlib.suppress(Exception):
            self.recorder.close()
        with contextlib.suppress(Exception):
            if self.core.running:
                os.kill(self.core.pid, signal.SIGCONT)
        self.core.stop()
        self.store.stop()
        self.broker.stop()


@contextlib.contextmanager
def _stack(workdir: Path, scale: Scale) -> Iterator[Stack]:
    stack = Stack(workdir, scale)
    try:
        yield stack
    finally:
        stack.close()


RowFn = Callable[[Stack, RowResult], set[ReadingKey]]
"""runs the fault; returns the readings that were sent"""


def _with_agents(fault: Callable[[Stack], None]) -> RowFn:
    def row(stack: Stack, result: RowResult) -> set[ReadingKey]:
        stack.start_agents()
        time.sleep(stack.scale.warm_s)
        fault(stack)
        time.sleep(stack.scale.after_s)
        expected, notes = stack.finish_agents()
        result.notes += notes
        return expected
    return row


def _core_sigkill(s: Stack) -> None:
    s.core.kill()
    s.sos("core-sigkill")
    time.sleep(s.scale.fault_s)
    s.core.start()


def _broker_restart(s: Stack) -> None:
    s.broker.stop()
    s.sos("broker-restart")
    time.sleep(s.scale.fault_s)
    s.broker.restart()


def _broker_sigkill(s: Stack) -> None:
    s.wait_broker_saved()
    s.broker.kill()
    s.sos("broker-sigkill")
    time.sleep(s.scale.fault_s)
    s.broker.restart()


def _broker_sigkill_backlog(s: Stack) -> None:
    s.wait_broker_saved()
    s.core.stop()  # the broker queues the core's backlog in its persistent session
    time.sleep(min(s.scale.fault_s, 4.0))  # within one autosave interval: not in a snapshot
    s.broker.kill()
    s.broker.restart()
    s.sos("broker-sigkill-backlog")
    s.core.start()


def _store_outage(s: Stack) -> None:
    s.store.stop()
    s.sos("store-outage")
    time.sleep(s.scale.fault_s)
    s.store.restart()


def _core_sigkill_after_alert(s: Stack) -> None:
    """Killed the moment its alert is out: between publishing an alert and recording that
    the broker has it, as an unlucky crash would."""
    s.sos("core-sigkill-after-alert")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and s.alert_delay(0) is None:
        time.sleep(0.005)
    s.core.kill()
    time.sleep(s.scale.fault_s)
    s.core.start()


def _core_sigstop(s: Stack) -> None:
    s.core.send(signal.SIGSTOP)
    s.sos("core-sigstop")
    time.sleep(s.scale.fault_s)
    s.core.send(signal.SIGCONT)


def _clean_stop_during_store_outage(s: Stack) -> None:
    s.store.stop()
    time.sleep(s.scale.fault_s / 2)
    s.sos("clean-stop-store-outage")
    time.sleep(s.scale.fault_s / 2)
    started = time.monotonic()
    code = s.core.stop(signal.SIGTERM, timeout=60)
    if code != 0:
        log.warning("the core's exit on SIGTERM", code=code)
    s.stop_seconds = time.monotonic() - started
    s.store.restart()
    s.core.start()


def _publisher_resend(stack: Stack, result: RowResult) -> set[ReadingKey]:
    sc = stack.scale
    publisher = Publisher(stack.broker.port, client_id="fault-resend-publisher")
    payloads: list[bytes] = []
    expected: set[ReadingKey] = set()
    t0 = time.time_ns() // 1_000_000 - sc.batches * 1000
    gateway = "resend-gw"
    for b in range(sc.batches):
        rows: list[snb1.Reading] = []
        for d in range(sc.devices):
            device = f"{gateway}-dev-{d}"
            rows.append((device, "smoke", 0, b, t0 + b * 1000, quiet_values("smoke"), 0.9))
            expected.add((gateway, device, 0, b))
        payloads.append(snb1.encode_readings(rows))
    topic = f"sensing/v1/{AREA}/{gateway}/readings"
    for p in payloads:
        publisher.publish(topic, p)
    publisher.flush()
    stack.sos("publisher-resend")
    for p in payloads:  # the same batches again, as a publisher that lost its PUBACKs would
        publisher.publish(topic, p)
    publisher.flush()
    publisher.close()
    return expected


def _edge_sigkill(stack: Stack, result: RowResult) -> set[ReadingKey]:
    """`python -m sensing.testing.edge_child` SIGKILLed mid-stream, then run again on the
    same buffer file until a clean stop. A killed run committed a prefix of its ticks: every
    tick up to the last one seen (in the store or left in the buffer file) was committed."""
    sc = stack.scale
    gateway = "edge-kill"
    buffer = stack.workdir / "edge-kill" / "buffer.db"
    argv = [sys.executable, "-m", "sensing.testing.edge_child", "--gateway", gateway,
            "--area", AREA, "--broker-port", str(stack.broker.port), "--buffer", str(buffer),
            "--devices", str(sc.devices), "--interval", str(sc.interval_s)]
    log_file = (stack.workdir / "edge-kill.log").open("ab")
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log_file,
                             start_new_session=True)
    assert first.stdout is not None
    killed_epoch = int(orjson.loads(first.stdout.readline())["epoch"])
    time.sleep(sc.warm_s + sc.fault_s / 2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    left = _buffered(buffer)
    stack.sos("edge-sigkill")
    time.sleep(sc.fault_s / 2)
    second = subprocess.run([*argv, "--duration", str(sc.after_s)], capture_output=True,
                            timeout=120, check=False)
    log_file.close()
    last = orjson.loads(second.stdout.splitlines()[-1])
    if second.returncode != 0:
        result.notes.append(f"the second run ended with {second.returncode}: {last}")
    names = [f"{gateway}-dev-{i}" for i in range(sc.devices)]
    expected = {(gateway, n, int(last["epoch"]), s) for n in names for s in range(last["ticks"])}
    seen = settle(stack.store, f'gateway="{gateway}"', expected, 30)
    top = max([s for (_, _, e, s) in seen if e == killed_epoch]
              + [s for (_, e, s) in left if e == killed_epoch], default=-1)
    expected |= {(gateway, n, killed_epoch, s) for n in names for s in range(top + 1)}
    result.notes.append(f"killed run: {top + 1} ticks committed, {len(left)} readings left in "
                        f"its buffer; second run: {last['ticks']} ticks")
    return expected


def _buffered(path: Path) -> list[tuple[str, int, int]]:
    """(device, epoch, seq) of the readings left in an agent's buffer file."""
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            return [(str(d), int(e), int(s)) for d, e, s in
                    db.execute("SELECT device, epoch, seq FROM readings")]
    except sqlite3.Error:
        return []


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    source: str
    run: RowFn
    alert_bound_s: float | None = None


FAULTS: tuple[Fault, ...] = (
    Fault("core SIGKILL", "edge agents", _with_agents(_core_sigkill)),
    Fault("core SIGKILL just after an alert", "edge agents",
          _with_agents(_core_sigkill_after_alert)),
    Fault("broker graceful restart", "edge agents", _with_agents(_broker_restart)),
    Fault("broker SIGKILL", "edge agents", _with_agents(_broker_sigkill)),
    Fault("broker SIGKILL, backlog for a stopped core", "edge agents",
          _with_agents(_broker_sigkill_backlog)),
    Fault("store outage", "edge agents", _with_agents(_store_outage), ALERT_BOUND_S),
    Fault("core SIGSTOP, SIGCONT", "edge agents", _with_agents(_core_sigstop)),
    Fault("publisher resend", "paho QoS 1", _publisher_resend),
    Fault("core SIGTERM during a store outage", "edge agents",
          _with_agents(_clean_stop_during_store_outage), ALERT_BOUND_S),
    Fault("edge agent SIGKILL", "edge agent process", _edge_sigkill),
)
FAULTS_BY_NAME = {f.name: f for f in FAULTS}


def run_fault(fault: Fault, workdir: Path, scale: Scale = CI_SCALE) -> RowResult:
    """One row of the matrix on a fresh stack in `workdir`."""
    started = time.monotonic()
    result = RowResult(fault.name, fault.source, alert_bound_s=fault.alert_bound_s)
    workdir.mkdir(parents=True, exist_ok=True)
    with _stack(workdir, scale) as stack:
        expected = fault.run(stack, result)
        # the SOS readings are readings too: the probe's agent numbered each seq 0
        expected |= {(SOS_GATEWAY, device, stack.probe.epoch, 0) for device in stack.sos_sent}
        result.alert_delay_s = stack.alert_delay()
        time.sleep(0.5)
        result.alerts_doubled = stack.alerts_doubled()
        tally = stack.tally(expected)
        result.sent, result.stored, result.lost = tally.sent, tally.stored, tally.lost
        result.stored_twice, result.unexpected = tally.stored_twice, tally.unexpected
        if stack.stop_seconds is not None:
            result.notes.append(f"the core took {stack.stop_seconds:.1f} s to stop on SIGTERM")
        letters = stack.recorder.json("sensing/v1/deadletter/")
        if letters:
            codes = sorted({str(doc.get("code", doc.get("reason"))) for _, doc in letters})
            result.notes.append(f"{len(letters)} dead letters: {', '.join(codes)[:200]}")
        if fault.name == "publisher resend":
            stats = stack.core_stats()
            result.notes.append(f"core stats: readings_stored {stats.get('readings_stored')}, "
                                f"duplicates_dropped {stats.get('duplicates_dropped')}")
        if stack.core.crashes:
            result.notes.append(f"the core exited on its own: {stack.core.crashes}; "
                                + stack.core.log_tail(0, 600))
    result.seconds = round(time.monotonic() - started, 1)
    return result
