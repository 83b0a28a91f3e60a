"""What the `sensing-sim` commands share: option types, fleet options, output helpers."""

from __future__ import annotations

import argparse
import math
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from sensing.wire.topics import is_valid_name
from sensing_edge.cli import parse_mix
from sensing_sim.score import DeadLetterScore, TypeScore
from sensing_sim.score_dispatch import DispatchScore

if TYPE_CHECKING:
    from sensing_sim.fleet import Fleet
    from sensing_sim.responders_live import RespondersSetup
    from sensing_sim.transport import TransportFaults

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

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


def score_table(scores: list[TypeScore], title: str) -> Table:
    table = Table(title=f"{title}; latency p50, p95 in simulated seconds", title_justify="left")
    for column in ("type", "labels", "found", "recall", "prec.", "F1", "p50 s", "p95 s",
                   "dup.", "false +", "grade ok", "early"):
        table.add_column(column, justify="left" if column == "type" else "right",
                         no_wrap=True)

    def secs(x: float | None) -> str:
        return "" if x is None else f"{x:.1f}"

    for sc in scores:
        detected = f"{sc.detected}" + (f" ({sc.covered} open)" if sc.covered else "")
        table.add_row(sc.type, str(sc.labels), detected, f"{sc.recall:.2f}",
                      f"{sc.precision:.2f}", f"{sc.f1:.2f}", secs(sc.latency_median_s),
                      secs(sc.latency_p95_s), str(sc.duplicates), str(sc.false_positives),
                      f"{sc.grade_ok}/{sc.detected}", str(sc.resolved_early))
    captions = []
    if any(sc.covered for sc in scores):
        captions.append("found (N open): N labels began while the alert of an earlier one was "
                        "still open (a flapping link held as one alert): no latency")
    if any(sc.resolved_early for sc in scores):
        captions.append("early: alerts resolved before the end of an incident that must stay "
                        "open (late ordinary readings inside it)")
    table.caption = "\n".join(captions) if captions else None
    return table


def deadletter_table(dl: DeadLetterScore) -> Table:
    table = Table(title="dead letters (malformed sent against dead-lettered)",
                  title_justify="left")
    for column in ("reason", "malformed sent", "dead-lettered"):
        table.add_column(column, justify="left" if column == "reason" else "right")

    def n(x: int | None) -> str:
        return "?" if x is None else str(x)

    for r in dl.by_reason:
        if r.sent or r.dead_lettered:
            table.add_row(r.reason, n(r.sent), n(r.dead_lettered))
    table.add_row("total", n(dl.malformed_sent), n(dl.dead_lettered), style="bold")
    if dl.malformed_sent is None:
        table.caption = "?: no run report (--report) to tell what was sent"
    elif dl.dead_lettered is None:
        table.caption = "?: no dead letters to count (--deadletters, or --listen)"
    return table


def dispatch_tables(ds: DispatchScore) -> list[Table]:
    """Per alert type how the cases went, and the disposals against the ground truth."""
    table = Table(title="dispatch (cases); time from opening, p50 / p95 in simulated seconds",
                  title_justify="left")
    for column in ("type", "opened", "told", "told s", "taken", "take s", "disposed",
                   "dispose s", "command", "family", "outcome ok"):
        table.add_column(column, justify="left" if column == "type" else "right",
                         no_wrap=True)

    def secs(p50: float | None, p95: float | None) -> str:
        return "" if p50 is None or p95 is None else f"{p50:.1f} / {p95:.1f}"

    for t in (*ds.types, ds.total):
        rate = "" if t.outcome_rate is None else f"{t.outcome_ok}/{t.disposed}"
        table.add_row(t.type, str(t.opened), str(t.notified),
                      secs(t.notify_p50_s, t.notify_p95_s), str(t.taken),
                      secs(t.take_p50_s, t.take_p95_s), str(t.disposed),
                      secs(t.dispose_p50_s, t.dispose_p95_s), str(t.climbed_command),
                      str(t.climbed_family), rate, style="bold" if t is ds.total else None)
    captions = ["command: cases whose street, district or city command was told; family: "
                "cases whose relatives or volunteers were told"]
    if ds.left_out:
        captions.append(f"left out: {ds.left_out} gateway.offline cases opened as the run "
                        "stopped its gateways")
    table.caption = "\n".join(captions)
    outcomes = Table(title="disposals: expected (ground truth) against disposed",
                     title_justify="left")
    found = sorted({o for row in ds.outcomes.values() for o in row})
    outcomes.add_column("expected")
    for o in found:
        outcomes.add_column(o, justify="right")
    for expected, row in sorted(ds.outcomes.items()):
        outcomes.add_row(expected, *(str(row.get(o, "")) for o in found))
    return [table, outcomes] if ds.outcomes else [table]


