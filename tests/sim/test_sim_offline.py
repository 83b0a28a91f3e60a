"""`sensing-sim offline`: a fleet fed straight into the core, scored against its labels."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sensing_sim.cli import main
from sensing_sim.fleet import Fleet, FleetSpec
from sensing_sim.offline import run_offline
from sensing_sim.score import alerts_from_transitions, score

START = 1_795_478_400_000


def test_every_demo_incident_is_detected_at_its_grade_and_nothing_else_alerts() -> None:
    fleet = Fleet(FleetSpec(n_gateways=3, n_devices=240, seed=5, interval_s=2.0))
    fleet.schedule_demo_incidents(500)
    run = run_offline(fleet, 500, start_ms=START)
    assert run.readings == 240 * 250 and run.core["readings_stored"] == run.readings
    labels = [i.to_dict(START) for i in fleet.incidents]
    scores = score(labels, alerts_from_transitions(run.alerts))
    assert {s.type for s in scores} == {lb["type"] for lb in labels}  # no other alert type
    for s in scores:
        assert (s.recall, s.precision, s.duplicates) == (1.0, 1.0, 0), s
        assert s.grade_ok == s.detected, s
        assert s.latency_median_s is not None and 0 <= s.latency_median_s < 120, s


def test_quiet_signals_raise_nothing_and_the_same_seed_gives_the_same_alerts() -> None:
    quiet = Fleet(FleetSpec(n_gateways=2, n_devices=200, seed=8, interval_s=5.0))
    assert run_offline(quiet, 1800, start_ms=START).alerts == []

    def alerts(seed: int) -> list[tuple[str, str, int, str]]:
        fleet = Fleet(FleetSpec(n_gateways=2, n_devices=60, seed=seed))
        fleet.schedule_demo_incidents(300)
        return [(a["type"], a["device"], a["ts_raised"], a["state"])
                for a in run_offline(fleet, 300, start_ms=START).alerts]

    first = alerts(11)
    assert first and first == alerts(11) and first != alerts(12)


def test_the_cli_runs_offline_writes_labels_and_alerts_and_scores_them_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["offline", "--gateways", "2", "--devices", "80", "--duration", "400",
            "--labels", str(tmp_path / "labels.jsonl"), "--alerts", str(tmp_path / "a.jsonl")]
    assert main([*args, "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["readings"] == 80 * 200 and doc["score"]["types"]
    assert all(s["recall"] == 1.0 for s in doc["score"]["types"])
    assert main(["score", "--labels", str(tmp_path / "labels.jsonl"), "--alerts",
                 str(tmp_path / "a.jsonl"), "--json"]) == 0
    again = orjson.loads(capsys.readouterr().out)
    assert again["types"] == doc["score"]["types"]
    assert main(["score", "--labels", str(tmp_path / "none.jsonl"), "--alerts",
                 str(tmp_path / "a.jsonl")]) == 2
    assert "FileNotFoundError" in capsys.readouterr().err
