"""`sensing`: run the stream core, watch and acknowledge alerts, run the live demo."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from sensing.security import command as secure_command

if TYPE_CHECKING:
    from collections.abc import Callable

    from sensing.operator import Client

EPILOG = """examples:
  sensing demo --duration 60                  broker, store, core and a 1,000-device fleet
  sensing run --config core.toml              the stream core (settings also from SENSING_*)
  sensing run --mqtt-port 1883 --store-url http://127.0.0.1:8428
  sensing watch --mqtt-port 1883              alerts as they are raised, in colour
  sensing ack 3f2a... --by grid-worker-7      acknowledge an alert (--take, --dispose, ...)
  sensing api --directory directory.toml      responders act on cases over HTTP
  sensing secure-setup --dir /etc/mosquitto/sensing --gateway gw-17 --operator control-room
                                              TLS, passwords and ACL of the secure broker
  sensing watch --mqtt-port 8883 --ca-file ca.crt --username control-room --password-file pw
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

    api = sub.add_parser("api", help="HTTP for responders: act on cases with a bearer token",
                         description="Serve POST /v1/actions: a person of the directory, "
                         "proven by their bearer token (api_token_sha256 in the directory), acts "
                         "on a case; the action goes to the core as their ack on "
                         "sensing/v1/ack/{person} and the reply is the core's verdict (200 "
                         "applied, 409 refused with its reason, 202 no verdict in time, 401 no "
                         "valid token, 413 too large, 422 malformed). A process of its own: it "
                         "never slows the core. With the secure broker its MQTT user must be "
                         "allowed to write sensing/v1/ack/+ (secure-setup --api NAME).")
    api.add_argument("--directory", type=Path, required=True, help="the directory TOML file "
                     "(read again when it changes)")
    api.add_argument("--host", default="127.0.0.1", help="listen address (default loopback)")
    api.add_argument("--port", type=int, default=8700, help="listen port (default 8700)")
    api.add_argument("--mqtt-host", default="127.0.0.1")
    api.add_argument("--mqtt-port", type=int, default=1883)
    api.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the core's "
                     "verdict (default 5)")
    _security_options(api)
    sub.add_parser("api-token", help="make a new API token and the hash for the directory",
                   description="Print a new random token (give it to the person, once) and its "
                   "SHA-256, the line to put in their directory entry as api_token_sha256.")

    for name, helptext in (("watch", "print alerts as they arrive"),
                           ("ack", "act on an alert or case: ack, resolve, take, arrived, "
                                   "dispose, reassign")):
        sp = sub.add_parser(name, help=helptext, description=helptext)
        sp.add_argument("--mqtt-host", default="127.0.0.1")
        sp.add_argument("--mqtt-port", type=int, default=1883)
        if name == "watch":
            sp.add_argument("--json", action="store_true", help="one alert JSON per line")
        else:
            sp.description = (
                "Act on an alert or its case (docs/dispatch.md): acknowledge it (the default), "
                "resolve it, take the case (I am going: the escalation stops), report arrival, "
                "dispose of it with an outcome, or reassign it. Publishes on "
                "sensing/v1/ack/{by} (the secure broker lets each user write only its own), "
                "then prints what the core made of it. Exit 0 when the core applied it, 1 when "
                "the broker or the core refused it, 2 on bad arguments, 3 when sent but no "
                "verdict was heard within --wait (the user may not read the alert or case "
                "topics).")
            sp.add_argument("alert_id", help="the alert's or the case's id")
            sp.add_argument("--by", required=True, help="who acts (a responder of the "
                            "directory; with a broker login: that user's name)")
            act = sp.add_mutually_exclusive_group()
            act.add_argument("--resolve", action="store_true", help="resolve instead of ack")
            act.add_argument("--take", action="store_true", help="take the case")
            act.add_argument("--arrived", action="store_true", help="report arrival on site")
            act.add_argument("--dispose", metavar="OUTCOME", choices=(
                "fire", "false_alarm", "device_fault", "resident_ok", "other"),
                help="close the case: fire, false_alarm, device_fault, resident_ok or other")
            act.add_argument("--reassign", metavar="RESPONDER",
                             help="hand the case to this responder (operators)")
            sp.add_argument("--note", help="with --dispose: what was found (up to 1,000 "
                            "characters)")
            sp.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the "
                            "core's verdict (default 5; 0: do not wait)")
        _security_options(sp)
    secure_command.add_parser(sub)
    return p


