"""The dispatch benchmark (benchmarks/bench_dispatch.py): its generated directory routes as
meant, its arithmetic of lateness and skipped rounds is right, and a CI-sized run through real
Mosquitto, VictoriaMetrics and `sensing run` processes produces every figure: every alarm
reaches its grid worker over MQTT and by webhook, both ingest runs are stored whole, the
escalation is measured. No timing is asserted: figures on a shared machine are whatever they
are."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_dispatch import (
    Heard,
    Notified,
    Schedule,
    Step,
    Town,
    _last_gateway,
    alarm_messages,
    directory_toml,
    lateness,
    warm_up_rounds,
)
from e2e.fleet import Fleet, Phase, messages

from sensing.dispatch.policy import OpenCase, load_routing
from sensing.wire.messages import Grade

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_generated_directory_routes_an_sos_through_the_benchmark_chain(
        tmp_path: Path) -> None:
    town = Town(communities=7, residents=70, kinds=("wearable",))
    path = tmp_path / "directory.toml"
    path.write_text(directory_toml(town, "http://127.0.0.1:9/hooks",
                                   (Step("grid_worker", 0), Step("relatives", 5)), 10))
    routing = load_routing(path)
    assert len(routing.directory.source.residents) == 70
    i = 23
    area, device = town.community(town.community_of(i)), town.device(i)
    assert routing.planner.chain_of("wearable.sos", Grade.CRITICAL, area) == "bench_escalation"
    case = OpenCase(case_id="c", alert_type="wearable.sos", grade=Grade.CRITICAL, area=area,
                    device=device, raised_at_ms=1_000_000)
    first = routing.planner.plan(case, 1_000_000)
    [due] = first.due
    [grid] = due.recipients
    assert (due.step, due.round, grid.responder) == (0, 0, f"grid-{town.community_of(i):03d}")
    assert {c.channel for c in grid.contacts} == {"mqtt", "webhook"}
    later = routing.planner.plan(case.with_sent(first), 1_005_000)
    assert [(d.step, d.round, [r.responder for r in d.recipients]) for d in later.due] == [
        (1, 0, [f"rel-{i:06d}"])]
    assert later.next_due_ms == 1_010_000  # the grid worker again, every 10 s


def test_every_community_has_both_kinds_and_each_device_alarms_once_in_seq_order() -> None:
    town = Town(communities=4, residents=40, kinds=("wearable", "smoke"))
    quiet, smoky = warm_up_rounds(town, 1_000_000)
    alarms = alarm_messages(town, 1_000_000)
    seen: dict[str, list[tuple[int, float]]] = {}
    for msgs in (quiet, smoky):
        assert len(msgs) == 4
        for m in msgs:
            kinds = set()
            for r in orjson.loads(m.payload):
                kinds.add(r["kind"])
                level = r["values"].get("obscuration", r["values"].get("sos"))
                seen.setdefault(r["device"], []).append((r["seq"], level))
            assert kinds == {"wearable", "smoke"}
    assert len(alarms) == 40 and len({m.alarm_device for m in alarms}) == 40
    for m in alarms:
        r = orjson.loads(m.payload)
        seen[r["device"]].append((r["seq"], r["values"].get("obscuration",
                                                             r["values"].get("sos"))))
    for device, readings in seen.items():
        assert [s for s, _ in readings] == [0, 1, 2]
        # a detector is smoky twice in a row (the fire); a wristband presses SOS once
        expected = [0.15, 12.0, 12.0] if device.startswith("smoke") else [0.0, 0.0, 1.0]
        assert [v for _, v in readings] == expected, device


def test_lateness_counts_late_and_skipped_rounds_by_when_they_fell_due() -> None:
    schedule = Schedule((Step("grid_worker", 0), Step("relatives", 5)), renotify_ms=10_000)
    heard = Heard(opened={"a": 0, "b": 100_000})
    heard.notified += [Notified("a", 0, 0, 100, 0.2), Notified("a", 1, 0, 5_050, 5.1),
                       Notified("a", 0, 2, 20_010, 20.5),  # round 1 never came
                       Notified("b", 0, 0, 100_000, 100.0)]  # opened after the window
    figures = lateness(schedule, heard, 0.0, 25.0)
    # due in [0, 25 s): step 0 at 0, 10, 20 s; step 1 at 5, 15 s
    assert (figures["rounds_due"], figures["notified"], figures["skipped"]) == (5, 3, 2)
    assert figures["late"] == {"p50_ms": 50.0, "p99_ms": 99.0, "max_ms": 100.0}
    assert figures["late_on_arrival"]["max_ms"] == 500.0


def test_the_last_gateway_is_the_one_whose_message_goes_last() -> None:
    fleet = Fleet(600, 6)
    for n in (600, 1_450, 1_800):
        phase = Phase(fleet, "array", n, 1, int(time.time() * 1000) - 3_600_000)
        sent = list(messages(phase, list(range(6))))
        gateway, count = _last_gateway(phase)
        assert sent[-1].topic.decode().split("/")[3] == gateway, n
        assert sum(m.readings for m in sent if gateway.encode() in m.topic) == count, n


@pytest.mark.e2e
def test_quick_run_reaches_every_responder_and_reports_every_figure(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_dispatch.py"), "--quick", "--json",
         "--workdir", str(tmp_path)], capture_output=True, timeout=420, check=False)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
    doc = json.loads(run.stdout)
    s = doc["simultaneous"]
    assert s["alerts"] == 60 and s["kinds"] == {"wearable": 30, "smoke": 30}
    assert s["first_roles"] == {"grid_worker": 60}
    assert sum(s["first_grades"].values()) == 60
    for key in ("dispatch", "webhook"):
        row = s[key]
        assert row["arrived"] == 60, key
        assert 0 <= row["p50_ms"] <= row["p99_ms"] <= row["max_ms"], key
    assert s["webhook"]["repeated_keys"] >= 0
    assert s["raised"]["max_ms"] <= s["dispatch"]["max_ms"]
    e = doc["escalation"]
    assert e["cases"] == 300 and e["readings_per_phase"] == 16_000
    for key in ("without_cases", "with_cases"):
        row = e[key]
        assert row["complete"] and row["stored"] == 16_000, key
        assert row["stored_per_s"] > 0 and row["core_cpu_us_per_reading"] > 0, key
        assert row["other_load_cores"] >= 0, key
    assert e["stored_ratio"] > 0 and e["cpu_per_reading_ratio"] > 0
    for key in ("idle", "during_ingest"):
        row = e[key]
        assert row["rounds_due"] > 0 and 0 <= row["skipped"] <= row["rounds_due"], key
        assert row["notified"] > 0, key
        # a step is sent when it is due, never before: lateness is not negative
        assert 0 <= row["late"]["p50_ms"] <= row["late"]["p99_ms"] <= row["late"]["max_ms"]
    assert e["notifications"]["total"] >= 300  # every case told its grid worker at least
    assert doc["machine"]["cpus"] >= 1 and doc["settings"]["quick"] is True
