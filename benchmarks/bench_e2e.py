"""The whole path, measured against the peers: publishers -> Mosquitto -> pipeline ->
VictoriaMetrics, plus alerts, for the sensing core, the naive paho + influxdb-client script and
Node-RED (when benchmarks/e2e/nodered.py is there), each pipeline x payload on a fresh broker
and store.

    .venv/bin/python benchmarks/bench_e2e.py [--only sensing,naive] [--payloads single,array]
        [--devices 100000] [--readings 2000000] [--single-readings 300000] [--quick] [--json]
        [--profile DIR]

Per run: readings offered as fast as the broker takes them (raw-socket QoS 1 publishers in
their own processes, payloads built before the clock starts), stored/s counted in the store,
stored = sent reading by reading (lost, stored twice), CPU of the pipeline's processes per
reading (and the broker's and the store's), peak RSS, then alert latency p50 / p99 at half the
measured rate; the store's own limit for the core's line protocol; issue 12's targets as
PASS / MISS from the same run. Figures on a shared 2-core machine are noisy: compare ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from e2e.api import Pipeline
from e2e.fleet import PAYLOADS, Fleet, FleetError
from e2e.measure import Result, Settings, measure, store_limit
from e2e.pipelines import PIPELINES, make
from e2e.report import as_json, print_tables
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

QUICK = {"devices": 3_000, "gateways": 30, "readings": 6_000, "single_readings": 3_000,
         "latency_seconds": 2.0, "alarms": 5, "settle": 5.0, "store_limit_readings": 30_000}
MAX_READINGS = 20_000_000
"""per phase: the broker queues them all (mosquitto.conf: 1 GiB per client)"""


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{what}: choose from {', '.join(allowed)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--only", default=",".join(PIPELINES),
                    type=lambda t: _names(t, PIPELINES, "--only"),
                    help="pipelines, comma-separated")
    ap.add_argument("--payloads", default=",".join(PAYLOADS),
                    type=lambda t: _names(t, PAYLOADS, "--payloads"),
                    help="single (1 reading per JSON message), array (100 per JSON array), "
                         "snb (1,000 per SNB1 batch; the core only)")
    ap.add_argument("--devices", type=int, default=100_000, help="devices in the fleet")
    ap.add_argument("--gateways", type=int, default=100,
                    help="gateways, sharing the devices evenly, ten to an area")
    ap.add_argument("--readings", type=int, default=2_000_000,
                    help="readings offered at the maximum rate, arrays and SNB1")
    ap.add_argument("--single-readings", type=int, default=300_000,
                    help="readings offered at the maximum rate, 1 per message")
    ap.add_argument("--publishers", type=int, default=1,
                    help="publisher processes (one raw-socket publisher outruns Mosquitto "
                         "on this machine; a run says 'publisher-bound' if it did not)")
    ap.add_argument("--settle", type=float, default=10.0,
                    help="end a run when the store took nothing new for this many seconds "
                         "while the pipeline used under half a core")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="end a maximum-rate run after this many seconds in any case")
    ap.add_argument("--latency-seconds", type=float, default=10.0,
                    help="length of the paced run at half the maximum rate (0: skip)")
    ap.add_argument("--alarms", type=int, default=100,
                    help="alarm readings (SOS) spread over the paced run")
    ap.add_argument("--store-limit-readings", type=int,
                    help="lines written straight to the store for its limit (0: skip; "
                         "default: as many as --readings)")
    ap.add_argument("--quick", action="store_true",
                    help="a small run for tests: " + ", ".join(f"{k}={v}"
                                                               for k, v in QUICK.items()))
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="py-spy the core during each maximum-rate run (DIR/profile-<payload>) "
                         "and paced run (DIR/profile-<payload>-paced)")
    ap.add_argument("--profile-format", choices=("flamegraph", "speedscope"),
                    default="flamegraph", help="flamegraph: .svg, speedscope: .json")
    ap.add_argument("--workdir", type=Path, help="keep the services' folders and logs here")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead")
    args = ap.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    for key in ("readings", "single_readings"):
        if not 1 <= getattr(args, key) <= MAX_READINGS:
            ap.error(f"--{key.replace('_', '-')} must be 1 ..= {MAX_READINGS:,}")
    if not 1 <= args.publishers <= min(args.gateways, 64):
        ap.error("--publishers must be 1 ..= 64 and at most --gateways")
    if not 1 <= args.alarms <= 10_000 or not 0 <= args.latency_seconds <= 600:
        ap.error("--alarms must be 1 ..= 10,000 and --latency-seconds 0 ..= 600")
    if not 0 < args.settle <= 600 or not 0 < args.timeout <= 24 * 3600:
        ap.error("--settle must be 0 ..= 600 s and --timeout up to a day")
    if args.store_limit_readings is None:
        args.store_limit_readings = args.readings
    if not 0 <= args.store_limit_readings <= MAX_READINGS:
        ap.error(f"--store-limit-readings must be 0 ..= {MAX_READINGS:,}")
    try:
        args.fleet = Fleet(args.devices, args.gateways)
    except FleetError as exc:
        ap.error(str(exc))
    return args


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, console: Console) -> tuple[list[Result], float | None]:
    settings = Settings(
        fleet=args.fleet, readings={"single": args.single_readings, "array": args.readings,
                                    "snb": args.readings},
        publishers=args.publishers, settle_s=args.settle, timeout_s=args.timeout,
        latency_s=args.latency_seconds, alarms=args.alarms, profile_dir=args.profile,
        profile_format=args.profile_format)
    results: list[Result] = []
    limit: float | None = None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with _workdir(args.workdir) as root, Progress(*columns, console=console,
                                                  transient=True) as bar:
        task = bar.add_task("starting", total=1)
        for name in args.only:
            pipeline: Pipeline | str = "not tried"
            try:
                pipeline = make(name)
            except Exception as exc:  # one pipeline's set-up failing must not end the run
                pipeline = f"set-up failed: {exc}"
            for payload in args.payloads:
                if isinstance(pipeline, str):
                    results.append(Result(name, payload, skipped=pipeline))
                    console.print(f"{name} {payload}: skipped: {pipeline}")
                    continue
                if payload == "snb" and name != "sensing":
                    results.append(Result(name, payload, skipped="n/a"))
                    continue

                def progress(what: str, done: int, total: int, _tag: str = f"{name} "
                             f"{payload}") -> None:
                    bar.update(task, description=f"{_tag}: {what}", completed=done,
                               total=max(total, 1))

                try:
                    results.append(measure(settings, pipeline, payload,
                                           root / f"{name}-{payload}", progress))
                except Exception as exc:
                    console.print(f"[red]{name} {payload} failed:[/] {exc}")
                    console.print(traceback.format_exc(), markup=False, highlight=False)
                    results.append(Result(name, payload, error=f"{type(exc).__name__}: {exc}"))
        if "snb" in args.payloads and "sensing" in args.only and args.store_limit_readings:

            def progress_limit(what: str, done: int, total: int) -> None:
                bar.update(task, description=what, completed=done, total=max(total, 1))

            limit = store_limit(root / "store-limit", args.fleet, args.store_limit_readings,
                                progress_limit)
    return results, limit


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    started = time.time()
    results, limit = run(args, console)
    settings: dict[str, object] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
        if k not in ("fleet", "json")
    } | {"seconds": round(time.time() - started, 1)}
    if args.json:
        sys.stdout.write(json.dumps(as_json(results, limit, settings)) + "\n")
    else:
        # piped, rich would wrap the tables at 80 columns
        out = Console() if sys.stdout.isatty() else Console(width=170)
        print_tables(out, results, limit, args.devices)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
