"""`sensing-sim directory`: the dispatch directory of a simulated fleet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from rich.console import Console

from sensing_sim.commands.common import (
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_USAGE,
    UsageError,
    fleet_options,
    plan_from_args,
)

DIRECTORY_DESCRIPTION = """\
Write the dispatch directory (sensing.dispatch.directory, TOML) of a simulated fleet, for the
core's directory_file and for `sensing-sim live --directory`. The fleet's areas become the
communities of an area tree (city, districts, streets, communities); each community gets a
grid worker, a duty officer, a maintenance desk and one to three volunteers, each street and
district a command centre, the city one; every wristband's wearer (some living alone, with the
smoke detector at home) and every other smoke detector's household is a resident with one or
two relatives. Contacts are MQTT only (the contract's dispatch topic). The same fleet and
seed give the same file. The file written is loaded back and checked.

examples:
  sensing-sim directory --scenario simulators/scenarios/pilot.toml --out pilot-dir.toml
  sensing-sim directory --gateways 2 --devices 20 --areas demo-a,demo-b --out demo-dir.toml

exit codes: 0 ok, 1 the file cannot be written or does not load back, 2 usage error
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "directory", help="write the dispatch directory (responders, residents) of a fleet",
        description=DIRECTORY_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("--scenario", type=Path, metavar="FILE",
                     help="a scenario file: its fleet (replaces the fleet options)")
    fleet_options(cmd)
    cmd.add_argument("--out", type=Path, required=True, metavar="PATH",
                     help="the directory file to write (replaced whole)")
    cmd.add_argument("--directory-seed", type=int, default=None, metavar="N",
                     help="seed of the directory's choices (default: the fleet's)")
    cmd.add_argument("--timezone", default="Asia/Shanghai",
                     help="the directory's time zone, for quiet hours (default Asia/Shanghai)")
    cmd.add_argument("--json", action="store_true",
                     help="print the directory's counts as one JSON object on stdout")
    # plan_from_args also reads the run and fault options, which a directory does not need
    cmd.set_defaults(execute=execute, duration=600.0, start=1_795_478_400_000, duplicates=0.0,
                     late=0.0, late_max=30.0, malformed=0, incidents="none")


def execute(args: argparse.Namespace, err: Console) -> int:
    from sensing.dispatch.directory import DirectoryError, load_directory
    from sensing_sim.directory_gen import DirectoryShape, directory_doc, summary, write_directory

    try:
        plan = plan_from_args(args)
        if not args.out.parent.is_dir():
            raise UsageError(f"--out: no directory {args.out.parent}")
        try:
            ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(f"--timezone: unknown time zone {args.timezone!r}") from None
        doc = directory_doc(plan.fleet, DirectoryShape(timezone=args.timezone),
                            seed=args.directory_seed)
    except (UsageError, ValueError) as exc:
        err.print(f"sensing-sim directory: {exc}", markup=False)
        return EXIT_USAGE
    source = args.scenario if args.scenario is not None else "the fleet options"
    seed = plan.fleet.spec.seed if args.directory_seed is None else args.directory_seed
    header = (f"The dispatch directory of {source} (sensing-sim directory, seed {seed}).\n"
              "Areas, responders and residents of a simulated fleet: docs/dispatch.md.")
    try:
        write_directory(args.out, doc, header)
        load_directory(args.out)
    except (OSError, DirectoryError) as exc:
        err.print(f"sensing-sim directory: {exc}", markup=False)
        return EXIT_RUNTIME
    counts = summary(doc)
    if args.json:
        sys.stdout.write(orjson.dumps({"out": str(args.out), **counts}).decode() + "\n")
    else:
        err.print(f"sensing-sim directory: wrote {args.out}: " + ", ".join(
            f"{k} {v:,}" for k, v in counts.items()), markup=False, soft_wrap=True)
    return EXIT_OK
