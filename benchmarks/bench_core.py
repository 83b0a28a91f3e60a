"""The stream core's hot path at full speed: 100,000 devices, batches of 10,000 readings.

    .venv/bin/python benchmarks/bench_core.py [--devices 100000] [--batch 10000] [--json]

(a) dedup + every detector + grading on decoded columnar arrays (what `Pipeline._readings`
    does after decoding, without line protocol), with each batch's devices in index order and
    again with each gateway's 1,000 devices in a new random order every round, as real readings
    arrive (the state of devices in index order is read ahead by the processor);
(b) the whole `Pipeline.process` step from SNB1 messages: decode, validation, interning,
    dedup, detection, grading, alert lifecycle and line protocol (no broker, no store); once
    with gateways that send the same device table every time (1,000 devices each) and once with
    tables that change from message to message (each round, a gateway's devices shuffled
    into two messages of 500);
(c) a pure-Python reference of (a)'s logic over the same readings, one reading at a time in
    dicts per device (`reference_core.py`): the anti-replay window, every default detector
    (threshold rules, fault checks, fall, inactivity) and the engine's grading; a test
    (tests/test_bench_reference.py) checks that it reports the same condition changes as (a);
(d) river's HalfSpaceTrees, score + learn, on one channel;
(e) start-up to the first processed batch in a fresh interpreter, with an empty numba cache
    (NUMBA_CACHE_DIR in a new temporary directory) and with that cache filled.

Rates are the best of a few timed passes over fresh readings (later rounds of the same fleet),
after one round that registers every device. The fleet is quiet but for 0.5 % of the devices,
which go into alarm and out again, so grading and the alert lifecycle run too.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import structlog
from reference_core import Reading, ReferenceCore, rows_from_columns

from sensing.dedup.window import DedupWindow
from sensing.detect.engine import DetectionEngine, Readings
from sensing.ingest.mqtt import Incoming
from sensing.kernels.dedup import ADMITTED
from sensing.pipeline import Pipeline
from sensing.registry import Registry
from sensing.settings import CoreSettings
from sensing.wire import binary, topics
from sensing.wire.batch import ReadingBatch
from sensing.wire.kinds import KIND_CHANNELS, KINDS

T0 = 1_795_478_819_832
ROUND_MS = 10_000
PER_GATEWAY = 1_000
# quiet level, noise and resolution per channel; the alarm level of the devices in an incident
SIGNAL: dict[str, tuple[float, float, float, float]] = {
    "obscuration": (0.2, 0.1, 0.01, 12.0),
    "temp_c": (22.0, 0.5, 0.1, 22.0),
    "co_ppm": (2.0, 1.0, 1.0, 2.0),
    "tilt_deg": (0.5, 0.3, 0.1, 40.0),
    "water_m": (2.0, 0.05, 0.01, 2.0),
    "gas_lel": (0.5, 0.3, 0.1, 30.0),
    "heart_rate": (72.0, 6.0, 1.0, 72.0),
    "spo2": (97.0, 1.0, 1.0, 82.0),
    "accel_g": (1.0, 0.2, 0.01, 1.0),
    "steps": (5.0, 4.0, 1.0, 0.0),
    "sos": (0.0, 0.0, 1.0, 1.0),
}


@dataclass
class Fleet:
    """`n` devices: kind d % 3, gateway d // 1000, ten gateways to an area."""

    n: int

    def __post_init__(self) -> None:
        self.kind = (np.arange(self.n) % len(KINDS)).astype(np.int8)
        self.names = [f"{KINDS[k]}-{d:06d}" for d, k in enumerate(self.kind.tolist())]
        self.channels = tuple(dict.fromkeys(c for k in KINDS for c in KIND_CHANNELS[k]))
        self.kind_channels = [np.array([self.channels.index(c) for c in KIND_CHANNELS[k]],
                                       dtype=np.int32) for k in KINDS]
        rng = np.random.default_rng(7)
        self.incident = rng.random(self.n) < 0.005

    def gateway(self, d: int) -> tuple[str, str]:
        g = d // PER_GATEWAY
        return f"gw-{g:04d}", f"area-{g // 10:03d}"

    def readings(self, devices: np.ndarray, rnd: int, seed: int) -> dict[str, np.ndarray]:
        """One reading of each device in round `rnd` (event time T0 + rnd * 10 s): columns with
        global device indices and global channel indices (the fleet's channel order)."""
        rng = np.random.default_rng(seed)
        devices = devices.astype(np.int32)
        kinds = self.kind[devices]
        per = np.array([len(KIND_CHANNELS[k]) for k in KINDS])[kinds]
        value_row = np.repeat(np.arange(devices.size, dtype=np.int32), per)
        first = np.concatenate([[0], np.cumsum(per)[:-1]])
        slot = np.arange(value_row.size) - first[value_row]
        table = np.full((len(KINDS), 5), -1, dtype=np.int32)
        for k, chans in enumerate(self.kind_channels):
            table[k, : chans.size] = chans
        channel = table[kinds[value_row], slot]
        base, noise, step, alarm = (np.array([SIGNAL[c][i] for c in self.channels])[channel]
                                    for i in range(4))
        burning = self.incident[devices[value_row]] & (rnd % 20 >= 10)
        level = np.where(burning, alarm, base) + noise * rng.standard_normal(value_row.size)
        value = np.maximum(np.round(level / step) / np.round(1 / step), 0.0)  # 0.23, not
        # 23 * 0.01: a sensor's decimals, as a device or a JSON payload would give them
        return {
            "dev": devices, "epoch": np.zeros(devices.size, np.int64),
            "seq": np.full(devices.size, rnd, np.int64),
            "ts": T0 + rnd * ROUND_MS + (devices % PER_GATEWAY).astype(np.int64) * 7,
            "battery": np.round(0.9 - 0.0001 * rnd + 0.01 * rng.random(devices.size), 2),
            "value_row": value_row, "value_channel": channel, "value": value,
        }

    def snb1(self, cols: dict[str, np.ndarray]) -> bytes:
        """The readings of one gateway as an SNB1 payload with its own device table."""
        table, local = np.unique(cols["dev"], return_inverse=True)
        batch = ReadingBatch(
            devices=tuple(self.names[d] for d in table.tolist()),
            kinds=tuple(KINDS[k] for k in self.kind[table].tolist()),
            channels=self.channels, device=local.astype(np.int32), epoch=cols["epoch"],
            seq=cols["seq"], ts=cols["ts"], battery=cols["battery"],
            value_row=cols["value_row"], value_channel=cols["value_channel"],
            value=cols["value"])
        return binary.encode(batch)

    def registry(self) -> Registry:
        """A registry that knows every device, indexed like the fleet."""
        reg = Registry()
        for start in range(0, self.n, PER_GATEWAY):
            devices = np.arange(start, min(start + PER_GATEWAY, self.n))
            batch = ReadingBatch(
                devices=tuple(self.names[d] for d in devices.tolist()),
                kinds=tuple(KINDS[k] for k in self.kind[devices].tolist()), channels=(),
                device=np.zeros(0, np.int32), epoch=np.zeros(0, np.int64),
                seq=np.zeros(0, np.int64), ts=np.zeros(0, np.int64),
                battery=np.zeros(0), value_row=np.zeros(0, np.int32),
                value_channel=np.zeros(0, np.int32), value=np.zeros(0))
            reg.intern_batch(batch, *self.gateway(start))
        reg.channels.lookup(self.channels)
        return reg


