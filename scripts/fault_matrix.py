#!/usr/bin/env python
"""The fault matrix: each fault against a fresh real stack (Mosquitto, VictoriaMetrics and
`sensing run`), readings from real edge agents or a QoS 1 publisher counted in the store, an
SOS published during the fault and the time until its alert."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import orjson

EPILOG = """\
examples:
  scripts/fault_matrix.py                          every row at full scale (a few minutes)
  scripts/fault_matrix.py --scale ci --json        the CI test's smaller scale, as JSON
  scripts/fault_matrix.py --only "store outage" --only "core SIGKILL"
  scripts/fault_matrix.py --list                   the rows' names

Columns: sent (readings numbered by the agents or published), stored (distinct ones in the
store), lost, stored twice (the same (device, epoch, seq) as a second point), and the
longest wall time from an SOS published during the fault to its alert.

Exit status: 0 every row with 0 lost, 0 stored twice and its SOS alerted (within 5 s where
the store is down); 1 a row failed; 2 usage error or a stack could not start."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fault_matrix.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=("ci", "full"), default="full",
                   help="ci: 2 agents x 20 devices, 3 s faults; full (default): 4 x 100, 10 s")
    p.add_argument("--only", action="append", metavar="FAULT", help="run only this row "
                   "(repeatable; see --list)")
    p.add_argument("--list", action="store_true", help="print the rows' names and exit")
    p.add_argument("--workdir", type=Path, help="keep logs and data here")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from sensing.logs import configure
    from sensing.services import ServiceError
    from sensing.testing.faults import CI_SCALE, FAULTS, FAULTS_BY_NAME, FULL_SCALE, run_fault

    if args.list:
        print("\n".join(f.name for f in FAULTS))
        return 0
    unknown = [n for n in args.only or () if n not in FAULTS_BY_NAME]
    if unknown:
        print(f"fault_matrix.py: no row {unknown[0]!r} (see --list)", file=sys.stderr)
        return 2
    faults = [FAULTS_BY_NAME[n] for n in args.only] if args.only else list(FAULTS)
    scale = CI_SCALE if args.scale == "ci" else FULL_SCALE
    configure(level="ERROR")
    results = []
    progress = _Progress(len(faults), enabled=not args.json and sys.stderr.isatty())
    try:
        with tempfile.TemporaryDirectory(prefix="faults-") as tmp, progress:
            root = args.workdir or Path(tmp)
            for i, fault in enumerate(faults):
                progress.update(i, fault.name)
                result = run_fault(fault, root / f"row-{i}", scale)
                results.append(result)
                if args.json:
                    print(orjson.dumps(result.as_dict()).decode(), flush=True)
            progress.update(len(faults), "done")
    except (ServiceError, OSError, TimeoutError) as exc:
        print(f"fault_matrix.py: {str(exc).splitlines()[0] if str(exc) else exc!r}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if not args.json:
        _print_table(results)
    return 0 if all(r.ok for r in results) else 1


class _Progress:
    """A rich progress bar over the rows on a terminal; nothing otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.task = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn("{task.description:<45}"), BarColumn(),
                                MofNCompleteColumn(), transient=True)
            self.task = self.bar.add_task("", total=total)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, done: int, name: str) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, description=name)


def _print_table(results: Sequence[object]) -> None:
    from rich.console import Console
    from rich.table import Table

    from sensing.testing.faults import RowResult

    table = Table(title="fault matrix")
    for name in ("fault", "source", "sent", "stored", "lost", "stored twice",
                 "longest alert delay", "s"):
        table.add_column(name, justify="left" if name in ("fault", "source") else "right")
    notes: list[str] = []
    for r in results:
        assert isinstance(r, RowResult)
        delay = "never" if r.alert_delay_s is None else f"{r.alert_delay_s:.1f} s"
        mark = "" if r.ok else " ✗"
        table.add_row(r.fault + mark, r.source, f"{r.sent:,}", f"{r.stored:,}", f"{r.lost:,}",
                      f"{r.stored_twice:,}", delay, f"{r.seconds:.0f}")
        notes += [f"{r.fault}: {n}" for n in r.notes]
        if r.alerts_doubled:
            notes.append(f"{r.fault}: {r.alerts_doubled} SOS raised under a second alert id")
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    for n in notes:
        console.print(f"note: {n[:400]}", highlight=False)


if __name__ == "__main__":
    sys.exit(main())
