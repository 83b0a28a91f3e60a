"""Who may say what (issue 11, problem 12): the secure broker configuration made by
`sensing secure-setup`, one test per ACL rule, allowed and refused, against a real Mosquitto
started with it; acks bound to their responder; the core, `sensing watch` and `sensing ack` over
TLS with credentials; and no secret in logs or error messages."""

from __future__ import annotations

import json
import re
import signal
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import orjson
import paho.mqtt.client as mqtt
import pytest
import structlog

from sensing.cli import main as sensing_main
from sensing.ingest.mqtt import Incoming
from sensing.operator import BrokerRefused, Client
from sensing.pipeline import Pipeline
from sensing.redact import redact_text, redact_url
from sensing.security.acl import Role, Template, User
from sensing.security.setup import password_matches, secure_setup
from sensing.services import Mosquitto, VictoriaMetrics
from sensing.settings import CoreSettings
from sensing.store.writer import StoreUnavailable, StoreWriter
from sensing.wire import topics
from sensing_edge.security import BrokerSecurity
from tests.edge.tls_support import make_password_file
from tests.helpers import running_core, wait_until

AREA = "north"
GATEWAYS = ("gw-a", "gw-b")
OPERATOR = "op-1"
RESPONDER, RESPONDER_TIER = "grid-7", "grid"
MALLORY = "mallory"  # a responder of another tier and one area, who tries to speak for others
CORE = "sensing-core"
NOT_AUTHORIZED = 135


def users() -> list[User]:
    return [*(User(name=g, role=Role.GATEWAY) for g in GATEWAYS),
            User(name=OPERATOR, role=Role.OPERATOR),
            User.responder(f"{RESPONDER}:{RESPONDER_TIER}"),
            User.responder(f"{MALLORY}:volunteers:{AREA}")]


@pytest.fixture(scope="module")
def secure_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("secure")
    secure_setup(directory, users(), client_certs=True)
    return directory


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory, secure_dir: Path
                  ) -> Iterator[Mosquitto]:
    """Mosquitto with the setup's copy of mosquitto-secure.conf (only its listener moved to a
    free loopback port and its persistence folder to the test's)."""
    with Mosquitto.start(tmp_path_factory.mktemp("secure-broker"),
                         conf_source=secure_dir / "mosquitto.conf") as broker:
        yield broker


def login(secure_dir: Path, user: str, **extra: object) -> BrokerSecurity:
    return BrokerSecurity.model_validate({
        "username": user, "password_file": secure_dir / "users" / f"{user}.password",
        "ca_file": secure_dir / "ca.crt", **extra})


class Peer:
    """A connected MQTT 5 client of one user that records what it receives."""

    def __init__(self, broker: Mosquitto, security: BrokerSecurity) -> None:
        self.client = Client("127.0.0.1", broker.port, security).connect()
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client.paho.on_message = self._on_message

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def got(self, topic: str, payload: bytes) -> bool:
        with self._lock:
            return any(t == topic and p == payload for t, p, _ in self.messages)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """The PUBACK's reason code: 0, or 135 (Not authorized) when the ACL refuses."""
        rc = self.client.publish(topic, payload, retain=retain)
        assert rc is not None, "no PUBACK"
        return int(rc.value)

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def peers(secure_broker: Mosquitto, secure_dir: Path) -> Iterator[dict[str, Peer]]:
    """One connected client per user, each subscribed to everything (`sensing/#`): what the
    broker delivers is exactly what the ACL lets it read."""
    made = {u: Peer(secure_broker, login(secure_dir, u))
            for u in (CORE, *GATEWAYS, OPERATOR, RESPONDER, MALLORY)}
    for peer in made.values():
        peer.client.subscribe("sensing/#")
    yield made
    for peer in made.values():
        peer.close()


def payload() -> bytes:
    return f'{{"probe": "{uuid.uuid4().hex}"}}'.encode()


