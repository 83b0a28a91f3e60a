"""The JSON fast lane (sensing.wire.json_columns.scan_json) against the codec it stands in
for (orjson.loads + json_codec.decode, message by message): readings/s on 100-reading arrays
and on one-reading payloads, many payloads per scan_json call. Decoding only: no names looked
up, no checks, no pipeline. Figures vary with the machine's load; compare the ratios.

Then the payloads bench_e2e.py sends (benchmarks/e2e/fleet.py: short decimals, `gateway` and
`area` in every reading), 200 arrays of 100 (a 4 MB step) or 2,000 single readings per call:
scan_json alone, and the whole lane (JsonLane.decode: scan, name ids, range checks) of a
pipeline that learned the fleet's names from the same payloads first. With the core's malloc
settings (every block over 256 kB mapped afresh) unless --glibc-default.

    .venv/bin/python benchmarks/bench_json_scan.py [--readings 100000] [--per-call 1000]
                                                   [--only e2e] [--glibc-default]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import orjson
from e2e.fleet import Fleet, Phase
from e2e.fleet import messages as fleet_messages

from sensing.ingest.received import Incoming, Received
from sensing.pipeline import Pipeline
from sensing.process import give_freed_memory_back
from sensing.settings import CoreSettings
from sensing.wire import json_codec
from sensing.wire.json_columns import ScanStatus, name_hash, pack_payloads, scan_json
from sensing.wire.name_cache import NameCache, salted_key, salted_keys

T0 = 1_795_478_819_832
KINDS = ("smoke", "manhole", "wearable")


def readings(n: int, seed: int = 1) -> list[dict[str, object]]:
    """Readings as the pipeline benchmark writes them (random floats: 17-digit reprs)."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, object]] = []
    for i in range(n):
        dev = int(rng.integers(0, 10_000))
        kind = KINDS[dev % 3]
        values = {
            "smoke": {"obscuration": float(rng.uniform(0, 0.3)), "temp_c": 21.0, "co_ppm": 1.0},
            "manhole": {"tilt_deg": 0.5, "water_m": 2.0, "gas_lel": float(rng.uniform(0, 1))},
            "wearable": {"heart_rate": float(rng.uniform(60, 90)), "spo2": 97.0,
                         "accel_g": 1.0, "steps": 3.0, "sos": 0.0},
        }[kind]
        out.append({"device": f"{kind}-{dev:06d}", "kind": kind, "seq": i, "epoch": 0,
                    "ts": T0 + i * 10, "values": values, "battery": 0.9})
    return out


def best(fn: Callable[[], int], repeat: int = 5) -> float:
    """The shortest of `repeat` runs, in CPU seconds per reading."""
    times = []
    for _ in range(repeat):
        t = time.thread_time()  # CPU time: the machine may be shared
        n = fn()
        times.append((time.thread_time() - t) / n)
    return min(times)


def lane(payloads: list[bytes], per_call: int) -> Callable[[], int]:
    def run() -> int:
        n = 0
        for i in range(0, len(payloads), per_call):
            cols = scan_json(*pack_payloads(payloads[i:i + per_call]))
            assert (cols.status == ScanStatus.OK).all()
            n += cols.n_readings
        return n
    return run


def lane_and_names(payloads: list[bytes], per_call: int, n: int) -> Callable[[], int]:
    """scan_json, then the ids of every reading's device (salted with a gateway id), kind and
    channels from NameCaches that know them all."""
    devices, kinds, channels = NameCache(), NameCache(64), NameCache(4096)
    for r in readings(n):  # the payloads' readings (the same seed)
        name = str(r["device"]).encode()
        devices.insert(salted_key(name_hash(name), 1), name, len(devices))
        kinds.insert(name_hash(str(r["kind"]).encode()), str(r["kind"]).encode(), len(kinds))
        for channel in r["values"]:  # type: ignore[attr-defined]
            channels.insert(name_hash(channel.encode()), channel.encode(), len(channels))

    def run() -> int:
        n = 0
        for i in range(0, len(payloads), per_call):
            cols = scan_json(*pack_payloads(payloads[i:i + per_call]))
            dev = devices.lookup(cols.buf, salted_keys(cols.device_hash, 1), cols.device_start,
                                 cols.device_end)
            kind = kinds.lookup(cols.buf, cols.kind_hash, cols.kind_start, cols.kind_end)
            chan = channels.lookup(cols.buf, cols.channel_hash, cols.channel_start,
                                   cols.channel_end)
            assert (dev >= 0).all() and (kind >= 0).all() and (chan >= 0).all()
            n += cols.n_readings
        return n
    return run


