"""`sensing-edge`: run a gateway's edge agent, from its configuration file or with simulated
sensors."""

from __future__ import annotations

import argparse
import sys
import threading
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

import orjson
from pydantic import ValidationError

from sensing.logs import configure
from sensing.process import stop_on_signals
from sensing.wire.kinds import KINDS
from sensing.wire.topics import is_valid_name

from .agent import AgentSettings, AgentStats, GatewayAgent
from .config import load_config
from .drivers import Driver
from .simulated import SimulatedDriver, make_fleet

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_MIX = "smoke=0.5,manhole=0.2,wearable=0.3"

DESCRIPTION = """\
Edge agent of a sensing gateway: reads its sensors, numbers every reading
(device, epoch, seq), publishes them in batches at QoS 1 to
sensing/v1/{area}/{gateway}/readings and keeps a retained online/offline status
(with an MQTT last will) on sensing/v1/{area}/{gateway}/status."""

CONFIG_EPILOG = """\
examples:
  # a gateway as deployed: broker, TLS, buffer, alarms and drivers from its file
  sensing-edge --config /etc/sensing-edge/gateway.toml

  # check a file and print the settings it gives, as JSON
  sensing-edge --config gateway.toml --check --json

  # simulated sensors from the command line only
  sensing-edge run --gateway gw-1 --area demo

Exit status: 0 clean stop (every reading acknowledged) or a good --check, 1 the
broker unreachable (run) or readings left unacknowledged, 2 usage or configuration
error."""

RUN_EPILOG = f"""\
examples:
  # 100 simulated devices ({DEFAULT_MIX}), one reading each per 5 s
  sensing-edge run --gateway gw-1 --area demo --broker-port 1883

  # 2,000 wristbands every second as JSON for one minute, counts as JSON at the end
  sensing-edge run --gateway gw-7 --area shuangqiaozi --devices 2000 --mix wearable=1 \\
      --interval 1 --format json --duration 60 --json

It runs until Ctrl-C, SIGTERM or --duration, then publishes what it holds, waits for
the core's confirmations (--stop-timeout), publishes status offline and prints its
counts. Exit status: 0 clean stop, 1 broker unreachable or readings left
unacknowledged, 2 usage error."""


def _name(value: str) -> str:
    if not is_valid_name(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'"
        )
    return value


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be greater than 0")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} must be a finite number greater than 0")
    return number


def parse_mix(value: str) -> dict[str, float]:
    """`smoke=0.5,manhole=0.2,wearable=0.3` -> weights per kind (need not sum to 1)."""
    mix: dict[str, float] = {}
    for part in value.split(","):
        kind, sep, weight = part.strip().partition("=")
        if not sep or kind not in KINDS:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r}: expected KIND=WEIGHT with KIND one of {', '.join(KINDS)}"
            )
        try:
            mix[kind] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: weight is not a number") from None
        if not 0 <= mix[kind] < float("inf"):
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: weight must be 0 or more")
    if sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("at least one weight must be greater than 0")
    return mix


