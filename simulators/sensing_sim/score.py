"""How well alerts matched the labelled incidents: per alert type recall, precision, F1,
detection latency and duplicates.

An *alert* is one `alert_id` (its transitions grouped): its device, type, the time it was
first raised and the highest grade it reached. A label (an incident, `Incident.to_dict` with
`ts_start`/`ts_end`) is *detected* when an alert of its device and type was raised between its
start and `grace_s` after its end (detectors confirm over a while: a CO alarm may take tens of
minutes by EN 50291), and before the next incident of the same device and type began (a
flapping link: each drop is its own incident and gets its own alert). The first such alert
is a true positive; further ones within the label's window are duplicates; an alert that
matches no label is a false positive. A label with no new alert is still detected (`covered`)
when the alert of an earlier incident of its device and type was still open when it began: a
link that keeps flapping gets one alert held open (the core's flap damping), not one per drop;
covered labels have no latency. Latency is the first alert's raise time minus the label's
start; `grade_ok` counts detected labels whose alert reached at least the label's grade. A
label with `"stays_open": true` (late readings with ordinary values arrive inside it) must
keep its alert open to its end: `resolved_early` counts those whose alert was resolved
before (a re-raise shows as a duplicate besides).

Time-scaled labels: a label with `"speed": N` comes from a run N times faster than simulated
time (a replayed recording); its `ts_start`/`ts_end` are on that run's wall clock, like the
alerts' `ts_raised`. Its latency is reported in simulated seconds, (ts_raised - ts_start) * N,
and the grace window is `grace_s` simulated seconds, grace_s / N of wall time. No `speed`: 1.

Dead letters against malformed messages (`deadletter_score`): how many malformed messages a
run sent (by the simulator's reasons, `sensing_sim.faults.MALFORMED_REASONS`) against how many
dead letters the core published, the latter sorted into the same reasons by their free-text
reason (and, to tell NaN from other broken JSON, their raw payload); `other` holds dead letters
that fit none (an unknown ack, a bad topic name).
"""

from __future__ import annotations

import base64
import binascii
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sensing.wire.messages import GRADE_RANK, Grade
from sensing_sim.faults import MALFORMED_REASONS

RANK = GRADE_RANK


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    type: str
    device: str
    ts_raised: int
    grade: Grade
    """the highest grade it reached"""
    ts_resolved: int | None = None
    """when it was resolved; None: still open at the end of what was heard"""

    def open_at(self, ts: int) -> bool:
        return self.ts_raised <= ts and (self.ts_resolved is None or ts < self.ts_resolved)


def alerts_from_transitions(transitions: Iterable[Mapping[str, Any]]) -> list[Alert]:
    """One `Alert` per alert_id, from the contract's alert messages in any order."""
    first: dict[str, Mapping[str, Any]] = {}
    top: dict[str, Grade] = {}
    resolved: dict[str, int] = {}
    for t in transitions:
        aid = str(t["alert_id"])
        if aid not in first or int(t["ts_raised"]) < int(first[aid]["ts_raised"]):
            first[aid] = t
        grade = Grade(t["grade"])
        if aid not in top or RANK[grade] > RANK[top[aid]]:
            top[aid] = grade
        if t.get("state") == "resolved":
            resolved[aid] = min(resolved.get(aid, int(t["ts_raised"])), int(t["ts_raised"]))
    return [Alert(aid, str(t["type"]), str(t["device"]), int(t["ts_raised"]), top[aid],
                  resolved.get(aid)) for aid, t in first.items()]


@dataclass(frozen=True, slots=True)
class TypeScore:
    type: str
    labels: int
    detected: int
    alerts: int
    false_positives: int
    duplicates: int
    grade_ok: int
    recall: float
    precision: float
    f1: float
    latency_median_s: float | None
    latency_p95_s: float | None
    covered: int = 0
    """detected labels whose device already had an open alert of the type when they began
    (a link that keeps flapping: the core holds one alert open instead of raising anew);
    they count for recall, not for latency"""
    resolved_early: int = 0
    """detected labels that must stay open (`stays_open`) whose alert was resolved before
    the label's end"""


