"""The fleet simulator's generation speed, and the core's detection quality on the shipped
scenarios.

    .venv/bin/python benchmarks/bench_sim.py [--devices 10000] [--seconds 300] [--quick]
                                              [--speed-only] [--json]

(1) generation: a fleet of --devices devices (100 per gateway, one reading every 5 s each,
    the default mix, demo incidents) for --seconds of simulated time through
    `sensing_sim.transport.FleetStream`: realistic signals with their nuisances, incidents,
    numbering and one SNB1 message per gateway per simulated second. Readings generated per
    wall second. Baseline in the same run: a naive generator as a first simulator script
    would be: for every device and every interval, a reading dict of uniform random values
    (`random.uniform`), one JSON message (`json.dumps`) per reading, no signal model.
(2) offline: the same fleet and span through `sensing_sim.offline.run_offline` (generation
    and the whole core step, no broker): readings per wall second.
(3) scenarios: each shipped scenario in simulators/scenarios/ run offline and scored against
    its labels: per alert type recall, precision, F1, detection latency (median, p95, in
    simulated seconds), duplicate alerts, false positives; and malformed messages sent against
    the core's dead letters. --quick leaves out district.toml (100,000 devices, ~6 minutes).

Absolute speeds vary with the machine's load; the ratio against the naive generator was
measured in the same run. The scores do not vary: the same seed gives the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import structlog

from sensing_sim.fleet import Fleet, FleetSpec
from sensing_sim.offline import run_offline
from sensing_sim.scenario import load_scenario
from sensing_sim.score import Alert, alerts_from_transitions, score
from sensing_sim.transport import FleetStream

START = 1_795_478_400_000
FALSE_POSITIVES_LISTED = 30
"""(3) lists at most this many alerts that matched no label, per scenario"""
SCENARIOS = Path(__file__).resolve().parent.parent / "simulators" / "scenarios"
CHANNELS = {"smoke": ("obscuration", "temp_c", "co_ppm"),
            "manhole": ("tilt_deg", "water_m", "gas_lel"),
            "wearable": ("heart_rate", "spo2", "accel_g", "steps", "sos")}


def fleet_of(devices: int, seconds: float) -> Fleet:
    fleet = Fleet(FleetSpec(n_gateways=max(1, devices // 100), n_devices=devices,
                            interval_s=5.0, seed=1))
    fleet.schedule_demo_incidents(seconds)
    return fleet


def bench_generation(devices: int, seconds: float) -> dict[str, Any]:
    fleet = fleet_of(devices, seconds)
    t = time.perf_counter()
    stream = FleetStream(fleet, seconds, start_ms=START)
    payload_bytes = 0
    for _, arrived in stream.steps():
        payload_bytes += sum(len(m.payload) for m in arrived)
    wall = time.perf_counter() - t
    readings = stream.counts.readings_sent
    return {"readings": readings, "wall_s": round(wall, 3),
            "readings_per_s": round(readings / wall),
            "bytes_per_reading": round(payload_bytes / readings, 1)}


def bench_naive(devices: int, seconds: float) -> dict[str, Any]:
    rng = random.Random(1)
    kinds = [("smoke", "manhole", "wearable")[i % 3] for i in range(devices)]
    t = time.perf_counter()
    readings = 0
    payload_bytes = 0
    for step in range(int(seconds // 5)):
        ts = START + step * 5000
        for i, kind in enumerate(kinds):
            msg = json.dumps({"device": f"{kind}-{i:06d}", "kind": kind, "seq": step,
                              "ts": ts, "values": {c: rng.uniform(0, 100)
                                                   for c in CHANNELS[kind]},
                              "battery": rng.uniform(0.3, 1.0)})
            payload_bytes += len(msg)
            readings += 1
    wall = time.perf_counter() - t
    return {"readings": readings, "wall_s": round(wall, 3),
            "readings_per_s": round(readings / wall),
            "bytes_per_reading": round(payload_bytes / readings, 1)}


def bench_offline(devices: int, seconds: float) -> dict[str, Any]:
    fleet = fleet_of(devices, seconds)
    run = run_offline(fleet, seconds, start_ms=START)
    return {"readings": run.readings, "wall_s": round(run.wall_s, 3),
            "readings_per_s": round(run.readings / run.wall_s)}


def bench_scenario(path: Path) -> dict[str, Any]:
    scenario = load_scenario(path)
    fleet = scenario.build()
    run = run_offline(fleet, scenario.run.duration_s, start_ms=scenario.run.start_ms,
                      faults=scenario.faults.transport())
    labels = [i.to_dict(scenario.run.start_ms) for i in fleet.incidents]
    unmatched: list[Alert] = []
    scores = score(labels, alerts_from_transitions(run.alerts), false_positives=unmatched)
    return {
        "scenario": path.name, "devices": len(fleet.devices), "gateways": len(fleet.gateways),
        "simulated_s": scenario.run.duration_s, "wall_s": round(run.wall_s, 1),
        "readings": run.readings, "readings_per_s": round(run.readings / run.wall_s),
        "labels": len(labels), "malformed_sent": run.sent.get("malformed_total", 0),
        "dead_lettered": len(run.deadletters),
        "readings_sent": run.sent.get("readings_sent"),
        "readings_stored": run.core.get("readings_stored"),
        "types": [{"type": s.type, "labels": s.labels, "detected": s.detected,
                   "recall": round(s.recall, 3), "precision": round(s.precision, 3),
                   "f1": round(s.f1, 3), "latency_p50_s": s.latency_median_s,
                   "latency_p95_s": s.latency_p95_s, "duplicates": s.duplicates,
                   "false_positives": s.false_positives, "grade_ok": s.grade_ok,
                   "covered": s.covered, "resolved_early": s.resolved_early}
                  for s in scores],
        "false_positive_alerts": [
            {"type": a.type, "device": a.device, "grade": a.grade.value,
             "raised_s": (a.ts_raised - scenario.run.start_ms) / 1000}
            for a in unmatched[:FALSE_POSITIVES_LISTED]],
    }


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--devices", type=int, default=10_000, help="fleet of (1) and (2)")
    ap.add_argument("--seconds", type=float, default=300.0, help="simulated span of (1), (2)")
    ap.add_argument("--quick", action="store_true", help="leave out district.toml in (3)")
    ap.add_argument("--speed-only", action="store_true", help="(1) and (2) only")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    out: dict[str, Any] = {}
    out["generation"] = bench_generation(args.devices, args.seconds)
    out["naive_generation"] = bench_naive(args.devices, args.seconds)
    out["generation_ratio"] = round(out["generation"]["readings_per_s"]
                                    / out["naive_generation"]["readings_per_s"], 2)
    out["offline"] = bench_offline(args.devices, args.seconds)
    paths = [] if args.speed_only else sorted(SCENARIOS.glob("*.toml"))
    if args.quick:
        paths = [p for p in paths if p.name != "district.toml"]
    out["scenarios"] = []
    for path in paths:
        print(f"bench_sim: {path.name} ...", file=sys.stderr, flush=True)
        out["scenarios"].append(bench_scenario(path))
    if args.json:
        print(json.dumps(out))
        return 0
    g, n, o = out["generation"], out["naive_generation"], out["offline"]
    print(f"(1) generation, {args.devices:,} devices, {args.seconds:g} simulated s: "
          f"{g['readings_per_s']:,} readings/s ({g['bytes_per_reading']} B each in SNB1); "
          f"naive random JSON: {n['readings_per_s']:,} readings/s "
          f"({n['bytes_per_reading']} B each): ×{out['generation_ratio']}")
    print(f"(2) offline (generation + core): {o['readings_per_s']:,} readings/s "
          f"({o['readings']:,} readings in {o['wall_s']} s)")
    print("(3) scenarios")
    for sc in out["scenarios"]:
        print(f"\n{sc['scenario']}: {sc['devices']:,} devices, {sc['gateways']} gateways, "
              f"{sc['simulated_s']:g} s simulated in {sc['wall_s']} s "
              f"({sc['readings_per_s']:,} readings/s); stored {sc['readings_stored']:,} of "
              f"{sc['readings_sent']:,} sent; malformed sent {sc['malformed_sent']}, "
              f"dead-lettered {sc['dead_lettered']}")
        print(f"  {'type':22} {'labels':>6} {'found':>5} {'recall':>6} {'prec.':>6} "
              f"{'F1':>5} {'p50 s':>6} {'p95 s':>6} {'dup':>4} {'FP':>4} {'early':>5}")
        for t in sc["types"]:
            print(f"  {t['type']:22} {t['labels']:>6} {t['detected']:>5} {t['recall']:>6.2f} "
                  f"{t['precision']:>6.2f} {t['f1']:>5.2f} {_secs(t['latency_p50_s']):>6} "
                  f"{_secs(t['latency_p95_s']):>6} {t['duplicates']:>4} "
                  f"{t['false_positives']:>4} {t['resolved_early']:>5}")
        for a in sc["false_positive_alerts"]:
            print(f"  false positive: {a['type']} ({a['grade']}) on {a['device']} "
                  f"at {a['raised_s']:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