def _security_options(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("broker security", "TLS and credentials (see 'Running it "
                              "securely' in the README); the password is read from a file only")
    g.add_argument("--username", help="MQTT user name")
    g.add_argument("--password-file", type=Path, help="file whose first line is the password")
    g.add_argument("--ca-file", type=Path, help="TLS, trusting only this CA (PEM)")
    g.add_argument("--cert-file", type=Path, help="client certificate (PEM), with --key-file")
    g.add_argument("--key-file", type=Path, help="the client certificate's private key")
    g.add_argument("--tls", action="store_true", help="TLS trusting the system's CAs")


def _run(args: argparse.Namespace) -> int:
    from sensing.core import StreamCore
    from sensing.dispatch.directory import DirectoryError
    from sensing.logs import configure
    from sensing.process import give_freed_memory_back, on_hangup, stop_on_signals
    from sensing.settings import CoreSettings, settings_error_text

    give_freed_memory_back()

    overrides = {k: v for k, v in {
        "mqtt_host": args.mqtt_host, "mqtt_port": args.mqtt_port, "store_url": args.store_url,
        "state_dir": args.state_dir, "log_format": args.log_format}.items() if v is not None}
    try:
        settings = CoreSettings.load(args.config, **overrides)
    except ValidationError as exc:
        # named and explained, never their values: a misspelt setting may hold a password
        print(f"sensing run: bad settings:\n{settings_error_text(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sensing run: bad settings: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_format)
    try:
        core = StreamCore(settings)
    except DirectoryError as exc:
        print(f"sensing run: bad directory: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        with stop_on_signals(core.stop_event), on_hangup(core.reload_directory):
            core.run()
    except ConnectionError as exc:
        print(f"sensing run: {exc}", file=sys.stderr)
        return 1
    return 0


def _clients(args: argparse.Namespace) -> Callable[[], Client]:
    """What connects a client with the command's TLS and credentials (BrokerRefused, a
    ConnectionError, when the broker does not take it); SystemExit for bad options."""
    from sensing.operator import Client
    from sensing_edge.security import BrokerSecurity

    try:
        security = BrokerSecurity(username=args.username, password_file=args.password_file,
                                  ca_file=args.ca_file, cert_file=args.cert_file,
                                  key_file=args.key_file, tls=args.tls)
    except ValidationError as exc:
        raise SystemExit("\n".join(f"sensing {args.command}: " + e["msg"].removeprefix(
            "Value error, ") for e in exc.errors())) from None
    return lambda: Client(args.mqtt_host, args.mqtt_port, security).connect()


def _connect(args: argparse.Namespace) -> Client:
    """A connected client with the command's TLS and credentials, or SystemExit saying why."""
    from sensing.operator import BrokerRefused

    try:
        return _clients(args)()
    except BrokerRefused as exc:
        raise SystemExit(f"sensing {args.command}: {exc}") from None


def _watch(args: argparse.Namespace) -> int:
    import threading

    import paho.mqtt.client as mqtt
    from rich.console import Console

    from sensing.console import alert_line
    from sensing.wire import topics
    from sensing.wire.messages import Alert

    console = Console()
    client = _connect(args)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if args.json:
            sys.stdout.write(msg.payload.decode() + "\n")
            sys.stdout.flush()
            return
        try:
            console.print(alert_line(Alert.model_validate_json(msg.payload)))
        except ValidationError:
            console.print(f"[red]unreadable alert on {msg.topic}[/red]")

    client.paho.on_message = on_message
    client.subscribe(topics.ALERTS_FILTER)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    client.close()
    return 0


def _ack(args: argparse.Namespace) -> int:
    from sensing.operator import send_ack
    from sensing.wire.messages import Ack

    try:
        ack = Ack.model_validate({
            "alert_id": args.alert_id, "by": args.by, "outcome": args.dispose,
            "note": args.note, "to": args.reassign,
            "action": "resolve" if args.resolve else "take" if args.take else
                      "arrived" if args.arrived else "dispose" if args.dispose else
                      "reassign" if args.reassign else "ack"})
    except ValidationError as exc:
        print(f"sensing ack: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}",
              file=sys.stderr)
        return 2
    if any(c in args.by for c in "/+#"):
        print("sensing ack: --by must not contain / + or # (it is a topic level)",
              file=sys.stderr)
        return 2
    client = _connect(args)
    try:
        result = send_ack(client, ack, args.wait)
    finally:
        client.close()
    print(f"sensing ack: {result.text}", file=sys.stdout if result.verdict == 0 else sys.stderr)
    return int(result.verdict)


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from sensing.api.actions import DirectoryFile, create_app
    from sensing.dispatch.directory import DirectoryError
    from sensing.logs import configure

    try:
        directory = DirectoryFile(args.directory)
    except (OSError, DirectoryError) as exc:
        print(f"sensing api: bad directory: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    _connect(args).close()  # the broker and the login work: say so now, not per request
    configure("console")
    app = create_app(directory, _clients(args), args.wait)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
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
    if args.command == "api":
        return _api(args)
    if args.command == "api-token":
        import secrets

        from sensing.api.actions import token_hash
        token = secrets.token_urlsafe(32)
        print(f"token: {token}\napi_token_sha256 = \"{token_hash(token)}\"")
        return 0
    if args.command == "secure-setup":
        return secure_command.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