def _p95(xs: list[float]) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def label_speed(label: Mapping[str, Any]) -> float:
    """How many times faster than simulated time the label's run went (1 without `speed`)."""
    speed = label.get("speed", 1)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not (
            math.isfinite(speed) and speed > 0):
        raise ValueError(f"label speed must be a positive number, got {speed!r}")
    return float(speed)


def score(labels: Iterable[Mapping[str, Any]], alerts: Iterable[Alert],
          grace_s: float = 600.0, *, false_positives: list[Alert] | None = None
          ) -> list[TypeScore]:
    """Per type, sorted by type; types with neither labels nor alerts are left out.
    `false_positives`, if given, gets the alerts that matched no label, in raise order."""
    by_key: dict[tuple[str, str], list[Alert]] = {}
    all_alerts = sorted(alerts, key=lambda a: a.ts_raised)
    for a in all_alerts:
        by_key.setdefault((a.device, a.type), []).append(a)
    labels_of: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for label in sorted(labels, key=lambda lb: int(lb["ts_start"])):
        labels_of.setdefault((str(label["device"]), str(label["type"])), []).append(label)
    used: set[str] = set()
    found: dict[str, list[tuple[Mapping[str, Any], Alert | None, int]]] = {}
    for key, same in labels_of.items():
        windows: list[tuple[Mapping[str, Any], Alert | None, int, float]] = []
        for n, label in enumerate(same):
            start, end = int(label["ts_start"]), int(label["ts_end"])
            until = end + grace_s * 1000 / label_speed(label)
            # An alert raised after the next incident on the same device began is that one's
            # (a link that flaps: one gateway.offline alert per drop).
            cap = until if n + 1 == len(same) else min(until, max(
                end, int(same[n + 1]["ts_start"]) - 1))
            hit = next((a for a in by_key.get(key, [])
                        if start <= a.ts_raised <= cap and a.alert_id not in used), None)
            if hit is not None:
                used.add(hit.alert_id)
            else:
                hit = next((a for _, a, _, _ in windows if a is not None
                            and a.open_at(start)), None)
            windows.append((label, hit, start, until))
        extra = [0] * len(windows)
        for a in by_key.get(key, []):
            if a.alert_id in used:
                continue
            owner = [n for n, (_, _, start, until) in enumerate(windows)
                     if start <= a.ts_raised <= until]
            if owner:  # a second alert for an incident already alerted on
                extra[owner[-1]] += 1
                used.add(a.alert_id)
        for (label, hit, _, _), dup in zip(windows, extra, strict=True):
            found.setdefault(str(label["type"]), []).append((label, hit, dup))
    alerts_of: dict[str, list[Alert]] = {}
    for a in all_alerts:
        alerts_of.setdefault(a.type, []).append(a)
    if false_positives is not None:
        false_positives += [a for a in all_alerts if a.alert_id not in used]
    out = []
    for type_ in sorted(set(found) | set(alerts_of)):
        rows = found.get(type_, [])
        detected = [(lb, a) for lb, a, _ in rows if a is not None]
        n_alerts = len(alerts_of.get(type_, []))
        false_pos = sum(1 for a in alerts_of.get(type_, []) if a.alert_id not in used)
        covered = [(lb, a) for lb, a in detected if a.ts_raised < int(lb["ts_start"])]
        latencies = [(a.ts_raised - int(lb["ts_start"])) / 1000 * label_speed(lb)
                     for lb, a in detected if a.ts_raised >= int(lb["ts_start"])]
        early = sum(1 for lb, a in detected if lb.get("stays_open") and a.ts_resolved
                    is not None and a.ts_resolved < int(lb["ts_end"]))
        recall = len(detected) / len(rows) if rows else 0.0
        precision = len(detected) / (len(detected) + false_pos) if detected or false_pos else 0.0
        f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
        out.append(TypeScore(
            type=type_, labels=len(rows), detected=len(detected), alerts=n_alerts,
            false_positives=false_pos, duplicates=sum(d for _, _, d in rows),
            grade_ok=sum(1 for lb, a in detected if RANK[a.grade] >= RANK[Grade(lb["grade"])]),
            recall=recall, precision=precision, f1=f1,
            latency_median_s=statistics.median(latencies) if latencies else None,
            latency_p95_s=_p95(latencies) if latencies else None, covered=len(covered),
            resolved_early=early))
    return out


