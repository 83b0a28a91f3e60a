"""`sensing-sim replay`: a recording published against a broker at N times its speed."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import Progress

from sensing.process import stop_on_signals
from sensing_sim.commands.common import ranged, write_report

REPLAY_DESCRIPTION = """\
Publish a recording (`sensing-sim record`) to an MQTT broker at QoS 1, SPEED times faster
than it was simulated (default: the speed its scenario asks for). Times inside the messages
are moved so that the recording ends when the replay is due to finish, every reading stamped
in the past when it is sent, like a backlog (the core refuses stamps more than 5 minutes
ahead of its clock); the fleet's own timing is kept. The report
carries the labels on this replay's clock, ready for `sensing-sim score --labels REPORT`,
which then gives latencies in simulated seconds. lag_max_s in the report says how far the
replay fell behind its schedule (large: this speed is more than the broker or machine takes).

examples:
  sensing-sim replay pilot.simrec --broker-port 1883 --speed 60 --report replay.json
  sensing-sim score --labels replay.json --listen --broker-port 1883

exit codes: 0 ok, 1 runtime failure (broker unreachable, not all acknowledged), 2 usage error
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay", help="publish a recording against an MQTT broker at N times its speed",
        description=REPLAY_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("recording", type=Path, metavar="FILE", help="a sensing-sim recording")
    replay.add_argument("--broker-port", type=ranged(int, 1, 65535), required=True,
                        metavar="PORT", help="MQTT port of the broker (required)")
    replay.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    replay.add_argument("--speed", type=ranged(float, 0.01, 100_000), default=None,
                        help="simulated seconds per wall second (default: the recording's)")
    replay.add_argument("--report", type=Path, metavar="PATH",
                        help="write the report (JSON, with the labels) here")
    replay.add_argument("--json", action="store_true",
                        help="print the report as one JSON object on stdout")
    replay.set_defaults(execute=execute)


def execute(args: argparse.Namespace, err: Console) -> int:
    from sensing_sim.recording import RecordingError, RecordingReader
    from sensing_sim.replay import ReplayError, replay

    try:
        header = RecordingReader(args.recording)
        header.close()
    except (OSError, RecordingError) as exc:
        err.print(f"sensing-sim replay: {exc}", markup=False)
        return 2
    speed = args.speed if args.speed is not None else float(header.header.get("speed", 1.0))
    duration = float(header.header["duration_s"])
    stop = threading.Event()
    with stop_on_signals(stop), Progress(console=err, transient=True) as bar:
        task = bar.add_task(f"replay ×{speed:g}", total=duration)
        try:
            report = replay(args.recording, host=args.host, port=args.broker_port, speed=speed,
                            stop=stop,
                            progress=lambda p: bar.update(task, completed=p.sim_s))
        except (ReplayError, RecordingError) as exc:
            err.print(f"sensing-sim replay: {exc}", markup=False)
            return 1
    if args.report is not None and not write_report(args.report, report.to_dict(), err,
                                                    "replay"):
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict()).decode() + "\n")
    else:
        err.print(f"sensing-sim replay: {sum(report.messages.values()):,} messages, "
                  f"{report.readings_published:,} readings, {report.simulated_s:g} simulated s "
                  f"in {report.wall_s:g} s (×{speed:g}), lag at most {report.lag_max_s:g} s, "
                  f"malformed {report.malformed_total}", markup=False)
    if not report.all_acked:
        err.print("sensing-sim replay: not every message was acknowledged by the broker",
                  markup=False)
        return 1
    return 0
