"""Run detectors offline on a series you bring: per-point anomaly scores and alert intervals.

    from sensing.detect.api import evaluate
    for result in evaluate(ts_ms, values, kind="smoke", channel="co_ppm"):
        print(result.detector, result.scores.max(), result.intervals)

Every call starts from fresh detector state, so results depend only on the series. Timestamps
are event times in ms (ascending is expected, as the detectors would see them live).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensing.detect.base import Detector
from sensing.detect.catalog import default_checks
from sensing.detect.checks import CheckView, bank_of_one
from sensing.detect.rules import DEFAULT_RULES
from sensing.detect.threshold import ThresholdDetector
from sensing.wire.kinds import KINDS
from sensing.wire.messages import Grade


@dataclass(frozen=True, slots=True)
class Interval:
    start: int
    """event time (ms) of the first reading of the episode (the alert's ts_event)"""
    end: int | None
    """event time of the reading that cleared it; None if still open at the end"""
    grade: Grade
    """the most severe grade reached"""


@dataclass(frozen=True, slots=True)
class SeriesResult:
    detector: str
    type: str
    scores: npt.NDArray[np.float64]
    """anomaly score in [0, 1] per point"""
    levels: npt.NDArray[np.int8]
    """the detector's level after each point (0 = no condition)"""
    intervals: list[Interval]


def default_detectors() -> list[Detector]:
    """Fresh instances of every default detector, each with its own state."""
    return [*(ThresholdDetector(rule, capacity=1) for rule in DEFAULT_RULES),
            *(CheckView(bank_of_one(check, capacity=1), 0) for check in default_checks())]


def evaluate(
    timestamps: Sequence[int] | npt.NDArray[np.int64],
    values: Sequence[float] | npt.NDArray[np.float64],
    *,
    channel: str,
    kind: str | None = None,
    detector: str | None = None,
    factory: Callable[[], list[Detector]] = default_detectors,
) -> list[SeriesResult]:
    """Every default detector watching `channel` (of `kind`, if given; only the one named
    `detector`, if given) run over one device's series."""
    ts = np.ascontiguousarray(timestamps, dtype=np.int64)
    val = np.ascontiguousarray(values, dtype=np.float64)
    if ts.ndim != 1 or ts.shape != val.shape:
        raise ValueError("timestamps and values must be 1-D and of the same length")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    chosen = [d for d in factory()
              if d.spec.channel == channel and kind in (None, d.spec.kind)
              and detector in (None, d.spec.name)]
    if not chosen:
        raise ValueError(f"no detector watches {channel!r}"
                         + (f" of {kind}" if kind else "") + (f" named {detector!r}"
                                                             if detector else ""))
    return [_run(d, ts, val) for d in chosen]


def _run(det: Detector, ts: npt.NDArray[np.int64], val: npt.NDArray[np.float64]
         ) -> SeriesResult:
    det.ensure_capacity(1)
    changes = det.process(np.zeros(ts.shape[0], dtype=np.int32), ts, val)
    levels = np.zeros(ts.shape[0], dtype=np.int8)
    intervals: list[Interval] = []
    start: int | None = None
    worst = 0
    rows = [*changes.row.tolist(), ts.shape[0]]
    for k, (row, level, onset) in enumerate(
        zip(changes.row.tolist(), changes.level.tolist(), changes.onset.tolist(), strict=True)
    ):
        levels[row : rows[k + 1]] = level
        if level and start is None:
            start, worst = onset, level
        elif level:
            worst = max(worst, level)
        elif start is not None:
            intervals.append(Interval(start, int(ts[row]), det.grade(worst)))
            start = None
    if start is not None:
        intervals.append(Interval(start, None, det.grade(worst)))
    return SeriesResult(det.spec.name, det.spec.type, det.score(ts, val), levels, intervals)
