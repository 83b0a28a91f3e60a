#!/usr/bin/env python
"""Fuzz the stream core through the real broker: hostile inputs (hypothesis strategies and the
corpus of issue 11) interleaved with good readings, then every input accounted for."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import orjson

EPILOG = """\
examples:
  scripts/fuzz_core.py --inputs 100000            the full run (several minutes)
  scripts/fuzz_core.py --inputs 2000 --json       a quick look, as JSON
  scripts/fuzz_core.py --no-corpus --seed 3       generated inputs only, another seed

It starts Mosquitto, VictoriaMetrics and `sensing run` on free loopback ports in a
temporary folder (--workdir to keep it), restarts the core whenever it exits (each exit
counts as a crash), and prints: inputs sent, dead letters by reason code, inputs that
vanished (no dead letter, nothing stored), crashes, the core's peak RSS and good
readings stored of sent.

Exit status: 0 every input accounted for, no crash, every good reading stored;
1 any of those failed; 2 usage error or the stack could not start."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fuzz_core.py", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", type=int, default=10_000, metavar="N",
                   help="generated hostile inputs (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    p.add_argument("--no-corpus", action="store_true", help="leave out issue 11's inputs")
    p.add_argument("--good-every", type=int, default=20, metavar="K",
                   help="a good message after every K hostile ones (default %(default)s)")
    p.add_argument("--workdir", type=Path, help="keep logs and data here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _print_report(report: object) -> None:
    from rich.console import Console
    from rich.table import Table

    from sensing.testing.fuzz import FuzzReport

    assert isinstance(report, FuzzReport)
    console = Console(width=None if sys.stdout.isatty() else 120)
    head = Table(title="fuzzing the core", show_header=False)
    good = f"{report.good_stored:,} of {report.good_sent:,}"
    refusable = sum(report.stored_although_refusable.values())
    for k, v in (("inputs sent", f"{report.sent:,}"),
                 ("dead-lettered", f"{report.dead_lettered:,}"),
                 ("valid, stored", f"{report.stored_valid:,}"),
                 ("valid, silent (status)", f"{report.silent_valid:,}"),
                 ("duplicates of earlier ones", f"{report.duplicates:,}"),
                 ("vanished", f"{report.vanished_total:,}"),
                 ("stored although refusable", f"{refusable:,}"),
                 ("crashes (core exits)", f"{report.crashes}"),
                 ("peak RSS", f"{report.peak_rss_mb:,.0f} MB"),
                 ("SOS among them alerted in", "never" if report.sos_delay_s is None
                  else f"{report.sos_delay_s:.2f} s"),
                 ("a fresh core under the retained statuses",
                  {None: "not tried", True: "starts", False: "fails"}[report.fresh_core_started]),
                 ("good readings stored", good),
                 ("seconds", f"{report.seconds:,.0f}")):
        head.add_row(k, v)
    console.print(head)
    codes = Table(title="dead letters by reason code")
    codes.add_column("code")
    codes.add_column("count", justify="right")
    for code, n in report.dead_letters_by_code.items():
        codes.add_row(code, f"{n:,}")
    console.print(codes)
    for title, counts in (("vanished", report.vanished),
                          ("stored although refusable", report.stored_although_refusable)):
        if counts:
            t = Table(title=title)
            t.add_column("input")
            t.add_column("count", justify="right")
            t.add_column("e.g.")
            for name, n in counts.items():
                t.add_row(name, f"{n:,}", (report.examples.get(name) or [""])[0][:90])
            console.print(t)
    for line in report.expectations_failed:
        console.print(f"[red]failed:[/] {line}")
    for note in report.notes:
        console.print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.inputs < 0 or args.good_every < 1:
        print("fuzz_core.py: --inputs must be >= 0 and --good-every >= 1", file=sys.stderr)
        return 2
    from sensing.logs import configure
    from sensing.services import ServiceError
    from sensing.testing.fuzz import run_fuzz

    configure(level="ERROR")
    progress, on_progress = _progress(args.json)
    try:
        with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
            workdir = args.workdir or Path(tmp)
            with progress:
                report = run_fuzz(workdir, args.inputs, args.seed, not args.no_corpus,
                                  args.good_every, on_progress)
    except (ServiceError, OSError, TimeoutError) as exc:
        print(f"fuzz_core.py: {str(exc).splitlines()[0] if str(exc) else exc!r}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.json:
        sys.stdout.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode()
                         + "\n")
    else:
        _print_report(report)
    return 0 if report.ok else 1


def _progress(quiet: bool) -> tuple[AbstractContextManager[object],
                                     Callable[[str, int, int], None] | None]:
    """A rich progress bar on a terminal; nothing otherwise."""
    import contextlib

    if quiet or not sys.stderr.isatty():
        return contextlib.nullcontext(), None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

    bar = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                   transient=True)
    tasks: dict[str, TaskID] = {}
    last = [0.0]

    def on_progress(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        if done >= total or time.monotonic() - last[0] > 0.1:
            last[0] = time.monotonic()
            bar.update(tasks[phase], completed=done, total=total)

    return bar, on_progress


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