def batches(fleet: Fleet, batch: int, rounds: range, shuffled: bool = False
            ) -> list[dict[str, np.ndarray]]:
    """Every device once per round, `batch` devices at a time, a gateway after another; with
    `shuffled`, each gateway's devices in a new random order every round (as its readings
    arrive), else in index order."""
    out = []
    for rnd in rounds:
        rng = np.random.default_rng(rnd)
        for start in range(0, fleet.n, batch):
            devices = np.arange(start, min(start + batch, fleet.n))
            if shuffled:
                devices = np.concatenate([rng.permutation(devices[i : i + PER_GATEWAY])
                                          for i in range(0, devices.size, PER_GATEWAY)])
            out.append(fleet.readings(devices, rnd, seed=rnd * 1_000_003 + start))
    return out


def best_rate(passes: list[Callable[[], int]]) -> float:
    best = 0.0
    for run in passes:
        t = time.perf_counter()
        n = run()
        best = max(best, n / (time.perf_counter() - t))
    return best


# -- (a) dedup + detection + grading on decoded arrays ----------------------------------------

def columnar_step(dedup: DedupWindow, engine: DetectionEngine, c: dict[str, np.ndarray]
                  ) -> tuple[int, int]:
    """What the pipeline does with a step's readings once decoded (without line protocol):
    (readings, condition changes)."""
    verdict = dedup.classify(c["dev"], c["epoch"], c["seq"])
    keep = verdict == ADMITTED
    r = Readings.kept(keep, c["dev"], c["ts"], c["battery"], c["value_row"], c["value_channel"],
                      c["value"])
    return int(keep.shape[0]), len(engine.process(r))


