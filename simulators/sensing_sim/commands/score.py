"""`sensing-sim score`: alerts matched with incident labels, and dead letters counted against
the malformed messages a run sent; alerts from a file, the broker or the store."""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from sensing.process import stop_on_signals
from sensing.wire import topics
from sensing_sim.commands.common import (
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_USAGE,
    deadletter_table,
    dispatch_tables,
    ranged,
    score_table,
    stdout,
)
from sensing_sim.score import (
    DeadLetterScore,
    alerts_from_transitions,
    deadletter_score,
    report_json,
    score,
)
from sensing_sim.score_dispatch import DispatchScore, dispatch_score
from sensing_sim.score_sources import (
    CASES_FILTER,
    Messages,
    Run,
    SourceUnavailable,
    listen,
    query_store,
    read_deadletters,
    read_malformed_sent,
    read_messages,
    read_run,
)

SCORE_DESCRIPTION = f"""\
Match alerts with labelled incidents. A label is detected by an alert of its device and type
raised between its start and --grace seconds after its end; the first such alert counts, the
rest are duplicates; alerts that match no label are false positives. Labels need ts_start and
ts_end (ms), as `sensing-sim live --report` and `sensing-sim offline --labels` write them. A
label with "speed": N comes from a run N times faster than simulated time (a replay): its
latency is reported in simulated seconds, (ts_raised - ts_start) * N, and its grace window is
--grace simulated seconds (--grace / N of wall time).

Alerts come from exactly one of:
  --alerts FILE   the contract's alert messages, JSON lines or a JSON array (a file written by
                  --save works too; dead letters in it are counted as such)
  --listen        a plain MQTT client on {topics.ALERTS_FILTER} and {topics.DEADLETTER_FILTER}
                  for --duration seconds, or else until the labels' last end plus grace
                  (waiting for the labels file to appear if it does not exist yet); Ctrl-C
                  stops early and scores what was heard
  --store URL     the alert transitions the core stored in VictoriaMetrics (its export API,
                  metric alert_ts_event), raised within the run: from the report's start_ms
                  (or the first label's start) to the last label's end plus grace (or the
                  report's end_ms). Every field the score needs is stored exactly: ts_raised
                  is each point's timestamp; the store keeps no dead letters.

Dead letters: the malformed messages the run sent (the run report's malformed_sent, when
--labels is a live report, or --report) against the dead letters the core published (heard
when listening, from --deadletters, or dead letters inside the --alerts file), by the
simulator's reasons; the core's reason texts are sorted into them, "other" for the rest.

Dispatch: when the messages hold the core's case changes (sensing/v1/cases/#: --listen hears
them, --save keeps them, --alerts FILE reads them back), a second table says per alert type
how many cases opened, were told to somebody, taken and disposed, the time from opening to
each (p50 / p95), how many climbed the command structure (street, district or city command
told) or the family chain (relatives or volunteers told), and how many disposals matched the
ground truth (a fire "fire", a fault "device_fault", a nuisance "false_alarm", ...). --json
adds it as "dispatch".

--json prints {{"types": [per-type scores], "deadletters": {{"malformed_sent": N,
"dead_lettered": M, "by_reason": {{reason: {{"sent": n, "dead_lettered": m}}}}}}, "source":
"file"|"listen"|"store", "transitions": T}} (null for what is not known). With only --labels
and --alerts FILE it prints the per-type list alone, as it always has; add --report or
--deadletters for the object.

examples:
  sensing-sim score --labels run.json --alerts alerts.jsonl
  sensing-sim score --labels run.json --listen --broker-port 1883 --duration 120 \\
      --save heard.jsonl
      listen while `sensing-sim live --report run.json` runs; score when it is done
  sensing-sim score --labels run.json --alerts heard.jsonl --json
  sensing-sim score --labels run.json --store http://127.0.0.1:8428 --deadletters heard.jsonl
  sensing-sim score --labels replay-labels.jsonl --report run.json --listen --broker-port 1883

exit codes: 0 ok, 1 runtime failure (broker or store unreachable), 2 usage error (bad options,
unreadable or malformed files)
"""

LABELS_SETTLE_S = 5.0
"""how long --listen waits for a labels file that exists but does not parse (being written)"""