def stdout() -> Console:
    """Standard output, wide enough for the score table when it is not a terminal."""
    return Console(width=None if sys.stdout.isatty() else 120)


def _areas(text: str) -> tuple[str, ...]:
    areas = tuple(a.strip() for a in text.split(","))
    bad = [a for a in areas if not is_valid_name(a)]
    if bad:
        raise argparse.ArgumentTypeError(f"bad area name(s) {bad}: use [A-Za-z0-9_-]{{1,64}}")
    return areas


def ranged(kind: type[int] | type[float], lo: float, hi: float) -> Callable[[str], int | float]:
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


def fleet_options(parser: argparse.ArgumentParser) -> None:
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument("--gateways", type=ranged(int, 1, 9999), default=10,
                       help="edge agents, gw-01, gw-02, ... (default 10)")
    fleet.add_argument("--devices", type=ranged(int, 1, 999_999), default=1000,
                       help="devices, spread over the gateways (default 1000)")
    fleet.add_argument("--mix", type=parse_mix, default="smoke=0.5,manhole=0.25,wearable=0.25",
                       help="share of each kind (default smoke=0.5,manhole=0.25,wearable=0.25)")
    fleet.add_argument("--areas", type=_areas, default="demo-a,demo-b",
                       help="areas the gateways are spread over (default demo-a,demo-b)")
    fleet.add_argument("--interval", type=ranged(float, 0.05, 86_400), default=2.0,
                       metavar="SECONDS", help="seconds between readings of a device (default 2)")
    fleet.add_argument("--seed", type=ranged(int, 0, 2**63 - 1), default=1,
                       help="random seed: same seed, same fleet, signals and incidents (default 1)")
    fleet.add_argument("--incidents", choices=["demo", "none"], default="demo",
                       help="demo: one scripted incident of each type; none: quiet (default demo)")


def transport_fault_options(parser: argparse.ArgumentParser) -> None:
    """Faults of delivery for simulated-clock runs (a scenario's [faults] replaces them)."""
    faults = parser.add_argument_group("faults (a scenario's [faults] section replaces these)")
    faults.add_argument("--duplicates", type=ranged(float, 0.0, 1.0), default=0.0,
                        metavar="RATE", help="share of messages delivered twice (default 0)")
    faults.add_argument("--late", type=ranged(float, 0.0, 1.0), default=0.0, metavar="RATE",
                        help="share of messages delivered up to --late-max later, out of order "
                        "(default 0)")
    faults.add_argument("--late-max", type=ranged(float, 1.0, 86_400), default=30.0,
                        metavar="SECONDS", help="longest delay of a late message (default 30)")
    malformed_option(faults)


def malformed_option(group: argparse._ArgumentGroup) -> None:
    """--malformed N, for every mode that sends broken messages."""
    group.add_argument("--malformed", type=ranged(int, 0, 1_000_000), default=0, metavar="N",
                       help="malformed messages spread over the run, cycling through malformed "
                       "JSON, wrong type, missing field, NaN, oversize, foreign gateway "
                       "(default 0)")


def run_options(parser: argparse.ArgumentParser, what: str) -> None:
    """--scenario, --duration, --start: what a simulated-clock run covers."""
    run = parser.add_argument_group("run")
    run.add_argument("--scenario", type=Path, metavar="FILE",
                     help="a scenario file (TOML: fleet, run, incidents, faults; see "
                          "simulators/scenarios/); it replaces the fleet and fault options, "
                          "--duration, --start and --incidents")
    run.add_argument("--duration", type=ranged(float, 1.0, 1e8), default=600.0,
                     metavar="SECONDS", help=f"simulated seconds {what} (default 600)")
    run.add_argument("--start", type=ranged(int, 946_684_800_000, 4_102_444_800_000),
                     default=1_795_478_400_000, metavar="MS",
                     help="simulated start, ms since the Unix epoch (default 2026-11-25 "
                          "00:00 UTC)")


def responder_options(parser: argparse.ArgumentParser) -> None:
    """--directory and the simulated responders' options (live and replay)."""
    people = parser.add_argument_group("responders")
    people.add_argument("--directory", type=Path, metavar="FILE",
                        help="the dispatch directory (TOML) whose people answer the core's "
                        "dispatch (see sensing-sim directory)")
    people.add_argument("--responders", action=argparse.BooleanOptionalAction, default=None,
                        help="run the simulated responders (default: on with --directory)")
    people.add_argument("--responder-seed", type=ranged(int, 0, 2**63 - 1), default=None,
                        metavar="N", help="seed of the responders' choices (default: the "
                        "fleet's)")
    people.add_argument("--linger", type=ranged(float, 0.0, 7 * 86_400), default=3600.0,
                        metavar="SECONDS", help="after the fleet's run, how long the "
                        "responders go on until every case is closed (default 3600: a case of "
                        "the run's last minutes may take 35 min to dispose)")
    people.add_argument("--responder-time-scale", type=ranged(float, 0.01, 100.0), default=1.0,
                        metavar="X", help="multiply the responders' delays (take, travel, on "
                        "site) by X (default 1)")


