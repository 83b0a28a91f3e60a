"""The benchmark's pure-Python reference (benchmarks/reference_core.py) reports exactly the
condition changes of `DedupWindow` + `DetectionEngine` with the default detectors, on the
benchmark's own fleet (with duplicates, late and replayed readings, epoch restarts) and on a
day and a bit of a small fleet with faults, falls, inactivity and alarms written in."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from sensing.dedup.window import DedupWindow
from sensing.detect.engine import ConditionChange, DetectionEngine, Readings
from sensing.kernels.dedup import ADMITTED
from sensing.wire.kinds import KINDS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_core
from bench_core import T0, Fleet
from reference_core import ReferenceCore, rows_from_columns

Row = tuple[int, int, int, int, float, list[tuple[int, float]]]
"""(device, epoch, seq, ts, battery, [(fleet channel index, value), ...])"""
Key = tuple[int, str, str | None, int, int]


def rows_of(c: dict[str, np.ndarray]) -> list[Row]:
    values: list[list[tuple[int, float]]] = [[] for _ in range(c["dev"].size)]
    for row, ch, v in zip(c["value_row"].tolist(), c["value_channel"].tolist(),
                          c["value"].tolist(), strict=True):
        values[row].append((ch, v))
    return list(zip(c["dev"].tolist(), c["epoch"].tolist(), c["seq"].tolist(),
                    c["ts"].tolist(), c["battery"].tolist(), values, strict=True))


def columns(rows: list[Row]) -> dict[str, np.ndarray]:
    value_row = [r for r, row in enumerate(rows) for _ in row[5]]
    return {
        "dev": np.array([r[0] for r in rows], np.int32),
        "epoch": np.array([r[1] for r in rows], np.int64),
        "seq": np.array([r[2] for r in rows], np.int64),
        "ts": np.array([r[3] for r in rows], np.int64),
        "battery": np.array([r[4] for r in rows], np.float64),
        "value_row": np.array(value_row, np.int32),
        "value_channel": np.array([ch for r in rows for ch, _ in r[5]], np.int32),
        "value": np.array([v for r in rows for _, v in r[5]], np.float64),
    }


def disorder(steps: list[list[Row]], seed: int) -> list[list[Row]]:
    """Re-sent readings (of this step and the one before) and late ones (held back to the end
    of one of the next three steps)."""
    rng = np.random.default_rng(seed)
    out: list[list[Row]] = []
    late: dict[int, list[Row]] = {}
    for i, step in enumerate(steps):
        rows: list[Row] = []
        for row in step:
            u = rng.random()
            if u < 0.03 and i + 1 < len(steps):
                late.setdefault(min(len(steps) - 1, i + int(rng.integers(1, 4))), []).append(row)
                continue
            rows.append(row)
            if u > 0.99:
                rows.append(row)
        rows += late.pop(i, [])
        if out and len(out[-1]):
            rows += [out[-1][j] for j in rng.choice(len(out[-1]), len(out[-1]) // 30)]
        out.append(rows)
    return out


def engine_changes(fleet: Fleet, steps: list[list[Row]]) -> tuple[list[ConditionChange],
                                                                    list[Key], list[float]]:
    """What `bench_core.columnar_step` grades, step by step."""
    dedup, engine = DedupWindow(), DetectionEngine(fleet.registry())
    dedup.ensure_capacity(fleet.n)
    got: list[ConditionChange] = []
    for step in steps:
        c = columns(step)
        keep = dedup.classify(c["dev"], c["epoch"], c["seq"]) == ADMITTED
        new_row = np.cumsum(keep) - 1
        value_keep = keep[c["value_row"]]
        r = Readings(dev=c["dev"][keep], ts=c["ts"][keep], battery=c["battery"][keep],
                     value_row=new_row[c["value_row"][value_keep]].astype(np.int32),
                     value_channel=c["value_channel"][value_keep],
                     value=c["value"][value_keep])
        got += engine.process(r)
    return (got, [(x.device, x.type, x.grade, x.ts_event, x.ts) for x in got],
            [x.value for x in got])


def reference_changes(fleet: Fleet, steps: list[list[Row]]) -> tuple[list[Key], list[float]]:
    core = ReferenceCore()
    kinds = fleet.kind.tolist()
    want = [x for step in steps
            for x in core.process(rows_from_columns(columns(step), KINDS, fleet.channels,
                                                    kinds))]
    return [x[:5] for x in want], [x[5] for x in want]


def assert_same(fleet: Fleet, steps: list[list[Row]]) -> list[ConditionChange]:
    got, got_keys, got_values = engine_changes(fleet, steps)
    want_keys, want_values = reference_changes(fleet, steps)
    assert got_keys == want_keys
    assert got_values == pytest.approx(want_values, rel=1e-9, abs=1e-12, nan_ok=True)
    return got


def test_the_benchmark_fleet_grades_the_same() -> None:
    fleet = Fleet(600)
    fleet.incident = np.random.default_rng(11).random(fleet.n) < 0.05
    burning = np.flatnonzero(fleet.incident).tolist()
    incident = set(burning)
    restart = set(burning[:4])  # rebooted in round 12: epoch 1, seq from 0
    jump = set(burning[4:8])  # seq jumps by more than the dedup window in round 12
    steps: list[list[Row]] = []
    quiet: dict[int, Row] = {}
    for i, c in enumerate(bench_core.batches(fleet, 300, range(32))):  # two steps a round
        rnd, half = divmod(i, 2)
        rows = []
        for d, epoch, seq, ts, battery, values in rows_of(c):
            if d in restart and seq >= 12:
                epoch, seq = 1, seq - 12
            elif d in jump and seq >= 12:
                seq += 5000
            if rnd == 5 and d in incident:
                quiet[d] = (d, epoch, seq, ts, battery, values)  # held back ...
                continue
            rows.append((d, epoch, seq, ts, battery, values))
        if rnd == 15:  # ... to round 15, amid the alarms: too old after a restart or jump
            rows += [quiet[d] for d in burning if d // 300 == half]
        steps.append(rows)
    steps = disorder(steps, seed=1)
    got = assert_same(fleet, steps)
    types = {(c.type, c.grade is None) for c in got}
    assert {("smoke.fire", False), ("smoke.fire", True), ("manhole.displaced", False),
            ("manhole.gas", False), ("wearable.vitals", False), ("wearable.sos", False),
            } <= types


ROUND_MS = 30_000
DRIFT_FROM = 2_900  # after the drift checks' day of warm-up (2,880 rounds)


def scenario(d: int, channel: str, rnd: int) -> float | None:
    """The value device `d` reports on `channel` in round `rnd` instead of its noise."""
    events: dict[tuple[int, str], Callable[[int], float | None]] = {
        (0, "temp_c"): lambda r: 42.0 + r % 3 / 10 if r >= DRIFT_FROM else None,  # drift
        (3, "temp_c"): lambda r: (21.0 if 100 <= r < 1_000 else  # stuck 7.5 h
                                  40.0 if r == 1_500 else 60.0 if 1_501 <= r < 1_504 else None),
        (6, "co_ppm"): lambda r: (400.0 if 200 <= r < 210 else  # held above the reset:
                                  200.0 if 210 <= r < 215 else None),  # stays critical
        (4, "tilt_deg"): lambda r: 12.0 if 130 <= r < 136 else 7.0 if 136 <= r < 140 else None,
        (6, "obscuration"): lambda r: -1.0 if 300 <= r < 305 else None,  # impossible
        (1, "tilt_deg"): lambda r: -5.0 if 50 <= r < 55 else None,
        (1, "water_m"): lambda r: math.nan if r in (60, 61, 80) else None,
        (4, "water_m"): lambda r: 0.1 if 100 <= r < 110 else None,
        (4, "gas_lel"): lambda r: 30.0 if 120 <= r < 125 else None,
        (2, "heart_rate"): lambda r: 72.0 if 100 <= r < 200 else None,  # stuck 50 min
        (2, "spo2"): lambda r: 80.0 + r % 3 if r >= DRIFT_FROM else None,  # drift
        (5, "spo2"): lambda r: 120.0 if 300 <= r < 305 else None,  # impossible
        (5, "sos"): lambda r: 0.5 if r == 400 else None,  # impossible, and SOS (latching)
        (8, "accel_g"): lambda r: 3.0 if r == 500 else 1.0 if 501 <= r < 510 else None,
        (8, "steps"): lambda r: (0.0 if r <= 600 else 10.0 if r == 601 else None),
        # a knock, then steps while the wrist hangs still at the side: no fall; a knock and
        # lying still without a step: a fall
        (11, "accel_g"): lambda r: 3.0 if r == 800 else 1.0 if 801 <= r < 820 else None,
        (11, "steps"): lambda r: 0.0 if 790 <= r <= 800 or 802 <= r < 820 else (
            10.0 if r == 801 else None),
        (5, "accel_g"): lambda r: 3.0 if r == 900 else 1.0 if 901 <= r < 910 else None,
        (5, "steps"): lambda r: 0.0 if 895 <= r < 910 else None,
        (11, "heart_rate"): lambda r: 160.0 if 700 <= r < 710 else None,
        (7, "water_m"): lambda r: 2.0 if 200 <= r < 300 else None,  # stuck 50 min
        (10, "gas_lel"): lambda r: 0.0 if 200 <= r < 400 else None,  # clean air: not stuck
    }
    event = events.get((d, channel))
    return None if event is None else event(rnd)


def fault_rounds(fleet: Fleet, rounds: int, per_step: int) -> Iterator[list[Row]]:
    devices = np.arange(fleet.n)
    for first in range(0, rounds, per_step):
        step: list[Row] = []
        for rnd in range(first, min(first + per_step, rounds)):
            for d, epoch, seq, _, battery, values in rows_of(fleet.readings(devices, rnd,
                                                                            seed=rnd)):
                if d == 9 and 400 <= rnd < 500:
                    battery = 0.15 if rnd < 450 else 0.05
                values = [(ch, v if (x := scenario(d, fleet.channels[ch], rnd)) is None
                           else x) for ch, v in values]
                ts = T0 + rnd * ROUND_MS + d * 7
                if d == 2:  # its step counter reports on its own, and in rounds 150-159 a
                    # second early: the other channels' readings come after a newer one
                    seq *= 2
                    if 150 <= rnd < 160:
                        step.append((d, epoch, seq + 1, ts + 1_000, math.nan,
                                     [(fleet.channels.index("steps"), 3.0)]))
                step.append((d, epoch, seq, ts, battery, values))
        yield step


def test_faults_falls_and_inactivity_grade_the_same() -> None:
    fleet = Fleet(12)
    fleet.incident[:] = False
    steps = disorder(list(fault_rounds(fleet, DRIFT_FROM + 400, per_step=10)), seed=2)
    got = assert_same(fleet, steps)
    reasons = " | ".join(c.reason for c in got if c.grade is not None)
    for what in ("impossible", "stuck at", "drifting", "fall:", "no steps", "rising",
                 "battery"):
        assert what in reasons
    faults = [(c.device, c.grade is None) for c in got if c.type == "device.fault"]
    assert {(1, False), (1, True), (2, False), (2, True), (3, False), (3, True), (6, False),
            (6, True), (5, False), (5, True), (0, False), (7, False), (7, True)} <= set(faults)
    assert 10 not in {d for d, _ in faults}
    falls = [c.device for c in got if c.type == "wearable.fall"]
    assert 5 in falls and 11 not in falls
