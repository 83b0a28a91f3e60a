"""`sensing-sim record`: a fleet's messages and labels written to a recording file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import Progress

from sensing_sim.commands.common import (
    UsageError,
    fleet_options,
    plan_from_args,
    run_options,
    transport_fault_options,
)

RECORD_DESCRIPTION = """\
Simulate a fleet on a simulated clock, as `sensing-sim offline` does, but instead of feeding
the core write every message that would reach the broker (readings, gateway status, and
duplicates, late and malformed messages from the faults) to FILE, together with the incident
labels and what was sent. `sensing-sim replay FILE` publishes it against a broker at any
speed; `sensing-sim offline --recording FILE` feeds it to the core in-process. The format is
described in docs/recording-format.md. A name ending in .gz is gzip-compressed.

examples:
  sensing-sim record --scenario simulators/scenarios/pilot.toml --out pilot.simrec
  sensing-sim record --gateways 4 --devices 400 --duration 300 --malformed 6 --out small.simrec
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    record = sub.add_parser(
        "record", help="write a fleet's messages and labels to a recording file",
        description=RECORD_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fleet_options(record)
    transport_fault_options(record)
    run_options(record, "to record")
    out = record.add_argument_group("output")
    out.add_argument("--out", type=Path, required=True, metavar="FILE",
                     help="the recording to write (required; overwritten)")
    out.add_argument("--json", action="store_true",
                     help="print what was recorded as one JSON object on stdout")
    record.set_defaults(execute=execute)


def execute(args: argparse.Namespace, err: Console) -> int:
    from sensing_sim.recording import RecordingWriter
    from sensing_sim.transport import FleetStream

    try:
        plan = plan_from_args(args)
    except UsageError as exc:
        err.print(f"sensing-sim record: {exc}", markup=False)
        return 2
    spec = plan.fleet.spec
    header = {
        "start_ms": plan.start_ms, "duration_s": plan.duration_s, "speed": plan.speed,
        "fleet": {"gateways": len(plan.fleet.gateways), "devices": len(plan.fleet.devices),
                  "interval_s": spec.interval_s, "seed": spec.seed, "areas": list(spec.areas),
                  "mix": dict(spec.mix)},
        "faults": orjson.loads(orjson.dumps(plan.faults)),
        "source": plan.source,
        "labels": plan.labels(),
    }
    stream = FleetStream(plan.fleet, plan.duration_s, start_ms=plan.start_ms, faults=plan.faults)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with RecordingWriter(args.out, header) as writer, \
                Progress(console=err, transient=True) as bar:
            task = bar.add_task(f"recording {args.out.name}", total=plan.duration_s)
            for now, arrived in stream.steps():
                for m in arrived:
                    writer.write(m)
                bar.update(task, completed=min(plan.duration_s, (now - plan.start_ms) / 1000))
            writer.finish(stream.counts.to_dict())
            messages = writer.messages
    except OSError as exc:
        err.print(f"sensing-sim record: cannot write {args.out}: {exc}", markup=False)
        return 1
    summary = {"recording": str(args.out), "bytes": args.out.stat().st_size,
               "messages_total": messages, "labels": len(plan.fleet.incidents),
               **stream.counts.to_dict()}
    if args.json:
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    else:
        err.print(f"sensing-sim record: {args.out}: {messages:,} messages, "
                  f"{stream.counts.readings_sent:,} readings, {summary['labels']} labels, "
                  f"{summary['bytes']:,} bytes", markup=False)
    return 0