def bench_columnar(fleet: Fleet, batch: int, passes: int, per_pass: int,
                   shuffled: bool = False) -> tuple[float, int]:
    """(readings/s, condition changes graded in the timed passes)"""
    reg = fleet.registry()
    dedup, engine = DedupWindow(), DetectionEngine(reg)
    dedup.ensure_capacity(fleet.n)
    rounds_per_pass = max(1, per_pass // fleet.n)
    for c in batches(fleet, batch, range(1)):
        columnar_step(dedup, engine, c)
    graded = [0]

    def run(steps: list[dict[str, np.ndarray]]) -> int:
        n = 0
        for c in steps:
            readings, changes = columnar_step(dedup, engine, c)
            n += readings
            graded[0] += changes
        return n

    runs = []
    for p in range(passes):
        steps = batches(fleet, batch, range(1 + p * rounds_per_pass,
                                            1 + (p + 1) * rounds_per_pass), shuffled)
        runs.append(lambda steps=steps: run(steps))
    return best_rate(runs), graded[0]


# -- (b) the whole pipeline step from SNB1 messages --------------------------------------------

def messages_for(fleet: Fleet, rnd: int, split: int | None, rng: np.random.Generator
                 ) -> list[Incoming]:
    """Every gateway's readings of round `rnd`: one message with the same device table every
    round, or (`split`) messages of `split` devices shuffled anew each round."""
    out = []
    for start in range(0, fleet.n, PER_GATEWAY):
        devices = np.arange(start, min(start + PER_GATEWAY, fleet.n))
        parts = [devices] if split is None else np.split(
            rng.permutation(devices), range(split, devices.size, split))
        area, gateway = reversed(fleet.gateway(start))
        for part in parts:
            cols = fleet.readings(part, rnd, seed=rnd * 1_000_003 + int(part[0]))
            out.append(Incoming(topics.readings_topic(area, gateway), fleet.snb1(cols),
                                len(out), 1, 0))
    return out


def bench_pipeline(fleet: Fleet, batch: int, passes: int, per_pass: int,
                   split: int | None) -> float:
    per_step = max(1, batch // (split or PER_GATEWAY))
    rounds_per_pass = max(1, per_pass // fleet.n)
    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory() as tmp:
        pipe = Pipeline(CoreSettings(state_dir=tmp))

        def run(rounds: list[list[Incoming]], first: int) -> int:
            before = pipe.stats.readings_received
            for rnd, msgs in enumerate(rounds, first):
                for i in range(0, len(msgs), per_step):
                    out = pipe.process(msgs[i : i + per_step],
                                       now=T0 + rnd * ROUND_MS + ROUND_MS // 2)
                    assert out.lines
            return pipe.stats.readings_received - before

        run([messages_for(fleet, 0, split, rng)], 0)  # registers every device
        runs = []
        for p in range(passes):
            first = 1 + p * rounds_per_pass
            rounds = [messages_for(fleet, rnd, split, rng)
                      for rnd in range(first, first + rounds_per_pass)]
            runs.append(lambda rounds=rounds, first=first: run(rounds, first))
        rate = best_rate(runs)
        pipe.book.close()
        return rate


# -- (c) pure-Python reference ----------------------------------------------------------------

def bench_python(fleet: Fleet, batch: int, steps: int) -> float:
    """`reference_core.ReferenceCore` (dedup, every default detector and grading, one reading
    at a time in plain Python) over the first `steps` batches of a round, after one round that
    gives every device its state; readings turned into Python rows outside the timing."""
    core = ReferenceCore()
    kinds = fleet.kind.tolist()

    def rows(c: dict[str, np.ndarray]) -> list[Reading]:
        return rows_from_columns(c, KINDS, fleet.channels, kinds)

    for c in batches(fleet, batch, range(1)):
        core.process(rows(c))

    def run(data: list[list[Reading]]) -> int:
        for readings in data:
            core.process(readings)
        return sum(map(len, data))

    runs: list[Callable[[], int]] = []
    for p in range(3):
        data = [rows(c) for c in batches(fleet, batch, range(1 + p, 2 + p))[:steps]]
        runs.append(functools.partial(run, data))
    return best_rate(runs)


# -- (d) river ----------------------------------------------------------------------------------

def bench_river(points: int) -> float:
    from river.anomaly import HalfSpaceTrees

    rng = np.random.default_rng(5)
    xs = [{"co_ppm": x} for x in np.clip(0.02 + 0.01 * rng.standard_normal(points), 0, 1)]

    def run() -> int:
        model = HalfSpaceTrees(seed=1)
        for x in xs:
            model.score_one(x)
            model.learn_one(x)
        return points

    return best_rate([run, run])


# -- (e) start-up --------------------------------------------------------------------------------

CHILD = """
import time, tempfile
import numpy as np
from sensing.ingest.mqtt import Incoming
from sensing.pipeline import Pipeline
from sensing.settings import CoreSettings
from sensing.wire import BatchBuilder, binary, topics
b = BatchBuilder()
for i in range(300):
    kind = ("smoke", "manhole", "wearable")[i % 3]
    b.add(f"{kind}-{i}", kind, 0, 1, 1795478819832 + i, {"x": 1.0, "obscuration": 0.1}, 0.9)
msg = Incoming(topics.readings_topic("a", "gw"), binary.encode(b.build()), 1, 1, 0)
with tempfile.TemporaryDirectory() as tmp:
    out = Pipeline(CoreSettings(state_dir=tmp)).process([msg], 1795478829832)
    assert out.lines
print(time.time())
"""


def start_up(cache_dir: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    t = time.time()
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, check=True,
                          capture_output=True, text=True).stdout.split()[-1]
    return float(done) - t


def bench_start_up() -> tuple[float, float]:
    cold, warm = [], []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(start_up(cache))
            warm.extend(start_up(cache) for _ in range(2))
    return min(cold), min(warm)


# -- report ------------------------------------------------------------------------------------

TARGETS = {"columnar": 10e6, "pipeline_snb1": 2e6}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--passes", type=int, default=5, help="timed passes; the best counts")
    ap.add_argument("--readings", type=int, default=500_000, help="readings per timed pass")
    ap.add_argument("--skip-start-up", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    fleet = Fleet(args.devices)
    say = (lambda *_: None) if args.json else (lambda s: print(s, file=sys.stderr, flush=True))
    figures: dict[str, float] = {}
    # each figure on its own fleet state; the one before is collected first (its banks are
    # reference cycles), so that no figure pays for the garbage of another
    say("(a) dedup + detection + grading on arrays ...")
    figures["columnar"], open_alerts = bench_columnar(fleet, args.batch, args.passes,
                                                      args.readings)
    gc.collect()
    figures["columnar_shuffled"], _ = bench_columnar(fleet, args.batch, args.passes,
                                                     args.readings, shuffled=True)
    gc.collect()
    say("(b) pipeline step from SNB1 ...")
    figures["pipeline_snb1"] = bench_pipeline(fleet, args.batch, args.passes, args.readings,
                                              None)
    gc.collect()
    figures["pipeline_snb1_changing_tables"] = bench_pipeline(
        fleet, args.batch, args.passes, args.readings, 500)
    gc.collect()
    say("(c) pure Python ...")
    figures["python"] = bench_python(fleet, args.batch, 3)
    say("(d) river ...")
    figures["river_hst"] = bench_river(20_000)
    if not args.skip_start_up:
        say("(e) start-up ...")
        figures["start_cold_s"], figures["start_warm_s"] = bench_start_up()
    if args.json:
        sys.stdout.write(json.dumps({k: round(v, 3) if k.endswith("_s") else round(v)
                                     for k, v in figures.items()}
                                    | {"devices": args.devices, "batch": args.batch}) + "\n")
        return 0
    py = figures["python"]
    print(f"{args.devices:,} devices, batches of {args.batch:,} readings, one core; "
          f"{open_alerts} alert conditions graded in (a)")
    print(f"{'path':<62}{'per second':>14}{'× Python':>10}")
    rows = [
        ("columnar", "(a) dedup + detectors + grading, decoded arrays"),
        ("columnar_shuffled", "(a) the same, each gateway's devices in random order"),
        ("pipeline_snb1", "(b) + SNB1 decode + line protocol (same table per gateway)"),
        ("pipeline_snb1_changing_tables", "(b) + SNB1 decode + line protocol (changing tables)"),
        ("python", "(c) pure Python: same logic (dedup + every detector + grading)"),
        ("river_hst", "(d) river HalfSpaceTrees score + learn, one channel"),
    ]
    for key, label in rows:
        rate = figures[key]
        target = TARGETS.get(key)
        note = "" if target is None else ("  ok" if rate >= target else
                                          f"  below the {target / 1e6:g} M/s target")
        print(f"{label:<62}{rate:>14,.0f}{rate / py:>10.1f}{note}")
    if "start_cold_s" in figures:
        print(f"{'(e) start-up to the first batch, empty numba cache':<62}"
              f"{figures['start_cold_s']:>13.2f}s")
        print(f"{'(e) start-up to the first batch, warm numba cache':<62}"
              f"{figures['start_warm_s']:>13.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
