"""`sensing`: run the stream core, watch and acknowledge alerts, run the live demo."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from pydantic import ValidationError

EPILOG = """examples:
  sensing demo --duration 60                  broker, store, core and a 1,000-device fleet
  sensing run --config core.toml              the stream core (settings also from SENSING_*)
  sensing run --mqtt-port 1883 --store-url http://127.0.0.1:8428
  sensing watch --mqtt-port 1883              alerts as they are raised, in colour
  sensing ack 3f2a... --by grid-worker-7      acknowledge an alert (--resolve to close it)
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sensing",
        description="Stream core of the sensing pipeline: MQTT readings in, graded alerts, "
        "dispatch and a time-series store out (wire contract v1, see docs/contract.md).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the stream core until SIGTERM or Ctrl-C",
                         description="Run the stream core. Settings come from --config (TOML), "
                         "then SENSING_* environment variables, then these options.")
    run.add_argument("--config", type=Path, help="TOML settings file")
    run.add_argument("--mqtt-host")
    run.add_argument("--mqtt-port", type=int)
    run.add_argument("--store-url", help="InfluxDB v2 write API base URL")
    run.add_argument("--state-dir", type=Path, help="where the alert database lives")
    run.add_argument("--log-format", choices=["console", "json"])

    demo = sub.add_parser("demo", help="the live demo: broker, store, core and a simulated fleet",
                          description="Start Mosquitto and VictoriaMetrics on free loopback ports, "
                          "the stream core and a simulated fleet behind real edge agents; show "
                          "alerts live; print a summary. Ctrl-C stops everything cleanly.")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of fleet traffic "
                      "(default 60)")
    demo.add_argument("--gateways", type=int, default=10, help="edge agents (default 10)")
    demo.add_argument("--devices", type=int, default=1000, help="devices (default 1000)")
    demo.add_argument("--interval", type=float, default=1.0,
                      help="seconds between readings of one device (default 1)")
    demo.add_argument("--workdir", type=Path, default=Path(".run/demo"),
                      help="data and logs of the run (default .run/demo)")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")

    for name, helptext in (("watch", "print alerts as they arrive"),
                           ("ack", "acknowledge or resolve an alert")):
        sp = sub.add_parser(name, help=helptext, description=helptext)
        sp.add_argument("--mqtt-host", default="127.0.0.1")
        sp.add_argument("--mqtt-port", type=int, default=1883)
        if name == "watch":
            sp.add_argument("--json", action="store_true", help="one alert JSON per line")
        else:
            sp.add_argument("alert_id")
            sp.add_argument("--by", required=True, help="who acknowledges")
            sp.add_argument("--resolve", action="store_true", help="resolve instead of ack")
    return p


def _run(args: argparse.Namespace) -> int:
    from sensing.core import StreamCore
    from sensing.logs import configure
    from sensing.process import stop_on_signals
    from sensing.settings import CoreSettings

    overrides = {k: v for k, v in {
        "mqtt_host": args.mqtt_host, "mqtt_port": args.mqtt_port, "store_url": args.store_url,
        "state_dir": args.state_dir, "log_format": args.log_format}.items() if v is not None}
    try:
        settings = CoreSettings.load(args.config, **overrides)
    except (ValidationError, OSError) as exc:
        print(f"sensing run: bad settings: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_format)
    core = StreamCore(settings)
    try:
        with stop_on_signals(core.stop_event):
            core.run()
    except ConnectionError as exc:
        print(f"sensing run: {exc}", file=sys.stderr)
        return 1
    return 0


def _client(args: argparse.Namespace, client_id: str = "") -> object:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    try:
        client.connect(args.mqtt_host, args.mqtt_port, keepalive=30)
    except OSError as exc:
        raise SystemExit(f"sensing {args.command}: no broker at "
                         f"{args.mqtt_host}:{args.mqtt_port}: {exc}") from None
    return client


def _watch(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt
    from rich.console import Console

    from sensing.console import alert_line
    from sensing.wire import topics
    from sensing.wire.messages import Alert

    console = Console()
    client = _client(args)
    assert isinstance(client, mqtt.Client)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if args.json:
            sys.stdout.write(msg.payload.decode() + "\n")
            sys.stdout.flush()
            return
        try:
            console.print(alert_line(Alert.model_validate_json(msg.payload)))
        except ValidationError:
            console.print(f"[red]unreadable alert on {msg.topic}[/red]")

    client.on_message = on_message
    client.subscribe(topics.ALERTS_FILTER, qos=1)
    with contextlib.suppress(KeyboardInterrupt):
        client.loop_forever()
    return 0


def _ack(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt

    from sensing.wire import topics
    from sensing.wire.messages import Ack

    client = _client(args)
    assert isinstance(client, mqtt.Client)
    client.loop_start()
    ack = Ack(alert_id=args.alert_id, by=args.by, action="resolve" if args.resolve else "ack")
    info = client.publish(topics.ACK_TOPIC, ack.to_json(), qos=1)
    info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    if not info.is_published():
        print("sensing ack: the broker did not confirm the ack", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "demo":
        from sensing.demo import run_demo

        return run_demo(args)
    if args.command == "watch":
        return _watch(args)
    if args.command == "ack":
        return _ack(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
