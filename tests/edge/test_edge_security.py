"""Broker security for the edge agent: `BrokerSecurity` validation, and `apply_security` against
a real Mosquitto with passwords, TLS (a CA made by the test) and mutual TLS."""

from __future__ import annotations

import os
import ssl
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from sensing.services import Mosquitto
from sensing_edge.security import BrokerSecurity, apply_security
from tests.edge.tls_support import (
    CertKey,
    Pki,
    Probe,
    make_ca,
    make_cert,
    make_password_file,
    make_pki,
    start_secure_broker,
)

USER, PASSWORD = "gw-17", "s3cret-Ünïcode pass"
READER, READER_PASSWORD = "operator", "another-secret"
REFUSED = {"Bad user name or password", "Not authorized"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertKey:
    """A second CA the brokers know nothing about."""
    return make_ca(tmp_path_factory.mktemp("other-pki"), "other-ca")


@pytest.fixture(scope="module")
def passwords(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_password_file(
        tmp_path_factory.mktemp("passwd") / "passwd", {USER: PASSWORD, READER: READER_PASSWORD}
    )


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory, passwords: Path) -> Iterator[Mosquitto]:
    """Plain TCP, username/password required."""
    with start_secure_broker(tmp_path_factory.mktemp("auth"), password_file=passwords) as b:
        yield b


@pytest.fixture(scope="module")
def tls_broker(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, passwords: Path
) -> Iterator[Mosquitto]:
    """TLS with the test CA's server certificate, and passwords: the shape of a real deployment."""
    with start_secure_broker(
        tmp_path_factory.mktemp("tls"), tls=pki.server, ca=pki.ca, password_file=passwords
    ) as b:
        yield b


@pytest.fixture(scope="module")
def mtls_broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Mosquitto]:
    """TLS that requires a client certificate signed by the test CA (no passwords)."""
    with start_secure_broker(
        tmp_path_factory.mktemp("mtls"), tls=pki.server, ca=pki.ca, require_certificate=True
    ) as b:
        yield b


@pytest.fixture
def probe() -> Iterator[Callable[..., Probe]]:
    """`probe(port, security)` -> a Probe, closed after the test."""
    made: list[Probe] = []

    def make(port: int, security: BrokerSecurity) -> Probe:
        p = Probe(port, security)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def topic() -> str:
    return f"sensing/v1/test-area/gw-{uuid.uuid4().hex[:8]}/readings"


def round_trip(
    port: int, sender: BrokerSecurity, receiver: BrokerSecurity, mk: Callable[..., Probe]
) -> None:
    """`sender` publishes at QoS 1 (PUBACK awaited); `receiver` must get exactly that payload."""
    rx = mk(port, receiver).connect()
    assert rx.connected, (rx.connack, rx.connect_error)
    t = topic()
    rx.subscribe(t)
    tx = mk(port, sender).connect()
    assert tx.connected, (tx.connack, tx.connect_error)
    payload = f'{{"device": "smoke-1", "seq": 1, "n": "{uuid.uuid4().hex}"}}'.encode()
    tx.publish(t, payload)
    assert rx.wait_message(t) == payload


def assert_refused(p: Probe) -> None:
    """The attempt ended without a successful CONNACK: a failure CONNACK, a TLS/socket error, or
    the broker closing the connection."""
    assert not p.connected, f"connected, but should have been refused: {p.connack}"
    assert p.connack is not None or p.connect_error is not None or p.disconnected, (
        "neither refused nor connected within the timeout"
    )


# --- username / password ---------------------------------------------------------------------


def test_password_auth_publish_and_receive(
    auth_broker: Mosquitto, probe: Callable[..., Probe]
) -> None:
    round_trip(
        auth_broker.port,
        BrokerSecurity(username=USER, password=PASSWORD),
        BrokerSecurity(username=READER, password=READER_PASSWORD),
        probe,
    )


