"""Recordings: written, read back, fed offline, and replayed against real parts."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from sensing.services import Mosquitto, VictoriaMetrics
from sensing.wire import decode_readings, snb1
from sensing.wire.topics import ALERTS_FILTER, READINGS_FILTER, STATUS_FILTER, parse_gateway_topic
from sensing_sim.cli import main
from sensing_sim.fleet import Fleet, FleetSpec
from sensing_sim.recording import RecordingError, RecordingReader
from sensing_sim.replay import replay, replay_shift_ms, shift_snb1_ts
from sensing_sim.score import alerts_from_transitions, score
from sensing_sim.signals import local_time_of_day_s
from sensing_sim.transport import READINGS, STATUS, FleetStream, TransportFaults
from tests.helpers import Listener, running_core

START = 1_795_478_400_000
SMALL = ["--gateways", "2", "--devices", "40", "--interval", "2", "--seed", "3"]


def record(tmp_path: Path, name: str, *extra: str) -> Path:
    out = tmp_path / name
    assert main(["record", *SMALL, *extra, "--out", str(out)]) == 0
    return out


def test_a_recording_holds_exactly_the_stream_its_labels_and_counts(tmp_path: Path) -> None:
    path = record(tmp_path, "run.simrec", "--duration", "120", "--malformed", "6",
                  "--duplicates", "0.1", "--late", "0.1")
    reader = RecordingReader(path)
    got = list(reader.messages())
    fleet = Fleet(FleetSpec(n_gateways=2, n_devices=40, interval_s=2.0, seed=3,
                            day_start_s=local_time_of_day_s(START)))
    fleet.schedule_demo_incidents(120)
    stream = FleetStream(fleet, 120, start_ms=START, faults=TransportFaults(
        duplicate_rate=0.1, late_rate=0.1, malformed=6))
    expected = [m for _, arrived in stream.steps() for m in arrived]
    assert got == expected
    assert reader.trailer == stream.counts.to_dict()
    assert reader.labels == [i.to_dict(START) for i in fleet.incidents] != []
    assert reader.header["start_ms"] == START and reader.header["duration_s"] == 120


def test_gzip_recordings_read_back_and_damaged_ones_fail_clearly(tmp_path: Path) -> None:
    plain = record(tmp_path, "run.simrec", "--duration", "30")
    packed = record(tmp_path, "run.simrec.gz", "--duration", "30")
    assert list(RecordingReader(packed).messages()) == list(RecordingReader(plain).messages())
    with gzip.open(packed, "rb") as f:
        assert f.read(8) == b"SNSIMREC"

    cut = tmp_path / "cut.simrec"
    cut.write_bytes(plain.read_bytes()[:-50])
    reader = RecordingReader(cut)
    with pytest.raises(RecordingError, match="cut short"):
        list(reader.messages())
    junk = tmp_path / "junk.simrec"
    junk.write_bytes(b"not a recording at all")
    with pytest.raises(RecordingError, match="not a sensing-sim recording"):
        RecordingReader(junk)
    assert main(["replay", str(junk), "--broker-port", "1"]) == 2
    assert main(["offline", "--recording", str(junk)]) == 2


def test_offline_from_a_recording_gives_the_same_alerts_as_offline_directly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--duration", "300", "--malformed", "4", "--duplicates", "0.05"]
    path = record(tmp_path, "run.simrec", *args)
    capsys.readouterr()
    direct, replayed = tmp_path / "direct.jsonl", tmp_path / "replayed.jsonl"
    assert main(["offline", *SMALL, *args, "--alerts", str(direct), "--json"]) == 0
    first = orjson.loads(capsys.readouterr().out)
    assert main(["offline", "--recording", str(path), "--alerts", str(replayed), "--json"]) == 0
    second = orjson.loads(capsys.readouterr().out)

    def key(p: Path) -> list[tuple[str, str, int, str]]:
        return [(a["type"], a["device"], a["ts_raised"], a["state"])
                for a in map(orjson.loads, p.read_bytes().splitlines())]

    assert key(direct) == key(replayed) != []
    assert first["score"] == second["score"]
    assert first["dead_lettered"] == second["dead_lettered"] == 4


def test_shifting_snb1_times_moves_every_ts_and_nothing_else() -> None:
    readings = [("smoke-1", "smoke", 2, k, START + 1000 * k, {"obscuration": 0.1 * k}, 0.5)
                for k in range(5)]
    payload = snb1.encode_readings(readings)
    moved = shift_snb1_ts(payload, 12_345)
    batch = decode_readings(moved, "gw", "area", 1 << 20).batch
    assert batch.ts.tolist() == [START + 1000 * k + 12_345 for k in range(5)]
    assert moved[:24] == payload[:24] and len(moved) == len(payload)
    assert shift_snb1_ts(moved, -12_345) == payload


def test_a_replay_ends_its_recording_when_it_is_due_to_finish() -> None:
    """At ×N its times are in the past when published, never ahead of the wall clock (the
    core counts none ahead of it); below ×1 it starts now."""
    wall = START + 86_400_000
    assert replay_shift_ms(START, 600_000, wall, 60.0) == wall - START - 590_000
    assert replay_shift_ms(START, 600_000, wall, 1.0) == wall - START
    assert replay_shift_ms(START, 600_000, wall, 0.5) == wall - START
    for t in range(0, 600_001, 50_000):  # published at wall + t / 60, stamped t + shift
        assert START + t + replay_shift_ms(START, 600_000, wall, 60.0) <= wall + t / 60


@pytest.mark.e2e
def test_a_replay_publishes_every_message_with_moved_times_at_its_speed(tmp_path: Path) -> None:
    path = record(tmp_path, "run.simrec", "--duration", "60", "--malformed", "6",
                  "--duplicates", "0.1")
    recorded = list(RecordingReader(path).messages())
    with Mosquitto.start(tmp_path / "broker") as broker:
        listener = Listener(broker, READINGS_FILTER, STATUS_FILTER)
        report = replay(path, port=broker.port, speed=20.0)
        assert listener.wait_for(lambda: len(listener.messages) >= len(recorded), 20)
        listener.close()
    assert report.all_acked and not report.stopped_early
    assert sum(report.messages.values()) == len(recorded) == len(listener.messages)
    assert report.wall_s >= 60 / 20 * 0.9  # it kept to its schedule, not faster
    assert report.malformed_total == 6 and report.malformed_sent == report.recorded[  # type: ignore[index]
        "malformed_sent"]
    # the recording ends when the replay was due to finish: every time in the past when sent
    assert report.shift_ms == report.start_ms - START - (60_000 - 60_000 // 20)
    shift = report.shift_ms
    heard = listener.messages
    readings_heard = [(t, p) for t, p in heard if p.startswith(b"SNB")]  # SNB1 or SNB2
    recorded_ts = sorted(ts for m in recorded if m.what in (READINGS, "duplicate")
                         for ts in _ts(m.topic, m.payload))
    heard_ts = sorted(ts for t, p in readings_heard for ts in _ts(t, p))
    assert heard_ts == [ts + shift for ts in recorded_ts]
    statuses = [orjson.loads(p) for t, p in heard if t.endswith("/status")]
    assert len(statuses) == sum(m.what == STATUS for m in recorded) == 2
    assert all(s["ts"] == START + shift for s in statuses)
    assert heard_ts[-1] <= report.end_ms and statuses[0]["ts"] < report.start_ms
    for label in report.incidents:
        assert label["speed"] == 20.0
        assert report.start_ms <= label["ts_start"] < label["ts_end"] <= report.end_ms


def _ts(topic: str, payload: bytes) -> list[int]:
    parsed = parse_gateway_topic(topic)
    assert parsed is not None
    return list(decode_readings(payload, parsed.gateway, parsed.area, 1 << 24).batch.ts.tolist())


@pytest.mark.e2e
def test_a_replay_through_the_core_stores_every_reading_once_and_raises_the_labels(
    tmp_path: Path, store: VictoriaMetrics
) -> None:
    path = record(tmp_path, "run.simrec", "--duration", "240", "--duplicates", "0.1",
                  "--late", "0.05", "--malformed", "6")
    reader = RecordingReader(path)
    list(reader.messages())
    sent = reader.trailer
    assert sent is not None
    with Mosquitto.start(tmp_path / "broker") as broker, \
            running_core(broker, store, tmp_path / "core") as core:
        alerts = Listener(broker, ALERTS_FILTER)
        report = replay(path, port=broker.port, speed=24.0)
        match = '{__name__="reading_seq",area=~"demo-.*"}'
        stored = store.settled_count(match, sent["readings_sent"], 60)
        assert alerts.wait_for(lambda: len({a["alert_id"] for a in alerts.json()})
                               >= len(report.incidents), 30)
        transitions = alerts.json()
        alerts.close()
        counters = core.pipeline.stats.as_dict()
    assert report.all_acked
    assert stored == sent["readings_sent"]
    assert counters["duplicates_dropped"] == sent["duplicate_readings"] > 0
    assert counters["deadletters"] == 6
    scores = score(report.incidents, alerts_from_transitions(transitions))
    assert {s.type for s in scores} == {str(lb["type"]) for lb in report.incidents}
    assert all(s.recall == 1.0 and s.precision == 1.0 for s in scores), scores
