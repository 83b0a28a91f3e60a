"""`sensing-sim live`: a fleet published through real edge agents."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from rich.console import Console
from rich.progress import Progress, TextColumn
from rich.table import Table

from sensing.process import stop_on_signals
from sensing_sim.commands.common import (
    EPILOG,
    UsageError,
    fleet_options,
    malformed_option,
    plan_from_args,
    ranged,
    responder_options,
    responders_from_args,
    responders_table,
    write_report,
)

if TYPE_CHECKING:
    from sensing_sim.fleet import Fleet

LIVE_DESCRIPTION = """\
Run a simulated fleet live: one real edge agent (its own MQTT client) per gateway, each
publishing its devices' readings at QoS 1 on sensing/v1/{area}/{gateway}/readings. Devices
send quiet signals with everyday nuisances; with --incidents demo a handful of labelled
incidents (fire, CO, displaced cover, gas, vitals, SOS, overflow, low battery) is scripted
over the run. Optional faults: --duplicates re-publishes a fraction of the batches,
--malformed publishes broken messages. SIGTERM or Ctrl-C stops the run cleanly; the report
(readings sent, faults injected, incident labels) is still printed and written.

--scenario FILE takes the fleet, its incidents, the duration ([run] duration_s, unless
--duration is given) and the duplicates and malformed messages of [faults] from a scenario
file. Its gateway.offline incidents (and [faults] link_flaps) cut the gateway's link through
a loopback relay: the broker publishes the gateway's last will, its agent buffers and
delivers after reconnecting. Late delivery, restarts, clock skew, device reboots, a
device's late readings and a gateway's batching are not simulated live.

--directory FILE (the dispatch directory the core uses; `sensing-sim directory` writes one
for a scenario) runs the directory's people beside the fleet (--responders, on with a
directory): told of a case on sensing/v1/dispatch/#, they take it (or not: some never answer),
arrive and dispose of it on sensing/v1/ack/{responder}, with the outcome the incident labels
call for. After the fleet's run they go on until every case is closed (at most --linger
seconds); the report's "responders" says what they did.

