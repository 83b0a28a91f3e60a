"""The end-to-end benchmark (benchmarks/bench_e2e.py) at CI size: the core and the naive
script, one reading per message and 100-reading arrays, on real Mosquitto and VictoriaMetrics
processes. Every reading sent is found in the store exactly once, and the JSON document carries
every figure. No timing is asserted: figures on a shared machine are whatever they are."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from e2e.fleet import Fleet, FleetError, Phase, messages
from e2e.mqtt_frames import ProtocolError, check_pubacks, remaining_length

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

FIGURES = ("stored_per_s", "offered_per_s", "cpu_s", "cpu_us_per_reading",
           "readings_per_cpu_s", "broker_cpu_s", "store_cpu_s", "peak_rss_mb", "seconds")
LATENCY_FIGURES = ("rate", "offered_per_s", "readings", "alarms_sent", "alerts_matched",
                   "p50_ms", "p99_ms", "max_ms")


@pytest.mark.e2e
def test_quick_run_stores_every_reading_once_and_reports_every_figure(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_e2e.py"), "--quick", "--only", "sensing,naive",
         "--payloads", "single,array", "--latency-seconds", "1.5", "--json",
         "--workdir", str(tmp_path)],
        capture_output=True, timeout=240, check=False)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
    doc = json.loads(run.stdout)
    rows = {(r["pipeline"], r["payload"]): r for r in doc["results"]}
    assert set(rows) == {("sensing", "single"), ("sensing", "array"), ("naive", "single"),
                         ("naive", "array")}
    for key, row in rows.items():
        assert row["error"] is None and row["skipped"] is None, key
        assert row["sent"] == (3_000 if key[1] == "single" else 6_000), key
        assert (row["stored"], row["lost"], row["stored_twice"], row["unexpected"]) == (
            row["sent"], 0, 0, 0), key
        assert row["complete"], key
        for name in FIGURES:
            assert isinstance(row[name], int | float) and row[name] >= 0, (key, name)
        assert row["stored_per_s"] > 0 and row["peak_rss_mb"] > 0, key
        latency = row["latency"]
        for name in LATENCY_FIGURES:
            assert isinstance(latency[name], int | float), (key, name)
        assert latency["alarms_sent"] == 5 and latency["alerts_matched"] == 5, key
        if key[0] == "sensing":  # its alerts say when the core raised them
            assert -2 <= latency["raised_p99_ms"] <= latency["max_ms"] + 2, key
    names = [t["name"] for t in doc["targets"]]
    assert any("<= naive / 10" in n for n in names)
    assert any(">= 20x naive" in n for n in names)
    single_cpu = next(t for t in doc["targets"] if "<= naive / 10" in t["name"])
    assert single_cpu["passed"] in (True, False)  # measured, whichever way it went
    assert doc["settings"]["quick"] is True


def test_pubacks_are_checked_in_order_and_whole() -> None:
    acks = b"".join(b"\x40\x02" + (i % 65_535 + 1).to_bytes(2, "big")
                    for i in range(65_530, 65_540))
    check_pubacks(acks, 65_530)  # the packet ids wrap from 65,535 to 1
    with pytest.raises(ProtocolError, match="packet id"):
        check_pubacks(acks, 65_529)
    with pytest.raises(ProtocolError, match="expected PUBACK"):
        check_pubacks(b"\x50\x02\x00\x01", 0)
    with pytest.raises(ValueError, match="whole"):
        check_pubacks(acks[:-1], 65_530)


def test_remaining_length_is_the_spec_varint() -> None:
    assert [remaining_length(n) for n in (0, 127, 128, 16_383, 16_384, 268_435_455)] == [
        b"\x00", b"\x7f", b"\x80\x01", b"\xff\x7f", b"\x80\x80\x01", b"\xff\xff\xff\x7f"]
    with pytest.raises(ValueError):
        remaining_length(268_435_456)


def test_fleet_refuses_what_it_cannot_build() -> None:
    for devices, gateways in ((2, 1), (1_000, 7), (300_000, 100), (100_000, 5)):
        with pytest.raises(FleetError):
            Fleet(devices, gateways)
    with pytest.raises(FleetError):
        Phase(Fleet(300, 3), "xml", 10, 0, 0)


def test_a_phase_sends_each_device_its_seqs_in_order_with_alarms_on_distinct_wearables(
) -> None:
    fleet = Fleet(600, 6)
    phase = Phase(fleet, "array", 1_500, 7, int(time.time() * 1000) - 3_600_000, alarms=4)
    msgs = [m for gw in range(6) for m in messages(phase, [gw])]
    seqs: dict[str, list[int]] = {}
    stamps: dict[str, list[int]] = {}
    alarms = []
    for m in msgs:
        for r in json.loads(m.payload):
            assert m.topic.decode() == f"sensing/v1/{r['area']}/{r['gateway']}/readings"
            seqs.setdefault(r["device"], []).append(r["seq"])
            stamps.setdefault(r["gateway"], []).append(r["ts"])
            if r["values"].get("sos") == 1.0:
                alarms.append(r["device"])
                assert m.alarm_device == r["device"]
    counts = phase.readings_per_device()
    assert sum(len(s) for s in seqs.values()) == 1_500 == int(counts.sum())
    for d in range(fleet.devices):
        assert seqs[Fleet.name(d)] == list(range(7, 7 + int(counts[d])))
    for ts in stamps.values():  # each gateway's event time only moves forward
        assert ts == sorted(ts)
    assert len(alarms) == len(set(alarms)) == 4
    assert all(a.startswith("wearable-") for a in alarms)
    assert sorted(m.alarm_device for m in msgs if m.alarm_device) == sorted(alarms)
    assert np.all(counts >= 2)