def as_json(scores: Iterable[TypeScore]) -> list[dict[str, Any]]:
    return [asdict(s) for s in scores]


OTHER_REASON = "other"
"""dead letters that match none of the simulator's malformed reasons"""


def deadletter_reason(reason: str, payload_b64: str | None = None) -> str:
    """Which of the simulator's MALFORMED_REASONS a dead letter of the core stands for, from
    its reason text (`sensing.wire` errors) and raw payload; OTHER_REASON if none."""
    if "exceeds the limit" in reason:
        return "oversize"
    if "speaks for gateway" in reason or "speaks for area" in reason:
        return "foreign_gateway"
    if "missing field" in reason or "missing or non-string field" in reason:
        return "missing_field"
    if "must be finite" in reason:
        return "nan_value"
    if "must be an integer, got" in reason or "must be a number, got" in reason:
        return "wrong_type"
    if "malformed JSON" in reason:
        try:
            raw = base64.b64decode(payload_b64 or "", validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        # JSON has no NaN: the simulator's nan_value payload is broken JSON with a bare NaN
        return "nan_value" if b"NaN" in raw else "malformed_json"
    return OTHER_REASON


@dataclass(frozen=True, slots=True)
class ReasonCount:
    reason: str
    sent: int | None
    """malformed messages the run sent for this reason; None: unknown (no run report)"""
    dead_lettered: int | None
    """dead letters the core published for it; None: not counted (no source of them)"""


@dataclass(frozen=True, slots=True)
class DeadLetterScore:
    malformed_sent: int | None
    dead_lettered: int | None
    by_reason: tuple[ReasonCount, ...]

    @property
    def known(self) -> bool:
        """Whether there is anything to report."""
        return self.malformed_sent is not None or self.dead_lettered is not None

    def as_json(self) -> dict[str, Any]:
        return {"malformed_sent": self.malformed_sent, "dead_lettered": self.dead_lettered,
                "by_reason": {r.reason: {"sent": r.sent, "dead_lettered": r.dead_lettered}
                              for r in self.by_reason}}


def deadletter_score(malformed_sent: Mapping[str, int] | None,
                     deadletters: Iterable[Mapping[str, Any]] | None) -> DeadLetterScore:
    """Malformed messages sent by reason (a live report's `malformed_sent`; None: unknown)
    against dead letters heard (the contract's dead-letter messages; None: not counted).
    Reasons: the simulator's, in its order, then any other reason a report names, then
    OTHER_REASON if a dead letter fits none."""
    heard: dict[str, int] | None = None
    if deadletters is not None:
        heard = {}
        for d in deadletters:
            payload = d.get("payload")
            why = deadletter_reason(str(d.get("reason", "")),
                                    payload if isinstance(payload, str) else None)
            heard[why] = heard.get(why, 0) + 1
    sent = None if malformed_sent is None else {str(k): int(v) for k, v in malformed_sent.items()}
    names = list(MALFORMED_REASONS)
    names += sorted((set(sent or {}) | set(heard or {})) - set(names) - {OTHER_REASON})
    if OTHER_REASON in (sent or {}) or OTHER_REASON in (heard or {}):
        names.append(OTHER_REASON)
    rows = tuple(ReasonCount(
        n, None if sent is None else sent.get(n, 0), None if heard is None else heard.get(n, 0))
        for n in names)
    return DeadLetterScore(None if sent is None else sum(sent.values()),
                           None if heard is None else sum(heard.values()), rows)


def report_json(scores: Iterable[TypeScore], deadletters: DeadLetterScore,
                **extra: Any) -> dict[str, Any]:
    """The whole score as one JSON object: `types` (as_json's list), `deadletters`, extras."""
    return {"types": as_json(scores), "deadletters": deadletters.as_json(), **extra}
