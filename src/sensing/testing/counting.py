"""Counting readings in the real store: which (gateway, device, epoch, seq) it holds, how many
times, and what that means against what was sent.

The store keeps one sample per series and timestamp (VictoriaMetrics runs with
-dedup.minScrapeInterval=1ms, InfluxDB overwrites a point), so a reading written twice at its
own time is stored once. A reading "stored twice" here is one whose (device, epoch, seq) the
store holds at two different times or under two gateways: a copy the dedup window should have
dropped but that became a second point."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sensing.services import VictoriaMetrics

ReadingKey = tuple[str, str, int, int]
"""(gateway, device, epoch, seq)"""


def _series(store: VictoriaMetrics, metric: str, selector: str
            ) -> Iterable[tuple[str, str, list[int], list[float]]]:
    match = f'{{__name__="{metric}"{"," + selector if selector else ""}}}'
    for s in store.export(match):
        labels = s["metric"]
        assert isinstance(labels, dict)
        yield (str(labels.get("gateway", "")), str(labels.get("device", "")),
               list(s["timestamps"]),  # type: ignore[call-overload]
               list(s["values"]))  # type: ignore[call-overload]


def stored_readings(store: VictoriaMetrics, selector: str = "") -> Counter[ReadingKey]:
    """Samples of `reading_seq` per (gateway, device, epoch, seq), `selector` narrowing the
    series (e.g. 'area="fault"'). The epoch is joined from `reading_epoch` at the same
    (gateway, device, ts); a reading without one counts as epoch -1."""
    epochs: dict[tuple[str, str, int], int] = {}
    for gateway, device, stamps, values in _series(store, "reading_epoch", selector):
        for ts, v in zip(stamps, values, strict=True):
            epochs[(gateway, device, int(ts))] = int(v)
    out: Counter[ReadingKey] = Counter()
    for gateway, device, stamps, values in _series(store, "reading_seq", selector):
        for ts, v in zip(stamps, values, strict=True):
            out[(gateway, device, epochs.get((gateway, device, int(ts)), -1), int(v))] += 1
    return out


@dataclass(frozen=True, slots=True)
class Tally:
    """What was sent against what the store holds."""

    sent: int
    stored: int
    """distinct expected readings found"""
    lost: int
    stored_twice: int
    """samples beyond one per expected reading"""
    unexpected: int
    """samples of readings nobody sent (corrupted copies, wrong names)"""

    @classmethod
    def of(cls, expected: set[ReadingKey], stored: Counter[ReadingKey]) -> Tally:
        found = sum(1 for k in expected if stored.get(k, 0) > 0)
        twice = sum(n - 1 for k, n in stored.items() if k in expected and n > 1)
        unexpected = sum(n for k, n in stored.items() if k not in expected)
        return cls(sent=len(expected), stored=found, lost=len(expected) - found,
                   stored_twice=twice, unexpected=unexpected)


def settle(store: VictoriaMetrics, selector: str, expected: set[ReadingKey],
           timeout: float = 30.0) -> Counter[ReadingKey]:
    """Poll the store until every expected reading is there (or `timeout` passes), then look
    once more after a pause to catch any surplus."""
    import time

    deadline = time.monotonic() + timeout
    stored = stored_readings(store, selector)
    while time.monotonic() < deadline and any(stored.get(k, 0) == 0 for k in expected):
        time.sleep(0.5)
        stored = stored_readings(store, selector)
    time.sleep(0.5)
    return stored_readings(store, selector)