class UsageError(ValueError):
    pass


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scorer = sub.add_parser(
        "score", help="score alerts against incident labels (from a file, the broker or the "
        "store), dead letters against malformed messages",
        description=SCORE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scorer.add_argument("--labels", type=Path, required=True, metavar="PATH",
                        help="labels: JSON lines, a JSON array, or a live report (its "
                        "'incidents', 'malformed_sent', 'start_ms', 'end_ms')")
    source = scorer.add_mutually_exclusive_group(required=True)
    source.add_argument("--alerts", type=Path, metavar="PATH",
                        help="alert transitions as the alerts topic carries them: JSON lines "
                        "or a JSON array (dead letters in it are counted too)")
    source.add_argument("--listen", action="store_true",
                        help="subscribe to the alerts and dead-letter topics on the broker")
    source.add_argument("--store", metavar="URL",
                        help="read the stored alert transitions from VictoriaMetrics at URL "
                        "(e.g. http://127.0.0.1:8428)")
    scorer.add_argument("--grace", type=ranged(float, 0.0, 86_400), default=600.0,
                        metavar="SECONDS", help="see offline --grace (default 600)")
    scorer.add_argument("--report", type=Path, metavar="PATH",
                        help="a live run report for the malformed messages sent (default: "
                        "--labels, when it is one)")
    scorer.add_argument("--deadletters", type=Path, metavar="PATH",
                        help="dead letters as the dead-letter topic carries them, JSON lines "
                        "or a JSON array (alerts in it are skipped); not with --listen")
    scorer.add_argument("--json", action="store_true", help="print the score as JSON")
    broker = scorer.add_argument_group("--listen")
    broker.add_argument("--broker-host", "--host", dest="broker_host", metavar="HOST",
                        help="broker host (default 127.0.0.1)")
    broker.add_argument("--broker-port", type=ranged(int, 1, 65535), metavar="PORT",
                        help="broker port (default 1883)")
    broker.add_argument("--duration", type=ranged(float, 0.1, 7 * 86_400), metavar="SECONDS",
                        help="listen this long (default: until the labels' last end + grace)")
    broker.add_argument("--save", type=Path, metavar="PATH",
                        help="also write every alert, dead letter and case change heard to "
                        "PATH, JSON lines (replaces PATH; readable by --alerts and "
                        "--deadletters)")
    scorer.set_defaults(execute=execute)


def _check_usage(args: argparse.Namespace) -> None:
    if not args.listen:
        given = [name for name, value in (("--broker-host", args.broker_host),
                                          ("--broker-port", args.broker_port),
                                          ("--duration", args.duration), ("--save", args.save))
                 if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only go with --listen")
    elif args.deadletters is not None:
        raise UsageError("--deadletters does not go with --listen, which counts the dead "
                         "letters it hears")
    if args.save is not None and not args.save.parent.is_dir():
        raise UsageError(f"--save: no directory {args.save.parent}")


class _LabelsWhenReady:
    """The moment --listen stops: --duration after the start, or else the labels' last end
    plus grace, read as soon as the labels file exists and parses."""

    def __init__(self, args: argparse.Namespace, started: float) -> None:
        self.args = args
        self.run: Run | None = None
        self.fixed: float | None = (None if args.duration is None
                                    else started + float(args.duration))
        self._bad_since: float | None = None
        self._next_try = 0.0

    def load(self) -> Run | None:
        if self.run is not None:
            return self.run
        if not self.args.labels.exists():
            return None
        try:
            self.run = read_run(self.args.labels)
        except ValueError:  # being written? give it a moment, then fail
            now = time.monotonic()
            self._bad_since = self._bad_since or now
            if now - self._bad_since > LABELS_SETTLE_S:
                raise
        return self.run

    def deadline(self) -> float:
        """time.time() to stop at; +inf while the labels are not there."""
        if self.fixed is not None:
            return self.fixed
        now = time.monotonic()
        if self.run is None and now >= self._next_try:
            self._next_try = now + 0.5
            self.load()
        if self.run is None:
            return math.inf
        span = self.run.span_ms(self.args.grace)
        if span is None:
            raise UsageError(f"{self.args.labels} has no labels and no run end: give "
                             "--duration")
        return span[1] / 1000


def _listen(args: argparse.Namespace, err: Console) -> tuple[Run, Messages]:
    host = args.broker_host or "127.0.0.1"
    port = args.broker_port or 1883
    started = time.time()
    when = _LabelsWhenReady(args, started)
    if when.fixed is None and when.load() is not None and when.deadline() <= started:
        raise UsageError(f"the last end of the labels in {args.labels} plus --grace is already "
                         "past; give --duration to listen anyway")
    if when.fixed is not None and not args.labels.exists():
        err.print(f"sensing-sim score: {args.labels} does not exist yet; reading it after "
                  "listening", markup=False, soft_wrap=True)

    def ready() -> None:
        until = (f"for {args.duration:g} s" if when.fixed is not None
                 else "until the labels' last end + grace" if when.run is None
                 else time.strftime("until %H:%M:%S", time.localtime(when.deadline())))
        err.print(f"sensing-sim score: listening on {host}:{port} to {topics.ALERTS_FILTER}, "
                  f"{topics.DEADLETTER_FILTER} and {CASES_FILTER} {until} (Ctrl-C stops "
                  "early)", markup=False, soft_wrap=True)

    # SIGINT and SIGTERM stop it early even when it was started with SIGINT ignored (as a
    # shell's background job is: Python then installs no KeyboardInterrupt)
    stop = threading.Event()
    with stop_on_signals(stop):
        heard = listen(host, port, when.deadline, save=args.save, on_ready=ready, stop=stop)
    run = when.load()
    if run is None:
        raise FileNotFoundError(f"no labels file {args.labels}")
    return run, heard


def _dead_letters(args: argparse.Namespace, run: Run, heard: Messages | None,
                  from_file: Messages | None) -> DeadLetterScore:
    sent = read_malformed_sent(args.report) if args.report is not None else run.malformed_sent
    if args.deadletters is not None:
        dead: list[dict[str, Any]] | None = read_deadletters(args.deadletters)
    elif heard is not None:
        dead = heard.deadletters
    elif from_file is not None and from_file.deadletters:
        dead = from_file.deadletters
    else:
        dead = None
    return deadletter_score(sent, dead)


def execute(args: argparse.Namespace, err: Console) -> int:
    def fail(code: int, text: str) -> int:
        err.print(f"sensing-sim score: {text}", markup=False, soft_wrap=True)
        return code

    heard: Messages | None = None
    from_file: Messages | None = None
    try:
        _check_usage(args)
        if args.listen:
            run, heard = _listen(args, err)
            transitions = heard.alerts
            source = "listen"
        else:
            run = read_run(args.labels)
            if args.alerts is not None:
                from_file = read_messages(args.alerts)
                transitions, source = from_file.alerts, "file"
            else:
                span = run.span_ms(args.grace)
                if span is None:
                    raise UsageError(f"{args.labels} has no labels and no run start and end: "
                                     "no time range to read from the store")
                transitions, source = query_store(args.store, *span), "store"
        alerts = alerts_from_transitions(transitions)
        shutdown = [a for a in alerts if run.shutdown_alert(a)]
        alerts = [a for a in alerts if not run.shutdown_alert(a)]
        scores = score(run.labels, alerts, args.grace)
        dead = _dead_letters(args, run, heard, from_file)
        case_messages = (heard or from_file or Messages()).cases
        dispatch: DispatchScore | None = dispatch_score(
            case_messages, run.labels, stopping_ms=run.stopping_ms,
            grace_s=args.grace) if case_messages else None
    except UsageError as exc:
        return fail(EXIT_USAGE, str(exc))
    except SourceUnavailable as exc:
        return fail(EXIT_RUNTIME, str(exc))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return fail(EXIT_USAGE, f"{type(exc).__name__}: {exc}")
    if args.json:
        doc = report_json(scores, dead, source=source, transitions=len(transitions),
                          shutdown_alerts_left_out=len(shutdown),
                          **({} if dispatch is None else {"dispatch": dispatch.as_json()}))
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    else:
        out = stdout()
        out.print(score_table(scores, f"score (alerts against incident labels, from {source})"))
        if dead.known:
            out.print(deadletter_table(dead))
        if shutdown:
            out.print(f"left out: {len(shutdown)} gateway.offline alerts raised as the run "
                      "stopped its agents", markup=False)
        if dispatch is not None:
            for table in dispatch_tables(dispatch):
                out.print(table)
    return EXIT_OK
