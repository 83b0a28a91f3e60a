"""How well alerts matched the labelled incidents: per alert type recall, precision, F1,
detection latency and duplicates.

An *alert* is one `alert_id` (its transitions grouped): its device, type, the time it was
first raised and the highest grade it reached. A label (an incident, `Incident.to_dict` with
`ts_start`/`ts_end`) is *detected* when an alert of its device and type was raised between its
start and `grace_s` after its end (detectors confirm over a while: a CO alarm may take tens of
minutes by EN 50291). The first such alert is a true positive; further ones for the same label
are duplicates; an alert that matches no label is a false positive. Latency is the first
alert's raise time minus the label's start; `grade_ok` counts detected labels whose alert
reached at least the label's grade.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sensing.wire.messages import GRADE_RANK, Grade

RANK = GRADE_RANK


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    type: str
    device: str
    ts_raised: int
    grade: Grade
    """the highest grade it reached"""


def alerts_from_transitions(transitions: Iterable[Mapping[str, Any]]) -> list[Alert]:
    """One `Alert` per alert_id, from the contract's alert messages in any order."""
    first: dict[str, Mapping[str, Any]] = {}
    top: dict[str, Grade] = {}
    for t in transitions:
        aid = str(t["alert_id"])
        if aid not in first or int(t["ts_raised"]) < int(first[aid]["ts_raised"]):
            first[aid] = t
        grade = Grade(t["grade"])
        if aid not in top or RANK[grade] > RANK[top[aid]]:
            top[aid] = grade
    return [Alert(aid, str(t["type"]), str(t["device"]), int(t["ts_raised"]), top[aid])
            for aid, t in first.items()]


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


def _p95(xs: list[float]) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def score(labels: Iterable[Mapping[str, Any]], alerts: Iterable[Alert],
          grace_s: float = 600.0) -> list[TypeScore]:
    """Per type, sorted by type; types with neither labels nor alerts are left out."""
    by_key: dict[tuple[str, str], list[Alert]] = {}
    all_alerts = sorted(alerts, key=lambda a: a.ts_raised)
    for a in all_alerts:
        by_key.setdefault((a.device, a.type), []).append(a)
    used: set[str] = set()
    found: dict[str, list[tuple[Mapping[str, Any], Alert | None, int]]] = {}
    for label in sorted(labels, key=lambda lb: int(lb["ts_start"])):
        start, end = int(label["ts_start"]), int(label["ts_end"])
        hits = [a for a in by_key.get((str(label["device"]), str(label["type"])), [])
                if start <= a.ts_raised <= end + grace_s * 1000 and a.alert_id not in used]
        used.update(a.alert_id for a in hits)
        found.setdefault(str(label["type"]), []).append(
            (label, hits[0] if hits else None, max(0, len(hits) - 1)))
    alerts_of: dict[str, list[Alert]] = {}
    for a in all_alerts:
        alerts_of.setdefault(a.type, []).append(a)
    out = []
    for type_ in sorted(set(found) | set(alerts_of)):
        rows = found.get(type_, [])
        detected = [(lb, a) for lb, a, _ in rows if a is not None]
        n_alerts = len(alerts_of.get(type_, []))
        false_pos = sum(1 for a in alerts_of.get(type_, []) if a.alert_id not in used)
        latencies = [(a.ts_raised - int(lb["ts_start"])) / 1000 for lb, a in detected]
        recall = len(detected) / len(rows) if rows else 0.0
        precision = len(detected) / (len(detected) + false_pos) if detected or false_pos else 0.0
        f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
        out.append(TypeScore(
            type=type_, labels=len(rows), detected=len(detected), alerts=n_alerts,
            false_positives=false_pos, duplicates=sum(d for _, _, d in rows),
            grade_ok=sum(1 for lb, a in detected if RANK[a.grade] >= RANK[Grade(lb["grade"])]),
            recall=recall, precision=precision, f1=f1,
            latency_median_s=statistics.median(latencies) if latencies else None,
            latency_p95_s=_p95(latencies) if latencies else None))
    return out


def as_json(scores: Iterable[TypeScore]) -> list[dict[str, Any]]:
    return [asdict(s) for s in scores]
