"""`sensing-sim replay`: a recording published against a broker at N times its speed."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console
from rich.progress import Progress

from sensing.process import stop_on_signals
from sensing_sim.commands.common import (
    UsageError,
    ranged,
    responder_options,
    responders_from_args,
    responders_table,
    write_report,
)

if TYPE_CHECKING:
    from sensing_sim.recording import RecordingReader
    from sensing_sim.responders_live import LiveResponders, RespondersSetup

REPLAY_DESCRIPTION = """\
Publish a recording (`sensing-sim record`) to an MQTT broker at QoS 1, SPEED times faster
than it was simulated (default: the speed its scenario asks for). Times inside the messages
are moved so that the recording ends when the replay is due to finish, every reading stamped
in the past when it is sent, like a backlog (the core refuses stamps more than 5 minutes
ahead of its clock); the fleet's own timing is kept. The report
carries the labels on this replay's clock, ready for `sensing-sim score --labels REPORT`,
which then gives latencies in simulated seconds. lag_max_s in the report says how far the
replay fell behind its schedule (large: this speed is more than the broker or machine takes).

--directory FILE runs the directory's simulated responders beside the replay, as `sensing-sim
live --directory` does, on the fleet's clock (the core's dispatch_clock = "fleet"): the time
of the core's case messages, running on at SPEED between them, so a delay of N simulated
seconds takes N / SPEED wall seconds. The report gains "responders" and "linger_s".

examples:
  sensing-sim replay pilot.simrec --broker-port 1883 --speed 60 --report replay.json
  sensing-sim score --labels replay.json --listen --broker-port 1883
  sensing-sim replay pilot.simrec --broker-port 1883 --speed 10 --directory pilot-dir.toml

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
    responder_options(replay)
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
    try:
        setup = responders_from_args(args)
    except UsageError as exc:
        err.print(f"sensing-sim replay: {exc}", markup=False)
        return 2
    stop = threading.Event()
    with stop_on_signals(stop), Progress(console=err, transient=True) as bar:
        task = bar.add_task(f"replay ×{speed:g}", total=duration)
        try:
            people = None if setup is None else _start_responders(setup, header, args, speed)
        except RuntimeError as exc:
            err.print(f"sensing-sim replay: {exc}", markup=False)
            return 1
        try:
            report = replay(args.recording, host=args.host, port=args.broker_port, speed=speed,
                            stop=stop,
                            progress=lambda p: bar.update(task, completed=p.sim_s))
        except (ReplayError, RecordingError) as exc:
            err.print(f"sensing-sim replay: {exc}", markup=False)
            if people is not None:
                people.stop(5.0)
            return 1
    doc = report.to_dict()
    if people is not None and setup is not None:
        doc |= _finish_responders(people, setup, stop, err)
    if args.report is not None and not write_report(args.report, doc, err, "replay"):
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    else:
        if people is not None:
            Console().print(responders_table(doc["responders"]))
        err.print(f"sensing-sim replay: {sum(report.messages.values()):,} messages, "
                  f"{report.readings_published:,} readings, {report.simulated_s:g} simulated s "
                  f"in {report.wall_s:g} s (×{speed:g}), lag at most {report.lag_max_s:g} s, "
                  f"malformed {report.malformed_total}", markup=False)
    if not report.all_acked:
        err.print("sensing-sim replay: not every message was acknowledged by the broker",
                  markup=False)
        return 1
    return 0


def _start_responders(setup: RespondersSetup, header: RecordingReader,
                      args: argparse.Namespace, speed: float) -> LiveResponders:
    """The responders on the fleet's clock, their truth the recording's labels moved as the
    replay moves the readings' times (about: the replay starts a moment later)."""
    from sensing_sim.replay import replay_shift_ms
    from sensing_sim.responders_live import FleetClock, start_responders

    info = header.header
    shift = replay_shift_ms(header.start_ms, round(float(info["duration_s"]) * 1000),
                            time.time_ns() // 1_000_000, speed)
    labels = [{**lb, "ts_start": int(lb["ts_start"]) + shift,
               "ts_end": int(lb["ts_end"]) + shift} for lb in header.labels]
    seed = int(info.get("fleet", {}).get("seed", 0))
    return start_responders(setup, labels, args.host, args.broker_port, FleetClock(speed),
                            seed, 10.0)


def _finish_responders(people: LiveResponders, setup: RespondersSetup, stop: threading.Event,
                       err: Console) -> dict[str, Any]:
    """Let the responders close their cases on the fleet's clock, then stop them."""
    from sensing_sim.responders_live import linger_until_settled

    people.shutdown_from(people.clock.now_ms())
    lingered = 0.0
    try:
        if not stop.is_set() and not people.settled():
            err.print(f"sensing-sim replay: {people.open_cases()} cases open; the responders "
                      f"go on for up to {setup.linger_s:g} s", markup=False)
            lingered = linger_until_settled(people, setup.linger_s, stop)
    finally:
        report = people.stop(5.0)
    return {"responders": report, "linger_s": lingered}
