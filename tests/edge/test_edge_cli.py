"""`sensing-edge run` as a real process: signals, last will, counts, exit codes."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import orjson
import pytest

from sensing.services import Mosquitto, free_port
from sensing.wire.topics import readings_topic, status_topic
from sensing_edge.cli import main
from tests.edge.support import Message, Subscriber, readings_of

AREA = "edge-cli"
Subscribe = Callable[..., Subscriber]


def agent_argv(port: int, gateway: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "sensing_edge", "run", "--gateway", gateway, "--area", AREA,
        "--broker-port", str(port), "--devices", "6", "--interval", "0.1",
        "--batch-max-age", "0.1", "--json",
        "--confirm", "broker",  # no core here on purpose: the broker's PUBACK confirms
        *extra,
    ]


@contextmanager
def agent_process(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def states(messages: list[Message]) -> list[str]:
    return [orjson.loads(m.payload)["state"] for m in messages]


def is_readings(m: Message) -> bool:
    return m.topic.endswith("/readings")


def status_states(messages: list[Message]) -> list[str]:
    return states([m for m in messages if m.topic.endswith("/status")])


def test_a_killed_agent_leaves_its_retained_offline_will(
    broker: Mosquitto, subscribe: Subscribe, gateway: str
) -> None:
    topic = status_topic(AREA, gateway)
    watcher = subscribe(broker.port, topic)
    with agent_process(agent_argv(broker.port, gateway)) as proc:
        assert watcher.wait_for(lambda ms: states(ms) == ["online"], timeout=15)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(5) == -signal.SIGKILL
    assert watcher.wait_for(lambda ms: states(ms) == ["online", "offline"], timeout=10)
    will = orjson.loads(watcher.messages[-1].payload)
    assert set(will) == {"state", "ts"} and isinstance(will["ts"], int)
    late = subscribe(broker.port, topic)
    assert late.wait_for(lambda ms: len(ms) == 1)
    assert late.messages[0].retain
    assert states(late.messages) == ["offline"]


def test_sigterm_stops_cleanly_and_prints_the_counts(
    broker: Mosquitto, subscribe: Subscribe, gateway: str
) -> None:
    watcher = subscribe(broker.port, status_topic(AREA, gateway), readings_topic(AREA, gateway))
    with agent_process(agent_argv(broker.port, gateway, "--format", "json")) as proc:
        assert watcher.wait_for(lambda ms: len(readings_of(ms, gateway, AREA)) >= 10, timeout=15)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    counts = orjson.loads(out)
    assert counts["gateway"] == gateway and counts["area"] == AREA
    assert counts["all_acked"] is True and counts["pending_batches"] == 0
    assert counts["readings_sampled"] == counts["readings_acked"] >= 10
    assert watcher.wait_for(lambda ms: status_states(ms) == ["online", "offline"])
    readings = readings_of(watcher.messages, gateway, AREA)
    assert len(readings) == counts["readings_acked"]
    assert all(m.payload.startswith(b"[") for m in watcher.messages if is_readings(m))


def test_duration_ends_the_run(broker: Mosquitto, gateway: str) -> None:
    result = subprocess.run(
        agent_argv(broker.port, gateway, "--duration", "0.6"),
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    counts = orjson.loads(result.stdout)
    assert counts["readings_acked"] == counts["readings_sampled"] > 0
    assert counts["connects"] == 1


def test_an_unreachable_broker_is_a_runtime_failure(gateway: str) -> None:
    argv = agent_argv(free_port(), gateway, "--connect-timeout", "0.5")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "cannot reach the MQTT broker" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["run", "--gateway", "gw 1", "--area", "demo"],
        ["run", "--gateway", "gw-1", "--area", "alerts"],
        ["run", "--gateway", "gw-1", "--area", "demo", "--mix", "smoke=1,fire=1"],
        ["run", "--gateway", "gw-1", "--area", "demo", "--mix", "smoke=0"],
        ["run", "--gateway", "gw-1", "--area", "demo", "--interval", "0"],
        ["run", "--gateway", "gw-1", "--area", "demo", "--format", "xml"],
        ["fly"],
    ],
)
def test_usage_errors_exit_2_with_a_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err or "usage" in err


def test_help_describes_the_command_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "sensing/v1/{area}/{gateway}/readings" in out
    assert "examples:" in out and "sensing-edge run --gateway gw-1" in out
    assert main(["--help"]) == 0
