"""A fuzz run against the real parts: hostile inputs (hypothesis strategies plus issue 11's
corpus) through a real Mosquitto to a real core subprocess, interleaved with good readings
whose count is known, every input then accounted for in the dead letters and the store."""

from __future__ import annotations

import base64
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
import structlog
from hypothesis import HealthCheck, Phase, given, seed, settings

from sensing.services import Mosquitto, ServiceError, VictoriaMetrics
from sensing.testing.counting import ReadingKey, stored_readings
from sensing.testing.hostile import (
    ALERT_AREAS,
    P5_AREA,
    P6_AREA,
    P6_GATEWAY,
    Corpus,
    HostileInput,
    hostile_inputs,
    issue11_corpus,
    now_ms,
    quiet_values,
)
from sensing.testing.processes import CoreProcess
from sensing.testing.traffic import Publisher, Recorder
from sensing.wire import snb1

log = structlog.get_logger("sensing.testing.fuzz")

GOOD_GATEWAYS = ("good-0", "good-1", "good-2", P6_GATEWAY)
GOOD_DEVICES = 20
SOS_BOUND_S = 10.0
"""an SOS among the hostile inputs must be alerted within this"""
SOS_DEVICE = "fuzz-sos-0"
Progress = Callable[[str, int, int], None]
"""(phase, done, total)"""


def generate(n: int, random_seed: int = 0) -> list[HostileInput]:
    """`n` hostile inputs drawn from `hostile_inputs()`, the same ones for the same seed."""
    out: list[HostileInput] = []
    if n <= 0:
        return out

    @seed(random_seed)
    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(hostile_inputs())
    def collect(x: HostileInput) -> None:
        out.append(x)

    collect()
    return out[:n]


@dataclass
class FuzzReport:
    sent: int = 0
    """hostile inputs published"""
    dead_lettered: int = 0
    stored_valid: int = 0
    """hostile inputs with no dead letter whose readings were valid and stored"""
    stored_by_name: dict[str, int] = field(default_factory=dict)
    """the stored ones by input name (SNB1 batches with flipped bytes among them: SNB1 has
    no checksum, so a flip in a value decodes as another valid batch)"""
    silent_valid: int = 0
    """valid statuses: neither stored nor refused, as they should be"""
    duplicates: int = 0
    """readings another input had sent before (a hostile name can repeat): dropped by the
    duplicate filter without a dead letter, as the contract says"""
    vanished: dict[str, int] = field(default_factory=dict)
    """by input name: neither dead-lettered nor stored"""
    stored_although_refusable: dict[str, int] = field(default_factory=dict)
    """by input name: readings stored from an input the contract refuses (e.g. a corrupted
    SNB2 batch) and no dead letter"""
    dead_letters_by_code: dict[str, int] = field(default_factory=dict)
    dead_letters_unmatched: int = 0
    good_sent: int = 0
    good_stored: int = 0
    crashes: int = 0
    exit_codes: list[int] = field(default_factory=list)
    core_starts: int = 0
    peak_rss_mb: float = 0.0
    expectations_failed: list[str] = field(default_factory=list)
    sos_delay_s: float | None = None
    """wall time from an SOS published right after the corpus (on a gateway of its own) to
    its alert; None: never alerted (issue 11, problem 2: the pipeline stalled)"""
    fresh_core_started: bool | None = None
    """whether a second core, with a new client id and state folder, starts and stays up
    while the corpus's poisoned statuses are still retained (issue 11, problem 1)"""
    examples: dict[str, list[str]] = field(default_factory=dict)
    """a few vanished (or wrongly stored) inputs per name, as topic and payload head"""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def vanished_total(self) -> int:
        return sum(self.vanished.values())

    @property
    def ok(self) -> bool:
        return (not self.crashes and not self.vanished and not self.stored_although_refusable
                and self.good_stored == self.good_sent and not self.expectations_failed
                and self.fresh_core_started is not False and self.sos_delay_s is not None
                and self.sos_delay_s <= SOS_BOUND_S)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "vanished_total": self.vanished_total, "ok": self.ok}


_REASON_NOISE = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")


def dead_letter_code(doc: dict[str, object]) -> str:
    """The dead letter's reason code, or (before codes existed) its reason with names and
    numbers blanked so that like reasons count together."""
    code = doc.get("code")
    if isinstance(code, str) and code:
        return code
    return "reason: " + _REASON_NOISE.sub("…", str(doc.get("reason", "")))[:60]


