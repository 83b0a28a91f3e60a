"""What the `sensing-sim` commands share: option types, fleet options, output helpers."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from sensing.wire.topics import is_valid_name
from sensing_edge.cli import parse_mix
from sensing_sim.score import TypeScore

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


def read_json_records(path: Path) -> list[dict[str, Any]]:
    """JSON lines, a JSON array, or an object with an 'incidents' array (a live report)."""
    text = path.read_bytes()
    stripped = text.lstrip()
    if stripped.startswith(b"[") or (stripped.startswith(b"{") and b"\n{" not in stripped):
        doc = orjson.loads(text)
        if isinstance(doc, dict):
            doc = doc.get("incidents", [doc])
        return [dict(r) for r in doc]
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def score_table(scores: list[TypeScore], title: str) -> Table:
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