def delivered(peers: dict[str, Peer], reader: str, topic: str, message: bytes) -> bool:
    """Whether `reader` gets `message`, published on `topic` before a marker the reader may
    read: once the marker is in, a message the broker would deliver is in too."""
    marker_topic, writer = {
        CORE: (topics.readings_topic(AREA, "gw-a"), "gw-a"),
        "gw-a": (topics.stored_topic(AREA, "gw-a"), CORE),
        "gw-b": (topics.stored_topic(AREA, "gw-b"), CORE),
        OPERATOR: (topics.alerts_topic(AREA), CORE),
        RESPONDER: (topics.dispatch_topic(RESPONDER_TIER, AREA), CORE),
        MALLORY: (topics.dispatch_topic("volunteers", AREA), CORE),
    }[reader]
    marker = payload()
    assert peers[writer].publish(marker_topic, marker) == 0
    assert wait_until(lambda: peers[reader].got(marker_topic, marker), 10), "marker lost"
    return peers[reader].got(topic, message)


# --- one test per ACL rule: (who, topic, allowed, who would read it) -------------------------

WRITES = [
    # gateways: their own readings and status only
    ("gw-a", topics.readings_topic(AREA, "gw-a"), True, CORE),
    ("gw-a", topics.readings_topic("south", "gw-a"), True, CORE),
    ("gw-a", topics.readings_topic(AREA, "gw-b"), False, CORE),
    ("gw-a", topics.status_topic(AREA, "gw-a"), True, CORE),
    ("gw-a", topics.status_topic(AREA, "gw-b"), False, CORE),
    ("gw-a", topics.alerts_topic(AREA), False, OPERATOR),
    ("gw-a", topics.dispatch_topic("grid", AREA), False, OPERATOR),
    ("gw-a", topics.CORE_STATS_TOPIC, False, OPERATOR),
    ("gw-a", topics.ACK_TOPIC, False, CORE),
    ("gw-a", topics.ack_topic("gw-a"), False, CORE),
    ("gw-a", topics.stored_topic(AREA, "gw-a"), False, "gw-a"),
    # the gateway patterns' `+` under a reserved first level: a fake alert, dispatch or dead
    # letter that every subscriber to alerts/#, dispatch/# or deadletter/# would receive
    ("gw-a", "sensing/v1/alerts/gw-a/readings", False, OPERATOR),
    ("gw-a", "sensing/v1/alerts/gw-a/status", False, OPERATOR),
    ("gw-a", "sensing/v1/dispatch/gw-a/readings", False, OPERATOR),
    ("gw-a", "sensing/v1/deadletter/gw-a/status", False, OPERATOR),
    ("gw-a", "sensing/v1/core/gw-a/status", False, CORE),
    # the core: alerts, dispatch, dead letters, core/; never a gateway's readings or an ack
    (CORE, topics.alerts_topic(AREA), True, OPERATOR),
    (CORE, topics.dispatch_topic("grid", AREA), True, OPERATOR),
    (CORE, topics.dispatch_topic("grid", "readings"), True, OPERATOR),
    (CORE, topics.deadletter_topic(AREA, "gw-a"), True, OPERATOR),
    (CORE, topics.CORE_STATS_TOPIC, True, OPERATOR),
    (CORE, topics.stored_topic(AREA, "gw-a"), True, "gw-a"),
    (CORE, topics.readings_topic(AREA, "gw-a"), False, CORE),
    (CORE, topics.readings_topic(AREA, CORE), False, CORE),
    (CORE, topics.ack_topic(OPERATOR), False, CORE),
    # operators: ack as themselves, nothing else
    (OPERATOR, topics.ack_topic(OPERATOR), True, CORE),
    (OPERATOR, topics.ack_topic(RESPONDER), False, CORE),
    (OPERATOR, topics.ACK_TOPIC, False, CORE),
    (OPERATOR, topics.alerts_topic(AREA), False, OPERATOR),
    (OPERATOR, topics.dispatch_topic("grid", AREA), False, OPERATOR),
    (OPERATOR, topics.deadletter_topic(AREA, "gw-a"), False, OPERATOR),
    (OPERATOR, topics.CORE_STATS_TOPIC, False, OPERATOR),
    (OPERATOR, topics.readings_topic(AREA, "gw-a"), False, CORE),
    (OPERATOR, topics.readings_topic(AREA, OPERATOR), False, CORE),
    (OPERATOR, topics.status_topic(AREA, OPERATOR), False, CORE),
    # responders: ack as themselves, nothing else
    (RESPONDER, topics.ack_topic(RESPONDER), True, CORE),
    (RESPONDER, topics.ack_topic(OPERATOR), False, CORE),
    (RESPONDER, topics.dispatch_topic(RESPONDER_TIER, AREA), False, RESPONDER),
    (RESPONDER, topics.alerts_topic(AREA), False, OPERATOR),
    (RESPONDER, topics.readings_topic(AREA, RESPONDER), False, CORE),
    (MALLORY, topics.ack_topic(MALLORY), True, CORE),
    (MALLORY, topics.ack_topic(RESPONDER), False, CORE),
    (MALLORY, topics.ACK_TOPIC, False, CORE),
]

