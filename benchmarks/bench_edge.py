"""The edge agent's footprint at 1,000 readings/s and its backlog drain rate, on a real broker.

    .venv/bin/python benchmarks/bench_edge.py [--seconds 30] [--warm-up 10] [--backlog 200000]
                                               [--json]

Everything runs against a Mosquitto the benchmark starts on a free loopback port (and stops at
the end, also on Ctrl-C or an error), with one subscriber process on
sensing/v1/bench/+/readings (QoS 1) that counts what arrives and checks every reading's name
(device, epoch, seq) with `sensing.wire.decode_readings`. It also confirms each agent batch on
sensing/v1/core/stored/... as the core does once it stored it, so that the agents delete their
readings as they would with a core (`confirm = "core"`).

(1) footprint: the agent runs as a gateway runs it, in its own process,
        python -m sensing_edge run --gateway gw-bench --area bench --broker-port PORT \\
            --devices 1000 --interval 1 --buffer TMP/buffer.db --duration D
    (1,000 simulated devices, one reading each per second: 1,000 readings/s). After the
    warm-up, the benchmark samples its /proc/PID/status VmRSS every 0.5 s and its
    /proc/PID/stat utime+stime over the window: RSS (largest sample, and VmHWM, the peak since
    start) and CPU % of one core (CPU seconds / wall seconds * 100). The readings the
    subscriber received in the window confirm the load; /proc/PID/maps tells whether numpy or
    numba are loaded. Baseline in the same run: a naive gateway script (paho, a JSON object
    per reading built from random values of the same kinds, one QoS 1 publish per reading, no
    buffer), in its own process, measured the same way.
(2) backlog drain: a fresh buffer file is filled with N readings of 1,000 simulated devices
    (committed, never published: an outage), then an agent started in this process
    (`GatewayAgent(AgentSettings(..., buffer_path=PATH, poll_interval_s=0.05), drivers=[])`)
    drains it; timed from connect until `stats().readings_buffered == 0` (polled every 20 ms),
    once at the default `drain_readings_per_s` and once at 1e9 (the agent's own ceiling).
    The subscriber must then have received exactly N distinct (device, epoch, seq) of the
    buffer's epoch (repeats are allowed and counted). Baseline in the same run: a naive loop
    publishing the same N readings as one JSON message each at QoS 1 with paho (default
    settings) and waiting for every PUBACK (`wait_for_publish`; for the oldest whenever
    10,000 are outstanding, as paho's 16-bit message ids allow no more than 65,535).

Absolute figures vary with the machine's load; the ratios against the naive baselines were
measured in the same run. About two minutes with the defaults.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sensing.services import LOOPBACK, Mosquitto, terminate_group
from sensing.wire.topics import readings_topic
from sensing_edge import (
    AgentSettings,
    GatewayAgent,
    NumberedSample,
    ReadingBuffer,
    SensorSample,
    SimulatedDriver,
    make_fleet,
    reading_dict,
    wall_clock_ms,
)
from sensing_edge.cli import DEFAULT_MIX, parse_mix

AREA = "bench"
RATE = 1_000  # readings/s of the footprint runs: 1,000 devices, one reading each per second
TARGET_RSS_MB = 60.0
TARGET_CPU_PCT = 5.0
TARGET_DRAIN = 20_000.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
CEILING_RATE = 1e9

say: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731


# -- children: launched with `python -c` from their own source, so that they import only what
#    they import themselves (the naive gateway must not pay for this module's imports) -------

def naive_gateway(port: int, topic: str, devices: int, interval_s: float, seconds: float
                  ) -> None:
    """What a first gateway script does: paho, a JSON object per reading, one QoS 1 publish
    each, no buffer. Devices of the simulated fleet's kinds with random values, each sampled
    every `interval_s`, phase-shifted so the fleet does not report in bursts."""
    import json
    import random
    import time

    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    channels = {
        "smoke": {"obscuration": (0.1, 0.03), "temp_c": (22.0, 0.5), "co_ppm": (1.0, 0.3)},
        "manhole": {"tilt_deg": (0.4, 0.05), "water_m": (2.2, 0.02), "gas_lel": (0.3, 0.1)},
        "wearable": {"heart_rate": (75.0, 2.0), "spo2": (97.0, 0.3), "accel_g": (1.0, 0.03),
                     "steps": (10.0, 5.0), "sos": (0.0, 0.0)},
    }
    kinds = ["smoke"] * (devices // 2) + ["manhole"] * (devices // 5)
    kinds += ["wearable"] * (devices - len(kinds))
    fleet = [(f"naive-{kind}-{i:05d}", kind) for i, kind in enumerate(kinds)]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-naive-gateway")
    client.connect("127.0.0.1", port)
    client.loop_start()
    epoch = int(time.time())
    seq = [0] * len(fleet)
    start = time.monotonic()
    # devices in the order of their phase: every 10 ms, those due since (no scan of the fleet)
    phase = sorted((random.random() * interval_s, i) for i in range(len(fleet)))
    order, due = [i for _, i in phase], [start + p for p, _ in phase]
    k = 0
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        while due[k] <= now:
            i = order[k]
            device, kind = fleet[i]
            due[k] += interval_s
            k = (k + 1) % len(order)
            values = {ch: round(max(0.0, random.gauss(m, s)), 2)
                      for ch, (m, s) in channels[kind].items()}
            reading = {"device": device, "kind": kind, "seq": seq[i], "epoch": epoch,
                       "ts": int(time.time() * 1000), "values": values,
                       "battery": round(random.uniform(0.85, 0.95), 4)}
            seq[i] += 1
            client.publish(topic, json.dumps(reading), qos=1)
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


def subscriber(port: int, topic_filter: str) -> None:
    """Collects every message on `topic_filter` (QoS 1) with its arrival time (monotonic, which
    is the same clock in every process) and answers commands on stdin, one JSON line each:
    `count TOPIC T0 T1` readings received in [T0, T1]; `keys TOPIC` every reading name
    received so far; `quit`. Counting waits for a command; confirming an agent's batch (a
    decode per message, as the core's) happens as it arrives, in this process."""
    import json
    import sys
    import threading
    import time

    import orjson
    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from sensing.wire import decode_readings
    from sensing.wire.confirm import stored_messages
    from sensing.wire.errors import WireError

    got: dict[str, list[tuple[float, bytes]]] = {}
    ready = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        got.setdefault(msg.topic, []).append((time.monotonic(), msg.payload))
        if msg.payload[:1] != b"{":  # an agent's batch: confirm it as the core does once stored
            _, _, area, gateway, _ = msg.topic.split("/")
            b = decode_readings(msg.payload, gateway, area, 1 << 24).batch
            for topic, payload in stored_messages(
                    [(area, gateway, b.devices, b.device, b.epoch, b.seq)]):
                client.publish(topic, payload, qos=1)

    def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe(topic_filter, qos=1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-subscriber")
    client.max_inflight_messages_set(1000)
    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda *a: ready.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not ready.wait(15):
        raise SystemExit("subscriber: no SUBACK in 15 s")
    print(json.dumps({"ready": True}), flush=True)

    def names(payload: bytes, topic: str) -> tuple[list[tuple[str, int, int]], int]:
        """(device, epoch, seq) of every usable reading, and how many were rejected."""
        if payload[:1] == b"{":  # the naive baseline's one reading per message: fast path
            r = orjson.loads(payload)
            return [(r["device"], r["epoch"], r["seq"])], 0
        parts = topic.split("/")  # sensing/v1/{area}/{gateway}/readings
        try:
            d = decode_readings(payload, parts[3], parts[2], 1 << 24)
        except WireError:
            return [], 1
        b = d.batch
        return (list(zip([b.devices[i] for i in b.device.tolist()], b.epoch.tolist(),
                         b.seq.tolist(), strict=True)), len(d.rejected))

    decoded: dict[str, tuple[int, list[tuple[str, int, int]], int]] = {}
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        msgs = list(got.get(cmd[1], ()))
        if cmd[0] == "count":
            t0, t1 = float(cmd[2]), float(cmd[3])
            n = rejected = m = 0
            for t, payload in msgs:
                if t0 <= t <= t1:
                    keys, bad = names(payload, cmd[1])
                    n, rejected, m = n + len(keys), rejected + bad, m + 1
            print(json.dumps({"readings": n, "rejected": rejected, "messages": m}), flush=True)
        elif cmd[0] == "keys":
            done, keys, rejected = decoded.get(cmd[1], (0, [], 0))
            for _, payload in msgs[done:]:
                more, bad = names(payload, cmd[1])
                keys.extend(more)
                rejected += bad
            decoded[cmd[1]] = (len(msgs), keys, rejected)
            distinct = set(keys)
            print(json.dumps({
                "messages": len(msgs), "readings": len(keys), "distinct": len(distinct),
                "rejected": rejected, "epochs": sorted({e for _, e, _ in distinct}),
                "last_arrival": msgs[-1][0] if msgs else None,
            }), flush=True)
    client.disconnect()
    client.loop_stop()


def child_argv(fn: Callable[..., None], *args: object) -> list[str]:
    code = inspect.getsource(fn) + f"\n{fn.__name__}(*{args!r})\n"
    return [sys.executable, "-c", "from typing import Any\n" + code]


def spawn(argv: list[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
    """A child in its own process group (stopped with terminate_group), output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=kw.pop("stdout", out), stderr=out,
                                start_new_session=True, **kw)


class Subscriber:
    def __init__(self, port: int, workdir: Path) -> None:
        self.proc = spawn(child_argv(subscriber, port, f"sensing/v1/{AREA}/+/readings"),
                          workdir / "subscriber.log", stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE)
        if not self._reply().get("ready"):
            raise RuntimeError("subscriber did not start; see subscriber.log")

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"subscriber exited ({self.proc.poll()}); see subscriber.log")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, *cmd: object) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((" ".join(map(str, cmd)) + "\n").encode())
        self.proc.stdin.flush()
        return self._reply()

    def settled_keys(self, topic: str, expected: int, quiet_s: float = 1.0,
                     timeout: float = 60.0) -> dict[str, Any]:
        """Every reading name received on `topic`, once `expected` readings arrived and
        nothing more came for `quiet_s` (or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        while True:
            keys = self.ask("keys", topic)
            last = keys["last_arrival"]
            quiet = last is None or time.monotonic() - last >= quiet_s
            if (keys["readings"] >= expected and quiet) or time.monotonic() > deadline:
                return keys
            time.sleep(0.25)

    def close(self) -> None:
        with suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.close()
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(3)
        terminate_group(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- (1) footprint --------------------------------------------------------------------------

def proc_status(pid: int, key: str) -> float:
    """A kB figure of /proc/PID/status (VmRSS, VmHWM) in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of every thread of the process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # fields 14, 15 of stat(5)


def loaded(pid: int) -> dict[str, bool]:
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    return {"numpy": "_multiarray_umath" in maps, "numba": "numba" in maps}


@dataclass
class Footprint:
    rss_mb: float
    """largest VmRSS sampled in the window"""
    rss_median_mb: float
    hwm_mb: float
    """VmHWM at the end of the window: the peak since the process started"""
    cpu_pct: float
    """user + system CPU seconds / wall seconds * 100"""
    cpu_sys_pct: float
    """of which in the kernel (system calls: sockets, fsync)"""
    received_per_s: float
    rejected: int
    loaded: dict[str, bool]
    exit_code: int | None = None
    final: str = ""
    samples: list[float] = field(default_factory=list, repr=False)


def measure(proc: subprocess.Popen[bytes], sub: Subscriber, topic: str, warm_up: float,
            seconds: float, launched: float, log: Path) -> Footprint:
    def alive() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited early with {proc.returncode}: "
                               f"{log.read_text()[-2000:]}")

    while time.monotonic() < launched + warm_up:
        alive()
        time.sleep(0.1)
    pid = proc.pid
    t0, cpu0 = time.monotonic(), cpu_seconds(pid)
    samples = []
    while (now := time.monotonic()) < t0 + seconds:
        alive()
        samples.append(proc_status(pid, "VmRSS"))
        time.sleep(min(0.5, max(0.0, t0 + seconds - now)))
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    samples.append(proc_status(pid, "VmRSS"))
    hwm, libs = proc_status(pid, "VmHWM"), loaded(pid)
    got = sub.ask("count", topic, t0, t1)
    return Footprint(
        rss_mb=max(samples), rss_median_mb=statistics.median(samples), hwm_mb=hwm,
        cpu_pct=(sum(cpu1) - sum(cpu0)) / (t1 - t0) * 100,
        cpu_sys_pct=(cpu1[1] - cpu0[1]) / (t1 - t0) * 100,
        received_per_s=got["readings"] / (t1 - t0),
        rejected=got["rejected"], loaded=libs, samples=samples)


def finish(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        terminate_group(proc)
        return None


def footprint_agent(port: int, sub: Subscriber, workdir: Path, warm_up: float,
                    seconds: float) -> tuple[Footprint, list[str]]:
    gateway = "gw-bench"
    duration = warm_up + seconds + 2
    argv = [sys.executable, "-m", "sensing_edge", "run", "--gateway", gateway, "--area", AREA,
            "--broker-port", str(port), "--devices", str(RATE), "--interval", "1",
            "--buffer", str(workdir / "buffer.db"), "--duration", f"{duration:g}"]
    out = workdir / "agent.out"
    with out.open("wb") as stdout:
        proc = spawn(argv, workdir / "agent.log", stdout=stdout)
    launched = time.monotonic()
    try:
        fp = measure(proc, sub, readings_topic(AREA, gateway), warm_up, seconds, launched,
                     workdir / "agent.log")
        fp.exit_code = finish(proc, duration + 20 - (time.monotonic() - launched))
    finally:
        terminate_group(proc)
    fp.final = out.read_text().strip()
    return fp, argv


def footprint_naive(port: int, sub: Subscriber, workdir: Path, warm_up: float,
                    seconds: float) -> Footprint:
    topic = readings_topic(AREA, "gw-naive")
    duration = warm_up + seconds + 2
    proc = spawn(child_argv(naive_gateway, port, topic, RATE, 1.0, duration),
                 workdir / "naive.log")
    launched = time.monotonic()
    try:
        fp = measure(proc, sub, topic, warm_up, seconds, launched, workdir / "naive.log")
        fp.exit_code = finish(proc, duration + 20 - (time.monotonic() - launched))
    finally:
        terminate_group(proc)
    return fp


# -- (2) backlog drain ---------------------------------------------------------------------

def outage_samples(n: int, gateway: str) -> list[SensorSample]:
    """n readings of 1,000 simulated devices (the CLI's default mix), one per device per
    second, ending about now."""
    driver = SimulatedDriver(make_fleet(RATE, parse_mix(DEFAULT_MIX), gateway), 1.0, seed=1)
    t = wall_clock_ms() - (n // RATE + 2) * 1000
    out: list[SensorSample] = []
    while len(out) < n:
        out.extend(driver.poll(t))
        t += 1000
    return out[:n]


def fill(path: Path, samples: list[SensorSample], chunk: int = 10_000
         ) -> tuple[int, list[NumberedSample]]:
    """Commit `samples` to a fresh buffer file (never published); (its epoch, the numbered
    readings)."""
    buf = ReadingBuffer(path)
    numbered: list[NumberedSample] = []
    try:
        for i in range(0, len(samples), chunk):
            numbered.extend(n for _, n in buf.append(samples[i : i + chunk]))
        assert len(buf) == len(samples)
        return buf.epoch, numbered
    finally:
        buf.close()


@dataclass
class Drain:
    readings: int
    seconds: float | None
    """None: the drain stalled"""
    cpu_s: float
    """CPU time of this whole process (agent threads, or the naive loop) meanwhile"""
    distinct: int = 0
    received: int = 0
    duplicates: int = 0
    rejected: int = 0
    epochs_ok: bool = True
    note: str = ""

    @property
    def rate(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0

    @property
    def complete(self) -> bool:
        return (self.seconds is not None and self.distinct == self.readings and self.epochs_ok
                and self.rejected == 0)


def drain_agent(port: int, path: Path, gateway: str, n: int, rate: float | None,
                stall_s: float = 10.0) -> tuple[Drain, dict[str, Any]]:
    extra = {} if rate is None else {"drain_readings_per_s": rate}
    settings = AgentSettings(gateway=gateway, area=AREA, broker_port=port, buffer_path=path,
                             poll_interval_s=0.05, **extra)  # type: ignore[arg-type]
    agent = GatewayAgent(settings, drivers=[])
    agent.start()
    try:
        if not agent.wait_connected(15):
            raise RuntimeError(f"agent {gateway} did not connect in 15 s")
        t0, cpu0 = time.perf_counter(), time.process_time()
        progress_at, acked = t0, -1
        while (st := agent.stats()).readings_buffered > 0:
            now = time.perf_counter()
            if st.readings_acked != acked:
                progress_at, acked = now, st.readings_acked
            elif now - progress_at > stall_s:
                say(f"    stalled: no PUBACK for {stall_s:g} s: {st.as_dict()}")
                return Drain(n, None, time.process_time() - cpu0,
                             note=f"stalled with {st.readings_buffered} buffered"), st.as_dict()
            time.sleep(0.02)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        return Drain(n, elapsed, cpu), agent.stats().as_dict()
    finally:
        agent.stop(timeout=5.0)


NAIVE_WINDOW = 10_000
"""messages the naive loop leaves unacknowledged at most: publishing all N before waiting
fails in paho (ERR_QUEUE_SIZE) once its 16-bit message ids wrap around"""


def wait_puback(info: mqtt.MQTTMessageInfo, deadline: float) -> int:
    """1 if the PUBACK did not come by `deadline`."""
    info.wait_for_publish(max(0.0, deadline - time.perf_counter()))
    return 0 if info.is_published() else 1


def drain_naive(port: int, topic: str, readings: list[NumberedSample], timeout: float
                ) -> Drain:
    """One JSON message per reading at QoS 1 with paho's defaults, waiting for every PUBACK
    (for the oldest whenever NAIVE_WINDOW are unacknowledged)."""
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-naive-drain")
    client.on_connect = lambda *a: connected.set()
    client.connect(LOOPBACK, port)
    client.loop_start()
    try:
        if not connected.wait(15):
            raise RuntimeError("naive drain client did not connect in 15 s")
        t0, cpu0 = time.perf_counter(), time.process_time()
        deadline = t0 + timeout
        pending: deque[mqtt.MQTTMessageInfo] = deque()
        unacked = 0
        for r in readings:
            if len(pending) >= NAIVE_WINDOW:  # paho's mids are 16 bits: wait for the oldest
                unacked += wait_puback(pending.popleft(), deadline)
            pending.append(client.publish(topic, json.dumps(reading_dict(r)), qos=1))
        unacked += sum(wait_puback(info, deadline) for info in pending)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        return Drain(len(readings), None if unacked else elapsed, cpu,
                     note=f"{unacked} not acknowledged in {timeout:g} s" if unacked else "")
    finally:
        client.disconnect()
        client.loop_stop()


def verify(d: Drain, sub: Subscriber, topic: str, epoch: int) -> Drain:
    keys = sub.settled_keys(topic, d.readings)
    d.received, d.distinct, d.rejected = keys["readings"], keys["distinct"], keys["rejected"]
    d.duplicates = d.received - d.distinct
    d.epochs_ok = keys["epochs"] == [epoch]
    if not d.complete and not d.note:
        d.note = (f"received {d.distinct:,} distinct of {d.readings:,}, epochs "
                  f"{keys['epochs']} (expected [{epoch}]), {d.rejected} rejected")
    return d


# -- running it all ------------------------------------------------------------------------

@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so that every finally block stops its children."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"seconds": args.seconds, "warm_up": args.warm_up,
                           "backlog": args.backlog}
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        workdir = Path(tmp)
        broker = Mosquitto.start(workdir)
        sub: Subscriber | None = None
        try:
            say(f"mosquitto on {LOOPBACK}:{broker.port}")
            sub = Subscriber(broker.port, workdir)
            say(f"(1) footprint: agent at {RATE:,} readings/s, {args.warm_up:g} s warm-up, "
                f"{args.seconds:g} s window ...")
            agent, argv = footprint_agent(broker.port, sub, workdir, args.warm_up, args.seconds)
            res["agent_command"] = " ".join(["python", *argv[1:]])
            say(f"    RSS {agent.rss_mb:.1f} MB (peak {agent.hwm_mb:.1f}), CPU "
                f"{agent.cpu_pct:.2f} %, {agent.received_per_s:,.0f} readings/s received; "
                f"exit {agent.exit_code}: {agent.final}")
            say("(1) footprint: naive gateway script ...")
            naive = footprint_naive(broker.port, sub, workdir, args.warm_up, args.seconds)
            say(f"    RSS {naive.rss_mb:.1f} MB (peak {naive.hwm_mb:.1f}), CPU "
                f"{naive.cpu_pct:.2f} %, {naive.received_per_s:,.0f} readings/s received")
            res["footprint"] = {
                who: {"rss_mb": round(f.rss_mb, 1), "rss_median_mb": round(f.rss_median_mb, 1),
                      "hwm_mb": round(f.hwm_mb, 1), "cpu_pct": round(f.cpu_pct, 2),
                      "cpu_sys_pct": round(f.cpu_sys_pct, 2),
                      "received_per_s": round(f.received_per_s), "rejected": f.rejected,
                      "numpy_loaded": f.loaded["numpy"], "numba_loaded": f.loaded["numba"],
                      "exit_code": f.exit_code}
                for who, f in (("agent", agent), ("naive", naive))}
            res["footprint"]["agent"]["final"] = agent.final

            n = args.backlog
            say(f"(2) backlog drain: {n:,} readings of {RATE:,} devices into fresh buffers ...")
            drains: dict[str, Drain] = {}
            default_rate = AgentSettings.model_fields["drain_readings_per_s"].default
            res["default_drain_readings_per_s"] = default_rate
            runs: list[tuple[str, str, float | None]] = [
                ("agent_default", "gw-drain", None),
                ("agent_ceiling", "gw-drain-max", CEILING_RATE),
            ]
            naive_readings: list[NumberedSample] = []
            naive_epoch = 0
            samples = outage_samples(n, "gw-drain")
            for key, gateway, rate in runs:
                path = workdir / f"{gateway}.db"
                t = time.perf_counter()
                epoch, numbered = fill(path, samples)
                say(f"    {gateway}: filled in {time.perf_counter() - t:.1f} s (epoch {epoch}); "
                    f"draining at {rate or default_rate:g} readings/s at most ...")
                if not naive_readings:
                    naive_readings, naive_epoch = numbered, epoch
                del numbered
                d, stats = drain_agent(broker.port, path, gateway, n, rate)
                drains[key] = verify(d, sub, readings_topic(AREA, gateway), epoch)
                say(f"    {d.rate:,.0f} readings/s; {d.distinct:,} distinct received, "
                    f"{d.duplicates} repeats {d.note}")
                res.setdefault("agent_stats", {})[key] = stats
            say("    naive: one JSON message per reading, QoS 1, wait for every PUBACK ...")
            topic = readings_topic(AREA, "gw-naive-drain")
            d = drain_naive(broker.port, topic, naive_readings, timeout=max(60.0, n / 1000))
            del naive_readings
            drains["naive"] = verify(d, sub, topic, naive_epoch)
            say(f"    {d.rate:,.0f} readings/s; {d.distinct:,} distinct received, "
                f"{d.duplicates} repeats {d.note}")
            res["drain"] = {k: {"readings_per_s": round(d.rate), "seconds":
                                None if d.seconds is None else round(d.seconds, 3),
                                "cpu_s": round(d.cpu_s, 3), "received": d.received,
                                "distinct": d.distinct, "duplicates": d.duplicates,
                                "rejected": d.rejected, "complete": d.complete,
                                "note": d.note}
                            for k, d in drains.items()}
        finally:
            if sub is not None:
                sub.close()
            broker.stop()
    a, nv = res["footprint"]["agent"], res["footprint"]["naive"]
    dr = res["drain"]
    res["targets"] = {
        "rss_under_60mb": a["rss_mb"] < TARGET_RSS_MB,
        "rss_peak_under_60mb": a["hwm_mb"] < TARGET_RSS_MB,
        "cpu_under_5pct": a["cpu_pct"] < TARGET_CPU_PCT,
        "load_1000_per_s": abs(a["received_per_s"] - RATE) <= 0.05 * RATE,
        "drain_default_20k": dr["agent_default"]["readings_per_s"] >= TARGET_DRAIN
        and dr["agent_default"]["complete"],
        "drain_ceiling_20k": dr["agent_ceiling"]["readings_per_s"] >= TARGET_DRAIN
        and dr["agent_ceiling"]["complete"],
    }
    res["ratios"] = {
        "rss": round(a["rss_mb"] / nv["rss_mb"], 2),
        "rss_peak": round(a["hwm_mb"] / nv["hwm_mb"], 2),
        "cpu": round(a["cpu_pct"] / nv["cpu_pct"], 3) if nv["cpu_pct"] else None,
        "drain_default": round(dr["agent_default"]["readings_per_s"]
                               / max(1, dr["naive"]["readings_per_s"]), 2),
        "drain_ceiling": round(dr["agent_ceiling"]["readings_per_s"]
                               / max(1, dr["naive"]["readings_per_s"]), 2),
    }
    return res


def met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def print_table(res: dict[str, Any]) -> None:
    a, nv = res["footprint"]["agent"], res["footprint"]["naive"]
    dr, tg, ra = res["drain"], res["targets"], res["ratios"]
    print(f"edge agent, Mosquitto on loopback; footprint over {res['seconds']:g} s after "
          f"{res['warm_up']:g} s warm-up; backlog of {res['backlog']:,} readings")
    print(f"agent: {res['agent_command']}")
    print(f"{'path':<58}{'figure':>12}{'× naive':>9}  target")
    rows: list[tuple[str, str, str, str]] = [
        ("(1) agent RSS in the window, largest sample (MB)", f"{a['rss_mb']:.1f}",
         f"{ra['rss']:.2f}", f"< 60 MB: {met(tg['rss_under_60mb'])}"),
        ("(1) agent RSS peak since start, VmHWM (MB)", f"{a['hwm_mb']:.1f}",
         f"{ra['rss_peak']:.2f}", f"< 60 MB: {met(tg['rss_peak_under_60mb'])}"),
        ("(1) agent CPU, % of one core", f"{a['cpu_pct']:.2f}",
         "-" if ra["cpu"] is None else f"{ra['cpu']:.2f}", f"< 5 %: {met(tg['cpu_under_5pct'])}"),
        ("(1) readings/s the subscriber received from the agent", f"{a['received_per_s']:,}",
         f"{a['received_per_s'] / max(1, nv['received_per_s']):.2f}",
         f"~1,000: {met(tg['load_1000_per_s'])}"),
        ("(1) naive script RSS, largest sample (MB)", f"{nv['rss_mb']:.1f}", "1.00", ""),
        ("(1) naive script RSS peak, VmHWM (MB)", f"{nv['hwm_mb']:.1f}", "1.00", ""),
        ("(1) naive script CPU, % of one core", f"{nv['cpu_pct']:.2f}", "1.00", ""),
        ("(1) readings/s the subscriber received from the naive", f"{nv['received_per_s']:,}",
         "1.00", ""),
        (f"(2) agent drain, default {res['default_drain_readings_per_s']:,.0f}/s at most "
         "(r/s)", f"{dr['agent_default']['readings_per_s']:,}", f"{ra['drain_default']:.2f}",
         f">= 20,000/s: {met(tg['drain_default_20k'])}"),
        ("(2) agent drain, drain_readings_per_s=1e9 (r/s)",
         f"{dr['agent_ceiling']['readings_per_s']:,}", f"{ra['drain_ceiling']:.2f}",
         f">= 20,000/s: {met(tg['drain_ceiling_20k'])}"),
        ("(2) naive: a JSON message per reading, QoS 1 (r/s)",
         f"{dr['naive']['readings_per_s']:,}", "1.00", ""),
    ]
    for label, figure, ratio, target in rows:
        print(f"{label:<58}{figure:>12}{ratio:>9}  {target}")
    print(f"agent process: numpy loaded {a['numpy_loaded']}, numba loaded {a['numba_loaded']}; "
          f"RSS median {a['rss_median_mb']:.1f} MB; CPU in the kernel {a['cpu_sys_pct']:.2f} % "
          f"(naive {nv['cpu_sys_pct']:.2f} %); exit {a['exit_code']}: {a['final']}")
    for key, d in dr.items():
        check = ("all delivered" if d["complete"] else "INCOMPLETE: " + d["note"])
        print(f"(2) {key}: {d['distinct']:,} distinct (device, epoch, seq) of "
              f"{res['backlog']:,} received, {d['duplicates']} repeats, {d['rejected']} "
              f"rejected, {d['seconds']} s, {d['cpu_s']} CPU s in this process: {check}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0,
                    help="footprint measuring window per process (default %(default)g)")
    ap.add_argument("--warm-up", type=float, default=10.0,
                    help="seconds after launch before the window starts (default %(default)g)")
    ap.add_argument("--backlog", type=int, default=200_000,
                    help="readings in the buffer to drain (default %(default)d)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.warm_up < 0 or args.backlog < 1:
        ap.error("--seconds must be > 0, --warm-up >= 0 and --backlog >= 1")
    # the in-process agents' warnings (lost connection, refused publish) go to stderr
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    started = time.monotonic()
    try:
        with interrupt_on_sigterm():
            res = run(args)
    except KeyboardInterrupt:
        say("interrupted: the broker and every child process were stopped")
        return 130
    res["total_s"] = round(time.monotonic() - started, 1)
    if args.json:
        sys.stdout.write(json.dumps(res) + "\n")
    else:
        print_table(res)
        print(f"total {res['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
