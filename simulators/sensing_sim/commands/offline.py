"""`sensing-sim offline`: a fleet fed straight into the core in this process."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress

from sensing_sim.commands.common import fleet_options, ranged, score_table, stdout
from sensing_sim.score import alerts_from_transitions, as_json, score

OFFLINE_DESCRIPTION = """\
Feed a simulated fleet straight into the stream core in this process: no broker, no store,
a simulated clock. Every second of simulated time each gateway's due readings go to the core
as one SNB1 message, as its edge agent would send them; the alerts the core raises are scored
against the incidents' labels (recall, precision, F1, latency, duplicates per alert type).
A day of a 1,000-device fleet takes a few minutes; the same seed gives the same result.

examples:
  sensing-sim offline --gateways 4 --devices 400 --duration 600
  sensing-sim offline --devices 2000 --incidents none --duration 3600 --json
      an hour of quiet signals: every alert is a false positive
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    offline = sub.add_parser(
        "offline", help="feed a fleet straight into the core in this process and score it",
        description=OFFLINE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fleet_options(offline)
    orun = offline.add_argument_group("run")
    orun.add_argument("--scenario", type=Path, metavar="FILE",
                      help="a scenario file (TOML: fleet, run, incidents; see scenarios/); it "
                           "replaces the fleet options, --duration, --start and --incidents")
    orun.add_argument("--duration", type=ranged(float, 1.0, 1e8), default=600.0,
                      metavar="SECONDS", help="simulated seconds (default 600)")
    orun.add_argument("--start", type=ranged(int, 946_684_800_000, 4_102_444_800_000),
                      default=1_795_478_400_000, metavar="MS",
                      help="simulated start, ms since the Unix epoch (default 2026-11-25 "
                           "00:00 UTC)")
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
    from sensing_sim.fleet import Fleet, FleetSpec
    from sensing_sim.offline import run_offline
    from sensing_sim.scenario import load_scenario

    configure("console", "WARNING")
    try:
        if args.scenario is not None:
            scenario = load_scenario(args.scenario)
            fleet = scenario.build()
            args.duration, args.start = scenario.run.duration_s, scenario.run.start_ms
        else:
            fleet = Fleet(FleetSpec(n_gateways=args.gateways, n_devices=args.devices,
                                    mix=args.mix, areas=args.areas, interval_s=args.interval,
                                    seed=args.seed))
            if args.incidents == "demo":
                fleet.schedule_demo_incidents(args.duration)
    except OSError as exc:
        err.print(f"sensing-sim offline: cannot read {args.scenario}: {exc}", markup=False)
        return 2
    except tomllib.TOMLDecodeError as exc:
        err.print(f"sensing-sim offline: {args.scenario}: not valid TOML: {exc}", markup=False)
        return 2
    except ValidationError as exc:
        err.print(f"sensing-sim offline: {args.scenario}: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()), markup=False)
        return 2
    except ValueError as exc:
        err.print(f"sensing-sim offline: {exc}", markup=False)
        return 2
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(f"{len(fleet.devices):,} devices", total=args.duration)
        run = run_offline(fleet, args.duration, start_ms=args.start,
                          progress=lambda done: bar.update(task, completed=done))
    labels = [i.to_dict(args.start) for i in fleet.incidents]
    scores = score(labels, alerts_from_transitions(run.alerts), args.grace)
    try:
        for path, records in ((args.labels, labels), (args.alerts, run.alerts)):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    except OSError as exc:
        err.print(f"sensing-sim offline: cannot write: {exc}", markup=False)
        return 1
    summary = {"devices": len(fleet.devices), "gateways": len(fleet.gateways),
               "simulated_s": args.duration, "wall_s": round(run.wall_s, 3),
               "readings": run.readings,
               "readings_per_s": round(run.readings / run.wall_s) if run.wall_s else None,
               "alert_transitions": len(run.alerts), "core": run.core}
    if args.json:
        sys.stdout.write(orjson.dumps({**summary, "score": as_json(scores)}).decode() + "\n")
        return 0
    out = stdout()
    out.print(f"{summary['readings']:,} readings of {summary['devices']:,} devices, "
              f"{args.duration:g} simulated s in {run.wall_s:.1f} s "
              f"({summary['readings_per_s']:,} readings/s)", markup=False)
    out.print(score_table(scores, "score (alerts against incident labels)"))
    return 0