READS = [
    # (reader, topic, allowed, who writes it)
    ("gw-a", topics.stored_topic(AREA, "gw-a"), True, CORE),
    ("gw-a", topics.stored_topic(AREA, "gw-b"), False, CORE),
    ("gw-a", topics.readings_topic(AREA, "gw-b"), False, "gw-b"),
    ("gw-a", topics.alerts_topic(AREA), False, CORE),
    ("gw-a", topics.dispatch_topic("grid", AREA), False, CORE),
    ("gw-a", topics.ack_topic(OPERATOR), False, OPERATOR),
    (CORE, topics.readings_topic(AREA, "gw-b"), True, "gw-b"),
    (CORE, topics.status_topic(AREA, "gw-b"), True, "gw-b"),
    (CORE, topics.ack_topic(OPERATOR), True, OPERATOR),
    (OPERATOR, topics.alerts_topic(AREA), True, CORE),
    (OPERATOR, topics.dispatch_topic("volunteers", "south"), True, CORE),
    (OPERATOR, topics.deadletter_topic(AREA, "gw-a"), True, CORE),
    (OPERATOR, topics.CORE_STATS_TOPIC, True, CORE),
    (OPERATOR, topics.readings_topic(AREA, "gw-a"), False, "gw-a"),
    (OPERATOR, topics.stored_topic(AREA, "gw-a"), False, CORE),
    (OPERATOR, topics.ack_topic(RESPONDER), False, RESPONDER),
    (RESPONDER, topics.dispatch_topic(RESPONDER_TIER, AREA), True, CORE),
    (RESPONDER, topics.dispatch_topic(RESPONDER_TIER, "south"), True, CORE),
    (RESPONDER, topics.dispatch_topic("volunteers", AREA), False, CORE),
    (RESPONDER, topics.alerts_topic(AREA), False, CORE),
    (RESPONDER, topics.deadletter_topic(AREA, "gw-a"), False, CORE),
    (RESPONDER, topics.readings_topic(AREA, "gw-a"), False, "gw-a"),
    (MALLORY, topics.dispatch_topic("volunteers", AREA), True, CORE),
    (MALLORY, topics.dispatch_topic("volunteers", "south"), False, CORE),
    (MALLORY, topics.dispatch_topic(RESPONDER_TIER, AREA), False, CORE),
]


def _id(rule: tuple[str, str, bool, str]) -> str:
    who, topic, allowed, _ = rule
    return f"{who}-{'may' if allowed else 'may-not'}-{topic.removeprefix('sensing/v1/')}"


@pytest.mark.parametrize("rule", WRITES, ids=[_id(r) for r in WRITES])
def test_write_rule(peers: dict[str, Peer], rule: tuple[str, str, bool, str]) -> None:
    who, topic, allowed, reader = rule
    message = payload()
    rc = peers[who].publish(topic, message)
    assert rc == (0 if allowed else NOT_AUTHORIZED), f"{who} -> {topic}: PUBACK {rc}"
    assert delivered(peers, reader, topic, message) is allowed