class UsageError(ValueError):
    """A bad option or scenario file: the command exits 2 with this message."""


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What a simulated-clock run is: the fleet with its incidents, time span and faults."""

    fleet: Fleet
    duration_s: float
    start_ms: int
    faults: TransportFaults
    speed: float
    source: dict[str, Any]
    """where it came from: the scenario file and its settings, or the options"""

    def labels(self) -> list[dict[str, Any]]:
        return [i.to_dict(self.start_ms) for i in self.fleet.incidents]


def plan_from_args(args: argparse.Namespace) -> RunPlan:
    """The run that --scenario or the fleet, run and fault options describe; raises
    UsageError with a message that names the bad key or option."""
    from sensing_sim.fleet import Fleet, FleetSpec
    from sensing_sim.scenario import load_scenario
    from sensing_sim.signals import local_time_of_day_s
    from sensing_sim.transport import TransportFaults

    if args.scenario is not None:
        try:
            scenario = load_scenario(args.scenario)
            fleet = scenario.build()
        except OSError as exc:
            raise UsageError(f"cannot read {args.scenario}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{args.scenario}: not valid TOML: {exc}") from None
        except ValidationError as exc:
            raise UsageError(f"{args.scenario}: " + "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors())) from None
        except ValueError as exc:
            raise UsageError(f"{args.scenario}: {exc}") from None
        return RunPlan(fleet, scenario.run.duration_s, scenario.run.start_ms,
                       scenario.faults.transport(), scenario.run.speed,
                       {"scenario": str(args.scenario), **scenario.model_dump(mode="json")})
    try:
        fleet = Fleet(FleetSpec(n_gateways=args.gateways, n_devices=args.devices, mix=args.mix,
                                areas=args.areas, interval_s=args.interval, seed=args.seed,
                                day_start_s=local_time_of_day_s(args.start)))
        if args.incidents == "demo":
            fleet.schedule_demo_incidents(args.duration)
        faults = TransportFaults(duplicate_rate=args.duplicates, late_rate=args.late,
                                 late_max_s=args.late_max, malformed=args.malformed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    source = {"options": {k: v for k, v in vars(args).items()
                          if isinstance(v, str | int | float | bool | tuple | dict)}}
    return RunPlan(fleet, args.duration, args.start, faults, 1.0, source)


def write_report(path: Path, doc: dict[str, Any], err: Console, command: str) -> bool:
    """Write a run's report (indented JSON) to `path`; False, said on stderr, if it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as exc:
        err.print(f"sensing-sim {command}: cannot write the report: {exc}", markup=False)
        return False
    return True


def responders_from_args(args: argparse.Namespace) -> RespondersSetup | None:
    """The responders' setup of --directory; raises UsageError."""
    from sensing.dispatch.directory import DirectoryError, load_directory
    from sensing_sim.responders import Behaviour
    from sensing_sim.responders_live import RespondersSetup

    wanted = args.responders if args.responders is not None else args.directory is not None
    if not wanted:
        return None
    if args.directory is None:
        raise UsageError("--responders needs --directory, the directory whose people answer")
    try:
        directory = load_directory(args.directory)
    except DirectoryError as exc:
        raise UsageError(f"--directory: {exc}") from None
    return RespondersSetup(directory, Behaviour(time_scale=args.responder_time_scale),
                           args.responder_seed, args.linger)


def responders_table(people: dict[str, Any]) -> Table:
    """What the simulated responders did, one row per figure."""
    table = Table(title="responders (simulated)", show_header=False, title_justify="left")

    def counts(key: str) -> str:
        value = people.get(key) or {}
        return ", ".join(f"{k} {v}" for k, v in sorted(value.items())) or "none"

    table.add_row("cases heard of", str(people.get("cases", 0)))
    table.add_row("cases by state", counts("cases_by_state"))
    table.add_row("nobody local answered", str(people.get("cases_unanswered", 0)))
    table.add_row("notifications by role", counts("notifications"))
    table.add_row("unanswered by role", counts("silent"))
    table.add_row("actions sent", counts("sent"))
    table.add_row("disposals by outcome", counts("outcomes"))
    table.add_row("actions refused", counts("refused"))
    return table
