"""BulkSession's MQTT conformance against a real Mosquitto: QoS 1 redelivery, the persistent
session, keepalive (idle, and a broker that stops answering), oversize frames, acks of an
earlier connection, publishes and their delivery across a broker restart, back-pressure, and
TLS with credentials as `sensing secure-setup` makes them."""

from __future__ import annotations

import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sensing.ingest.received import Received
from sensing.ingest.session import BulkSession
from sensing.security.acl import Role, User
from sensing.security.setup import secure_setup
from sensing.services import Mosquitto
from sensing.settings import CoreSettings
from sensing.wire import topics
from sensing_edge.security import BrokerSecurity
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

Message = tuple[str, bytes]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Publisher:
    """A plain paho client publishing at QoS 1 and waiting for each PUBACK."""

    def __init__(self, port: int, security: BrokerSecurity | None = None) -> None:
        from sensing_edge.security import apply_security

        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        if security is not None:
            apply_security(self.client, security)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, messages: list[Message]) -> None:
        infos = [self.client.publish(t, p, qos=1) for t, p in messages]
        for info in infos:
            info.wait_for_publish(20)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker: Mosquitto) -> Iterator[Publisher]:
    p = Publisher(broker.port)
    yield p
    p.close()


@contextmanager
def session(port: int, client_id: str, **options: object) -> Iterator[BulkSession]:
    s = BulkSession("127.0.0.1", port, client_id, **options)  # type: ignore[arg-type]
    s.start(15)
    try:
        yield s
    finally:
        s.stop()


def readings(gateway: str, n: int, size: int = 200, start: int = 0) -> list[Message]:
    topic = topics.readings_topic("t", gateway)
    return [(topic, f"{i:08d}".encode().ljust(size, b".")) for i in range(start, start + n)]


def take(s: BulkSession, n: int, timeout: float = 20.0, ack: bool = True
         ) -> tuple[list[Message], list[Received]]:
    """Receive until `n` messages came (acknowledging each batch if `ack`)."""
    got: list[Message] = []
    batches: list[Received] = []

    def more() -> bool:
        r = s.receive(1000, 0.05)
        if len(r):
            batches.append(r)
            got.extend((m.topic, m.payload) for m in r.messages())
            if ack:
                s.ack(r)
        return len(got) >= n

    assert wait_until(more, timeout), f"{len(got)} of {n} messages"
    return got, batches


def test_unacknowledged_messages_come_again_with_the_same_content(
        broker: Mosquitto, publisher: Publisher) -> None:
    gateway, client_id = unique("gw"), unique("core")
    sent = readings(gateway, 300)
    with session(broker.port, client_id) as s:
        publisher.send(sent)
        got, batches = take(s, 300, ack=False)
        assert got == sent
        everything = Received.concat(batches)
        acked, _ = everything.split(100)
        s.ack(acked)
        # the PUBACKs are on their way once a later publish of ours is acknowledged
        assert s.publish(topics.alerts_topic("t"), b"marker").wait(10)
    with session(broker.port, client_id) as s:
        again, batches = take(s, 200)
        assert again == sent[100:]  # the same topics and payloads, the acknowledged ones not
        assert all(b.generation == s.generation for b in batches)
        assert len(s.receive(1000, 0.5)) == 0


def test_messages_published_while_the_core_is_away_arrive_when_it_is_back(
        broker: Mosquitto, publisher: Publisher) -> None:
    gateway, client_id = unique("gw"), unique("core")
    with session(broker.port, client_id):
        pass  # subscribed: the broker keeps its session
    sent = readings(gateway, 2000)
    publisher.send(sent)
    with session(broker.port, client_id) as s:
        got, _ = take(s, 2000)
        assert got == sent


def test_an_idle_connection_stays_up_beyond_the_keepalive(broker: Mosquitto,
                                                          publisher: Publisher) -> None:
    with session(broker.port, unique("core"), keepalive_s=1) as s:
        generation = s.generation
        assert not wait_until(lambda: s.generation != generation or not s.connected.is_set(),
                              4.0)
        sent = readings(unique("gw"), 3)
        publisher.send(sent)
        assert take(s, 3)[0] == sent


def test_a_broker_that_stops_answering_is_left_and_found_again(tmp_path: Path) -> None:
    with Mosquitto.start(tmp_path) as broker, session(
            broker.port, unique("core"), keepalive_s=1, connect_timeout_s=2.0,
            reconnect_delays=(0.5, 1.0)) as s:
        generation = s.generation
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            assert wait_until(lambda: not s.connected.is_set(), 10), "the silence went unseen"
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        assert wait_until(s.connected.is_set, 20), "no reconnect after SIGCONT"
        assert s.generation > generation
        publisher = Publisher(broker.port)
        try:
            sent = readings(unique("gw"), 5)
            publisher.send(sent)
            assert take(s, 5)[0] == sent
        finally:
            publisher.close()


