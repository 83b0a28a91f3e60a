"""`sensing-sim` usage: help, usage errors (exit 2), runtime failures (exit 1)."""

from __future__ import annotations

import pytest

from sensing.services import free_port
from sensing_sim.cli import main, parse_mix


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "sensing-sim live --broker-port" in capsys.readouterr().out
    assert main(["live", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--gateways", "--devices", "--mix", "--interval", "--duration", "--seed",
                   "--duplicates", "--malformed", "--incidents", "--report", "--json"):
        assert option in text


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["live"],
        ["fly", "--broker-port", "1883"],
        ["live", "--broker-port", "1883", "--mix", "toaster=1"],
        ["live", "--broker-port", "1883", "--mix", "smoke=0"],
        ["live", "--broker-port", "1883", "--duplicates", "1.5"],
        ["live", "--broker-port", "1883", "--devices", "0"],
        ["live", "--broker-port", "1883", "--gateways", "5", "--devices", "3"],
        ["live", "--broker-port", "1883", "--areas", "no spaces"],
        ["live", "--broker-port", "1883", "--duration", "0.5", "--incidents", "demo"],
        ["live", "--broker-port", "70000"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_unreachable_broker_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    assert main(["live", "--broker-port", str(port), "--devices", "10", "--duration", "2"]) == 1
    assert "cannot connect to the broker" in capsys.readouterr().err


def test_parse_mix() -> None:
    assert parse_mix("smoke=0.5, manhole=0.25,wearable=0.25") == {
        "smoke": 0.5, "manhole": 0.25, "wearable": 0.25}
    assert parse_mix("wearable=1") == {"wearable": 1.0}
