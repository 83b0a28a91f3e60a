"""`sensing demo`: broker, store, core and a simulated fleet behind real edge agents, live."""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from sensing.console import GRADE_STYLE, alert_line
from sensing.services import Mosquitto, ServiceError, VictoriaMetrics, terminate_group
from sensing.wire import topics
from sensing.wire.messages import Alert, Grade


class _Feed:
    """What the demo hears on the broker: alerts, dead letters and the core's counters."""

    def __init__(self, broker: Mosquitto, console: Console) -> None:
        self.console = console
        self.alerts: list[Alert] = []
        self.deadletters = 0
        self.stats: dict[str, Any] = {}
        self.stats_seen = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", broker.port)
        self._client.subscribe([(topics.ALERTS_FILTER, 1), (topics.DEADLETTER_FILTER, 1),
                                (topics.CORE_STATS_TOPIC, 1)])
        self._client.loop_start()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == topics.CORE_STATS_TOPIC:
            self.stats = orjson.loads(msg.payload)
            self.stats_seen.set()
        elif msg.topic.startswith("sensing/v1/deadletter/"):
            self.deadletters += 1
            reason = orjson.loads(msg.payload).get("reason", "?")
            self.console.print(f"[dim]dead letter on {msg.topic}: {reason[:100]}[/dim]")
        else:
            try:
                alert = Alert.model_validate_json(msg.payload)
            except ValidationError:
                return
            self.alerts.append(alert)
            self.console.print(alert_line(alert))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_settled(feed: _Feed, quiet_s: float = 2.0, timeout_s: float = 60.0) -> None:
    """Wait until the core's counters stop moving: it has taken in everything sent."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        snapshot = (feed.stats.get("messages"), feed.stats.get("readings_received"))
        if snapshot != last:
            last, since = snapshot, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.2)


def _incident_rows(fleet: dict[str, Any], alerts: list[Alert]) -> list[dict[str, Any]]:
    """Each scripted incident beside the alert it got: grade reached and time to first alert."""
    rows = []
    end_ms = int(fleet.get("end_ms", 2**63))
    for inc in fleet.get("incidents", []):
        if inc["ts_start"] >= end_ms:
            continue  # the run was cut short before it began
        mine = [a for a in alerts if a.device == inc["device"] and a.type == inc["type"]]
        worst = max((a.grade for a in mine), key=lambda g: g.rank, default=None)
        first = min((a.ts_raised for a in mine), default=None)
        rows.append({
            "type": inc["type"], "device": inc["device"], "expected": inc["grade"],
            "alerted": worst.value if worst else None,
            "latency_s": None if first is None else round((first - inc["ts_start"]) / 1000, 1),
        })
    return rows


def _summary(console: Console, fleet: dict[str, Any], stats: dict[str, Any], stored: int,
             feed: _Feed, elapsed: float, store: VictoriaMetrics, workdir: Path,
             as_json: bool) -> dict[str, Any]:
    # When the fleet stops, each agent publishes its retained "offline" status: those
    # gateway.offline alerts are real but belong to the shutdown, not to the run.
    end_ms = int(fleet.get("end_ms", 2**63))
    raised = Counter((a.type, a.grade) for a in feed.alerts
                     if a.state == "raised" and a.ts_raised <= end_ms)
    at_shutdown = sum(1 for a in feed.alerts if a.state == "raised" and a.ts_raised > end_ms)
    malformed = sum(fleet.get("malformed_sent", {}).values())
    doc = {
        "readings_sent": fleet.get("readings_sent_unique"),
        "duplicates_injected": fleet.get("duplicate_readings_injected"),
        "malformed_sent": malformed,
        "readings_stored": stored,
        "duplicates_dropped": stats.get("duplicates_dropped"),
        "deadlettered": feed.deadletters,
        "readings_per_s": round(stored / elapsed, 1) if elapsed > 0 else None,
        "alerts_raised": {f"{t}/{g.value}": n for (t, g), n in sorted(raised.items())},
        "alerts_raised_at_shutdown": at_shutdown,
        "alert_transitions": len(feed.alerts),
        "incidents": _incident_rows(fleet, feed.alerts),
    }
    if as_json:
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return doc
    counts = Table(title="Readings", show_header=False)
    counts.add_column(justify="left")
    counts.add_column(justify="right")
    for label, key in (("sent by the fleet (unique)", "readings_sent"),
                       ("duplicates injected", "duplicates_injected"),
                       ("malformed messages sent", "malformed_sent"),
                       ("stored in VictoriaMetrics", "readings_stored"),
                       ("duplicates dropped by the core", "duplicates_dropped"),
                       ("dead-lettered messages", "deadlettered"),
                       ("stored per second (sustained)", "readings_per_s")):
        counts.add_row(label, f"{doc[key]:,}" if isinstance(doc[key], int | float) else "?")
    console.print(counts)
    grades = [Grade.CRITICAL, Grade.MAJOR, Grade.MINOR, Grade.INFO]
    table = Table(title="Alerts raised, by type and grade")
    table.add_column("type")
    for g in grades:
        table.add_column(g.value, justify="right", style=GRADE_STYLE[g])
    for t in sorted({t for t, _ in raised}):
        table.add_row(t, *[str(raised.get((t, g), "")) for g in grades])
    console.print(table)
    incidents = Table(title="Scripted incidents and the alerts they got")
    for col in ("type", "device", "expected", "alerted", "after"):
        incidents.add_column(col)
    for row in doc["incidents"]:
        got = row["alerted"] or ("none yet (run cut short)" if fleet.get("stopped_early")
                                 else "[red]missed[/red]")
        after = "" if row["latency_s"] is None else f"{row['latency_s']:.1f} s"
        incidents.add_row(row["type"], row["device"], row["expected"], got, after)
    console.print(incidents)
    if at_shutdown:
        console.print(f"(and {at_shutdown} raised after the fleet stopped: its edge agents "
                      "signing off publish a retained offline status)")
    data = workdir / "victoria-metrics" / "data"
    console.print(
        "[bold]Query the stored data[/bold] (the store is stopped with the demo; start it again"
        " on the same data):\n"
        f"  victoria-metrics -storageDataPath={data} -httpListenAddr=127.0.0.1:8428"
        " -retentionPeriod=100y -dedup.minScrapeInterval=1ms &\n"
        "  curl -s 'http://127.0.0.1:8428/api/v1/export?match[]=reading_seq&start=0' | head\n"
        "  curl -s 'http://127.0.0.1:8428/api/v1/query' --data-urlencode"
        " 'query=count(count_over_time(reading_seq[1h]))'\n"
        "  curl -s 'http://127.0.0.1:8428/api/v1/export?match[]=alert_ts_event&start=0'\n"
        f"Alert lifecycle database: {workdir / 'core' / 'alerts.sqlite'}; logs: {workdir}/*.log"
    )
    return doc


def _follow(fleet: subprocess.Popen[bytes], feed: _Feed, console: Console,
            started: float) -> bool:
    """Wait for the fleet, with a progress line every 10 s. A first Ctrl-C stops the fleet
    (which still writes its report) and returns True; a second one aborts."""
    next_progress = started + 10
    try:
        while fleet.poll() is None:
            time.sleep(0.2)
            if time.monotonic() >= next_progress:
                next_progress += 10
                console.print(f"[dim]… {time.monotonic() - started:.0f} s: "
                              f"{feed.stats.get('readings_stored', 0):,} readings stored, "
                              f"{len(feed.alerts)} alert transitions[/dim]")
    except KeyboardInterrupt:
        console.print("\n[yellow]interrupted: stopping the fleet for the summary "
                      "(Ctrl-C again to abort)[/yellow]")
        terminate_group(fleet)
        return True
    return False


def run_demo(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with ExitStack() as stack:
        try:
            console.print("[bold]sensing demo[/bold]: starting Mosquitto and VictoriaMetrics")
            broker = stack.enter_context(Mosquitto.start(workdir))
            store = stack.enter_context(VictoriaMetrics.start(workdir))
            console.print(f"  mosquitto on 127.0.0.1:{broker.port}, victoria-metrics on "
                          f"{store.url}; data and logs in {workdir}")
            core = _spawn([sys.executable, "-m", "sensing.cli", "run",
                           "--mqtt-port", str(broker.port), "--store-url", store.url,
                           "--state-dir", str(workdir / "core"), "--log-format", "json"],
                          workdir / "core.log")
            stack.callback(terminate_group, core)
            feed = _Feed(broker, console)
            stack.callback(feed.close)
            console.print("  starting the stream core (its first start on a machine compiles "
                          "the numba kernels: about 20 s)")
            if not feed.stats_seen.wait(120):
                console.print(f"[red]the core did not start; see {workdir / 'core.log'}[/red]")
                return 1
            console.print(f"  stream core running; fleet: {args.devices} devices behind "
                          f"{args.gateways} edge agents, a reading every {args.interval:g} s, "
                          f"for {args.duration:g} s, with scripted incidents, duplicates and "
                          "malformed messages\n")
            report = workdir / "fleet.json"
            started = time.monotonic()
            fleet = _spawn([sys.executable, "-m", "sensing_sim.cli", "live",
                            "--broker-port", str(broker.port), "--gateways", str(args.gateways),
                            "--devices", str(args.devices), "--interval", str(args.interval),
                            "--duration", str(args.duration), "--incidents", "demo",
                            "--duplicates", "0.01", "--malformed", "6",
                            "--report", str(report)], workdir / "fleet.log")
            stack.callback(terminate_group, fleet)
            interrupted = _follow(fleet, feed, console, started)
            elapsed = time.monotonic() - started
            if interrupted and not report.exists():
                return 130
            if (fleet.returncode != 0 and not interrupted) or not report.exists():
                console.print(f"[red]the fleet failed ({fleet.returncode}); see "
                              f"{workdir / 'fleet.log'}[/red]")
                return 1
            _wait_settled(feed)
        except KeyboardInterrupt:
            console.print("\n[yellow]interrupted: stopping fleet, core, broker and store[/yellow]")
            return 130
        except ServiceError as exc:
            console.print(f"[red]{exc}[/red]")
            return 1
        terminate_group(core)
        stored = store.settled_count("reading_seq", int(feed.stats.get("readings_stored", 0)))
        console.print()
        _summary(console, orjson.loads(report.read_bytes()), feed.stats, stored, feed, elapsed,
                 store, workdir, args.json)
    return 0
