"""Core pipeline throughput (no broker, no store): decode -> dedup -> detect -> line protocol.

Compared in the same run with a straightforward script of the kind a user would write first:
json.loads per message, a Python set for duplicates, per-reading threshold checks and an
influxdb-client `Point` per reading. Prints readings/s and the ratio; absolute figures vary with
the machine's load, the ratio is what to compare.

    .venv/bin/python benchmarks/bench_pipeline.py [--devices 10000] [--readings 200000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import numpy as np
import orjson
from influxdb_client.client.write.point import Point

from sensing.detect.rules import BATTERY_CHANNEL, DEFAULT_RULES
from sensing.ingest.mqtt import Incoming
from sensing.pipeline import Pipeline
from sensing.settings import CoreSettings
from sensing.wire import BatchBuilder, binary, topics

T0 = 1_795_478_819_832
PER_MESSAGE = 100
MESSAGES_PER_STEP = 100
KINDS = ("smoke", "manhole", "wearable")


def make_messages(n_devices: int, n_readings: int, fmt: str) -> list[Incoming]:
    rng = np.random.default_rng(1)
    seqs = np.zeros(n_devices, dtype=np.int64)
    out = []
    topic = topics.readings_topic("bench", "gw-1")
    for m in range(n_readings // PER_MESSAGE):
        b = BatchBuilder()
        for dev in rng.integers(0, n_devices, PER_MESSAGE).tolist():
            kind = KINDS[dev % 3]
            values = {
                "smoke": {"obscuration": float(rng.uniform(0, 0.3)), "temp_c": 21.0, "co_ppm": 1.0},
                "manhole": {"tilt_deg": 0.5, "water_m": 2.0, "gas_lel": float(rng.uniform(0, 1))},
                "wearable": {"heart_rate": float(rng.uniform(60, 90)), "spo2": 97.0,
                             "accel_g": 1.0, "steps": 3.0, "sos": 0.0},
            }[kind]
            b.add(f"{kind}-{dev:06d}", kind, 0, int(seqs[dev]), T0 + m * 10, values, 0.9)
            seqs[dev] += 1
        batch = b.build()
        payload = binary.encode(batch) if fmt == "snb1" else orjson.dumps(batch.readings())
        out.append(Incoming(topic, payload, m, 1, 0))
    return out


def run_pipeline(messages: list[Incoming]) -> int:
    pipe = Pipeline(CoreSettings())
    lines = 0
    for i in range(0, len(messages), MESSAGES_PER_STEP):
        for block in pipe.process(messages[i : i + MESSAGES_PER_STEP], T0).lines:
            # reading lines come as one bytes block per step, alert lines one by one
            lines += block.count(b"\n") + 1 if isinstance(block, bytes) else 0
    return lines


def run_naive(messages: list[Incoming]) -> int:
    """What a first script does: per-message JSON, a set, if-statements, a Point per reading."""
    seen: set[tuple[str, int, int]] = set()
    level: dict[tuple[str, str], int] = {}
    lines = 0
    for m in messages:
        for r in json.loads(m.payload):
            key = (r["device"], r.get("epoch", 0), r["seq"])
            if key in seen:
                continue
            seen.add(key)
            values = dict(r["values"])
            values[BATTERY_CHANNEL] = r.get("battery", 1.0)
            for rule in DEFAULT_RULES:
                if rule.kind != r["kind"] or rule.channel not in values:
                    continue
                v = values[rule.channel]
                met = 0
                for k, lv in enumerate(rule.levels):
                    if (v >= lv.threshold) if rule.above else (v <= lv.threshold):
                        met = k + 1
                level[(r["device"], rule.name)] = met
            p = Point("reading").tag("device", r["device"]).tag("kind", r["kind"])
            for ch, v in r["values"].items():
                p = p.field(ch, v)
            p = p.field("seq", r["seq"]).time(r["ts"], write_precision="ms")
            p.to_line_protocol()
            lines += 1
    return lines


def best_of(fn: Callable[[list[Incoming]], int], messages: list[Incoming], n_readings: int,
            repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        got = fn(messages)
        best = min(best, time.perf_counter() - t)
        assert got == n_readings, (fn.__name__, got, n_readings)
    return n_readings / best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    n = args.readings - args.readings % PER_MESSAGE
    snb1 = make_messages(args.devices, n, "snb1")
    js = make_messages(args.devices, n, "json")
    run_pipeline(snb1[:MESSAGES_PER_STEP])  # compile (or load the numba cache) outside timing
    figures = {
        "naive_json": best_of(run_naive, js, n),
        "pipeline_json": best_of(run_pipeline, js, n),
        "pipeline_snb1": best_of(run_pipeline, snb1, n),
    }
    base = figures["naive_json"]
    if args.json:
        sys.stdout.write(json.dumps({k: round(v) for k, v in figures.items()}
                                    | {"devices": args.devices, "readings": n}) + "\n")
        return 0
    print(f"{n:,} readings of {args.devices:,} devices, {PER_MESSAGE} per message")
    print(f"{'path':<48}{'readings/s':>14}{'× naive':>10}")
    labels = {
        "naive_json": "naive: json + set + ifs + influxdb-client Point",
        "pipeline_json": "sensing pipeline, JSON messages",
        "pipeline_snb1": "sensing pipeline, SNB1 messages",
    }
    for key, rate in figures.items():
        print(f"{labels[key]:<48}{rate:>14,.0f}{rate / base:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