def test_an_oversize_payload_arrives_cut_with_its_size_and_the_next_one_intact(
        broker: Mosquitto, publisher: Publisher) -> None:
    limit = 1 << 20
    gateway = unique("gw")
    topic = topics.readings_topic("t", gateway)
    huge, over, fine = b"h" * (3 << 20), b"o" * (limit + 500), b"next"
    with session(broker.port, unique("core"), max_payload_bytes=limit) as s:
        publisher.send([(topic, huge), (topic, over), (topic, fine)])
        _, batches = take(s, 3)
        r = Received.concat(batches)
        assert [r.payload(i) for i in range(3)] == [huge[:limit + 1], over[:limit + 1], fine]
        assert r.payload_size.tolist() == [3 << 20, limit + 500, 4]
        assert {r.topic(i) for i in range(3)} == {topic}


def test_an_ack_from_an_earlier_connection_is_not_sent(tmp_path: Path) -> None:
    """After a reconnect the broker sends the unacknowledged messages again, with the same
    packet ids: a stale batch's PUBACKs would acknowledge them unprocessed."""
    client_id = unique("core")
    sent = readings(unique("gw"), 50)
    with Mosquitto.start(tmp_path) as broker:
        with session(broker.port, client_id, reconnect_delays=(0.2, 1.0)) as s:
            publisher = Publisher(broker.port)
            publisher.send(sent)
            publisher.close()
            _, stale = take(s, 50, ack=False)
            broker.restart()
            assert wait_until(lambda: s.connected.is_set() and s.generation > stale[0].generation)
            again, fresh = take(s, 50, ack=False)
            assert again == sent and fresh[0].generation == s.generation
            for batch in stale:
                s.ack(batch)  # not sent: a later connection
            assert s.publish(topics.alerts_topic("t"), b"marker").wait(10)
        with session(broker.port, client_id) as s:
            assert take(s, 50)[0] == sent  # still unacknowledged: they come a third time


def test_a_publish_is_delivered_and_one_made_while_the_broker_is_down_goes_once_it_is_back(
        tmp_path: Path) -> None:
    gateway = unique("gw")
    topic = topics.readings_topic("t", gateway)
    with Mosquitto.start(tmp_path) as broker, session(
            broker.port, unique("core"), reconnect_delays=(0.2, 1.0)) as s:
        first = s.publish(topic, b"before")
        assert first.wait(10) and s.outstanding == 0
        assert take(s, 1)[0] == [(topic, b"before")]  # we are subscribed to readings
        broker.stop()
        assert wait_until(lambda: not s.connected.is_set(), 10)
        during = s.publish(topic, b"during")
        assert not during.delivered and s.outstanding == 1
        broker.restart()
        assert during.wait(20), "not delivered after the broker came back"
        assert s.outstanding == 0
        got, _ = take(s, 1)
        assert got[0] == (topic, b"during")


def test_a_consumer_that_does_not_receive_keeps_memory_bounded(tmp_path: Path) -> None:
    """With the broker's in-flight window off, it sends as fast as we read: the session stops
    reading at its bounds, the broker queues the rest, the connection stays up, nothing is
    lost."""
    n, bound, chunk = 20_000, 500, 64 << 10
    sent = readings(unique("gw"), n)
    with Mosquitto.start(tmp_path, extra_conf="max_inflight_messages 0") as broker, session(
            broker.port, unique("core"), keepalive_s=1, max_pending_messages=bound,
            max_pending_bytes=1 << 30, chunk_bytes=chunk) as s:
        publisher = Publisher(broker.port)
        publisher.send(sent)
        publisher.close()
        generation = s.generation
        assert wait_until(lambda: s.pending[0] >= bound, 10)
        # idle beyond the keepalive while holding back: still connected, still bounded
        assert not wait_until(lambda: not s.connected.is_set(), 3.0)
        messages, size = s.pending
        assert bound <= messages <= bound + chunk // 200
        assert size <= messages * 200
        got, _ = take(s, n, timeout=60)
        assert got == sent and s.generation == generation


# --- TLS and credentials ---------------------------------------------------------------------

CORE = "sensing-core"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mosquitto, Path]]:
    directory = tmp_path_factory.mktemp("secure")
    secure_setup(directory, [User(name="gw-a", role=Role.GATEWAY)], client_certs=True)
    with Mosquitto.start(tmp_path_factory.mktemp("secure-broker"),
                         conf_source=directory / "mosquitto.conf") as broker:
        yield broker, directory


def test_tls_with_credentials_and_a_client_certificate_as_the_core_is_set_up(
        secure: tuple[Mosquitto, Path]) -> None:
    broker, d = secure
    settings = CoreSettings.load(d / "core.toml").model_copy(update={"mqtt_port": broker.port})
    core = BulkSession.from_settings(settings)
    assert settings.broker_security().uses_tls
    core.start(15)
    gateway = Publisher(broker.port, BrokerSecurity(
        username="gw-a", password_file=d / "users" / "gw-a.password", ca_file=d / "ca.crt",
        cert_file=d / "users" / "gw-a.crt", key_file=d / "users" / "gw-a.key"))
    try:
        sent = readings("gw-a", 500)
        sent = [(topics.readings_topic("north", "gw-a"), p) for _, p in sent]
        gateway.send(sent)
        assert take(core, 500)[0] == sent
        assert core.publish(topics.alerts_topic("north"), b"{}").wait(10)
    finally:
        gateway.close()
        core.stop()


