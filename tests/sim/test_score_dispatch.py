"""`sensing-sim score` for dispatch: hand-made case messages with known answers, from a file
and heard on a real Mosquitto."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from sensing.services import Mosquitto
from sensing_sim.cli import main
from sensing_sim.responders import expected_outcome
from sensing_sim.score_dispatch import cases_from_messages, dispatch_score
from sensing_sim.score_sources import listen, read_messages
from tests.helpers import publish, publisher

T = 1_795_485_600_000


def ev(case_id: str, event: str, at_s: float, type_: str = "smoke.fire",
       device: str = "smoke-1", **extra: Any) -> dict[str, Any]:
    return {"case_id": case_id, "event": event, "by": extra.pop("by", ""),
            "ts": T + round(at_s * 1000), "state": extra.pop("state", "open"), "type": type_,
            "grade": "critical", "area": "comm-1", "device": device, "gateway": "gw-1",
            "members": [case_id], "taken_by": extra.pop("taken_by", ""),
            "outcome": extra.pop("outcome", ""), "note": "", "chain": "life_safety", **extra}


def told(case_id: str, at_s: float, role: str, *who: str, **extra: Any) -> dict[str, Any]:
    return ev(case_id, "notified", at_s, role=role, responders=list(who), step=0, round=0,
              **extra)


def label(type_: str, device: str, start_s: float, end_s: float) -> dict[str, Any]:
    return {"type": type_, "device": device, "gateway": "gw-1", "area": "comm-1",
            "grade": "critical", "variant": "", "start_s": start_s, "end_s": end_s,
            "ts_start": T + round(start_s * 1000), "ts_end": T + round(end_s * 1000)}


FIRE = label("smoke.fire", "smoke-1", 0, 300)
SOS = label("wearable.sos", "wearable-1", 990, 1000)
SOS_TRUTH = expected_outcome(SOS)
SOS_WRONG = "other" if SOS_TRUTH == "resident_ok" else "resident_ok"
LABELS = [FIRE, SOS, label("smoke.fire", "smoke-5", 2000, 2300)]
STOPPING_S = 3000

MESSAGES = [
    # a fire: grid worker, then relatives and volunteers told; a volunteer takes and disposes
    ev("a", "opened", 10), told("a", 10.2, "grid_worker", "grid-1"),
    told("a", 70, "relatives", "rel-1", "rel-2"), told("a", 130, "volunteers", "vol-1"),
    ev("a", "taken", 160, by="vol-1", taken_by="vol-1", state="taken"),
    ev("a", "arrived", 400, by="vol-1", taken_by="vol-1", state="arrived"),
    ev("a", "disposed", 610, by="vol-1", taken_by="vol-1", state="disposed", outcome="fire"),
    # an SOS nobody local takes: the street command takes it, and disposes wrongly
    ev("b", "opened", 1000, "wearable.sos", "wearable-1"),
    told("b", 1000.5, "grid_worker", "grid-1", type="wearable.sos", device="wearable-1"),
    told("b", 1600, "street_command", "cc-a", type="wearable.sos", device="wearable-1"),
    ev("b", "taken", 1610, "wearable.sos", "wearable-1", by="cc-a", taken_by="cc-a"),
    ev("b", "disposed", 2500, "wearable.sos", "wearable-1", by="cc-a", taken_by="cc-a",
       state="disposed", outcome=SOS_WRONG),
    # a fall no incident explains (a knock): cleared, disposed remotely as a false alarm
    ev("c", "opened", 1200, "wearable.fall", "wearable-9"),
    told("c", 1201, "grid_worker", "grid-9", type="wearable.fall", device="wearable-9"),
    ev("c", "cleared", 1230, "wearable.fall", "wearable-9"),
    ev("c", "disposed", 1300, "wearable.fall", "wearable-9", by="grid-9",
       state="disposed", outcome="false_alarm"),
    # a second fire, told and never taken: opened, not disposed
    ev("e", "opened", 2010, device="smoke-5"), told("e", 2013, "grid_worker", "grid-5",
                                                   device="smoke-5"),
    # the run stopping its gateways: left out
    ev("d", "opened", STOPPING_S + 5, "gateway.offline", "gw-1"),
]


def test_per_type_times_climbs_and_outcomes() -> None:
    ds = dispatch_score(reversed(MESSAGES), LABELS, stopping_ms=T + STOPPING_S * 1000)
    by = {t.type: t for t in ds.types}
    assert set(by) == {"smoke.fire", "wearable.sos", "wearable.fall"}
    fire = by["smoke.fire"]
    assert (fire.opened, fire.notified, fire.taken, fire.disposed) == (2, 2, 1, 1)
    assert fire.notify_p50_s == pytest.approx(1.6) and fire.notify_p95_s == pytest.approx(3.0)
    assert fire.take_p50_s == fire.take_p95_s == pytest.approx(150.0)
    assert fire.dispose_p50_s == pytest.approx(600.0)
    assert (fire.climbed_family, fire.climbed_command) == (1, 0)
    assert (fire.outcome_ok, fire.outcome_rate) == (1, 1.0)
    sos = by["wearable.sos"]
    assert (sos.climbed_command, sos.climbed_family) == (1, 0)
    assert sos.take_p50_s == pytest.approx(610.0) and sos.dispose_p50_s == pytest.approx(1500.0)
    assert (sos.outcome_ok, sos.outcome_rate) == (0, 0.0)
    fall = by["wearable.fall"]
    assert (fall.taken, fall.disposed, fall.outcome_ok) == (0, 1, 1)
    total = ds.total
    assert (total.type, total.opened, total.disposed, total.taken) == ("all", 4, 3, 2)
    assert total.outcome_rate == pytest.approx(2 / 3)
    assert ds.outcomes == {"fire": {"fire": 1}, SOS_TRUTH: {SOS_WRONG: 1},
                           "false_alarm": {"false_alarm": 1}}
    assert ds.left_out == 1
    assert dispatch_score(MESSAGES, LABELS).left_out == 0  # no stop known: counted


def test_a_case_known_only_by_later_events_starts_at_its_earliest() -> None:
    [case] = cases_from_messages([ev("x", "disposed", 50, outcome="fire", state="disposed"),
                                  told("x", 20, "grid_worker", "g")])
    assert (case.opened_ms, case.notified_ms, case.disposed_ms) == (T + 20_000, T + 20_000,
                                                                    T + 50_000)
    assert case.roles == ("grid_worker",) and case.outcome == "fire"


def _files(tmp_path: Path, messages: list[dict[str, Any]]) -> tuple[Path, Path]:
    run = tmp_path / "run.json"
    run.write_bytes(orjson.dumps({"start_ms": T, "end_ms": T + 4_000_000,
                                  "stopping_ms": T + STOPPING_S * 1000,
                                  "malformed_sent": {}, "incidents": LABELS}))
    heard = tmp_path / "heard.jsonl"
    alerts = [{"alert_id": "a", "type": "smoke.fire", "grade": "critical", "state": "raised",
               "device": "smoke-1", "gateway": "gw-1", "area": "comm-1", "ts_event": T,
               "ts_raised": T + 10_000}]
    heard.write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in [*alerts, *messages]))
    return run, heard


def test_the_command_adds_dispatch_when_cases_were_heard(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, heard = _files(tmp_path, MESSAGES)
    assert main(["score", "--labels", str(run), "--alerts", str(heard), "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["dispatch"]["total"]["opened"] == 4 and doc["dispatch"]["left_out"] == 1
    assert doc["types"][0]["type"] == "smoke.fire"  # the alert score is as it was
    assert main(["score", "--labels", str(run), "--alerts", str(heard)]) == 0
    text = capsys.readouterr().out
    assert "dispatch (cases)" in text and "expected (ground truth)" in text
    assert "left out: 1 gateway.offline cases" in text
    # no case messages: the output is what it always was
    run, heard = _files(tmp_path, [])
    assert main(["score", "--labels", str(run), "--alerts", str(heard), "--json"]) == 0
    assert "dispatch" not in orjson.loads(capsys.readouterr().out)
    assert main(["score", "--labels", str(run), "--alerts", str(heard)]) == 0
    assert "dispatch" not in capsys.readouterr().out


def test_listen_hears_and_saves_the_cases(broker: Mosquitto, tmp_path: Path) -> None:
    save = tmp_path / "heard.jsonl"
    ready = threading.Event()
    out: list[Any] = []
    until = time.time() + 30
    stop = threading.Event()
    thread = threading.Thread(target=lambda: out.append(listen(
        "127.0.0.1", broker.port, lambda: until, save=save, on_ready=ready.set, stop=stop)))
    thread.start()
    try:
        assert ready.wait(10)
        pub = publisher(broker)
        for m in MESSAGES[:7]:
            publish(pub, "sensing/v1/cases/comm-1", orjson.dumps(m))
        publish(pub, "sensing/v1/cases/comm-1", b'{"case_id": "no ts", "event": "opened"}')
        pub.disconnect()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not save.exists() or len(
                save.read_bytes().splitlines()) < 7):
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    heard = out[0]
    assert [m["event"] for m in heard.cases] == [m["event"] for m in MESSAGES[:7]]
    assert read_messages(save).cases == heard.cases
    assert heard.alerts == [] and heard.deadletters == []
