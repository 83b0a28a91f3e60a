"""`sensing-sim`: simulated sensor fleets behind real edge agents, with labelled incidents."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from sensing_edge.cli import parse_mix
from sensing_sim.commands import directory, live, offline, record, replay, score
from sensing_sim.commands.common import EPILOG

__all__ = ["main", "parse_mix"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sensing-sim",
        description="Simulated community-safety sensor fleets with labelled incidents and "
        "injected faults, published through real edge agents (wire contract v1).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (live, offline, record, replay, score, directory):
        command.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `sensing-sim`; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    code: int = args.execute(args, Console(stderr=True))
    return code


if __name__ == "__main__":
    sys.exit(main())
