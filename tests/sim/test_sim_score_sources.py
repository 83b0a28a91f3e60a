"""Where `sensing-sim score` reads alerts and dead letters from: files, the broker, the store.

Parsers on hand-made data first, then the command's usage and failures, then one run against a
real Mosquitto, VictoriaMetrics and stream core (marked e2e)."""

from __future__ import annotations

import base64
import http.server
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sensing.services import Mosquitto, VictoriaMetrics, free_port
from sensing.settings import CoreSettings
from sensing.wire.decode import decode_readings
from sensing.wire.errors import WireError
from sensing_sim.cli import main
from sensing_sim.faults import MALFORMED_REASONS, malformed_payload
from sensing_sim.score import OTHER_REASON, deadletter_reason, deadletter_score
from sensing_sim.score_sources import (
    Run,
    alerts_from_export,
    query_store,
    read_messages,
    read_run,
)
from tests.helpers import publish, publisher, running_core, wait_until

T = 1_795_478_400_000


def alert(aid: str, type_: str, device: str, raised_ms: int, grade: str = "critical",
          state: str = "raised") -> dict[str, Any]:
    return {"alert_id": aid, "type": type_, "grade": grade, "state": state, "device": device,
            "gateway": "gw-1", "area": "a", "ts_event": raised_ms - 50, "ts_raised": raised_ms,
            "reason": "hand-made"}


def dead(reason: str, payload: bytes = b"{}") -> dict[str, Any]:
    return {"reason": reason, "topic": "sensing/v1/a/gw-1/readings",
            "payload": base64.b64encode(payload).decode()}


def label(type_: str, device: str, start_ms: int, end_ms: int, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "device": device, "gateway": "gw-1", "area": "a", "grade": "critical",
            "ts_start": start_ms, "ts_end": end_ms, **extra}


def jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


# --- labels and run reports ---------------------------------------------------------------


