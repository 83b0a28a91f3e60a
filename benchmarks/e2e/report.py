"""The benchmark's figures: rich tables per payload, issue 12's targets as PASS/MISS lines
computed from the same run, and the same as one JSON document."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from e2e.fleet import PAYLOADS
from e2e.measure import Result

PAYLOAD_TITLES = {
    "single": "1 reading per JSON message",
    "array": "100-reading JSON arrays",
    "snb": "SNB1 batches of 1,000 readings",
}
CORE, NAIVE, NODE_RED = "sensing", "naive", "node-red"
SNB1_TARGET_PER_S = 500_000
P99_TARGET_MS = 100.0
RSS_TARGET_MB = 300.0


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    passed: bool | None
    """None: not measured in this run"""
    detail: str


def _row(results: list[Result], pipeline: str, payload: str) -> Result | None:
    return next((r for r in results if r.pipeline == pipeline and r.payload == payload
                 and r.max_rate is not None), None)


def _fmt(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def targets(results: list[Result], store_limit: float | None) -> list[Target]:
    out: list[Target] = []
    core, naive = _row(results, CORE, "single"), _row(results, NAIVE, "single")
    if core and naive and core.max_rate and naive.max_rate:
        c, b = core.max_rate.cpu_us_per_reading, naive.max_rate.cpu_us_per_reading
        ok = c is not None and b is not None and c <= b / 10
        out.append(Target("CPU per reading at 1 reading/message <= naive / 10", ok,
                          f"core {_fmt(c, 1)} µs, naive {_fmt(b, 1)} µs "
                          f"(ratio {_fmt(b / c if c and b else None, 1)}x, needs 10x)"))
    else:
        out.append(Target("CPU per reading at 1 reading/message <= naive / 10", None,
                          "needs sensing and naive at single"))
    core = _row(results, CORE, "array")
    for peer, factor in ((NAIVE, 20), (NODE_RED, 10)):
        other = _row(results, peer, "array")
        name = f"readings per CPU-s at 100-reading arrays >= {factor}x {peer}"
        if core and other and core.max_rate and other.max_rate:
            c, b = core.max_rate.readings_per_cpu_s, other.max_rate.readings_per_cpu_s
            ratio = c / b if c and b else None
            out.append(Target(name, ratio is not None and ratio >= factor,
                              f"core {_fmt(c)}, {peer} {_fmt(b)} (ratio {_fmt(ratio, 1)}x)"))
        else:
            out.append(Target(name, None, f"needs sensing and {peer} at array"))
    snb = _row(results, CORE, "snb")
    goal = min(SNB1_TARGET_PER_S, store_limit) if store_limit else SNB1_TARGET_PER_S
    if snb and snb.max_rate:
        out.append(Target(f"SNB1 stored/s >= {goal:,.0f} (500,000 or the store's limit)",
                          snb.max_rate.stored_per_s >= goal,
                          f"core {_fmt(snb.max_rate.stored_per_s)}/s, store limit "
                          f"{_fmt(store_limit)}/s"))
    else:
        out.append(Target("SNB1 stored/s >= 500,000 or the store's limit", None,
                          "needs sensing at snb"))
    cores = [r for r in results if r.pipeline == CORE and r.max_rate is not None]
    for r in cores:
        assert r.max_rate is not None
        m = r.max_rate
        out.append(Target(f"{r.payload}: core stored = sent (0 lost, 0 twice)",
                          m.stored == m.sent and m.lost == 0 and m.stored_twice == 0
                          and m.unexpected == 0,
                          f"sent {m.sent:,}, stored {m.stored:,}, lost {_fmt(m.lost)}, "
                          f"twice {_fmt(m.stored_twice)}"))
        lat = r.latency.latency if r.latency else None
        p99 = lat.p99_ms if lat else None
        raised = (f" ({_fmt(lat.raised_p99_ms, 1)} ms of it until the core's step raised it)"
                  if lat and lat.raised_p99_ms is not None else "")
        detail = (f"p99 {_fmt(p99, 1)} ms{raised} at {_fmt(r.latency.rate)} readings/s, "
                  f"{lat.alerts_matched}/{lat.alarms_sent} alarms alerted"
                  if r.latency and lat else "not measured")
        out.append(Target(f"{r.payload}: alert p99 <= {P99_TARGET_MS:.0f} ms at half max rate",
                          None if lat is None else (p99 is not None and p99 <= P99_TARGET_MS
                                                    and lat.alerts_matched == lat.alarms_sent),
                          detail))
        rss = r.peak_rss_kb / 1024
        out.append(Target(f"{r.payload}: core peak RSS <= {RSS_TARGET_MB:.0f} MB",
                          rss <= RSS_TARGET_MB,
                          f"{rss:,.0f} MB ({r.start_rss_kb / 1024:,.0f} MB of it at start, "
                          "before the first reading)"))
    return out


def warnings(results: list[Result]) -> list[str]:
    out = []
    for r in results:
        m = r.max_rate
        if m is not None and m.publisher_bound:
            out.append(f"publisher-bound: {r.pipeline} {r.payload}: offered "
                       f"{m.offered_per_s:,.0f}/s < 1.5 x stored {m.stored_per_s:,.0f}/s: the "
                       "publishers or the broker set the pace, not the pipeline (which kept "
                       "up); try --publishers 2")
        if m is not None and m.late_rows:
            out.append(f"late rows: {r.pipeline} {r.payload}: the store took more after the "
                       "run was called settled; its window is wrong (raise --settle)")
        if m is not None and not m.complete:
            out.append(f"incomplete: {r.pipeline} {r.payload}: {m.stored:,} of {m.sent:,} "
                       "stored when the run ended (--settle / --timeout)")
    return out


def _rss_mb(r: Result) -> float:
    return r.peak_rss_kb / 1024


def print_tables(console: Console, results: list[Result], store_limit: float | None,
                 devices: int) -> None:
    for payload in PAYLOADS:
        rows = [r for r in results if r.payload == payload]
        if not rows:
            continue
        table = Table(title=f"{PAYLOAD_TITLES[payload]}, {devices:,} devices", title_justify="left")
        for col in ("pipeline", "stored/s", "stored = sent (lost / twice)", "CPU µs/reading",
                    "readings/CPU-s", "peak RSS MB (at start)", "broker CPU µs/r", "store CPU µs/r",
                    "alert p50 / p99 ms (alerts/alarms)"):
            table.add_column(col, justify="left" if col == "pipeline" else "right")
        for r in rows:
            m = r.max_rate
            if m is None:
                table.add_row(r.pipeline, (r.skipped and f"skipped: {r.skipped}")
                              or f"error: {r.error[:60]}", *([""] * 7))
                continue
            same = "yes" if m.stored == m.sent and not m.stored_twice and not m.unexpected \
                else "NO"
            # readings not stored when the run gave up may still be in the broker's queue
            lost = f"{_fmt(m.lost)} missing" if not m.complete else _fmt(m.lost)
            tally = f"{same} ({lost} / {_fmt(m.stored_twice)})"
            lat = r.latency.latency if r.latency else None
            alerts = ("—" if lat is None else
                      f"{_fmt(lat.p50_ms, 1)} / {_fmt(lat.p99_ms, 1)} "
                      f"({lat.alerts_matched}/{lat.alarms_sent})")
            per = 1e6 / m.in_window if m.in_window else None
            table.add_row(
                r.pipeline, _fmt(m.stored_per_s), tally, _fmt(m.cpu_us_per_reading, 1),
                _fmt(m.readings_per_cpu_s),
                f"{_fmt(_rss_mb(r))} ({_fmt(r.start_rss_kb / 1024)})",
                _fmt(m.broker_cpu_s * per if per else None, 1),
                _fmt(m.store_cpu_s * per if per else None, 1), alerts)
        console.print(table)
    if store_limit is not None:
        console.print(f"store limit (the core's line protocol straight to /api/v2/write): "
                      f"{store_limit:,.0f} readings/s")
    for t in targets(results, store_limit):
        mark = {True: "[green]PASS[/]", False: "[red]MISS[/]", None: "[yellow]n/a [/]"}
        console.print(f"{mark[t.passed]} {t.name}: {t.detail}")
    for w in warnings(results):
        console.print(f"[yellow]warning:[/] {w}")


def as_json(results: list[Result], store_limit: float | None,
            settings: dict[str, object]) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    for r in results:
        row: dict[str, object] = {"pipeline": r.pipeline, "payload": r.payload,
                                  "skipped": r.skipped or None, "error": r.error or None}
        m = r.max_rate
        if m is not None:
            row |= {
                "sent": m.sent, "stored": m.stored, "stored_in_window": m.in_window,
                "lost": m.lost,
                "stored_twice": m.stored_twice, "unexpected": m.unexpected,
                "complete": m.complete, "late_rows": m.late_rows,
                "seconds": round(m.seconds, 3),
                "stored_per_s": round(m.stored_per_s), "offered_per_s": round(m.offered_per_s),
                "publisher_bound": m.publisher_bound, "cpu_s": round(m.cpu_s, 3),
                "cpu_us_per_reading": m.cpu_us_per_reading,
                "readings_per_cpu_s": m.readings_per_cpu_s,
                "broker_cpu_s": round(m.broker_cpu_s, 3),
                "store_cpu_s": round(m.store_cpu_s, 3),
                "peak_rss_mb": round(_rss_mb(r), 1),
                "start_rss_mb": round(r.start_rss_kb / 1024, 1),
            }
        if r.latency is not None:
            lat = r.latency.latency
            row["latency"] = {
                "rate": round(r.latency.rate), "offered_per_s": round(r.latency.offered_per_s),
                "readings": r.latency.readings, "alarms_sent": lat.alarms_sent,
                "alerts_matched": lat.alerts_matched, "alerts_other": lat.alerts_other,
                "p50_ms": lat.p50_ms, "p99_ms": lat.p99_ms, "max_ms": lat.max_ms,
                "raised_p99_ms": lat.raised_p99_ms,
            }
        rows.append(row)
    return {
        "settings": settings,
        "store_limit_per_s": None if store_limit is None else round(store_limit),
        "results": rows,
        "targets": [{"name": t.name, "passed": t.passed, "detail": t.detail}
                    for t in targets(results, store_limit)],
        "warnings": warnings(results),
    }
