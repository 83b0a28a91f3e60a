"""Broker security test helpers: a throwaway PKI made with the `openssl` CLI (by
`sensing.security.pki`, as `sensing secure-setup` makes it), Mosquitto password
files made with `mosquitto_passwd`, a Mosquitto with a TLS listener and/or passwords, and a small
paho probe that reports how a connection attempt ended.

The PKI is for tests only: EC P-256 keys, unencrypted, valid for two days.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sensing.security import pki
from sensing.security.pki import CertKey
from sensing.services import LOOPBACK, Mosquitto
from sensing_edge.security import BrokerSecurity, apply_security

DAYS = 2


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed
    by that CA, plus a server certificate whose SANs do not name the loopback address."""

    ca: CertKey
    server: CertKey
    client: CertKey
    server_wrong_name: CertKey


def make_ca(directory: Path, name: str) -> CertKey:
    """A self-signed CA in `directory`/`name`.{crt,key} (sensing.security.pki, as the setup
    command makes them, valid for two days)."""
    return pki.make_ca(directory, name, days=DAYS)


def make_cert(
    directory: Path,
    name: str,
    ca: CertKey,
    common_name: str,
    *,
    sans: tuple[str, ...] = (),
    usage: str = "serverAuth",
) -> CertKey:
    """A leaf certificate signed by `ca`; `sans` like ("IP:127.0.0.1", "DNS:localhost"),
    `usage` the extendedKeyUsage (serverAuth or clientAuth)."""
    return pki.make_cert(directory, name, ca, common_name, sans=sans, usage=usage, days=DAYS)


def make_pki(directory: Path) -> Pki:
    ca = make_ca(directory, "ca")
    return Pki(
        ca=ca,
        server=make_cert(
            directory, "server", ca, "localhost", sans=("IP:127.0.0.1", "DNS:localhost")
        ),
        client=make_cert(directory, "client", ca, "gw-test", usage="clientAuth"),
        server_wrong_name=make_cert(
            directory, "server-wrong-name", ca, "broker.invalid", sans=("DNS:broker.invalid",)
        ),
    )


def make_password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file (salted PBKDF2-SHA512 hashes) made by `mosquitto_passwd`."""
    tool = shutil.which("mosquitto_passwd") or shutil.which(
        "mosquitto_passwd", path="/usr/sbin:/usr/bin"
    )
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed (it ships with the mosquitto package)")
    path.parent.mkdir(parents=True, exist_ok=True)
    for i, (user, password) in enumerate(users.items()):
        args = [tool, "-b", *(["-c"] if i == 0 else []), str(path), user, password]
        subprocess.run(args, check=True, capture_output=True, timeout=30)
    return path


def secure_conf(
    *,
    tls: CertKey | None = None,
    ca: CertKey | None = None,
    require_certificate: bool = False,
    password_file: Path | None = None,
) -> str:
    """Lines appended to the project's mosquitto.conf. TLS options apply to the last listener
    defined, which is the project's only listener (moved to the test's port). With Mosquitto's
    default `per_listener_settings false`, `allow_anonymous` and `password_file` are global, and
    the later `allow_anonymous false` overrides the project file's `allow_anonymous true`."""
    lines: list[str] = []
    if tls is not None:
        if ca is None:
            raise ValueError("a TLS listener needs the CA file")
        lines += [
            f"cafile {ca.cert}",
            f"certfile {tls.cert}",
            f"keyfile {tls.key}",
            f"require_certificate {'true' if require_certificate else 'false'}",
        ]
    if password_file is not None:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
    return "\n".join(lines)


def start_secure_broker(workdir: Path, **conf: object) -> Mosquitto:
    """`Mosquitto.start` with `secure_conf(**conf)`; stop it (or use `with`) when done."""
    return Mosquitto.start(workdir, extra_conf=secure_conf(**conf))  # type: ignore[arg-type]


@dataclass
class Probe:
    """A paho client (MQTT 3.1.1) configured by `apply_security`, recording how its connection
    attempt ended and every message it receives."""

    port: int
    security: BrokerSecurity
    host: str = LOOPBACK
    client_id: str = field(default_factory=lambda: f"sec-{uuid.uuid4().hex[:10]}")
    connack: ReasonCode | None = None
    connect_error: BaseException | None = None
    disconnected: bool = False
    messages: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._published: set[int] = set()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(5, 5)  # one attempt is what a test looks at
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_publish = self._on_publish
        apply_security(self.client, self.security)
        self._started = False

    def _on_connect(
        self,
        c: mqtt.Client,
        u: object,
        f: mqtt.ConnectFlags,
        rc: ReasonCode,
        p: Properties | None,
    ) -> None:
        with self._cond:
            if self.connack is None:
                self.connack = rc
            self._cond.notify_all()

    def _on_disconnect(
        self,
        c: mqtt.Client,
        u: object,
        f: mqtt.DisconnectFlags,
        rc: ReasonCode,
        p: Properties | None,
    ) -> None:
        with self._cond:
            self.disconnected = True
            self._cond.notify_all()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def _on_publish(
        self, c: mqtt.Client, u: object, mid: int, rc: ReasonCode, p: Properties
    ) -> None:
        with self._cond:
            self._published.add(mid)
            self._cond.notify_all()

    def connect(self, timeout: float = 5.0) -> Probe:
        """Try once. Afterwards exactly one of: `connected`, `connack` a failure, `connect_error`
        set (TLS handshake or socket error), `disconnected` without CONNACK, or a timeout."""
        try:
            # synchronous: the TCP connection and the TLS handshake happen here, so a broker
            # certificate the client rejects raises ssl.SSLCertVerificationError at once
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            self.connect_error = e
            return self
        # drive the network loop by hand until the attempt ends, so a refused client is not
        # left in paho's reconnect wait (it sleeps in 1 s steps, slowing the teardown)
        deadline = time.monotonic() + timeout
        while self.connack is None and not self.disconnected and time.monotonic() < deadline:
            self.client.loop(timeout=0.05)
        if self.connected:
            self.client.loop_start()
            self._started = True
        return self

    @property
    def connected(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def _wait(self, predicate: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():  # type: ignore[operator]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def subscribe(self, topic: str, timeout: float = 5.0) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(timeout), "SUBACK not received"

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        info = self.client.publish(topic, payload, qos=1)
        assert self._wait(lambda: info.mid in self._published, timeout), "no PUBACK"

    def wait_message(self, topic: str, timeout: float = 5.0) -> bytes | None:
        def seen() -> bool:
            return any(t == topic for t, _ in self.messages)

        if not self._wait(seen, timeout):
            return None
        return next(p for t, p in self.messages if t == topic)

    def close(self) -> None:
        self.client.disconnect()
        if self._started:
            self.client.loop_stop()