def build_parser() -> argparse.ArgumentParser:
    control = argparse.ArgumentParser(add_help=False)
    ctl = control.add_argument_group("run")
    ctl.add_argument("--duration", type=_positive_float, metavar="S",
                     help="stop after this many seconds (default: run until Ctrl-C/SIGTERM)")
    ctl.add_argument("--stop-timeout", type=_positive_float, default=10.0, metavar="S",
                     help="on stop, wait this long for confirmations (default %(default)s)")
    ctl.add_argument("--json", action="store_true",
                     help="print the final counts (with --check: the settings) as one JSON "
                          "object")
    ctl.add_argument("--log-level", default="info",
                     choices=("debug", "info", "warning", "error"), help="(default info)")
    parser = argparse.ArgumentParser(
        prog="sensing-edge",
        description=DESCRIPTION,
        epilog=CONFIG_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[control],
    )
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="run the gateway this TOML file describes (see "
                             "edge/gateway.example.toml); it keeps retrying an unreachable "
                             "broker, buffering readings, until stopped")
    parser.add_argument("--check", action="store_true",
                        help="with --config: check the file, print the settings it gives "
                             "(secrets hidden) and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run an agent with simulated sensors, all options on the command line",
        description=DESCRIPTION,
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[control],
    )
    who = run.add_argument_group("gateway")
    who.add_argument("--gateway", required=True, type=_name, help="gateway id, e.g. gw-1")
    who.add_argument("--area", required=True, type=_name, help="community or street code")
    who.add_argument("--epoch", type=int, default=None,
                     help="restart counter of the devices' readings (default: one more than "
                          "the buffer's previous run, and at least the Unix time in seconds, "
                          "so a restarted agent never repeats an earlier run's "
                          "(device, epoch, seq))")
    who.add_argument("--buffer", type=Path, default=None, metavar="PATH",
                     help="the durable reading buffer (SQLite); readings not acknowledged "
                          "when the agent stops or dies are sent by its next run (default: "
                          "in memory, lost with the process)")
    broker = run.add_argument_group("broker")
    broker.add_argument("--host", default="127.0.0.1",
                        help="MQTT broker host (default %(default)s)")
    broker.add_argument("--broker-port", type=_positive_int, default=1883,
                        help="MQTT broker port (default %(default)s)")
    broker.add_argument("--connect-timeout", type=_positive_float, default=10.0, metavar="S",
                        help="give up (exit 1) if the broker is unreachable this long "
                             "(default %(default)s)")
    sensors = run.add_argument_group("simulated sensors")
    sensors.add_argument("--devices", type=_positive_int, default=100,
                         help="number of simulated devices (default %(default)s)")
    sensors.add_argument("--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX),
                         metavar="KIND=W,...", help=f"share of each kind (default {DEFAULT_MIX})")
    sensors.add_argument("--interval", type=_positive_float, default=5.0, metavar="S",
                         help="seconds between two readings of one device (default %(default)s)")
    sensors.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    out = run.add_argument_group("publishing")
    out.add_argument("--format", choices=("snb1", "json"), default="snb1",
                     help="payload format: SNB1 binary batches or JSON arrays (default snb1)")
    out.add_argument("--batch-max-readings", type=_positive_int, default=200, metavar="N",
                     help="publish a batch when it holds this many readings (default 200)")
    out.add_argument("--batch-max-age", type=_positive_float, default=0.5, metavar="S",
                     help="... or when its oldest reading is this old (default 0.5)")
    out.add_argument("--confirm", choices=("core", "broker"), default="core",
                     help="delete a buffered reading when the core confirms it stored it "
                          "(default), or at the broker's PUBACK (a core that does not "
                          "confirm; a broker crash may then lose what it held)")
    return parser


def _error(message: str) -> None:
    print(f"sensing-edge: error: {message}", file=sys.stderr)


def _report(args: argparse.Namespace, settings: AgentSettings, stats: AgentStats,
            all_acked: bool) -> None:
    if args.json:
        doc = {"gateway": settings.gateway, "area": settings.area, "all_acked": all_acked}
        print(orjson.dumps({**doc, **stats.as_dict()}).decode())
        return
    print(
        f"{settings.gateway}@{settings.area}: sampled {stats.readings_sampled}, "
        f"published {stats.readings_published}, acknowledged {stats.readings_acked} readings "
        f"in {stats.batches} batches, confirmed {stats.readings_confirmed}, re-sent "
        f"{stats.readings_resent}; {stats.readings_buffered} readings still buffered"
    )


