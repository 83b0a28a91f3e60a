"""`sensing-sim`: simulated sensor fleets behind real edge agents, with labelled incidents."""

from __future__ import annotations

import argparse
import math
import sys
import threading
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from sensing.process import stop_on_signals
from sensing.wire.topics import is_valid_name
from sensing_edge.cli import parse_mix
from sensing_sim.score import TypeScore, alerts_from_transitions, as_json, score

EPILOG = """examples:
  sensing-sim live --broker-port 1883
      10 gateways, 1,000 devices, one reading every 2 s each, demo incidents, 60 s
  sensing-sim live --broker-port 1883 --gateways 2 --devices 20 --duration 10 \\
      --duplicates 0.05 --malformed 6 --json
      a small fleet with injected faults; the report as one JSON object on stdout
  sensing-sim live --broker-port 1883 --mix smoke=1 --areas shuangqiaozi --incidents none \\
      --report quiet.json
      only smoke detectors, only quiet signals (nothing should alert)

exit codes: 0 ok, 1 runtime failure (e.g. broker unreachable), 2 usage error
"""

LIVE_DESCRIPTION = """\
Run a simulated fleet live: one real edge agent (its own MQTT client) per gateway, each
publishing its devices' readings at QoS 1 on sensing/v1/{area}/{gateway}/readings. Devices
send quiet signals with everyday nuisances; with --incidents demo a handful of labelled
incidents (fire, CO, displaced cover, gas, vitals, SOS, overflow, low battery) is scripted
over the run. Optional faults: --duplicates re-publishes a fraction of the batches,
--malformed publishes broken messages. SIGTERM or Ctrl-C stops the run cleanly; the report
(readings sent, faults injected, incident labels) is still printed and written.
"""


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

SCORE_DESCRIPTION = """\
Match alerts with labelled incidents. A label is detected by an alert of its device and type
raised between its start and --grace seconds after its end; the first such alert counts, the
rest are duplicates; alerts that match no label are false positives. Labels need ts_start and
ts_end (ms), as `sensing-sim live --report` and `sensing-sim offline --labels` write them.

example:
  sensing-sim score --labels run.json --alerts alerts.jsonl
"""


