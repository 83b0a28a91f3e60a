"""Gateway link outages in live runs: the relay cuts the link, the broker publishes the
agent's last will, the agent buffers and delivers everything after it reconnects."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensing.services import Mosquitto
from sensing.wire.topics import STATUS_FILTER, status_topic
from sensing_sim import Fleet, FleetSpec, Incident, LiveOptions, run_live
from sensing_sim.live_relay import RelayHub
from tests.helpers import Listener
from tests.sim.test_sim_live import Subscriber


class _Echo:
    """A TCP echo server on loopback."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                return


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def _was_reset(s: socket.socket) -> bool:
    """True if the peer reset the connection (rather than answering or closing it)."""
    try:
        s.sendall(b"x")
        s.recv(16)
    except (ConnectionResetError, BrokenPipeError):
        return True
    return False


def test_relay_carries_bytes_cuts_in_its_window_and_comes_back() -> None:
    echo = _Echo()
    hub = RelayHub("127.0.0.1", echo.port)
    port = hub.add("gw-01", [(0.6, 1.4)])
    hub.start(time.monotonic())
    try:
        big = bytes(range(256)) * 2000  # more than one socket buffer's worth
        assert _roundtrip(port, big) == big
        held = socket.create_connection(("127.0.0.1", port), timeout=2)
        held.sendall(b"ping")
        assert held.recv(16) == b"ping"
        time.sleep(0.9)  # in the window: the held connection is reset, new ones too
        assert _was_reset(held)
        held.close()
        with socket.create_connection(("127.0.0.1", port), timeout=2) as late:
            assert _was_reset(late)
        time.sleep(0.8)  # after the window
        assert _roundtrip(port, b"back") == b"back"
    finally:
        hub.close()
        echo.server.close()
    (record,) = hub.outages()
    assert record.gateway == "gw-01" and (record.start_s, record.end_s) == (0.6, 1.4)
    assert record.cut_at_s is not None and 0.6 <= record.cut_at_s < 0.8
    assert record.restored_at_s is not None and 1.4 <= record.restored_at_s < 1.6
    assert record.connections_cut == 1 and record.connects_refused >= 1


def states(status: Listener, topic: str) -> list[str]:
    """The states a gateway's status topic carried, in order of arrival."""
    return [str(m["state"]) for m in status.json(topic)]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto.start(tmp_path) as b:
        yield b


@pytest.mark.e2e
@pytest.mark.parametrize("processes", [1, 2])
def test_outage_shows_offline_then_online_and_loses_no_reading(
    broker: Mosquitto, processes: int
) -> None:
    fleet = Fleet(FleetSpec(n_gateways=2, n_devices=20, interval_s=0.5, seed=5))
    gw = fleet.gateways[0]
    fleet.add_incident(Incident.of("gateway.offline", gw.id, gw.id, gw.area, 2.0, 4.5))
    status, readings = Listener(broker, STATUS_FILTER), Subscriber(broker.port)
    report = run_live(fleet, LiveOptions(
        port=broker.port, duration_s=8.0, processes=processes, reconnect_max_s=0.5,
        batch_max_age_s=0.25,
    ))
    readings.wait_for(lambda: len(readings.names) >= report.readings_sent_unique, 15)
    time.sleep(0.5)  # the last status messages
    status.close()
    readings.close()

    assert report.all_acked and report.processes == processes
    # 20 devices, 2 readings/s each, ~8 s; the cut gateway's readings all came later
    assert 280 <= report.readings_sampled == report.readings_sent_unique == report.readings_acked
    assert len(readings.names) == report.readings_sampled, "a reading was lost"
    assert states(status, status_topic(gw.area, gw.id))[:3] == ["online", "offline", "online"]
    assert states(status, status_topic(gw.area, gw.id))[-1] == "offline"  # stopped at the end
    other = fleet.gateways[1]
    assert "offline" not in states(status, status_topic(other.area, other.id))[:-1]
    (outage,) = report.outages
    assert outage["gateway"] == gw.id and outage["connections_cut"] == 1
    assert 2.0 <= float(outage["cut_at_s"]) < 2.3  # type: ignore[arg-type]
    assert 4.5 <= float(outage["restored_at_s"]) < 4.8  # type: ignore[arg-type]
    assert report.connects == 3
    assert any(i["type"] == "gateway.offline" for i in report.incidents)