@pytest.mark.parametrize("rule", READS, ids=[_id(r) for r in READS])
def test_read_rule(peers: dict[str, Peer], rule: tuple[str, str, bool, str]) -> None:
    reader, topic, allowed, writer = rule
    message = payload()
    assert peers[writer].publish(topic, message) == 0
    assert delivered(peers, reader, topic, message) is allowed


def test_an_operator_cannot_overwrite_the_retained_core_stats(
        secure_broker: Mosquitto, secure_dir: Path, peers: dict[str, Peer]) -> None:
    real = orjson.dumps({"ts": 1, "messages": 7, "marker": uuid.uuid4().hex})
    assert peers[CORE].publish(topics.CORE_STATS_TOPIC, real, retain=True) == 0
    fake = orjson.dumps({"ts": 2, "messages": 0})
    assert peers[OPERATOR].publish(topics.CORE_STATS_TOPIC, fake, retain=True) == NOT_AUTHORIZED
    late = Peer(secure_broker, login(secure_dir, OPERATOR))
    try:
        late.client.subscribe(topics.CORE_STATS_TOPIC)
        assert wait_until(lambda: late.got(topics.CORE_STATS_TOPIC, real), 10)
        assert not late.got(topics.CORE_STATS_TOPIC, fake)
    finally:
        late.close()


# --- logging in ------------------------------------------------------------------------------


def test_anonymous_wrong_password_and_plain_mqtt_are_refused(
        secure_broker: Mosquitto, secure_dir: Path, tmp_path: Path) -> None:
    ca = {"ca_file": secure_dir / "ca.crt"}
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    for security in (BrokerSecurity.model_validate(ca),
                     BrokerSecurity.model_validate({**ca, "username": "gw-a",
                                                    "password_file": wrong}),
                     BrokerSecurity.model_validate({**ca, "username": "nobody",
                                                    "password_file": wrong})):
        with pytest.raises(BrokerRefused, match="refused the login"):
            Client("127.0.0.1", secure_broker.port, security).connect()
    plain = BrokerSecurity(username="gw-a", password_file=secure_dir / "users" / "gw-a.password")
    with pytest.raises(BrokerRefused):
        Client("127.0.0.1", secure_broker.port, plain).connect(timeout=3)


def test_client_certificates_made_by_the_setup_are_accepted(
        secure_broker: Mosquitto, secure_dir: Path) -> None:
    d = secure_dir / "users"
    security = login(secure_dir, "gw-a", cert_file=d / "gw-a.crt", key_file=d / "gw-a.key")
    Client("127.0.0.1", secure_broker.port, security).connect().close()


# --- the setup command -----------------------------------------------------------------------


def test_a_gateway_added_later_logs_in_after_a_reload(
        secure_broker: Mosquitto, secure_dir: Path) -> None:
    added = secure_setup(secure_dir, [User(name="gw-late", role=Role.GATEWAY)])
    assert set(added.created) == {"users.json", "users/gw-late.password", "passwd"}
    with pytest.raises(BrokerRefused, match="refused the login"):
        Client("127.0.0.1", secure_broker.port, login(secure_dir, "gw-late")).connect()
    assert secure_broker.proc is not None
    secure_broker.proc.send_signal(signal.SIGHUP)

    def logs_in() -> bool:
        try:
            Client("127.0.0.1", secure_broker.port, login(secure_dir, "gw-late")).connect().close()
        except BrokerRefused:
            return False
        return True

    assert wait_until(logs_in, 10)



