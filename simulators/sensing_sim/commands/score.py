"""`sensing-sim score`: alerts matched with incident labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson
from rich.console import Console

from sensing_sim.commands.common import ranged, read_json_records, score_table, stdout
from sensing_sim.score import alerts_from_transitions, as_json, score

SCORE_DESCRIPTION = """\
Match alerts with labelled incidents. A label is detected by an alert of its device and type
raised between its start and --grace seconds after its end; the first such alert counts, the
rest are duplicates; alerts that match no label are false positives. Labels need ts_start and
ts_end (ms), as `sensing-sim live --report` and `sensing-sim offline --labels` write them.

example:
  sensing-sim score --labels run.json --alerts alerts.jsonl
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    scorer.add_argument("--grace", type=ranged(float, 0.0, 86_400), default=600.0,
                        metavar="SECONDS", help="see offline --grace (default 600)")
    scorer.add_argument("--json", action="store_true", help="print the score as JSON")
    scorer.set_defaults(execute=execute)


def execute(args: argparse.Namespace, err: Console) -> int:
    try:
        labels = read_json_records(args.labels)
        alerts = alerts_from_transitions(read_json_records(args.alerts))
        scores = score(labels, alerts, args.grace)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        err.print(f"sensing-sim score: {type(exc).__name__}: {exc}", markup=False)
        return 2
    if args.json:
        sys.stdout.write(orjson.dumps(as_json(scores)).decode() + "\n")
    else:
        stdout().print(score_table(scores, "score (alerts against incident labels)"))
    return 0


