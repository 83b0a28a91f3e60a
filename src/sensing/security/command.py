"""The `sensing secure-setup` subcommand: options, and what it prints (never a password)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from sensing.security.acl import Role, User
from sensing.security.pki import PkiError
from sensing.security.setup import CONF_DIR, SetupError, SetupResult, secure_setup

DESCRIPTION = """\
Make what the secure broker configuration (mosquitto-secure.conf) needs, in one folder: a CA
and the broker's TLS certificate, a random password per user (users/<name>.password, mode
0600), Mosquitto's password file, the ACL from deploy/mosquitto/acl.template, a copy of
mosquitto-secure.conf pointing at the folder, and the core's settings (core.toml). Idempotent:
run it again with more users to add them; nothing that exists is remade."""

EPILOG = f"""\
roles (see deploy/mosquitto/acl.template):
  gateway    publishes only sensing/v1/+/<name>/readings and .../status, reads only
             sensing/v1/core/stored/+/<name>
  core       reads readings, status and acks; the only writer of alerts, dispatch, dead
             letters and core/ (one core user, --core-user)
  operator   reads alerts, dispatch, dead letters, core/stats; acks on sensing/v1/ack/<name>
  responder  reads sensing/v1/dispatch/<tier>/<area>; acks on sensing/v1/ack/<name>
  api        `sensing api`: acts for the people its bearer tokens prove, on
             sensing/v1/ack/+; reads what answers them (alerts, dispatch, cases, dead letters)

examples:
  sensing secure-setup --dir {CONF_DIR} --gateway gw-17 --gateway gw-18 \\
      --operator control-room --responder grid-7:grid --responder vol-3:volunteers:shuangqiaozi
  mosquitto -c {CONF_DIR}/mosquitto.conf
  sensing run --config {CONF_DIR}/core.toml
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("secure-setup", help="certificates, passwords and the ACL of the secure "
                       "broker configuration", description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=Path(CONF_DIR),
                   help=f"where everything goes (default {CONF_DIR})")
    p.add_argument("--gateway", action="append", default=[], metavar="NAME",
                   help="a gateway user, its name the gateway id (repeat for more)")
    p.add_argument("--operator", action="append", default=[], metavar="NAME",
                   help="an operator user (repeat for more)")
    p.add_argument("--api", action="append", default=[], metavar="NAME",
                   help="the user of `sensing api` (repeat for more)")
    p.add_argument("--responder", action="append", default=[], metavar="NAME[:TIER[:AREA]]",
                   help="a responder user, limited to one dispatch tier and area if given")
    p.add_argument("--core-user", default="sensing-core", help="the core's user name "
                   "(default sensing-core)")
    p.add_argument("--server-name", action="append", default=[], metavar="HOST_OR_IP",
                   help="another name or address in the broker's certificate (127.0.0.1 and "
                   "localhost are always in it; delete server.crt to remake it)")
    p.add_argument("--client-certs", action="store_true",
                   help="also a client certificate per user (users/<name>.crt and .key)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _users(args: argparse.Namespace) -> list[User]:
    return [*(User(name=n, role=Role.GATEWAY) for n in args.gateway),
            *(User(name=n, role=Role.OPERATOR) for n in args.operator),
            *(User(name=n, role=Role.API) for n in args.api),
            *(User.responder(spec) for spec in args.responder)]


def _print(result: SetupResult) -> None:
    d = result.as_dict()
    files = d["files"]
    assert isinstance(files, dict)
    print(f"secure broker configuration in {result.directory}")
    print("  changed: " + (", ".join(result.created) if result.created else "nothing "
                           "(everything was already there)"))
    for u in result.users:
        scope = f" tier {u.tier} area {u.area}" if u.role is Role.RESPONDER else ""
        print(f"  {u.role.value:<9} {u.name}{scope}: password in "
              f"{result.user_files(u)['password_file']}")
    print(f"start the broker:  mosquitto -c {files['mosquitto_conf']}")
    print("a running broker reloads the password file and ACL on SIGHUP")
    print(f"start the core:    sensing run --config {files['core_settings']}")
    print(f"clients trust:     {files['ca_file']}  (never copy ca.key to a client)")


def run(args: argparse.Namespace) -> int:
    try:
        result = secure_setup(args.dir, _users(args), core_user=args.core_user,
                              server_names=tuple(args.server_name),
                              client_certs=args.client_certs)
    except ValidationError as exc:
        for e in exc.errors():
            print(f"sensing secure-setup: {e['msg'].removeprefix('Value error, ')}",
                  file=sys.stderr)
        return 2
    except (SetupError, PkiError, OSError) as exc:
        print(f"sensing secure-setup: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        _print(result)
    return 0