def test_setup_is_idempotent_and_keeps_secrets_private(tmp_path: Path) -> None:
    first = secure_setup(tmp_path, users())
    assert {"ca.crt", "server.crt", "passwd", "acl", "mosquitto.conf", "core.toml",
            "users/gw-a.password"} <= set(first.created)
    core = CoreSettings.load(tmp_path / "core.toml")  # the core's settings for this broker
    assert core.ack_requires_identity and core.mqtt_port == 8883
    assert core.broker_security().password_value() == (
        tmp_path / "users" / f"{CORE}.password").read_text().strip()
    assert core.broker_security().ca_file == tmp_path.resolve() / "ca.crt"
    # nobody can take the core's session over by guessing its client id (adversarial review:
    # a gateway reconnecting as "sensing-core" every second kept the core off the broker)
    assert re.fullmatch(rf"{CORE}-[0-9a-f]{{16}}", core.mqtt_client_id)
    assert core.mqtt_client_id != CoreSettings().mqtt_client_id
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = secure_setup(tmp_path, users())
    assert again.created == []
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    for private in (tmp_path / "ca.key", *(tmp_path / "users").glob("*.password")):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert stat.S_IMODE((tmp_path / "server.key").stat().st_mode) in (0o600, 0o640)
    # every user's password is the one in the password file, and nobody else is in it
    entries = dict(line.split(":", 1) for line in (tmp_path / "passwd").read_text().splitlines())
    assert set(entries) == {CORE, *GATEWAYS, OPERATOR, RESPONDER, MALLORY}
    for name, entry in entries.items():
        password = (tmp_path / "users" / f"{name}.password").read_text().strip()
        assert password_matches(entry, password)
        assert not password_matches(entry, password + "x")
    # a new user is added, the others kept; a rotated password (file deleted) is remade
    (tmp_path / "users" / "gw-b.password").unlink()
    third = secure_setup(tmp_path, [User(name="gw-c", role=Role.GATEWAY)])
    assert set(third.created) == {"users.json", "users/gw-c.password", "users/gw-b.password",
                                  "passwd"}
    entries = dict(line.split(":", 1) for line in (tmp_path / "passwd").read_text().splitlines())
    assert password_matches(entries["gw-b"],
                            (tmp_path / "users" / "gw-b.password").read_text().strip())
    assert "gw-c" in entries and len(entries) == 7