def test_a_live_report_gives_labels_malformed_counts_and_the_run_span(tmp_path: Path) -> None:
    report = {"broker": "x", "start_ms": T, "end_ms": T + 60_000,
              "malformed_sent": {"malformed_json": 2, "oversize": 1}, "malformed_total": 3,
              "incidents": [label("smoke.fire", "s-1", T + 5000, T + 20_000)]}
    (tmp_path / "run.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    run = read_run(tmp_path / "run.json")
    assert [lb["device"] for lb in run.labels] == ["s-1"]
    assert run.malformed_sent == {"malformed_json": 2, "oversize": 1}
    # from the run's start to the later of its end and the last label's end + grace
    assert run.span_ms(grace_s=10) == (T, T + 60_000)
    assert run.span_ms(grace_s=100) == (T, T + 120_000)


def test_labels_files_have_no_run_report_and_speed_shortens_the_wall_clock_grace(
        tmp_path: Path) -> None:
    labels = [label("smoke.co", "s-1", T, T + 1000, speed=60),
              label("wearable.sos", "w-1", T + 500, T + 2000)]
    for run in (read_run(jsonl(tmp_path / "l.jsonl", labels)),
                read_run(tmp_path / "l.json") if (tmp_path / "l.json").write_bytes(
                    orjson.dumps(labels)) else None):
        assert isinstance(run, Run) and run.malformed_sent is None and len(run.labels) == 2
        # 600 simulated s at 60x is 10 s of wall time; the unscaled label ends at +2 s + 600 s
        assert run.span_ms(600) == (T, T + 602_000)
        assert Run([labels[0]]).span_ms(600) == (T, T + 11_000)
    assert Run([]).span_ms(600) is None


@pytest.mark.parametrize("text", [b"[1, 2]", b'{"incidents": [], "malformed_sent": [3]}',
                                  b'{"a": 1}\n{"b": \n'])
def test_broken_labels_files_are_value_errors(tmp_path: Path, text: bytes) -> None:
    (tmp_path / "bad.json").write_bytes(text)
    with pytest.raises(ValueError):
        read_run(tmp_path / "bad.json")


# --- files of messages ------------------------------------------------------------------------


def test_a_file_of_messages_splits_into_alerts_and_dead_letters(tmp_path: Path) -> None:
    records = [alert("a1", "smoke.fire", "s-1", T), dead("malformed JSON: x"),
               alert("a1", "smoke.fire", "s-1", T + 10, state="updated")]
    got = read_messages(jsonl(tmp_path / "heard.jsonl", records))
    assert [a["state"] for a in got.alerts] == ["raised", "updated"]
    assert [d["reason"] for d in got.deadletters] == ["malformed JSON: x"]
    (tmp_path / "heard.json").write_bytes(orjson.dumps(records))
    assert read_messages(tmp_path / "heard.json") == got
    jsonl(tmp_path / "odd.jsonl", [alert("a1", "smoke.fire", "s-1", T), {"state": "raised"}])
    with pytest.raises(ValueError, match="record 2: neither an alert"):
        read_messages(tmp_path / "odd.jsonl")


# --- dead-letter reasons ----------------------------------------------------------------------


def test_the_cores_own_reasons_sort_into_the_simulators_malformed_reasons() -> None:
    """Each malformed payload the simulator sends, through the core's real decoder, comes back
    as the reason it was sent for: the scorer's reading of the core's texts is not stale."""
    limit = CoreSettings().max_payload_bytes
    for reason in MALFORMED_REASONS:
        payload = malformed_payload(reason, 1, T, "gw-2")
        with pytest.raises(WireError) as caught:
            decode_readings(payload, "gw-1", "a", limit)
        b64 = base64.b64encode(payload).decode()
        assert deadletter_reason(str(caught.value), b64) == reason
    assert deadletter_reason("unknown or closed alert 42") == OTHER_REASON
    assert deadletter_reason("reading[3]: values must be finite numbers (no NaN)") == "nan_value"


def test_dead_letters_against_malformed_sent_by_reason() -> None:
    sent = {"malformed_json": 2, "wrong_type": 1, "oversize": 0}
    heard = [dead("malformed JSON: y", b'{"a": 1'), dead("'seq' must be an integer, got str"),
             dead("unknown or closed alert 9")]
    dl = deadletter_score(sent, heard)
    assert (dl.malformed_sent, dl.dead_lettered) == (3, 3)
    rows = {r.reason: (r.sent, r.dead_lettered) for r in dl.by_reason}
    assert rows["malformed_json"] == (2, 1) and rows["wrong_type"] == (1, 1)
    assert rows[OTHER_REASON] == (0, 1) and rows["nan_value"] == (0, 0)
    assert dl.as_json()["by_reason"]["malformed_json"] == {"sent": 2, "dead_lettered": 1}
    unknown = deadletter_score(None, None)
    assert not unknown.known and unknown.as_json()["malformed_sent"] is None
    only_sent = deadletter_score(sent, None)
    assert only_sent.known and {r.dead_lettered for r in only_sent.by_reason} == {None}


# --- the store's export -----------------------------------------------------------------------


def export_line(aid: str, type_: str, device: str, grade: str, state: str,
                stamps: list[int]) -> bytes:
    return orjson.dumps({
        "metric": {"__name__": "alert_ts_event", "area": "a", "gateway": "gw-1",
                   "device": device, "type": type_, "grade": grade, "state": state,
                   "alert_id": aid},
        "values": [float(s - 70) for s in stamps], "timestamps": stamps})


EXPORT = b"\n".join([
    export_line("a1", "smoke.fire", "s-1", "major", "raised", [T + 4000]),
    export_line("a1", "smoke.fire", "s-1", "critical", "updated", [T + 9000]),
    export_line("a2", "wearable.sos", "w-1", "critical", "raised", [T + 1000, T + 99_000]),
]) + b"\n"


def test_the_stores_export_becomes_alert_transitions() -> None:
    transitions = alerts_from_export(EXPORT)
    assert len(transitions) == 4
    first = transitions[0]
    assert (first["alert_id"], first["type"], first["device"], first["grade"], first["state"],
            first["ts_raised"], first["ts_event"]) == (
        "a1", "smoke.fire", "s-1", "major", "raised", T + 4000, T + 3930)
    with pytest.raises(ValueError, match="lacks"):
        alerts_from_export(b'{"metric": {"alert_id": "x"}, "values": [], "timestamps": []}')
    with pytest.raises(ValueError, match="line 1"):
        alerts_from_export(b"not json\n")


@pytest.fixture
def fake_store() -> Iterator[tuple[str, list[str]]]:
    """A stand-in for VictoriaMetrics answering /api/v1/export with EXPORT; records paths."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = EXPORT if self.path.startswith("/api/v1/export?") else b""
            self.send_response(200 if body or "force_flush" in self.path else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()
    server.server_close()


def test_query_store_asks_for_the_span_and_keeps_only_what_lies_in_it(
        fake_store: tuple[str, list[str]]) -> None:
    url, asked = fake_store
    got = query_store(url + "/", T, T + 60_000)
    assert sorted((a["alert_id"], a["ts_raised"]) for a in got) == [
        ("a1", T + 4000), ("a1", T + 9000), ("a2", T + 1000)]
    assert asked[0] == "/internal/force_flush"
    assert "match%5B%5D=alert_ts_event" in asked[1] and f"start={T // 1000}.000" in asked[1]


def test_the_cli_scores_from_the_store(fake_store: tuple[str, list[str]], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = fake_store
    labels = jsonl(tmp_path / "l.jsonl", [label("smoke.fire", "s-1", T + 3000, T + 20_000),
                                          label("wearable.sos", "w-1", T, T + 5000)])
    assert main(["score", "--labels", str(labels), "--store", url, "--grace", "30",
                 "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["source"] == "store" and doc["transitions"] == 3
    assert {t["type"]: (t["detected"], t["latency_median_s"]) for t in doc["types"]} == {
        "smoke.fire": (1, 1.0), "wearable.sos": (1, 1.0)}
    assert doc["deadletters"] == {"malformed_sent": None, "dead_lettered": None,
                                  "by_reason": {r: {"sent": None, "dead_lettered": None}
                                                for r in MALFORMED_REASONS}}


# --- the command: files, JSON shapes, usage and failures --------------------------------------


def test_files_give_the_score_with_dead_letters_against_what_was_sent(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = {"start_ms": T, "end_ms": T + 10_000, "malformed_sent": {"malformed_json": 1,
                                                                      "missing_field": 1},
              "incidents": [label("wearable.sos", "w-1", T, T + 5000)]}
    (tmp_path / "run.json").write_bytes(orjson.dumps(report))
    heard = jsonl(tmp_path / "heard.jsonl", [alert("a1", "wearable.sos", "w-1", T + 300),
                                             dead("malformed JSON: z", b'{"x"'),
                                             dead("missing field 'ts'")])
    args = ["score", "--labels", str(tmp_path / "run.json"), "--alerts", str(heard), "--json"]
    assert main(args) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["types"][0]["detected"] == 1 and doc["source"] == "file"
    assert doc["deadletters"]["malformed_sent"] == doc["deadletters"]["dead_lettered"] == 2
    assert doc["deadletters"]["by_reason"]["missing_field"] == {"sent": 1, "dead_lettered": 1}
    assert main(args[:-1]) == 0
    table = capsys.readouterr().out
    assert "wearable.sos" in table and "dead letters" in table and "malformed_json" in table


@pytest.mark.parametrize("extra", [
    [],                                                   # no source
    ["--alerts", "a.jsonl", "--listen"],                  # two sources
    ["--alerts", "a.jsonl", "--duration", "5"],           # a listen option without --listen
    ["--store", "http://127.0.0.1:1", "--save", "x.jsonl"],
    ["--listen", "--deadletters", "d.jsonl"],
    ["--listen", "--duration", "0"],
    ["--listen", "--broker-port", "70000"],
    ["--listen", "--duration", "1", "--save", "/no/such/dir/x.jsonl"],
    ["--store", "ftp://127.0.0.1:1"],
])
def test_usage_errors_exit_2(extra: list[str], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    labels = jsonl(tmp_path / "l.jsonl", [label("wearable.sos", "w-1", T, T + 5000)])
    assert main(["score", "--labels", str(labels), *extra]) == 2
    assert capsys.readouterr().err


def test_listening_for_labels_long_past_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    past = int(time.time() * 1000) - 86_400_000
    labels = jsonl(tmp_path / "l.jsonl", [label("wearable.sos", "w-1", past, past + 5000)])
    assert main(["score", "--labels", str(labels), "--listen", "--broker-port",
                 str(free_port()), "--grace", "1"]) == 2
    assert "give --duration" in capsys.readouterr().err


def test_unreachable_broker_and_store_exit_1(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    labels = jsonl(tmp_path / "l.jsonl", [label("wearable.sos", "w-1", T, T + 5000)])
    port = free_port()  # nothing listens there
    assert main(["score", "--labels", str(labels), "--listen", "--broker-port", str(port),
                 "--duration", "5"]) == 1
    assert "cannot connect to the broker" in capsys.readouterr().err
    assert main(["score", "--labels", str(labels), "--store", f"http://127.0.0.1:{port}"]) == 1
    assert "cannot reach the store" in capsys.readouterr().err


def test_help_names_the_sources_and_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", "--help"]) == 0
    text = capsys.readouterr().out
    for needle in ("--alerts", "--listen", "--store", "--report", "--deadletters", "--save",
                   "--duration", "speed", "examples:", "sensing-sim score --labels run.json "
                   "--listen", "exit codes"):
        assert needle in text


# --- end to end -------------------------------------------------------------------------------


def sos_reading(device: str, seq: int) -> bytes:
    return orjson.dumps({"device": device, "kind": "wearable", "seq": seq, "epoch": 0,
                         "ts": int(time.time() * 1000),
                         "values": {"heart_rate": 80.0, "spo2": 97.0, "accel_g": 1.0,
                                    "steps": 0.0, "sos": 1.0}})


@pytest.mark.e2e
def test_listen_until_the_labels_end_then_score(
        broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --duration, listening stops at the labels' last end plus grace."""
    now = int(time.time() * 1000)
    labels = jsonl(tmp_path / "l.jsonl", [label("wearable.sos", "w-1", now, now + 500)])
    began = time.monotonic()
    assert main(["score", "--labels", str(labels), "--listen", "--broker-port",
                 str(broker.port), "--grace", "1", "--json"]) == 0
    assert 1.0 <= time.monotonic() - began < 5
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["source"] == "listen" and doc["types"][0]["detected"] == 0
    assert doc["deadletters"]["dead_lettered"] == 0


@pytest.mark.e2e
def test_listen_and_store_against_the_real_core(
        broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    area, gw = "score-e2e", "gw-1"
    topic = f"sensing/v1/{area}/{gw}/readings"
    malformed = ("malformed_json", "missing_field", "foreign_gateway", "nan_value")
    now = int(time.time() * 1000)
    report = {
        "start_ms": now, "end_ms": now + 60_000,
        "malformed_sent": {r: int(r in malformed) for r in MALFORMED_REASONS},
        "incidents": [
            {**label("wearable.sos", "sos-e2e-1", now, now + 1000), "area": area},
            {**label("wearable.sos", "sos-e2e-2", now, now + 1000), "area": area},
            {**label("smoke.fire", "smoke-e2e-1", now, now + 1000), "area": area},  # missed
        ]}
    run_file = tmp_path / "run.json"
    run_file.write_bytes(orjson.dumps(report))
    heard_file = tmp_path / "heard.jsonl"
    with running_core(broker, store, tmp_path / "core") as core:
        listener = subprocess.Popen(
            [sys.executable, "-m", "sensing_sim.cli", "score", "--labels", str(run_file),
             "--listen", "--broker-port", str(broker.port), "--duration", "60", "--save",
             str(heard_file), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert listener.stderr is not None
            assert b"listening on" in listener.stderr.readline()
            client = publisher(broker)
            publish(client, topic, sos_reading("sos-e2e-1", 1))
            publish(client, topic, sos_reading("sos-e2e-2", 1))
            for n, reason in enumerate(malformed):
                publish(client, topic, malformed_payload(reason, n, now, "gw-2"))
            client.disconnect()
            client.loop_stop()
            assert wait_until(lambda: core.stats.deadletters >= 4
                              and sum(core.stats.alerts.values()) >= 2, 15)
            # what the core published has reached the listener once it is in the saved file
            assert wait_until(lambda: heard_file.exists()
                              and len(heard_file.read_bytes().splitlines()) >= 6, 10)
            listener.send_signal(signal.SIGINT)  # stop listening and score what was heard
            out, err = listener.communicate(timeout=15)
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.wait()
    assert listener.returncode == 0, err.decode()
    doc = orjson.loads(out)
    by_type = {t["type"]: t for t in doc["types"]}
    assert (by_type["wearable.sos"]["labels"], by_type["wearable.sos"]["detected"]) == (2, 2)
    assert (by_type["smoke.fire"]["labels"], by_type["smoke.fire"]["detected"]) == (1, 0)
    assert by_type["wearable.sos"]["false_positives"] == 0
    dl = doc["deadletters"]
    assert dl["malformed_sent"] == dl["dead_lettered"] == 4
    assert {r: c["dead_lettered"] for r, c in dl["by_reason"].items()} == {
        r: int(r in malformed) for r in MALFORMED_REASONS}

    # the same alerts from the store; the dead letters from the file the listener saved
    assert store.settled_count("alert_ts_event", 2) == 2
    capsys.readouterr()  # the core's log
    assert main(["score", "--labels", str(run_file), "--store", store.url, "--deadletters",
                 str(heard_file), "--json"]) == 0
    again = orjson.loads(capsys.readouterr().out)
    assert again["source"] == "store" and again["transitions"] == 2
    assert again["types"] == doc["types"]
    assert again["deadletters"] == dl


def test_gateway_offline_alerts_of_the_runs_own_shutdown_are_left_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = {"start_ms": T, "end_ms": T + 70_000, "stopping_ms": T + 60_000,
              "malformed_sent": {}, "incidents": [
                  label("gateway.offline", "gw-02", T + 10_000, T + 20_000)]}
    (tmp_path / "run.json").write_bytes(orjson.dumps(report))
    heard = jsonl(tmp_path / "heard.jsonl", [
        alert("a1", "gateway.offline", "gw-02", T + 10_000),
        alert("a2", "gateway.offline", "gw-01", T + 61_000),  # the agents stopping
        alert("a3", "gateway.offline", "gw-02", T + 61_000),
        alert("a4", "smoke.fire", "s-1", T + 61_000),          # still a false positive
    ])
    assert main(["score", "--labels", str(tmp_path / "run.json"), "--alerts", str(heard),
                 "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    by_type = {t["type"]: t for t in doc["types"]}
    assert by_type["gateway.offline"]["detected"] == 1
    assert by_type["gateway.offline"]["false_positives"] == 0
    assert by_type["smoke.fire"]["false_positives"] == 1
    assert doc["shutdown_alerts_left_out"] == 2
