#!/usr/bin/env python
"""The core's MQTT receive path alone: paho's CoreSession against BulkSession, messages received
and acknowledged per second and CPU of the receiving process per message, at one JSON reading
(~200 B) per QoS 1 message. Each run has a fresh Mosquitto with the project's mosquitto.conf
and a publisher in another process writing pre-encoded QoS 1 PUBLISH frames to a raw socket.

Modes: `live`, the publisher sends while the session receives (all three share the 2 cores);
`backlog`, the broker queues everything for the session first, which then drains it (the
session and the broker alone)."""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import orjson

ROOT = Path(__file__).resolve().parents[1]
GATEWAYS = 100


class _Session(Protocol):
    connected: threading.Event

    def start(self, timeout_s: float = ...) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Row:
    session: str
    mode: str
    messages: int
    seconds: float
    per_s: float
    cpu_us_per_message: float
    broker_cpu_us_per_message: float
    batches: int
    publisher_s: float | None
    """live: when the publisher had all its PUBACKs (the broker took everything)"""


def reading(i: int) -> bytes:
    return orjson.dumps({
        "device": f"band-{i % 100_000:06d}", "kind": "wearable", "seq": i, "epoch": 3,
        "ts": 1_795_478_819_832 + i, "values": {"heart_rate": 60 + i % 40, "spo2": 97.5,
                                                  "accel_g": 1.02, "steps": i % 13, "sos": 0},
        "battery": 0.93})


def frames(count: int) -> list[bytes]:
    """Pre-encoded QoS 1 PUBLISH packets, packet ids 1..65535 over and over."""
    from sensing.ingest import packets

    out = []
    for i in range(count):
        topic = f"sensing/v1/bench/gw-{i % GATEWAYS:03d}/readings".encode()
        out.append(packets.publish(topic, reading(i), i % 0xFFFF + 1))
    return out


def publish(port: int, count: int) -> None:
    """The publisher process: CONNECT, every frame as fast as the socket takes them, then wait
    for every PUBACK."""
    from sensing.ingest import packets

    data = frames(count)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(packets.connect(f"bench-pub-{time.monotonic_ns()}", 60, True, None, None))
    print("ready", flush=True)  # frames made, connected: the clock starts now
    acked = 0
    pending = b""

    def read_acks() -> None:
        nonlocal acked, pending
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the broker closed the publisher's connection")
        pending += chunk
        # CONNACK (4 bytes: 0x20 0x02 ..) and PUBACKs (0x40 0x02 ..) alike are 4 bytes
        whole = len(pending) // 4 * 4
        acked += sum(1 for j in range(0, whole, 4) if pending[j] == 0x40)
        pending = pending[whole:]

    step = 2000
    sock.setblocking(False)
    for i in range(0, count, step):
        block = memoryview(b"".join(data[i:i + step]))
        while block:
            readable, writable, _ = select.select([sock], [sock], [])
            if readable:
                read_acks()
            if writable:
                with contextlib.suppress(BlockingIOError):
                    block = block[sock.send(block):]
    while acked < count:
        select.select([sock], [], [], 30)
        read_acks()
    sock.setblocking(True)
    sock.sendall(packets.DISCONNECT)
    sock.close()