def test_setup_command_json_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    assert sensing_main(["secure-setup", "--dir", str(tmp_path), "--gateway", "gw-a",
                         "--responder", "vol-3:volunteers:north", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {u["name"]: u["role"] for u in out["users"]} == {
        "sensing-core": "core", "gw-a": "gateway", "vol-3": "responder"}
    for name in ("gw-a", "vol-3", "sensing-core"):
        password = (tmp_path / "users" / f"{name}.password").read_text().strip()
        assert password not in json.dumps(out)
    # one name, one role; names are topic levels
    assert sensing_main(["secure-setup", "--dir", str(tmp_path), "--operator", "gw-a"]) == 1
    assert "already a gateway" in capsys.readouterr().err
    assert sensing_main(["secure-setup", "--dir", str(tmp_path), "--gateway", "gw/#"]) == 2
    assert "must match" in capsys.readouterr().err


def test_acl_template_renders_each_role() -> None:
    acl = Template.load().render([User(name="gw-a", role=Role.GATEWAY),
                                  User(name="sensing-core", role=Role.CORE),
                                  User(name="op-1", role=Role.OPERATOR),
                                  User.responder("vol-3:volunteers:north")])
    assert "pattern write sensing/v1/+/%u/readings" in acl
    assert "user gw-a" not in acl  # gateways have only the patterns
    assert "user vol-3\n" in acl and "topic read sensing/v1/dispatch/volunteers/north" in acl
    assert "topic write sensing/v1/ack/op-1" in acl
    assert not [line for line in acl.splitlines() if "{" in line and not line.startswith("#")]


# --- acks bound to their responder (the core) ------------------------------------------------


def sos_reading(device: str, seq: int) -> bytes:
    return orjson.dumps({"device": device, "kind": "wearable", "seq": seq,
                         "ts": int(time.time() * 1000) - 1000, "values": {"sos": 1.0}})


def _raise_sos(pipeline: Pipeline, device: str) -> str:
    out = pipeline.process([Incoming(topics.readings_topic(AREA, "gw-a"),
                                     sos_reading(device, 1), 1, 1, 0)], int(time.time() * 1000))
    alerts = [orjson.loads(p) for t, p in out.messages if t.startswith("sensing/v1/alerts/")]
    assert [a["type"] for a in alerts] == ["wearable.sos"]
    return str(alerts[0]["alert_id"])


def _ack(pipeline: Pipeline, topic: str, alert_id: str, by: str
         ) -> list[tuple[str, dict[str, object]]]:
    payload = orjson.dumps({"alert_id": alert_id, "by": by, "action": "resolve"})
    out = pipeline.process([Incoming(topic, payload, 2, 1, 0)], int(time.time() * 1000))
    return [(t, orjson.loads(p)) for t, p in out.messages
            if t.startswith(("sensing/v1/alerts/", "sensing/v1/deadletter/"))]


@pytest.mark.parametrize("requires_identity", [False, True])
def test_an_ack_speaks_only_for_the_responder_of_its_topic(requires_identity: bool,
                                                            tmp_path: Path) -> None:
    pipeline = Pipeline(CoreSettings(state_dir=tmp_path,
                                     ack_requires_identity=requires_identity))
    alert_id = _raise_sos(pipeline, "band-1")
    forged = _ack(pipeline, topics.ack_topic(MALLORY), alert_id, by=RESPONDER)
    assert [(t, m["code"]) for t, m in forged] == [("sensing/v1/deadletter/_/ack", "ack_forged")]
    bare = _ack(pipeline, topics.ACK_TOPIC, alert_id, by=RESPONDER)
    if requires_identity:  # the contract's topic, which anyone may write, is refused
        assert [(t, m["code"]) for t, m in bare] == [("sensing/v1/deadletter/_/ack",
                                                       "ack_forged")]
        own = _ack(pipeline, topics.ack_topic(RESPONDER), alert_id, by=RESPONDER)
        assert [(m["state"], m["by"]) for _, m in own] == [("resolved", RESPONDER)]
    else:  # contract v1 exactly as written
        assert [(m["state"], m["by"]) for _, m in bare] == [("resolved", RESPONDER)]


# --- end to end: the core, watch and ack over TLS with credentials ---------------------------


@pytest.mark.e2e
def test_core_over_tls_and_mallory_cannot_resolve_an_sos(
        secure_broker: Mosquitto, secure_dir: Path, store: VictoriaMetrics, peers: dict[str, Peer],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = secure_dir
    cli_login = ["--mqtt-port", str(secure_broker.port), "--ca-file", str(d / "ca.crt")]

    def as_user(user: str) -> list[str]:
        return [*cli_login, "--username", user, "--password-file",
                str(d / "users" / f"{user}.password")]

    core_login = {"mqtt_username": CORE, "mqtt_password_file": d / "users" / f"{CORE}.password",
                  "mqtt_ca_file": d / "ca.crt", "ack_requires_identity": True}
    operator = peers[OPERATOR]
    device = f"band-{uuid.uuid4().hex[:6]}"
    with running_core(secure_broker, store, tmp_path / "core", **core_login) as core:
        assert peers["gw-a"].publish(topics.readings_topic(AREA, "gw-a"),
                                     sos_reading(device, 1)) == 0
        # gw-b cannot put an SOS on gw-a's topic
        assert peers["gw-b"].publish(topics.readings_topic(AREA, "gw-a"),
                                     sos_reading(device + "-b", 1)) == NOT_AUTHORIZED

        def alerts(state: str) -> list[dict[str, object]]:
            with operator._lock:
                found = [orjson.loads(p) for t, p, _ in operator.messages
                         if t == topics.alerts_topic(AREA)]
            return [a for a in found if a.get("device") == device and a.get("state") == state]

        assert wait_until(lambda: bool(alerts("raised")), 20), "no SOS alert"
        alert_id = str(alerts("raised")[0]["alert_id"])
        assert alerts("raised")[0]["gateway"] == "gw-a"
        assert store.settled_count(f'reading_seq{{device="{device}"}}', 1) == 1

        # mallory's forged resolve: as grid-7 on her own topic the core refuses it ...
        forged = orjson.dumps({"alert_id": alert_id, "by": RESPONDER, "action": "resolve"})
        assert peers[MALLORY].publish(topics.ack_topic(MALLORY), forged) == 0

        def forged_dead() -> list[dict[str, object]]:
            with operator._lock:
                dead = [orjson.loads(p) for t, p, _ in operator.messages
                        if t == "sensing/v1/deadletter/_/ack"]
            return [x for x in dead if x.get("topic") == topics.ack_topic(MALLORY)]

        assert wait_until(lambda: bool(forged_dead()), 10)
        assert forged_dead()[0]["code"] == "ack_forged"
        # ... on grid-7's topic or the bare one the broker refuses it (sensing ack says so)
        assert sensing_main(["ack", alert_id, "--by", RESPONDER, "--resolve", "--wait", "2",
                             *as_user(MALLORY)]) == 1
        assert "refused the ack on sensing/v1/ack/grid-7" in capsys.readouterr().err
        assert peers[MALLORY].publish(topics.ACK_TOPIC, forged) == NOT_AUTHORIZED
        time.sleep(0.5)
        assert not alerts("resolved") and not alerts("acknowledged")
        still_open = {a.alert_id: a.state.value for a in core.pipeline.book.open_alerts}
        assert still_open.get(alert_id) == "raised"

        # the operator acknowledges as itself, and sensing ack prints what the core did
        assert sensing_main(["ack", alert_id, "--by", OPERATOR, *as_user(OPERATOR)]) == 0
        out = capsys.readouterr().out
        assert "acknowledged: wearable.sos critical" in out and alert_id in out
        assert [a["by"] for a in alerts("acknowledged")] == [OPERATOR]
        # a responder who may not read alerts hears the verdict on its dispatch topic
        assert sensing_main(["ack", alert_id, "--by", RESPONDER, "--resolve",
                             *as_user(RESPONDER)]) == 0
        assert "resolved: wearable.sos" in capsys.readouterr().out
        assert [a["by"] for a in alerts("resolved")] == [RESPONDER]


@pytest.mark.e2e
def test_a_gateway_agent_works_with_only_its_own_rights(
        secure_broker: Mosquitto, secure_dir: Path, store: VictoriaMetrics, tmp_path: Path
) -> None:
    """The real edge agent, logged in as gw-b: its readings and status go through, and the
    core's store confirmations (which it alone may read) reach it, so its buffer empties."""
    from sensing_edge import AgentSettings, GatewayAgent
    from tests.edge.support import ListDriver, smoke_samples

    d = secure_dir
    device = f"smoke-{uuid.uuid4().hex[:6]}"
    core_login = {"mqtt_username": CORE, "mqtt_password_file": d / "users" / f"{CORE}.password",
                  "mqtt_ca_file": d / "ca.crt", "ack_requires_identity": True}
    settings = AgentSettings.model_validate({
        "gateway": "gw-b", "area": AREA, "broker_port": secure_broker.port,
        "buffer_path": tmp_path / "buffer.db", "poll_interval_s": 0.02, "batch_max_age_s": 0.05,
        "security": {"username": "gw-b", "password_file": d / "users" / "gw-b.password",
                     "ca_file": d / "ca.crt"}})
    with running_core(secure_broker, store, tmp_path / "core", **core_login):
        agent = GatewayAgent(settings, [ListDriver(smoke_samples(device, 20))])
        agent.start()
        try:
            assert agent.wait_connected(10)
            assert agent.wait_acked(30), "the core's confirmations did not reach the agent"
        finally:
            agent.stop(5)
        assert store.settled_count(f'reading_seq{{device="{device}"}}', 20) == 20
    assert agent.stats().readings_buffered == 0


@pytest.mark.e2e
def test_watch_over_tls_prints_alerts(secure_broker: Mosquitto, secure_dir: Path,
                                      peers: dict[str, Peer]) -> None:
    import subprocess
    import sys

    d = secure_dir
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensing.cli", "watch", "--json", "--mqtt-port",
         str(secure_broker.port), "--ca-file", str(d / "ca.crt"), "--username", OPERATOR,
         "--password-file", str(d / "users" / f"{OPERATOR}.password")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        message = orjson.dumps({"marker": uuid.uuid4().hex})
        deadline = time.monotonic() + 20
        line = ""
        assert proc.stdout is not None
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline and message.decode() not in line:
            assert peers[CORE].publish(topics.alerts_topic(AREA), message) == 0
            if sel.select(0.5):
                line = proc.stdout.readline()
        assert message.decode() in line
    finally:
        proc.terminate()
        proc.wait(10)


# --- no secret in logs or error messages -----------------------------------------------------

SECRET = "hunter2-Secret"


def test_bad_settings_never_print_a_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    """Problem 12: a misspelt setting's value (a password) was printed in the error."""
    conf = tmp_path / "core.toml"
    conf.write_text(f'mqtt_pasword = "{SECRET}"\nmqtt_port = "{SECRET}-2"\n'
                    f'store_token = ["{SECRET}-3"]\n')
    assert sensing_main(["run", "--config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert "bad settings" in err and "mqtt_pasword" in err and "mqtt_port" in err
    assert SECRET not in err


def test_the_store_password_is_not_logged(store: VictoriaMetrics) -> None:
    """Problem 12: the store URL, password included, was logged at start-up and on every
    failed write."""
    from sensing.services import free_port

    url = f"http://writer:{SECRET}@127.0.0.1:{free_port()}?token={SECRET}"
    writer = StoreWriter(url, "", "sensing", "sensing", timeout_s=1.0)
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    with structlog.testing.capture_logs() as logs, pytest.raises(StoreUnavailable) as exc:
        writer.write([b"reading,device=d-1 v=1 1795478819832"], stop)
    writer.close()
    assert logs and any(e["event"] == "store write failed, retrying" for e in logs)
    assert SECRET not in repr(logs) and SECRET not in str(exc.value)
    assert "writer:***@127.0.0.1" in repr(logs)


@pytest.mark.e2e
def test_the_core_start_up_log_hides_the_store_password(
        secure_broker: Mosquitto, secure_dir: Path, store: VictoriaMetrics, tmp_path: Path
) -> None:
    d = secure_dir
    url = store.url.replace("http://", f"http://core:{SECRET}@")
    with_password = SimpleNamespace(url=url)  # the same store, reached with credentials
    with structlog.testing.capture_logs() as logs, running_core(
            secure_broker, with_password, tmp_path / "core", mqtt_username=CORE,  # type: ignore[arg-type]
            mqtt_password_file=d / "users" / f"{CORE}.password", mqtt_ca_file=d / "ca.crt"):
        assert wait_until(lambda: any(e["event"] == "core running" for e in logs), 10)
    running = next(e for e in logs if e["event"] == "core running")
    assert running["store"] == store.url.replace("http://", "http://core:***@")
    assert SECRET not in repr(logs)


def test_ack_refuses_a_by_that_is_not_one_topic_level(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    assert sensing_main(["ack", "abc", "--by", "grid/7", "--mqtt-port", "1"]) == 2
    assert "topic level" in capsys.readouterr().err


def test_redact() -> None:
    assert redact_url("http://u:p@h:1/x?token=t&org=o") == "http://u:***@h:1/x?token=***&org=o"
    assert redact_url("http://127.0.0.1:8428") == "http://127.0.0.1:8428"
    assert redact_text("retry http://a:b@h/w failed") == "retry http://a:***@h/w failed"
    assert SECRET not in repr(CoreSettings(mqtt_username="u", mqtt_password=SECRET,
                                           store_token=SECRET))


def test_tls_support_password_files_are_the_setups_format(tmp_path: Path) -> None:
    """The edge tests' mosquitto_passwd helper and the setup read the same hashes."""
    f = make_password_file(tmp_path / "pw", {"u": SECRET})
    entry = f.read_text().splitlines()[0].split(":", 1)[1]
    assert password_matches(entry, SECRET) and not password_matches(entry, "other")