A large fleet is shared out over worker processes (--processes; by default one per 125
gateways: hundreds of agents' threads in one process wait on each other for the GIL; and
paho's select() sees file descriptors below 1,024 only, about 290 agents).
"""

LIVE_EXAMPLES = """\
  sensing-sim directory --scenario simulators/scenarios/pilot.toml --out pilot-dir.toml
  sensing-sim live --broker-port 1883 --scenario simulators/scenarios/pilot.toml \\
      --directory pilot-dir.toml --report pilot.json
      the pilot with its responders (the core runs with directory_file = pilot-dir.toml)
  sensing-sim live --broker-port 1883 --scenario simulators/scenarios/district.toml \\
      --duration 120
      1,000 gateways, 100,000 devices for two minutes, in worker processes
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    live = sub.add_parser(
        "live", help="run a fleet live against an MQTT broker", description=LIVE_DESCRIPTION,
        epilog=EPILOG.replace("\nexit codes", LIVE_EXAMPLES + "\nexit codes", 1),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    broker = live.add_argument_group("broker")
    broker.add_argument("--broker-port", type=ranged(int, 1, 65535), required=True,
                        metavar="PORT", help="MQTT port of the broker (required)")
    broker.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    fleet_options(live)
    run = live.add_argument_group("run")
    run.add_argument("--scenario", type=Path, metavar="FILE",
                     help="a scenario file (TOML: fleet, run, incidents, faults; see "
                          "simulators/scenarios/); it replaces the fleet options, --incidents, "
                          "--duplicates and --malformed, and gives the duration")
    run.add_argument("--duration", type=ranged(float, 0.1, 1e7), default=None,
                     metavar="SECONDS",
                     help="length of the run (default 60, or the scenario's duration_s)")
    run.add_argument("--processes", type=ranged(int, 1, 256), default=None, metavar="N",
                     help="processes the edge agents run in (default: one per 125 gateways)")
    run.add_argument("--poll-interval", type=ranged(float, 0.01, 60.0), default=None,
                     metavar="SECONDS", dest="poll_interval",
                     help="how often each agent polls its devices (default: a tenth of the "
                          "sampling interval, 0.1-1 s)")
    run.add_argument("--format", choices=["snb1", "json"], default="snb1", dest="payload_format",
                     help="payload format of the agents' batches (default snb1)")
    run.add_argument("--epoch", type=ranged(int, 0, 2**32 - 1), default=None,
                     help="epoch of the readings (default: Unix seconds at the start)")
    run.add_argument("--confirm", choices=["core", "broker"], default="core",
                     help="when an agent deletes a reading from its buffer: once the core "
                     "confirms it stored it (default, as deployed gateways do), or at the "
                     "broker's PUBACK (for a broker with no core behind it)")
    faults = live.add_argument_group("faults")
    faults.add_argument("--duplicates", type=ranged(float, 0.0, 1.0), default=0.0,
                        metavar="RATE", help="fraction of batches published twice (default 0)")
    malformed_option(faults)
    responder_options(live)
    out = live.add_argument_group("output")
    out.add_argument("--report", type=Path, metavar="PATH", help="write the report (JSON) here")
    out.add_argument("--json", action="store_true",
                     help="print the report as one JSON object on stdout")
    out.add_argument("--progress-every", type=ranged(float, 0.1, 3600), default=5.0,
                     metavar="SECONDS", help="seconds between progress lines on stderr (default 5)")
    out.add_argument("--log-level", default="WARNING",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="log level of the edge agents, on stderr (default WARNING)")
    live.set_defaults(execute=execute)


def _summary(report: dict[str, object]) -> list[Table]:
    overview = Table(title="sensing-sim live", show_header=False, title_justify="left")
    for key in (
        "broker", "gateways", "devices", "processes", "epoch", "duration_s", "stopped_early",
        "readings_sampled", "readings_sent_unique", "readings_acked", "all_acked",
        "duplicate_readings_injected", "malformed_total", "connects", "sim_cpu_s",
        "sim_max_rss_mb",
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
    tables = [overview, incidents] if rows else [overview]
    people = report.get("responders")
    if isinstance(people, dict):
        tables.append(responders_table(people))
    cuts = report["outages"]
    assert isinstance(cuts, list)
    if cuts:
        outages = Table(title="link outages", title_justify="left")
        columns = ("gateway", "start_s", "end_s", "cut_at_s", "restored_at_s",
                   "connections_cut", "connects_refused")
        for column in columns:
            outages.add_column(column)
        for cut in cuts:
            outages.add_row(*(str(cut[c]) for c in columns))
        tables.append(outages)
    return tables


def _fleet(args: argparse.Namespace, err: Console) -> tuple[Fleet, float, float, int]:
    """The fleet, duration, duplicate rate and malformed count of --scenario or the
    options; raises UsageError or ValueError."""
    from sensing_sim.fleet import Fleet, FleetSpec

    if args.scenario is not None:
        plan = plan_from_args(args)
        f = plan.faults
        fleet = plan.fleet
        ignored = [name for name, on in (("late delivery", f.late_rate > 0),
                                         ("restarts", bool(f.restarts)),
                                         ("clock skew", bool(f.clock_skew)),
                                         ("device reboots", bool(fleet.reboots)),
                                         ("late readings", bool(fleet.late_readings)),
                                         ("gateway batching", any(
                                             c.batch_s for c in fleet.spec.cadences))) if on]
        if ignored:
            err.print(f"sensing-sim live: not simulated live, ignored: {', '.join(ignored)}",
                      markup=False)
        duration = args.duration if args.duration is not None else plan.duration_s
        return plan.fleet, duration, f.duplicate_rate, f.malformed
    duration = args.duration if args.duration is not None else 60.0
    fleet = Fleet(FleetSpec(n_gateways=args.gateways, n_devices=args.devices, mix=args.mix,
                            areas=args.areas, interval_s=args.interval, seed=args.seed))
    if args.incidents == "demo":
        fleet.schedule_demo_incidents(duration)
    return fleet, duration, args.duplicates, args.malformed


def execute(args: argparse.Namespace, err: Console) -> int:
    from sensing.logs import configure
    from sensing_sim.live import LiveError, LiveOptions, LiveProgress, run_live
    from sensing_sim.live_workers import default_processes, plan_shards

    configure("console", args.log_level)
    try:
        responders = responders_from_args(args)
        fleet, duration, duplicates, malformed = _fleet(args, err)
        processes = args.processes or default_processes(fleet)
        plan_shards(fleet, processes)  # too few processes for the fleet: a usage error
        options = LiveOptions(
            host=args.host, port=args.broker_port, duration_s=duration,
            duplicate_rate=duplicates, malformed=malformed,
            payload_format=args.payload_format, epoch=args.epoch,
            progress_every_s=args.progress_every, processes=processes,
            poll_interval_s=args.poll_interval, worker_log_level=args.log_level,
            confirm=args.confirm,
        )
    except (UsageError, ValueError) as exc:
        err.print(f"sensing-sim live: {exc}", markup=False)
        return 2

    # On a terminal a progress bar; otherwise a line per --progress-every (for logs).
    bar = Progress(*Progress.get_default_columns(), TextColumn("{task.fields[counts]}"),
                   console=err, transient=True, disable=not err.is_terminal)
    task = bar.add_task("live", total=duration, counts="connecting")

    def show(p: LiveProgress) -> None:
        counts = (f"sampled {p.readings_sampled:,}  sent {p.readings_sent_unique:,}  acked "
                  f"{p.readings_acked:,}  duplicates {p.duplicate_readings:,}  malformed "
                  f"{p.malformed_sent:,}  online {p.gateways_online:,}/{p.gateways:,}")
        if p.cases_open is not None:
            counts += (f"  cases open {p.cases_open:,}  responder actions "
                       f"{p.responder_actions:,}" + ("  (fleet stopped: responders finish "
                                                     "their cases)" if p.lingering else ""))
        if err.is_terminal:
            bar.update(task, completed=min(p.elapsed_s, duration), counts=counts)
        else:
            err.print(f"[dim]{p.elapsed_s:7.1f} s[/] {counts}", soft_wrap=True)

    outages = sum(len(fleet.gateway_outages(gw.id)) for gw in fleet.gateways)
    err.print(
        f"sensing-sim: {len(fleet.devices):,} devices behind {len(fleet.gateways)} gateways "
        f"in {processes} process{'es' if processes > 1 else ''}, {len(fleet.incidents)} "
        f"incidents ({outages} link outages), {duration:g} s against "
        f"{args.host}:{args.broker_port}", markup=False, soft_wrap=True,
    )
    stop = threading.Event()
    with stop_on_signals(stop), bar:
        try:
            report = run_live(fleet, options, stop=stop, progress=show, responders=responders)
        except LiveError as exc:
            err.print(f"sensing-sim live: {exc}", markup=False)
            return 1
    if args.report is not None and not write_report(args.report, report.to_dict(), err, "live"):
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict()).decode() + "\n")
        sys.stdout.flush()
    else:
        out = Console()
        for table in _summary(report.to_dict()):
            out.print(table)
    for error in report.errors:
        err.print(f"sensing-sim live: {error}", markup=False)
    if not report.all_acked:
        err.print("sensing-sim live: not every batch was acknowledged by the broker",
                  markup=False)
        return 1
    return 0