def test_wrong_password_refused_with_connack(
    auth_broker: Mosquitto, probe: Callable[..., Probe]
) -> None:
    p = probe(auth_broker.port, BrokerSecurity(username=USER, password=PASSWORD + "x")).connect()
    assert p.connack is not None, "no CONNACK"
    assert p.connack.is_failure
    assert p.connack.getName() in REFUSED


def test_anonymous_refused(auth_broker: Mosquitto, probe: Callable[..., Probe]) -> None:
    """The broker config's later `allow_anonymous false` overrides the project's `true`."""
    p = probe(auth_broker.port, BrokerSecurity()).connect()
    assert p.connack is not None and p.connack.is_failure
    assert p.connack.getName() in REFUSED


# --- TLS -------------------------------------------------------------------------------------


def test_tls_publish_and_receive_with_password_file(
    tls_broker: Mosquitto, pki: Pki, probe: Callable[..., Probe], tmp_path: Path
) -> None:
    pw_file = tmp_path / "password"
    pw_file.write_text(f"  {PASSWORD}  \nsecond line is ignored\n")
    round_trip(
        tls_broker.port,
        BrokerSecurity(username=USER, password_file=pw_file, ca_file=pki.ca.cert),
        BrokerSecurity(username=READER, password=READER_PASSWORD, ca_file=pki.ca.cert),
        probe,
    )


def test_tls_listener_refuses_plain_mqtt(
    tls_broker: Mosquitto, probe: Callable[..., Probe]
) -> None:
    p = probe(tls_broker.port, BrokerSecurity(username=USER, password=PASSWORD)).connect(3.0)
    assert_refused(p)


def test_tls_client_trusting_another_ca_fails_handshake(
    tls_broker: Mosquitto, other_ca: CertKey, probe: Callable[..., Probe]
) -> None:
    p = probe(
        tls_broker.port, BrokerSecurity(username=USER, password=PASSWORD, ca_file=other_ca.cert)
    ).connect(3.0)
    assert isinstance(p.connect_error, ssl.SSLCertVerificationError), p.connect_error
    assert "certificate verify failed" in str(p.connect_error)
    assert not p.connected


def test_tls_system_store_does_not_trust_test_ca(
    tls_broker: Mosquitto, probe: Callable[..., Probe]
) -> None:
    """`tls=True` verifies against the system CAs, which do not include the test's CA."""
    p = probe(tls_broker.port, BrokerSecurity(username=USER, password=PASSWORD, tls=True))
    p.connect(3.0)
    assert isinstance(p.connect_error, ssl.SSLCertVerificationError), p.connect_error


def test_hostname_is_checked_and_skip_only_skips_hostname(
    tmp_path: Path, pki: Pki, other_ca: CertKey, probe: Callable[..., Probe]
) -> None:
    """A broker whose certificate names only broker.invalid, reached at 127.0.0.1."""
    with start_secure_broker(tmp_path, tls=pki.server_wrong_name, ca=pki.ca) as broker:
        strict = probe(broker.port, BrokerSecurity(ca_file=pki.ca.cert)).connect(3.0)
        assert isinstance(strict.connect_error, ssl.SSLCertVerificationError)
        assert "127.0.0.1" in str(strict.connect_error)  # "IP address mismatch"

        skip = BrokerSecurity(ca_file=pki.ca.cert, tls_insecure_skip_hostname=True)
        assert probe(broker.port, skip).connect().connected

        # the chain is still verified
        wrong_ca = BrokerSecurity(ca_file=other_ca.cert, tls_insecure_skip_hostname=True)
        p = probe(broker.port, wrong_ca).connect(3.0)
        assert isinstance(p.connect_error, ssl.SSLCertVerificationError)


def test_tls_context_settings(pki: Pki) -> None:
    """What `apply_security` hands paho: CERT_REQUIRED, host name checked, TLS 1.2 at least."""

    def context(security: BrokerSecurity) -> ssl.SSLContext:
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        apply_security(client, security)
        ctx = client._ssl_context
        assert ctx is not None
        return ctx

    ctx = context(BrokerSecurity(ca_file=pki.ca.cert))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2

    ctx = context(BrokerSecurity(ca_file=pki.ca.cert, tls_insecure_skip_hostname=True))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert not ctx.check_hostname

    plain = mqtt.Client(CallbackAPIVersion.VERSION2)
    apply_security(plain, BrokerSecurity(username=USER, password=PASSWORD))
    assert plain._ssl_context is None


