"""`sensing secure-setup`: everything the secure broker configuration needs, in one folder.

    <dir>/ca.crt, ca.key              the CA every client trusts (ca.key: keep it offline)
    <dir>/server.crt, server.key      the broker's certificate (127.0.0.1, localhost, --server-name)
    <dir>/passwd                      Mosquitto password file (made by mosquitto_passwd)
    <dir>/acl                         the ACL, from deploy/mosquitto/acl.template
    <dir>/mosquitto.conf              mosquitto-secure.conf with its paths pointing at <dir>
    <dir>/core.toml                   the core's settings for this broker (`sensing run --config`)
    <dir>/users.json                  who is who (role, tier, area): the ACL is made from it
    <dir>/users/<name>.password       each user's random password, mode 0600
    <dir>/users/<name>.{crt,key}      client certificates, with --client-certs

Idempotent: an existing CA, certificate or password is kept, users given again change nothing,
new users are added. To change a password, delete its users/<name>.password and run again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter

from sensing.security.acl import DEFAULT_TEMPLATE, Role, Template, User
from sensing.security.pki import CertKey, make_ca, make_cert, readable_by_group, san_entry
from sensing.services import PROJECT_ROOT

SECURE_CONF = PROJECT_ROOT / "mosquitto-secure.conf"
CONF_DIR = "/etc/mosquitto/sensing"
"""the folder the shipped mosquitto-secure.conf names; its copy in <dir> names <dir> instead"""
DEFAULT_SERVER_NAMES = ("127.0.0.1", "localhost")
BROKER_GROUP = "mosquitto"
_USERS = TypeAdapter(list[User])


class SetupError(RuntimeError):
    pass


@dataclass
class SetupResult:
    directory: Path
    users: list[User]
    created: list[str] = field(default_factory=list)
    """files made or changed by this run, relative to `directory`; empty on a repeat run"""

    def user_files(self, user: User) -> dict[str, str | None]:
        d = self.directory / "users"
        cert = d / f"{user.name}.crt"
        return {"password_file": str(d / f"{user.name}.password"),
                "cert_file": str(cert) if cert.exists() else None,
                "key_file": str(d / f"{user.name}.key") if cert.exists() else None}

    def as_dict(self) -> dict[str, object]:
        d = self.directory
        return {
            "dir": str(d), "created": self.created,
            "files": {"ca_file": str(d / "ca.crt"), "server_cert": str(d / "server.crt"),
                      "password_file": str(d / "passwd"), "acl_file": str(d / "acl"),
                      "mosquitto_conf": str(d / "mosquitto.conf"),
                      "core_settings": str(d / "core.toml")},
            "users": [{**u.model_dump(mode="json"), **self.user_files(u)} for u in self.users],
        }


def _write_if_changed(path: Path, text: str, result: SetupResult, mode: int = 0o644) -> None:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    tmp.replace(path)
    result.created.append(str(path.relative_to(result.directory)))


def _merge(known: list[User], new: list[User]) -> list[User]:
    """`known` with `new` added; a name given again keeps one role (a responder's tier and area
    may change)."""
    by_name = {u.name: u for u in known}
    for user in new:
        old = by_name.get(user.name)
        if old is not None and old.role is not user.role:
            raise SetupError(f"user {user.name} is already a {old.role.value}; one user, one "
                             "role (a name is also the topic level it speaks for)")
        by_name[user.name] = user
    return sorted(by_name.values(), key=lambda u: (u.role.value, u.name))


def _password(path: Path, result: SetupResult) -> str:
    if path.exists():
        lines = path.read_text(encoding="utf-8").splitlines()
        if lines and lines[0].strip():
            return lines[0].strip()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    password = secrets.token_urlsafe(24)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(password + "\n")
    path.chmod(0o600)
    result.created.append(str(path.relative_to(result.directory)))
    return password


def password_matches(entry: str, password: str) -> bool:
    """Whether a Mosquitto password file hash (`$7$` PBKDF2-SHA512 of Mosquitto 2.0, `$6$`
    salted SHA-512 of 1.x) is the hash of `password`."""
    parts = entry.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations, salt, digest = int(parts[2]), base64.b64decode(parts[3]), parts[4]
            mine = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
        elif len(parts) == 4 and parts[1] == "6":
            salt, digest = base64.b64decode(parts[2]), parts[3]
            mine = hashlib.sha512(password.encode() + salt).digest()
        else:
            return False
        return hmac.compare_digest(mine, base64.b64decode(digest))
    except ValueError:
        return False


def _password_file(path: Path, passwords: dict[str, str], result: SetupResult) -> None:
    """Add to (or make) the Mosquitto password file every user whose entry is missing or holds
    another password; entries of users this folder does not know are left alone."""
    tool = shutil.which("mosquitto_passwd") or shutil.which(
        "mosquitto_passwd", path="/usr/bin:/usr/sbin")
    if tool is None:
        raise SetupError("mosquitto_passwd is not installed (apt-get install -y mosquitto)")
    entries: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, sep, entry = line.partition(":")
            if sep:
                entries[name] = entry
    stale = [n for n, pw in passwords.items()
             if n not in entries or not password_matches(entries[n], pw)]
    for name in stale:
        create = [] if path.exists() else ["-c"]
        # -b takes the password as an argument: visible in ps for a moment to root and this
        # user only on Debian (hidepid aside); mosquitto_passwd offers no stdin mode for scripts
        proc = subprocess.run([tool, *create, "-b", str(path), name, passwords[name]],
                              capture_output=True, text=True, check=False, timeout=60)
        if proc.returncode != 0:
            raise SetupError(f"mosquitto_passwd failed for user {name} ({proc.returncode})")
    if stale:
        path.chmod(0o600)
        result.created.append(str(path.relative_to(result.directory)))


def _unguessable_client_id(name: str, password_file: Path) -> str:
    """`name-` and 16 hex digits derived from the user's password: stable across runs of the
    setup (it changes no byte twice), unknown to anyone without the password."""
    digest = hashlib.sha256(b"sensing client id\0" + password_file.read_bytes()).hexdigest()
    return f"{name}-{digest[:16]}"


def _core_settings(directory: Path, core: User) -> str:
    def toml(text: object) -> str:  # a TOML basic string: JSON's escapes are valid in it
        return json.dumps(str(text))

    password_file = directory / "users" / f"{core.name}.password"
    return "\n".join([
        "# The stream core against the secure broker: sensing run --config <this file>",
        "mqtt_host = \"127.0.0.1\"",
        "mqtt_port = 8883",
        f"mqtt_username = {toml(core.name)}",
        f"mqtt_password_file = {toml(password_file)}",
        "# a client id no other user can guess: whoever connects with the core's id takes its",
        "# session over (Mosquitto disconnects the older connection), and the default is known",
        f"mqtt_client_id = {toml(_unguessable_client_id(core.name, password_file))}",
        f"mqtt_ca_file = {toml(directory / 'ca.crt')}",
        "# acks only on sensing/v1/ack/{responder}, by that responder",
        "ack_requires_identity = true",
        "",
    ])


def secure_setup(directory: Path, users: list[User], *, core_user: str = "sensing-core",
                 server_names: tuple[str, ...] = (), client_certs: bool = False,
                 template: Path = DEFAULT_TEMPLATE, conf_source: Path = SECURE_CONF
                 ) -> SetupResult:
    directory = directory.resolve()
    (directory / "users").mkdir(parents=True, exist_ok=True)
    (directory / "users").chmod(0o700)
    roster_path = directory / "users.json"
    known = (_USERS.validate_json(roster_path.read_bytes()) if roster_path.exists() else [])
    everyone = _merge(known, [User(name=core_user, role=Role.CORE), *users])
    result = SetupResult(directory, everyone)
    acl = Template.load(template).render(everyone)  # a broken template fails before any change
    roster = json.dumps([u.model_dump(mode="json") for u in everyone], indent=2) + "\n"
    _write_if_changed(roster_path, roster, result)

    ca_existed = (directory / "ca.crt").exists()
    ca = make_ca(directory)
    if not ca_existed:
        result.created += ["ca.crt", "ca.key"]
    names = tuple(dict.fromkeys((*DEFAULT_SERVER_NAMES, *server_names)))
    server = _leaf(directory, "server", ca, names[0], result,
                   sans=tuple(san_entry(n) for n in names), usage="serverAuth")

    passwords = {u.name: _password(directory / "users" / f"{u.name}.password", result)
                 for u in everyone}
    _password_file(directory / "passwd", passwords, result)
    if client_certs:
        for u in everyone:
            _leaf(directory / "users", u.name, ca, u.name, result, usage="clientAuth")

    _write_if_changed(directory / "acl", acl, result)
    conf = conf_source.read_text(encoding="utf-8").replace(CONF_DIR, str(directory))
    _write_if_changed(directory / "mosquitto.conf", conf, result)
    core = next(u for u in everyone if u.role is Role.CORE and u.name == core_user)
    _write_if_changed(directory / "core.toml", _core_settings(directory, core), result)
    for secret in (server.key, directory / "passwd", directory / "acl"):
        readable_by_group(secret, BROKER_GROUP)
    return result


def _leaf(directory: Path, name: str, ca: CertKey, common_name: str, result: SetupResult, *,
          sans: tuple[str, ...] = (), usage: str) -> CertKey:
    existed = (directory / f"{name}.crt").exists()
    leaf = make_cert(directory, name, ca, common_name, sans=sans, usage=usage)
    if not existed:
        result.created += [str(p.relative_to(result.directory)) for p in (leaf.cert, leaf.key)]
    return leaf