def codec(payloads: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        return sum(len(json_codec.decode(p, "gw", "a")[0]) for p in payloads)
    return run


def loads_only(payloads: list[bytes], per_message: int) -> Callable[[], int]:
    def run() -> int:
        for p in payloads:
            orjson.loads(p)
        return len(payloads) * per_message
    return run


def e2e_steps(payload: str, n: int, per_step: int) -> list[Received]:
    """bench_e2e's messages of `n` readings, `per_step` messages a step, as the session gives
    them to the core (one writable buffer of topics and payloads)."""
    fleet = Fleet(100_000, 100)  # as bench_e2e's: a step's devices are mostly other ones
    sent = list(fleet_messages(Phase(fleet, payload, n, 0, T0), list(range(fleet.gateways))))
    incoming = [Incoming(m.topic.decode(), m.payload, i % 65535 + 1, 1, 0)
                for i, m in enumerate(sent)]
    steps = [Received.from_messages(incoming[i:i + per_step])
             for i in range(0, len(incoming), per_step)]
    # in a writable buffer, as the session's frame reader gives them
    return [replace(s, buf=np.frombuffer(s.buf, np.uint8).copy()) for s in steps]


def e2e_scan(steps: list[Received]) -> Callable[[], int]:
    def run() -> int:
        n = 0
        for step in steps:
            cols = scan_json(step.buf, step.payload_start, step.payload_end)
            assert (cols.status == ScanStatus.OK).all()
            n += cols.n_readings
        return n
    return run


def e2e_lane(steps: list[Received]) -> Callable[[], int]:
    """JsonLane.decode of each step by a pipeline that took the same steps once before (so it
    knows every name and route, as after bench_e2e's warm-up round)."""
    pipe = Pipeline(CoreSettings())
    for step in steps:
        pipe.process(step, T0 + 3_600_000)
    lane = pipe.json_lane
    reg = pipe.registry
    routes = []
    for step in steps:
        g = np.empty(len(step), np.int32)
        a = np.empty(len(step), np.int32)
        for i in range(len(step)):
            _, _, area, gateway, _ = step.topic(i).split("/")
            g[i], a[i] = reg.gateways.index[gateway], reg.areas.index[area]
        routes.append((g, a))

    def run() -> int:
        n = 0
        for step, (g, a) in zip(steps, routes, strict=True):
            out = lane.decode(step.buf, step.payload_start, step.payload_end, g, a,
                              T0 + 3_600_000)
            assert not out.slow.size
            n += out.n_rows
        return n
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--per-call", type=int, default=1000, help="payloads per scan_json call")
    ap.add_argument("--only", choices=["e2e"], help="only the rows of bench_e2e's payloads")
    ap.add_argument("--repeat", type=int, default=15, help="runs of each e2e row (the best "
                    "counts: the machine may be shared)")
    ap.add_argument("--glibc-default", action="store_true", help="leave glibc's malloc "
                    "settings as they are, not the core's (give_freed_memory_back)")
    args = ap.parse_args(argv)
    if not args.glibc_default:  # as the core runs: fresh large blocks fault in page by page
        give_freed_memory_back()
    if args.only != "e2e":
        random_floats(args)
    arrays_steps = e2e_steps("array", args.readings, 200)
    single_steps = e2e_steps("single", args.readings // 5, 2000)
    e2e_scan(arrays_steps[:1])()  # compile, or load the numba cache, outside timing
    print(f"bench_e2e's payloads, {args.readings:,} readings in arrays, "
          f"{args.readings // 5:,} single; CPU µs per reading (readings/s), "
          f"best of {args.repeat}")
    print(f"{'path':<44}{'100 / array':>24}{'1 / payload':>24}")
    figures = {
        "scan_json, 200 arrays / 2,000 singles a call": (
            best(e2e_scan(arrays_steps), args.repeat),
            best(e2e_scan(single_steps), args.repeat)),
        "JsonLane.decode (scan, names, checks)": (
            best(e2e_lane(arrays_steps), args.repeat),
            best(e2e_lane(single_steps), args.repeat)),
    }
    show(figures)
    return 0


def random_floats(args: argparse.Namespace) -> None:
    rows = readings(args.readings)
    arrays = [orjson.dumps(rows[i:i + 100]) for i in range(0, len(rows), 100)]
    singles = [orjson.dumps(r) for r in rows]
    lane(arrays[:2], 2)()  # compile, or load the numba cache, outside timing
    print(f"{len(rows):,} readings; CPU µs per reading (readings/s), best of 5")
    print(f"{'path':<44}{'100 / array':>24}{'1 / payload':>24}")
    figures = {
        "orjson.loads alone": (best(loads_only(arrays, 100)), best(loads_only(singles, 1))),
        "json_codec.decode (orjson + Python)": (best(codec(arrays)), best(codec(singles))),
        f"scan_json, {args.per_call} payloads per call": (
            best(lane(arrays, args.per_call)), best(lane(singles, args.per_call))),
        "  + NameCache ids of devices, kinds, channels": (
            best(lane_and_names(arrays, args.per_call, len(rows))),
            best(lane_and_names(singles, args.per_call, len(rows)))),
    }
    show(figures)


def show(figures: dict[str, tuple[float, float]]) -> None:
    for name, pair in figures.items():
        shown = "".join(f"{s * 1e6:>10.3f} ({1 / s:>11,.0f})" for s in pair)
        print(f"{name:<44}{shown}")


if __name__ == "__main__":
    sys.exit(main())
