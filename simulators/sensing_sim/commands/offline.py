"""`sensing-sim offline`: a fleet fed straight into the core in this process."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console
from rich.progress import Progress

from sensing_sim.commands.common import (
    UsageError,
    deadletter_table,
    fleet_options,
    plan_from_args,
    ranged,
    run_options,
    score_table,
    stdout,
    transport_fault_options,
)
from sensing_sim.score import alerts_from_transitions, deadletter_score, report_json, score

if TYPE_CHECKING:
    from sensing_sim.recording import RecordingReader
    from sensing_sim.transport import Message

OFFLINE_DESCRIPTION = """\
Feed a simulated fleet straight into the stream core in this process: no broker, no store,
a simulated clock. Every second of simulated time each gateway's due readings go to the core
as one SNB1 message, as its edge agent would send them, through any transport faults of the
scenario or options (duplicates, late and out-of-order delivery, malformed messages, gateway
restarts, clock skew, link outages); the alerts the core raises are scored against the
incidents' labels (recall, precision, F1, latency, duplicates per alert type), and its dead
letters against the malformed messages sent. With --recording, the messages of a recording
(`sensing-sim record`) are fed instead. The same seed gives the same result.

examples:
  sensing-sim offline --scenario simulators/scenarios/pilot.toml
  sensing-sim offline --gateways 4 --devices 400 --duration 600 --duplicates 0.05 --late 0.02
  sensing-sim offline --devices 2000 --incidents none --duration 3600 --json
      an hour of quiet signals: every alert is a false positive
  sensing-sim offline --recording pilot.simrec
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    offline = sub.add_parser(
        "offline", help="feed a fleet straight into the core in this process and score it",
        description=OFFLINE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fleet_options(offline)
    transport_fault_options(offline)
    run_options(offline, "to run")
    orun = offline.add_argument_group("input and scoring")
    orun.add_argument("--recording", type=Path, metavar="FILE",
                      help="feed this recording's messages instead of simulating (its labels "
                           "are scored); replaces every fleet, fault and run option")
    orun.add_argument("--grace", type=ranged(float, 0.0, 86_400), default=600.0,
                      metavar="SECONDS", help="how long after an incident's end an alert "
                      "still counts as detecting it (default 600)")
    oout = offline.add_argument_group("output")
    oout.add_argument("--labels", type=Path, metavar="PATH",
                      help="write the incident labels here (JSON lines)")
    oout.add_argument("--alerts", type=Path, metavar="PATH",
                      help="write the core's alert transitions here (JSON lines)")
    oout.add_argument("--json", action="store_true",
                      help="print the run and its score as one JSON object on stdout")
    offline.set_defaults(execute=execute)


def execute(args: argparse.Namespace, err: Console) -> int:
    from sensing.logs import configure
    from sensing_sim.offline import OfflineRun, feed_core, run_offline
    from sensing_sim.recording import RecordingError, RecordingReader

    # The core logs each dead letter as a warning; here they are the injected malformed
    # messages, counted in the dead-letter table instead.
    configure("console", "ERROR")
    with Progress(console=err, transient=True) as bar:
        if args.recording is not None:
            try:
                reader = RecordingReader(args.recording)
            except (OSError, RecordingError) as exc:
                err.print(f"sensing-sim offline: {exc}", markup=False)
                return 2
            start, duration = reader.start_ms, float(reader.header["duration_s"])
            labels = reader.labels
            fleet_info: dict[str, Any] = dict(reader.header.get("fleet", {}))
            task = bar.add_task(f"{args.recording.name}", total=duration)
            run = OfflineRun(start_ms=start, sim_s=duration)
            try:
                feed_core(_steps_of(reader), run,
                          progress=lambda done: bar.update(task, completed=done))
            except RecordingError as exc:
                err.print(f"sensing-sim offline: {exc}", markup=False)
                return 1
            run.sent = dict(reader.trailer or {})
        else:
            try:
                plan = plan_from_args(args)
            except UsageError as exc:
                err.print(f"sensing-sim offline: {exc}", markup=False)
                return 2
            start, duration, labels = plan.start_ms, plan.duration_s, plan.labels()
            fleet_info = {"devices": len(plan.fleet.devices),
                          "gateways": len(plan.fleet.gateways)}
            task = bar.add_task(f"{len(plan.fleet.devices):,} devices", total=duration)
            run = run_offline(plan.fleet, duration, start_ms=start, faults=plan.faults,
                              progress=lambda done: bar.update(task, completed=done))
    scores = score(labels, alerts_from_transitions(run.alerts), args.grace)
    sent = run.sent.get("malformed_sent")
    dead = deadletter_score(sent if isinstance(sent, dict) else None, run.deadletters)
    try:
        for path, records in ((args.labels, labels), (args.alerts, run.alerts)):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    except OSError as exc:
        err.print(f"sensing-sim offline: cannot write: {exc}", markup=False)
        return 1
    malformed_sent = run.sent.get("malformed_total", 0)
    summary = {"devices": fleet_info.get("devices"), "gateways": fleet_info.get("gateways"),
               "simulated_s": duration, "wall_s": round(run.wall_s, 3),
               "readings": run.readings, "messages": run.messages,
               "readings_per_s": round(run.readings / run.wall_s) if run.wall_s else None,
               "alert_transitions": len(run.alerts), "sent": run.sent,
               "malformed_sent": malformed_sent, "dead_lettered": len(run.deadletters),
               "core": run.core}
    if args.json:
        sys.stdout.write(orjson.dumps({**summary, "score": report_json(scores, dead)}).decode()
                         + "\n")
        return 0
    out = stdout()
    out.print(f"{run.readings:,} readings in {run.messages:,} messages, "
              f"{duration:g} simulated s in {run.wall_s:.1f} s "
              f"({summary['readings_per_s']:,} readings/s); malformed sent "
              f"{malformed_sent}, dead-lettered {len(run.deadletters)}", markup=False)
    out.print(score_table(scores, "score (alerts against incident labels)"))
    out.print(deadletter_table(dead))
    return 0


def _steps_of(reader: RecordingReader) -> Iterator[tuple[int, list[Message]]]:
    """A recording's messages in the steps the offline run fed them: every simulated second
    from the start, each with the messages that arrived by then."""
    step_ms = 1000
    now = reader.start_ms + step_ms
    batch: list[Message] = []
    for m in reader.messages():
        due = reader.start_ms + max(1, -(-(m.at_ms - reader.start_ms) // step_ms)) * step_ms
        while now < due:
            yield now, batch
            batch, now = [], now + step_ms
        batch.append(m)
    yield now, batch
