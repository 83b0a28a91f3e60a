"""`sensing-edge --config FILE`: the gateway's TOML file, its checks and a run from it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from sensing.services import Mosquitto, free_port
from sensing.wire.topics import readings_topic
from sensing_edge.cli import main
from sensing_edge.config import load_config
from tests.edge.support import Message, Subscriber, readings_of

EXAMPLE = Path(__file__).resolve().parents[2] / "edge" / "gateway.example.toml"


def test_the_example_file_is_valid_and_says_what_it_sets() -> None:
    config = load_config(EXAMPLE)
    settings = config.agent_settings()
    assert (settings.gateway, settings.area) == ("gw-0017", "shuangqiaozi")
    assert settings.buffer_path == Path("/var/lib/sensing-edge/buffer.db")
    assert settings.batch_max_readings == 200 and not settings.security.uses_tls
    assert settings.confirm == "core" and settings.max_unconfirmed_readings == 50_000
    assert [d.type for d in config.drivers] == ["local"]
    assert len(settings.alarms.rules) == 6


def test_check_prints_the_settings_with_secrets_hidden(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    (tmp_path / "gw.toml").write_text(
        '[gateway]\nid = "gw-1"\narea = "a-1"\n'
        '[broker]\nusername = "gw-1"\npassword = "s3cret-pass"\n'
        '[buffer]\npath = "state/buffer.db"\n'
        '[[drivers]]\ntype = "simulated"\ndevices = 3\n')
    assert main(["--config", str(tmp_path / "gw.toml"), "--check", "--json"]) == 0
    out = capsys.readouterr().out
    doc = orjson.loads(out)
    assert "s3cret-pass" not in out and doc["broker"]["username"] == "gw-1"
    assert doc["buffer"]["path"] == str(tmp_path / "state" / "buffer.db")  # next to the file


@pytest.mark.parametrize(("text", "named"), [
    ('[gateway]\nid = "gw-1"\narea = "a"\n[[drivers]]\ntype = "simulated"\n[publish]\n'
     "batch_max_readngs = 5\n", "publish.batch_max_readngs"),
    ('[gateway]\nid = "gw 1"\narea = "a"\n[[drivers]]\ntype = "simulated"\n', "gateway.id"),
    ('[gateway]\nid = "gw-1"\narea = "a"\n', "drivers"),
    ('[gateway]\nid = "gw-1"\narea = "a"\n[[drivers]]\ntype = "serial"\n', "drivers.0"),
    ('[gateway]\nid = "gw-1"\narea = "a"\n[[drivers]]\ntype = "simulated"\n[broker]\n'
     'ca_file = "missing.pem"\n', "ca_file"),
    ('[gateway]\nid = "gw-1"\narea = "a"\n[[drivers]]\ntype = "simulated"\n[publish]\n'
     "batch_max_readings = 0\n", "batch_max_readings"),
    ('[gateway\nid = "gw-1"\n', "not valid TOML"),
])
def test_a_bad_file_is_a_usage_error_naming_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, named: str
) -> None:
    (tmp_path / "gw.toml").write_text(text)
    assert main(["--config", str(tmp_path / "gw.toml"), "--check"]) == 2
    assert named in capsys.readouterr().err


def test_a_missing_file_and_misused_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "none.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["--check"]) == 2
    assert "--check needs --config" in capsys.readouterr().err


def test_a_gateway_runs_from_its_file_with_a_local_input(
    broker: Mosquitto, gateway: str, tmp_path: Path
) -> None:
    """The agent as a gateway runs it: readings sent as JSON lines to its local UDP input
    reach the broker, numbered, and the buffer file holds none once they are acknowledged."""
    port = free_port()
    (tmp_path / "gw.toml").write_text(
        f'[gateway]\nid = "{gateway}"\narea = "cfg"\n[broker]\nport = {broker.port}\n'
        # no core here on purpose: the broker's PUBACK confirms
        '[publish]\nbatch_max_age_s = 0.1\nconfirm = "broker"\n[buffer]\npath = "buffer.db"\n'
        f'[[drivers]]\ntype = "local"\naddress = "udp://127.0.0.1:{port}"\n')
    sub = Subscriber(broker.port, readings_topic("cfg", gateway))
    child = subprocess.Popen(
        [sys.executable, "-m", "sensing_edge", "--config", str(tmp_path / "gw.toml"),
         "--duration", "6", "--json", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            # probe until the agent listens (a datagram before that is not received) ...
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not sub.messages:
                out.sendto(b'{"device": "probe", "kind": "smoke", "values": {"co_ppm": 1}}\n',
                           ("127.0.0.1", port))
                time.sleep(0.1)
            # ... then 20 readings of one device, several lines per datagram
            for k in range(0, 20, 4):
                out.sendto(b"".join(orjson.dumps(
                    {"device": "smoke-9", "kind": "smoke", "values": {"obscuration": i / 10}})
                    + b"\n" for i in range(k, k + 4)), ("127.0.0.1", port))

        def smoke9(ms: list[Message]) -> list[dict[str, object]]:
            return [r for r in readings_of(ms, gateway, "cfg") if r["device"] == "smoke-9"]
        assert sub.wait_for(lambda ms: len(smoke9(ms)) >= 20, 10)
        stdout, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        sub.close()
    assert child.returncode == 0, stderr.decode()[-2000:]
    report = orjson.loads(stdout)
    assert report["all_acked"] and report["readings_buffered"] == 0
    got = smoke9(sub.messages)
    assert [r["seq"] for r in got] == list(range(20))
    assert [r["values"] for r in got] == [{"obscuration": i / 10} for i in range(20)]