# --- mutual TLS ------------------------------------------------------------------------------


def test_mtls_client_certificate_connects(
    mtls_broker: Mosquitto, pki: Pki, probe: Callable[..., Probe]
) -> None:
    with_cert = BrokerSecurity(
        ca_file=pki.ca.cert, cert_file=pki.client.cert, key_file=pki.client.key
    )
    round_trip(mtls_broker.port, with_cert, with_cert, probe)


def test_mtls_client_without_certificate_refused(
    mtls_broker: Mosquitto, pki: Pki, probe: Callable[..., Probe]
) -> None:
    p = probe(mtls_broker.port, BrokerSecurity(ca_file=pki.ca.cert)).connect(3.0)
    # With TLS 1.3 the client finishes its side of the handshake before the broker checks the
    # client certificate, so the refusal shows as the connection closing without a CONNACK.
    assert_refused(p)
    assert p.connack is None


def test_mtls_client_certificate_from_another_ca_refused(
    mtls_broker: Mosquitto,
    pki: Pki,
    other_ca: CertKey,
    tmp_path: Path,
    probe: Callable[..., Probe],
) -> None:
    rogue = make_cert(tmp_path, "rogue-client", other_ca, "gw-rogue", usage="clientAuth")
    p = probe(
        mtls_broker.port,
        BrokerSecurity(ca_file=pki.ca.cert, cert_file=rogue.cert, key_file=rogue.key),
    ).connect(3.0)
    assert_refused(p)
    assert p.connack is None


# --- validation ------------------------------------------------------------------------------


def _error(**kw: object) -> str:
    with pytest.raises(ValidationError) as e:
        BrokerSecurity(**kw)  # type: ignore[arg-type]
    return str(e.value)


def test_password_and_password_file_exclusive(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("x\n")
    msg = _error(username="u", password="p", password_file=f)
    assert "password and password_file are exclusive" in msg


@pytest.mark.parametrize("which", ["password", "password_file"])
def test_password_needs_username(tmp_path: Path, which: str) -> None:
    f = tmp_path / "pw"
    f.write_text("x\n")
    msg = _error(**{which: "p" if which == "password" else f})
    assert f"{which} needs a username" in msg


def test_empty_password_file(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("   \nsecond\n")
    msg = _error(username="u", password_file=f)
    assert "password_file" in msg and str(f) in msg


def test_cert_and_key_go_together(pki: Pki) -> None:
    assert "cert_file and key_file go together" in _error(
        ca_file=pki.ca.cert, cert_file=pki.client.cert
    )
    assert "cert_file and key_file go together" in _error(
        ca_file=pki.ca.cert, key_file=pki.client.key
    )


def test_client_certificate_needs_ca_file(pki: Pki) -> None:
    msg = _error(cert_file=pki.client.cert, key_file=pki.client.key, tls=True)
    assert "need ca_file" in msg


def test_skip_hostname_needs_tls() -> None:
    assert "tls_insecure_skip_hostname needs TLS" in _error(tls_insecure_skip_hostname=True)


@pytest.mark.parametrize("field", ["ca_file", "cert_file", "key_file", "password_file"])
def test_missing_file_named(tmp_path: Path, field: str) -> None:
    missing = tmp_path / "nope" / f"{field}.pem"
    with pytest.raises(ValidationError) as e:
        BrokerSecurity(username="u", **{field: missing})  # type: ignore[arg-type]
    err = e.value.errors()[0]
    assert err["loc"] == (field,)
    assert field in err["msg"] and str(missing) in err["msg"] and "does not exist" in err["msg"]


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    msg = _error(ca_file=tmp_path)
    assert "ca_file" in msg and "not a regular file" in msg


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_named(tmp_path: Path) -> None:
    f = tmp_path / "ca.pem"
    f.write_text("x")
    f.chmod(0)
    msg = _error(ca_file=f)
    assert "ca_file" in msg and "cannot read" in msg


def test_unknown_option_forbidden() -> None:
    assert "tls_version" in _error(tls_version="1.3")


def test_password_never_shown(tmp_path: Path) -> None:
    s = BrokerSecurity(username=USER, password=PASSWORD)
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.model_dump())):
        assert PASSWORD not in text
    assert s.password_value() == PASSWORD
    f = tmp_path / "pw"
    f.write_text(PASSWORD + "\n")
    s2 = BrokerSecurity(username=USER, password_file=f)
    assert PASSWORD not in repr(s2) and PASSWORD not in str(s2)
    assert s2.password_value() == PASSWORD
    # nor in a validation error about the model
    assert PASSWORD not in _error(password=PASSWORD)