def _read_json_records(path: Path) -> list[dict[str, Any]]:
    """JSON lines, a JSON array, or an object with an 'incidents' array (a live report)."""
    text = path.read_bytes()
    stripped = text.lstrip()
    if stripped.startswith(b"[") or (stripped.startswith(b"{") and b"\n{" not in stripped):
        doc = orjson.loads(text)
        if isinstance(doc, dict):
            doc = doc.get("incidents", [doc])
        return [dict(r) for r in doc]
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def _score_table(scores: list[TypeScore], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("type", "labels", "detected", "recall", "precision", "F1",
                   "latency p50", "p95", "duplicates", "false pos.", "grade ok"):
        table.add_column(column, justify="left" if column == "type" else "right",
                         no_wrap=column == "type")

    def secs(x: float | None) -> str:
        return "" if x is None else f"{x:.1f} s"

    for sc in scores:
        table.add_row(sc.type, str(sc.labels), str(sc.detected), f"{sc.recall:.2f}",
                      f"{sc.precision:.2f}", f"{sc.f1:.2f}", secs(sc.latency_median_s),
                      secs(sc.latency_p95_s), str(sc.duplicates), str(sc.false_positives),
                      f"{sc.grade_ok}/{sc.detected}")
    return table


def _stdout() -> Console:
    """Standard output, wide enough for the score table when it is not a terminal."""
    return Console(width=None if sys.stdout.isatty() else 120)


def _offline(args: argparse.Namespace, err: Console) -> int:
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
    out = _stdout()
    out.print(f"{summary['readings']:,} readings of {summary['devices']:,} devices, "
              f"{args.duration:g} simulated s in {run.wall_s:.1f} s "
              f"({summary['readings_per_s']:,} readings/s)", markup=False)
    out.print(_score_table(scores, "score (alerts against incident labels)"))
    return 0


def _score(args: argparse.Namespace, err: Console) -> int:
    try:
        labels = _read_json_records(args.labels)
        alerts = alerts_from_transitions(_read_json_records(args.alerts))
        scores = score(labels, alerts, args.grace)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        err.print(f"sensing-sim score: {type(exc).__name__}: {exc}", markup=False)
        return 2
    if args.json:
        sys.stdout.write(orjson.dumps(as_json(scores)).decode() + "\n")
    else:
        _stdout().print(_score_table(scores, "score (alerts against incident labels)"))
    return 0


def _areas(text: str) -> tuple[str, ...]:
    areas = tuple(a.strip() for a in text.split(","))
    bad = [a for a in areas if not is_valid_name(a)]
    if bad:
        raise argparse.ArgumentTypeError(f"bad area name(s) {bad}: use [A-Za-z0-9_-]{{1,64}}")
    return areas


def _ranged(kind: type[int] | type[float], lo: float, hi: float) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"{text} is not between {lo:g} and {hi:g}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _fleet_options(parser: argparse.ArgumentParser) -> None:
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument("--gateways", type=_ranged(int, 1, 9999), default=10,
                       help="edge agents, gw-01, gw-02, ... (default 10)")
    fleet.add_argument("--devices", type=_ranged(int, 1, 999_999), default=1000,
                       help="devices, spread over the gateways (default 1000)")
    fleet.add_argument("--mix", type=parse_mix, default="smoke=0.5,manhole=0.25,wearable=0.25",
                       help="share of each kind (default smoke=0.5,manhole=0.25,wearable=0.25)")
    fleet.add_argument("--areas", type=_areas, default="demo-a,demo-b",
                       help="areas the gateways are spread over (default demo-a,demo-b)")
    fleet.add_argument("--interval", type=_ranged(float, 0.05, 86_400), default=2.0,
                       metavar="SECONDS", help="seconds between readings of a device (default 2)")
    fleet.add_argument("--seed", type=_ranged(int, 0, 2**63 - 1), default=1,
                       help="random seed: same seed, same fleet, signals and incidents (default 1)")
    fleet.add_argument("--incidents", choices=["demo", "none"], default="demo",
                       help="demo: one scripted incident of each type; none: quiet (default demo)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sensing-sim",
        description="Simulated community-safety sensor fleets with labelled incidents and "
        "injected faults, published through real edge agents (wire contract v1).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    live = sub.add_parser(
        "live", help="run a fleet live against an MQTT broker", description=LIVE_DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    broker = live.add_argument_group("broker")
    broker.add_argument("--broker-port", type=_ranged(int, 1, 65535), required=True,
                        metavar="PORT", help="MQTT port of the broker (required)")
    broker.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    _fleet_options(live)
    run = live.add_argument_group("run")
    run.add_argument("--duration", type=_ranged(float, 0.1, 1e7), default=60.0,
                     metavar="SECONDS", help="length of the run (default 60)")
    run.add_argument("--format", choices=["snb1", "json"], default="snb1", dest="payload_format",
                     help="payload format of the agents' batches (default snb1)")
    run.add_argument("--epoch", type=_ranged(int, 0, 2**32 - 1), default=None,
                     help="epoch of the readings (default: Unix seconds at the start)")
    faults = live.add_argument_group("faults")
    faults.add_argument("--duplicates", type=_ranged(float, 0.0, 1.0), default=0.0,
                        metavar="RATE", help="fraction of batches published twice (default 0)")
    faults.add_argument("--malformed", type=_ranged(int, 0, 1_000_000), default=0, metavar="N",
                        help="malformed messages spread over the run, cycling through malformed "
                        "JSON, wrong type, missing field, NaN, oversize, foreign gateway "
                        "(default 0)")
    out = live.add_argument_group("output")
    out.add_argument("--report", type=Path, metavar="PATH", help="write the report (JSON) here")
    out.add_argument("--json", action="store_true",
                     help="print the report as one JSON object on stdout")
    out.add_argument("--progress-every", type=_ranged(float, 0.1, 3600), default=5.0,
                     metavar="SECONDS", help="seconds between progress lines on stderr (default 5)")
    out.add_argument("--log-level", default="WARNING",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="log level of the edge agents, on stderr (default WARNING)")
    offline = sub.add_parser(
        "offline", help="feed a fleet straight into the core in this process and score it",
        description=OFFLINE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _fleet_options(offline)
    orun = offline.add_argument_group("run")
    orun.add_argument("--scenario", type=Path, metavar="FILE",
                      help="a scenario file (TOML: fleet, run, incidents; see scenarios/); it "
                           "replaces the fleet options, --duration, --start and --incidents")
    orun.add_argument("--duration", type=_ranged(float, 1.0, 1e8), default=600.0,
                      metavar="SECONDS", help="simulated seconds (default 600)")
    orun.add_argument("--start", type=_ranged(int, 946_684_800_000, 4_102_444_800_000),
                      default=1_795_478_400_000, metavar="MS",
                      help="simulated start, ms since the Unix epoch (default 2026-11-25 "
                           "00:00 UTC)")
    orun.add_argument("--grace", type=_ranged(float, 0.0, 86_400), default=600.0,
                      metavar="SECONDS", help="how long after an incident's end an alert "
                      "still counts as detecting it (default 600)")
    oout = offline.add_argument_group("output")
    oout.add_argument("--labels", type=Path, metavar="PATH",
                      help="write the incident labels here (JSON lines)")
    oout.add_argument("--alerts", type=Path, metavar="PATH",
                      help="write the core's alert transitions here (JSON lines)")
    oout.add_argument("--json", action="store_true",
                      help="print the run and its score as one JSON object on stdout")
    scorer = sub.add_parser(
        "score", help="score alerts against incident labels, from files",
        description=SCORE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scorer.add_argument("--labels", type=Path, required=True, metavar="PATH",
                        help="labels: JSON lines, a JSON array, or a live report (its "
                        "'incidents')")
    scorer.add_argument("--alerts", type=Path, required=True, metavar="PATH",
                        help="alert transitions as the alerts topic carries them: JSON lines "
                        "or a JSON array")
    scorer.add_argument("--grace", type=_ranged(float, 0.0, 86_400), default=600.0,
                        metavar="SECONDS", help="see offline --grace (default 600)")
    scorer.add_argument("--json", action="store_true", help="print the score as JSON")
    return p


def _summary(report: dict[str, object]) -> list[Table]:
    overview = Table(title="sensing-sim live", show_header=False, title_justify="left")
    for key in (
        "broker", "gateways", "devices", "epoch", "duration_s", "stopped_early",
        "readings_sampled", "readings_sent_unique", "readings_acked", "all_acked",
        "duplicate_readings_injected", "malformed_total",
    ):
        overview.add_row(key, str(report[key]))
    incidents = Table(title="incidents (labels)", title_justify="left")
    for column in ("type", "grade", "area", "gateway", "device", "start_s", "end_s"):
        incidents.add_column(column)
    rows = report["incidents"]
    assert isinstance(rows, list)
    for inc in rows:
        incidents.add_row(*(str(inc[c]) for c in ("type", "grade", "area", "gateway", "device",
                                                  "start_s", "end_s")))
    return [overview, incidents] if rows else [overview]


def _live(args: argparse.Namespace, err: Console) -> int:
    from sensing.logs import configure
    from sensing_sim.fleet import Fleet, FleetSpec
    from sensing_sim.live import LiveError, LiveOptions, LiveProgress, run_live

    configure("console", args.log_level)
    try:
        fleet = Fleet(FleetSpec(n_gateways=args.gateways, n_devices=args.devices, mix=args.mix,
                                areas=args.areas, interval_s=args.interval, seed=args.seed))
        if args.incidents == "demo":
            fleet.schedule_demo_incidents(args.duration)
        options = LiveOptions(
            host=args.host, port=args.broker_port, duration_s=args.duration,
            duplicate_rate=args.duplicates, malformed=args.malformed,
            payload_format=args.payload_format, epoch=args.epoch,
            progress_every_s=args.progress_every,
        )
    except ValueError as exc:
        err.print(f"sensing-sim live: {exc}", markup=False)
        return 2

    def show(p: LiveProgress) -> None:
        err.print(
            f"[dim]{p.elapsed_s:7.1f} s[/] sampled {p.readings_sampled:,}  sent "
            f"{p.readings_sent_unique:,}  acked {p.readings_acked:,}  duplicates "
            f"{p.duplicate_readings:,}  malformed {p.malformed_sent:,}", soft_wrap=True,
        )

    err.print(
        f"sensing-sim: {len(fleet.devices):,} devices behind {len(fleet.gateways)} gateways, "
        f"{len(fleet.incidents)} incidents, {args.duration:g} s against "
        f"{args.host}:{args.broker_port}", markup=False, soft_wrap=True,
    )
    stop = threading.Event()
    with stop_on_signals(stop):
        try:
            report = run_live(fleet, options, stop=stop, progress=show)
        except LiveError as exc:
            err.print(f"sensing-sim live: {exc}", markup=False)
            return 1
    text = report.to_json()
    if args.report is not None:
        try:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_bytes(text + b"\n")
        except OSError as exc:
            err.print(f"sensing-sim live: cannot write the report: {exc}", markup=False)
            return 1
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict()).decode() + "\n")
        sys.stdout.flush()
    else:
        out = Console()
        for table in _summary(report.to_dict()):
            out.print(table)
    if not report.all_acked:
        err.print("sensing-sim live: not every batch was acknowledged by the broker",
                  markup=False)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `sensing-sim`; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    err = Console(stderr=True)
    if args.command == "live":
        return _live(args, err)
    if args.command == "offline":
        return _offline(args, err)
    if args.command == "score":
        return _score(args, err)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