class _GoodTraffic:
    """Lockstep good readings: each message carries the next seq of every device of one
    gateway, alternately SNB1 and JSON."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = defaultdict(int)
        self.sent: set[ReadingKey] = set()
        self.last_ts = 0
        self.turn = 0

    def next_message(self) -> tuple[str, bytes]:
        gateway = GOOD_GATEWAYS[self.turn % len(GOOD_GATEWAYS)]
        self.turn += 1
        s = self.seq[gateway]
        self.seq[gateway] += 1
        ts = max(now_ms(), self.last_ts + 1)
        self.last_ts = ts
        rows: list[snb1.Reading] = []
        for d in range(GOOD_DEVICES):
            device = f"{gateway}-dev-{d}"
            rows.append((device, "smoke", 0, s, ts, quiet_values("smoke"), 0.9))
            self.sent.add((gateway, device, 0, s))
        if self.turn % 2:
            payload = snb1.encode_readings(rows)
        else:
            payload = orjson.dumps([{"device": r[0], "kind": r[1], "epoch": r[2], "seq": r[3],
                                     "ts": r[4], "values": r[5], "battery": r[6]}
                                    for r in rows])
        return f"sensing/v1/{P6_AREA}/{gateway}/readings", payload


class _Supervisor(threading.Thread):
    """Restarts the core whenever it exits on its own (as systemd's Restart=always would),
    at most `max_restarts` times, sampling its memory meanwhile."""

    def __init__(self, core: CoreProcess, max_restarts: int = 10) -> None:
        super().__init__(name="core-supervisor", daemon=True)
        self.core = core
        self.max_restarts = max_restarts
        self.stop_event = threading.Event()
        self.gave_up = False

    def run(self) -> None:
        restarts = 0
        while not self.stop_event.wait(0.1):
            if self.core.check_alive():
                continue
            if restarts >= self.max_restarts:
                self.gave_up = True
                return
            restarts += 1
            log.warning("core exited; restarting", code=self.core.crashes[-1:])
            try:
                self.core.start()
            except ServiceError as exc:
                log.warning("core failed to start", error=str(exc)[-300:])


def run_fuzz(workdir: Path, n_inputs: int, random_seed: int = 0, with_corpus: bool = True,
             good_every: int = 20, progress: Progress | None = None,
             p4_tables: int = 150) -> FuzzReport:
    """Publish `n_inputs` generated hostile inputs (and the corpus) with a good message
    every `good_every` of them; account for each; return the report."""
    started = time.monotonic()
    report = FuzzReport()
    step = progress or (lambda phase, done, total: None)
    step("generating", 0, n_inputs)
    inputs = generate(n_inputs, random_seed)
    corpus = issue11_corpus(p4_tables) if with_corpus else Corpus()
    at = min(len(inputs), max(1, len(inputs) // 10))
    plan = inputs[:at] + corpus.inputs + inputs[at:]
    step("generating", n_inputs, n_inputs)
    with Mosquitto.start(workdir) as broker, VictoriaMetrics.start(workdir) as store:
        recorder = Recorder(broker.port, "sensing/v1/deadletter/#", "sensing/v1/core/stats",
                            *(f"sensing/v1/alerts/{a}" for a in ALERT_AREAS))
        core = CoreProcess(broker.port, store.url, workdir / "core")
        core.start()
        supervisor = _Supervisor(core)
        supervisor.start()
        publisher = Publisher(broker.port)
        good = _GoodTraffic()
        retained: set[str] = set()
        try:
            sos_at = at + len(corpus.inputs)
            for i, item in enumerate(plan):
                if i % good_every == 0:
                    publisher.publish(*good.next_message())
                if i == sos_at:
                    sos_sent = _sos(publisher)
                publisher.publish(item.topic, item.payload, retain=item.retain)
                if item.retain:
                    retained.add(item.topic)
                if i % 200 == 0:
                    step("sending", i, len(plan))
            if sos_at >= len(plan):
                sos_sent = _sos(publisher)
            step("sending", len(plan), len(plan))
            publisher.flush()
            drain_s = max(120.0, 0.005 * len(plan))
            if not _drain(publisher, good, store, recorder, supervisor, step, drain_s):
                report.notes.append(f"the core had not handled everything (or its dead letters "
                                    f"had not arrived) after {drain_s:.0f} s: the counts of "
                                    "dead-lettered and stored inputs are lower bounds")
            report.sent = len(plan)
            _account(report, plan, corpus, good, recorder, store)
            report.sos_delay_s = _sos_delay(recorder, sos_sent)
            if retained:
                report.fresh_core_started = _fresh_core_survives(broker, store, workdir, report)
        finally:
            for topic in retained:
                publisher.publish(topic, b"", retain=True)
            publisher.flush(10)
            publisher.close()
            supervisor.stop_event.set()
            supervisor.join(5)
            recorder.close()
            code = core.stop()
            if code not in (None, 0):
                report.notes.append(f"the core exited with {code} on SIGTERM")
            report.crashes = len(core.crashes)
            report.exit_codes = list(core.crashes)
            report.core_starts = core.starts
            report.peak_rss_mb = round(core.peak_rss_kb / 1024, 1)
            if supervisor.gave_up:
                report.notes.append("the core kept exiting; the supervisor gave up")
            if report.crashes:
                report.notes.append("core log: " + core.log_tail(0, 1200))
    report.seconds = round(time.monotonic() - started, 1)
    return report


def _sos(publisher: Publisher) -> float:
    doc = {"device": SOS_DEVICE, "kind": "wearable", "seq": 0, "epoch": 0, "ts": now_ms(),
           "values": {**quiet_values("wearable"), "sos": 1.0}, "battery": 0.9}
    sent = time.monotonic()
    publisher.publish(f"sensing/v1/{P5_AREA}/sos-gw/readings", orjson.dumps(doc))
    return sent


def _sos_delay(recorder: Recorder, sent: float) -> float | None:
    deadline = time.monotonic() + 30
    while True:
        for heard, doc in recorder.json(f"sensing/v1/alerts/{P5_AREA}"):
            if doc.get("device") == SOS_DEVICE and doc.get("state") == "raised":
                return round(heard.at - sent, 2)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def _fresh_core_survives(broker: Mosquitto, store: VictoriaMetrics, workdir: Path,
                         report: FuzzReport) -> bool:
    """Start another core on the same broker (its own client id and state folder): it
    receives every retained status at once, the hostile ones among them."""
    fresh = CoreProcess(broker.port, store.url, workdir / "fresh-core",
                        client_id="sensing-core-fresh")
    try:
        fresh.start()
        time.sleep(2.0)
        alive = fresh.check_alive()
    except ServiceError:
        alive = False
    if not alive:
        report.notes.append("a fresh core did not survive the retained statuses: "
                            + fresh.log_tail(0, 600))
    fresh.stop()
    return alive


def _drain(publisher: Publisher, good: _GoodTraffic, store: VictoriaMetrics,
           recorder: Recorder, supervisor: _Supervisor, step: Progress,
           timeout: float) -> bool:
    """Wait until the core has handled everything and the recorder heard all it sent: a last
    good message (the sentinel) is in the store or dead-lettered, the core's stats count every
    message published, and as many dead letters were heard as they count. False if `timeout`
    passed first (the counts are then a lower bound)."""
    topic, payload = good.next_message()
    publisher.publish(topic, payload)
    publisher.flush()
    gateway = topic.split("/")[3]
    sentinel = good.seq[gateway] - 1
    letter = base64.b64encode(payload).decode()
    match = f'{{__name__="reading_seq",gateway="{gateway}",device="{gateway}-dev-0"}}'
    deadline = time.monotonic() + timeout
    arrived = False
    while time.monotonic() < deadline and not supervisor.gave_up:
        step("draining", 0, 1)
        if any(doc.get("payload") == letter for _, doc in recorder.json(
                f"sensing/v1/deadletter/{P6_AREA}/{gateway}")):
            arrived = True
            break
        if any(sentinel in s["values"] for s in store.export(match)):  # type: ignore[operator]
            arrived = True
            break
        time.sleep(0.5)
    caught_up = _letters_caught_up(recorder, deadline, publisher.sent,
                                   restarted=supervisor.core.starts > 1)
    step("draining", 1, 1)
    return arrived and caught_up


def _letters_caught_up(recorder: Recorder, deadline: float, published: int,
                       restarted: bool) -> bool:
    """Wait until the core's retained stats count all `published` messages and the recorder
    has heard as many dead letters as they say were sent (the stats follow the letters on the
    core's connection; a storm of alerts can hold both back for minutes). A restarted core
    counts from 0: then wait for 10 s without a new letter instead."""
    quiet_since, heard_before = time.monotonic(), -1
    while time.monotonic() < deadline:
        stats = [doc for _, doc in recorder.json("sensing/v1/core/stats")]
        last = stats[-1] if stats else {}
        sent, handled = last.get("deadletters"), last.get("messages")
        heard = sum(1 for _, doc in recorder.json("sensing/v1/deadletter/") if "reason" in doc)
        if heard != heard_before:
            quiet_since, heard_before = time.monotonic(), heard
        quiet = time.monotonic() - quiet_since
        if restarted and quiet > 10.0:
            return True
        if (not restarted and isinstance(sent, int) and isinstance(handled, int)
                and handled >= published and heard >= sent and quiet > 0.5):
            return True
        time.sleep(0.25)
    return False


def _account(report: FuzzReport, plan: list[HostileInput], corpus: Corpus, good: _GoodTraffic,
             recorder: Recorder, store: VictoriaMetrics) -> None:
    by_exact: dict[tuple[str, bytes], list[int]] = defaultdict(list)
    for i, item in enumerate(plan):
        by_exact[(item.topic, item.payload)].append(i)
    dead = [False] * len(plan)
    codes: Counter[str] = Counter()
    unmatched = 0
    for _heard, doc in recorder.json("sensing/v1/deadletter/"):
        if "reason" not in doc or "payload" not in doc:
            continue  # a hostile input published onto the dead-letter topics, not a letter
        codes[dead_letter_code(doc)] += 1
        try:
            raw = base64.b64decode(str(doc["payload"]))
        except ValueError:
            raw = b""
        candidates = by_exact.get((str(doc.get("topic")), raw))
        if candidates is None and raw:  # a dead letter may carry only the payload's head
            candidates = [i for i, x in enumerate(plan)
                          if x.topic == doc.get("topic") and x.payload.startswith(raw)]
        hit = next((i for i in candidates or () if not dead[i]), None)
        if hit is None:
            hit = next(iter(candidates or ()), None)
        if hit is None:
            unmatched += 1
        else:
            dead[hit] = True
    report.dead_letters_by_code = dict(codes.most_common())
    report.dead_letters_unmatched = unmatched
    stored = stored_readings(store)
    stored_gateways = {k[0] for k in stored}
    stored_names_any = {(d, e, s) for _, d, e, s in stored}
    good_found = sum(1 for k in good.sent if stored.get(k, 0) > 0)
    report.good_sent, report.good_stored = len(good.sent), good_found
    vanished: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    stored_names: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    named_before: set[tuple[str, int, int]] = set()
    for i, item in enumerate(plan):
        names = {(d, e, s) for _, d, e, s in item.stores}
        repeat = bool(names & named_before)
        named_before |= names
        if dead[i]:
            report.dead_lettered += 1
            continue
        # a reading is one (device, epoch, seq) however it arrives: two inputs naming the
        # same one on two gateways store it once, under either
        was_stored = any((d, e, s) in stored_names_any for _, d, e, s in item.stores) or (
            item.whole_gateway and item.topic.split("/")[3] in stored_gateways)
        if was_stored and item.must_dead_letter:
            wrong[item.name] += 1
        elif was_stored:
            report.stored_valid += 1
            stored_names[item.name] += 1
            continue
        elif item.silent:
            report.silent_valid += 1
            continue
        elif repeat:
            report.duplicates += 1
            continue
        else:
            vanished[item.name] += 1
        if len(examples[item.name]) < 3:
            examples[item.name].append(f"{item.topic} {item.payload[:100]!r}"
                                       f"{' …' if len(item.payload) > 100 else ''}"
                                       f" ({len(item.payload)} bytes)")
    report.vanished = dict(vanished.most_common())
    report.stored_although_refusable = dict(wrong.most_common())
    report.examples = dict(examples)
    report.stored_by_name = dict(stored_names.most_common())
    alerts = [doc for _, doc in recorder.json("sensing/v1/alerts/")
              if "alert_id" in doc and "type" in doc]
    for exp in corpus.expectations:
        raised = any(a.get("device") in exp.devices and a.get("type") == exp.alert_type
                     and a.get("state") == "raised" for a in alerts)
        if raised != exp.raised:
            report.expectations_failed.append(exp.name)