@pytest.mark.parametrize("wrong", ["password", "system CAs"])
def test_a_wrong_password_or_an_untrusted_broker_does_not_connect(
        secure: tuple[Mosquitto, Path], tmp_path: Path, wrong: str) -> None:
    broker, d = secure
    if wrong == "password":
        (tmp_path / "pw").write_text("not-it\n")
        security = BrokerSecurity(username=CORE, password_file=tmp_path / "pw",
                                  ca_file=d / "ca.crt")
    else:  # the broker's CA is not among the system's: its certificate must not pass
        security = BrokerSecurity(username=CORE, password_file=d / "users" / f"{CORE}.password",
                                  tls=True)
    s = BulkSession("127.0.0.1", broker.port, unique("core"), security=security)
    try:
        with pytest.raises(ConnectionError):
            s.start(3)
    finally:
        s.stop()


def test_receive_takes_at_most_max_bytes_of_payload_but_at_least_one_message(
        broker: Mosquitto, publisher: Publisher) -> None:
    sent = readings(unique("gw"), 10, size=1000)
    with session(broker.port, unique("core")) as s:
        publisher.send(sent)
        assert wait_until(lambda: s.pending[0] == 10)
        first = s.receive(100, 1.0, max_bytes=2500)
        one = s.receive(100, 1.0, max_bytes=10)
        rest = s.receive(100, 0.5)
        assert [len(first), len(one), len(rest)] == [2, 1, 7]
        assert [m.payload for r in (first, one, rest) for m in r.messages()] == [
            p for _, p in sent]


def test_a_malformed_packet_drops_the_connection_and_the_session_comes_back() -> None:
    """Mosquitto never sends one: a small TCP server on loopback plays the broker."""
    server = socket.create_server(("127.0.0.1", 0))
    connections: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            connections.append(conn)
            conn.recv(1024)  # CONNECT
            conn.sendall(b"\x20\x02\x00\x00")
            conn.recv(1024)  # SUBSCRIBE, id 0xFFFF
            conn.sendall(b"\x90\x07\xff\xff\x01\x01\x01\x01\x01")  # SUBACK
            if len(connections) == 1:  # five bytes of remaining length
                conn.sendall(b"\x30\xff\xff\xff\xff\x01")

    threading.Thread(target=serve, daemon=True).start()
    s = BulkSession("127.0.0.1", server.getsockname()[1], unique("core"),
                    reconnect_delays=(0.1, 0.5))
    try:
        s.start(10)
        assert wait_until(lambda: len(connections) == 2 and s.connected.is_set(), 10)
        assert s.generation == 2
    finally:
        s.stop()
        server.close()
        for conn in connections:
            conn.close()


def test_a_publish_waiting_for_pubacks_behind_held_back_messages_does_not_deadlock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The step loop publishes (alerts, dispatch) while the queue it has not taken is at its
    bounds: the PUBACKs it needs come behind messages the I/O thread holds back, so a publish
    does not wait for room then (before, the core stopped for good: 10,000 cases escalating
    beside a full ingest); the queue stays within its bounds, and once taken, everything comes
    and the publishes are acknowledged."""
    import sensing.ingest.session as bulk

    monkeypatch.setattr(bulk, "MAX_OUTSTANDING", 50)
    n, bound = 2_000, 100
    backlog = readings(unique("gw"), n)
    with Mosquitto.start(tmp_path, extra_conf="max_inflight_messages 0") as broker, session(
            broker.port, unique("core"), max_pending_messages=bound,
            max_pending_bytes=1 << 30, chunk_bytes=32 << 10) as s:
        publisher = Publisher(broker.port)
        publisher.send(backlog)
        assert wait_until(lambda: s.pending[0] >= bound, 10)
        # the broker keeps sending; our publishes' PUBACKs queue behind its messages
        feeder = threading.Thread(target=publisher.send, args=(readings(unique("gw"), n),))
        feeder.start()
        done = threading.Event()

        def publish_many() -> None:
            for i in range(200):  # four times the room
                s.publish(topics.alerts_topic("t"), f"alert {i}".encode())
            done.set()

        threading.Thread(target=publish_many, daemon=True).start()
        assert done.wait(20), "publish waited for PUBACKs the session never read"
        messages, _ = s.pending
        assert messages <= bound + (32 << 10) // 200 + 1
        feeder.join(30)
        publisher.close()
        got, _ = take(s, 2 * n, timeout=60)
        assert len(got) == 2 * n
        assert wait_until(lambda: not s._outstanding, 20)  # every publish acknowledged
