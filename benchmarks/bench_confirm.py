"""The core's store confirmations: `sensing.wire.confirm.stored_messages` (numpy sort, then a
Python tuple, name lookup and orjson item per range) against the one-pass kernel path of
`sensing.wire.confirm_columns`, on (a) one step of 100,000 readings of 100,000 distinct devices
over 100 gateways (every reading its own range; device indices a random permutation, as a fleet
registered by gateways starting together gives) and (b) 1,000 steps of one reading. CPU time
of the calling thread, best of a few runs; both outputs are checked equal first.

    .venv/bin/python benchmarks/bench_confirm.py [--readings 100000] [--gateways 100]
        [--steps 1000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable

import numpy as np

from sensing.wire.confirm import StoredChunk, stored_messages
from sensing.wire.confirm_columns import ConfirmFormatter

TS = 1_795_478_819_832

Build = Callable[[list[StoredChunk], int], list[tuple[str, bytes]]]


def big_step(readings: int, gateways: int, seed: int = 1) -> list[StoredChunk]:
    """One chunk per gateway, as the pipeline hands a step over: device indices (int32) of a
    random permutation of the registry, an epoch of the Unix time, seqs of a long-running
    fleet."""
    rng = np.random.default_rng(seed)
    names = [f"smoke-{i:06d}" for i in range(readings)]
    dev = rng.permutation(readings).astype(np.int32)
    epoch = np.full(readings, 1_765_000_000, dtype=np.int64)
    seq = rng.integers(0, 10_000_000, readings).astype(np.int64)
    bounds = np.linspace(0, readings, gateways + 1).astype(np.int64).tolist()
    return [("pilot", f"gw-{g:03d}", names, dev[a:b], epoch[a:b], seq[a:b])
            for g, (a, b) in enumerate(itertools.pairwise(bounds))]


def one_reading_steps(steps: int, devices: int = 1000) -> list[list[StoredChunk]]:
    names = [f"wearable-{i:06d}" for i in range(devices)]
    return [[("pilot", f"gw-{i % 10:03d}", names, np.array([i % devices], dtype=np.int32),
              np.array([1_765_000_000], dtype=np.int64), np.array([i], dtype=np.int64))]
            for i in range(steps)]


def best(build: Build, steps: list[list[StoredChunk]], repeat: int) -> float:
    """The shortest CPU time of `repeat` runs over all the steps, in seconds."""
    times = []
    for _ in range(repeat):
        t = time.thread_time()
        for chunks in steps:
            build(chunks, TS)
        times.append(time.thread_time() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--gateways", type=int, default=100)
    ap.add_argument("--steps", type=int, default=1000, help="steps of one reading")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    fast = ConfirmFormatter()
    cases = {"big_step": ([big_step(args.readings, args.gateways)], args.readings),
             "one_reading_steps": (one_reading_steps(args.steps), args.steps)}
    figures: dict[str, dict[str, float]] = {}
    for case, (steps, readings) in cases.items():
        for chunks in steps:  # compiles (or loads the numba cache) outside timing
            assert fast(chunks, TS) == stored_messages(chunks, TS)
        row = {"readings": float(readings)}
        for name, build in (("stored_messages", stored_messages), ("columns", fast)):
            row[f"{name}_s"] = best(build, steps, args.repeat)
        row["speedup"] = row["stored_messages_s"] / row["columns_s"]
        figures[case] = row
    assert fast.fallbacks == 0
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"CPU time of the calling thread, best of {args.repeat}: ms (µs per reading)")
    print(f"{'case':<40}{'stored_messages':>22}{'columns':>22}{'×':>8}")
    labels = {"big_step": f"1 step, {args.readings:,} devices, {args.gateways} gateways",
              "one_reading_steps": f"{args.steps:,} steps of 1 reading"}
    for case, row in figures.items():
        shown = "".join(f"{row[k] * 1e3:>11.2f} ({row[k] / row['readings'] * 1e6:>7.3f})"
                        for k in ("stored_messages_s", "columns_s"))
        print(f"{labels[case]:<40}{shown}{row['speedup']:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