def start_publisher(port: int, count: int) -> subprocess.Popen[bytes]:
    """The publisher, once it has made its frames and connected."""
    proc = subprocess.Popen([sys.executable, __file__, "--publish-to", str(port),
                             "--messages", str(count)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError("the publisher did not start")
    return proc


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_session(kind: str, port: int, client_id: str) -> tuple[_Session, Callable[[], int]]:
    """The session and one receive-and-ack step (returning how many messages it took)."""
    if kind == "paho":
        from sensing.ingest.mqtt import CoreSession

        paho = CoreSession("127.0.0.1", port, client_id)

        def paho_step() -> int:
            messages = paho.receive(ARGS.batch, ARGS.wait)
            paho.ack(messages)
            return len(messages)

        return paho, paho_step
    from sensing.ingest.session import BulkSession

    bulk = BulkSession("127.0.0.1", port, client_id, coalesce_s=ARGS.coalesce_ms / 1000)

    def bulk_step() -> int:
        received = bulk.receive(ARGS.batch, ARGS.wait)
        bulk.ack(received)
        return len(received)

    return bulk, bulk_step


def run(kind: str, mode: str, count: int, workdir: Path) -> Row:
    from sensing.services import Mosquitto

    with Mosquitto.start(workdir / f"{kind}-{mode}") as broker:
        client_id = f"bench-core-{kind}"
        session, step = make_session(kind, broker.port, client_id)
        if mode == "backlog":  # subscribe, leave, let the broker queue everything
            session.start(30)
            session.stop()
            if start_publisher(broker.port, count).wait() != 0:
                raise RuntimeError("the publisher failed")
            session, step = make_session(kind, broker.port, client_id)
        session.start(30)
        publisher = start_publisher(broker.port, count) if mode == "live" else None
        got = batches = 0
        assert broker.proc is not None
        t0, c0, b0 = time.perf_counter(), cpu_seconds(), process_cpu_seconds(broker.proc.pid)
        deadline = time.monotonic() + ARGS.timeout
        published: float | None = None
        while got < count and time.monotonic() < deadline:
            n = step()
            got += n
            batches += n > 0
            if publisher is not None and published is None and publisher.poll() is not None:
                published = time.perf_counter() - t0
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        broker_cpu = process_cpu_seconds(broker.proc.pid) - b0
        session.stop()
        if publisher is not None:
            publisher.wait(60)
    return Row(kind, mode, got, round(seconds, 3), round(got / seconds),
               round(cpu / max(got, 1) * 1e6, 2), round(broker_cpu / max(got, 1) * 1e6, 2),
               batches, None if published is None else round(published, 3))


def inflight_window() -> str:
    for line in (ROOT / "mosquitto.conf").read_text().splitlines():
        if line.startswith("max_inflight_messages"):
            return line.split()[1]
    return "20 (Mosquitto's default)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_receive.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=2000, help="receive(max_messages) (2000)")
    p.add_argument("--wait", type=float, default=0.05, help="receive(max_wait_s) (0.05)")
    p.add_argument("--sessions", default="paho,bulk")
    p.add_argument("--coalesce-ms", type=float, default=5.0,
                   help="BulkSession(coalesce_s) in ms (5)")
    p.add_argument("--modes", default="backlog,live")
    p.add_argument("--timeout", type=float, default=300.0, help="per run, seconds")
    p.add_argument("--json", action="store_true", help="one JSON object per run")
    p.add_argument("--publish-to", type=int, help=argparse.SUPPRESS)
    return p


ARGS = _parser().parse_args([])


def main(argv: list[str] | None = None) -> int:
    global ARGS
    ARGS = _parser().parse_args(argv)
    if ARGS.publish_to:
        publish(ARGS.publish_to, ARGS.messages)
        return 0
    from sensing.ingest.session import warm_up
    from sensing.logs import configure

    configure(level="ERROR")
    warm_up()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ARGS.modes.split(","):
            for kind in ARGS.sessions.split(","):
                row = run(kind, mode, ARGS.messages, Path(tmp))
                rows.append(row)
                if ARGS.json:
                    print(orjson.dumps({**asdict(row), "max_inflight_messages":
                                        inflight_window()}).decode(), flush=True)
    if not ARGS.json:
        print(f"{ARGS.messages:,} QoS 1 messages of ~{len(reading(0))} B, receive({ARGS.batch}, "
              f"{ARGS.wait}) + ack per batch; mosquitto.conf max_inflight_messages "
              f"{inflight_window()}")
        print(f"{'session':8} {'mode':8} {'messages/s':>11} {'CPU µs/msg':>11} "
              f"{'broker µs/msg':>14} {'batches':>8} {'s':>6} {'published s':>12}")
        for r in rows:
            print(f"{r.session:8} {r.mode:8} {r.per_s:>11,} {r.cpu_us_per_message:>11} "
                  f"{r.broker_cpu_us_per_message:>14} {r.batches:>8} {r.seconds:>6} "
                  f"{'' if r.publisher_s is None else r.publisher_s:>12}")
        for mode in ARGS.modes.split(","):
            pair = {r.session: r for r in rows if r.mode == mode}
            if {"paho", "bulk"} <= set(pair):
                speed = pair["bulk"].per_s / pair["paho"].per_s
                thrift = pair["paho"].cpu_us_per_message / pair["bulk"].cpu_us_per_message
                print(f"{mode}: bulk/paho {speed:.1f}x messages/s, {thrift:.1f}x less CPU")
    return 0 if all(r.messages == ARGS.messages for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