def test_frozen_and_uses_tls(pki: Pki) -> None:
    s = BrokerSecurity(username="u")
    with pytest.raises(ValidationError):
        s.username = "v"
    assert not s.uses_tls
    assert BrokerSecurity(tls=True).uses_tls
    assert BrokerSecurity(ca_file=pki.ca.cert).uses_tls
    assert BrokerSecurity(ca_file=str(pki.ca.cert)).ca_file == pki.ca.cert  # type: ignore[arg-type]


def test_the_agent_publishes_over_tls_with_its_password(
    tls_broker: Mosquitto, pki: Pki, passwords: Path, probe: Callable[..., Probe],
    tmp_path: Path
) -> None:
    """GatewayAgent itself, configured as a deployed gateway would be (TLS trusting the test
    CA, a user and a password file): its readings reach an authorised reader."""
    from sensing.wire import decode_readings
    from sensing.wire.topics import readings_topic
    from sensing_edge import AgentSettings, GatewayAgent
    from tests.edge.support import ListDriver, smoke_samples

    gateway = f"gw-{uuid.uuid4().hex[:8]}"
    reader = probe(tls_broker.port, BrokerSecurity.model_validate(
        {"username": READER, "password": READER_PASSWORD, "ca_file": pki.ca.cert})).connect()
    assert reader.connected
    reader.subscribe(readings_topic("tls-area", gateway))
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    settings = AgentSettings.model_validate({
        "gateway": gateway, "area": "tls-area", "broker_port": tls_broker.port,
        "poll_interval_s": 0.02, "batch_max_age_s": 0.05,
        "confirm": "broker",  # no core here on purpose: the broker's PUBACK confirms
        "security": {"username": USER, "password_file": tmp_path / "pw",
                     "ca_file": pki.ca.cert}})
    agent = GatewayAgent(settings, [ListDriver(smoke_samples("smoke-tls", 7))])
    agent.start()
    try:
        assert agent.wait_connected(10)
        assert agent.wait_acked(10)
        payload = reader.wait_message(readings_topic("tls-area", gateway))
    finally:
        agent.stop(5)
    assert payload is not None
    batch = decode_readings(payload, gateway, "tls-area", 1 << 20).batch
    assert [r["seq"] for r in batch.readings()] == list(range(7))


def test_the_agent_with_a_wrong_password_never_connects_and_keeps_its_readings(
    tls_broker: Mosquitto, pki: Pki
) -> None:
    from sensing_edge import AgentSettings, GatewayAgent
    from tests.edge.support import ListDriver, smoke_samples

    settings = AgentSettings.model_validate({
        "gateway": f"gw-{uuid.uuid4().hex[:8]}", "area": "tls-area",
        "broker_port": tls_broker.port, "poll_interval_s": 0.02, "reconnect_min_s": 0.2,
        "reconnect_max_s": 0.5,
        "security": {"username": USER, "password": "wrong", "ca_file": pki.ca.cert}})
    agent = GatewayAgent(settings, [ListDriver(smoke_samples("smoke-tls", 3))])
    agent.start()
    try:
        assert not agent.wait_connected(2)
    finally:
        assert agent.stop(0) is False
    assert agent.stats().readings_buffered == 3