def _invalid(exc: ValidationError, prefix: str) -> str:
    return "; ".join(
        f"{prefix}{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors())


def run(args: argparse.Namespace) -> int:
    """`sensing-edge run`: simulated sensors, settings from the command line."""
    try:
        settings = AgentSettings(
            gateway=args.gateway, area=args.area, broker_host=args.host,
            broker_port=args.broker_port, payload_format=args.format,
            epoch=args.epoch, buffer_path=args.buffer,
            batch_max_readings=args.batch_max_readings, batch_max_age_s=args.batch_max_age,
            confirm=args.confirm,
        )
        driver = SimulatedDriver(
            make_fleet(args.devices, args.mix, args.gateway), args.interval, args.seed
        )
    except ValidationError as exc:
        _error(_invalid(exc, "--"))
        return EXIT_USAGE
    except ValueError as exc:
        _error(str(exc))
        return EXIT_USAGE
    return _serve(args, settings, [driver], give_up_after=args.connect_timeout)


def run_config(args: argparse.Namespace) -> int:
    """`sensing-edge --config FILE`: everything from the gateway's file."""
    path: Path = args.config
    try:
        config = load_config(path)
    except OSError as exc:
        _error(f"cannot read {path}: {exc.strerror or exc}")
        return EXIT_USAGE
    except tomllib.TOMLDecodeError as exc:
        _error(f"{path}: not valid TOML: {exc}")
        return EXIT_USAGE
    except ValidationError as exc:
        _error(f"{path}: {_invalid(exc, '')}")
        return EXIT_USAGE
    try:
        settings = config.agent_settings()
    except ValidationError as exc:
        _error(f"{path}: {_invalid(exc, '')}")
        return EXIT_USAGE
    if args.check:
        shown = config.model_dump(mode="json")  # SecretStr dumps as "**********"
        if args.json:
            print(orjson.dumps(shown).decode())
        else:
            print(f"{path}: gateway {settings.gateway} in {settings.area}, broker "
                  f"{settings.broker_host}:{settings.broker_port}"
                  f"{' (TLS)' if settings.security.uses_tls else ''}, buffer "
                  f"{settings.buffer_path or 'in memory'}, {len(config.drivers)} driver(s): ok")
        return EXIT_OK
    try:
        drivers = config.build_drivers()
    except (OSError, ValueError) as exc:
        _error(f"{path}: cannot open a driver: {exc}")
        return EXIT_FAILURE
    try:
        return _serve(args, settings, drivers, give_up_after=None)
    finally:
        for driver in drivers:
            close = getattr(driver, "close", None)
            if close is not None:
                close()


def _serve(args: argparse.Namespace, settings: AgentSettings, drivers: list[Driver],
           give_up_after: float | None) -> int:
    """Run the agent until a signal or --duration; with `give_up_after`, exit 1 if the broker
    cannot be reached that soon (a deployed gateway keeps trying instead, buffering)."""
    configure("console", args.log_level.upper())
    stop = threading.Event()
    with stop_on_signals(stop):
        agent = GatewayAgent(settings, drivers)
        started = time.monotonic()
        agent.start()
        if give_up_after is not None:
            deadline = started + give_up_after
            while not agent.connected and not stop.is_set() and time.monotonic() < deadline:
                stop.wait(0.05)
            if not agent.connected and not stop.is_set():
                agent.stop(timeout=0)
                _error(f"cannot reach the MQTT broker at {settings.broker_host}:"
                       f"{settings.broker_port} within {give_up_after:g} s")
                return EXIT_FAILURE
        remaining = None if args.duration is None else started + args.duration - time.monotonic()
        stop.wait(None if remaining is None else max(0.0, remaining))
        all_acked = agent.stop(timeout=args.stop_timeout)
    stats = agent.stats()
    _report(args, settings, stats, all_acked)
    if not all_acked:
        where = (f"stay in {settings.buffer_path} for the next run"
                 if settings.buffer_path is not None else "are lost (no buffer file)")
        by = "core" if settings.confirm == "core" else "broker"
        _error(f"{stats.readings_buffered} readings were not confirmed by the {by} and {where}")
        return EXIT_FAILURE
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "run":
        if args.config is not None:
            _error("--config and run are exclusive: the file holds what run's options say")
            return EXIT_USAGE
        return run(args)
    if args.config is not None:
        return run_config(args)
    if args.check:
        _error("--check needs --config FILE")
        return EXIT_USAGE
    parser.print_help(sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
