"""What a pipeline under test offers the end-to-end benchmark.

A pipeline takes readings from `sensing/v1/{area}/{gateway}/readings` (QoS 1, a persistent
session: it must be subscribed when `start` returns, so the broker queues what arrives before it
reads), writes them to the store's `/api/v2/write`, and publishes one alert JSON per alarm on
`sensing/v1/alerts/{area}` carrying at least `"device"` (the benchmark measures latency by
device). Alarms are wearable readings with `values.sos == 1` (see `e2e.fleet`); no other reading
of the benchmark's fleet is an alarm (smoke obscuration stays under 0.3 %/m).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Protocol, runtime_checkable

from sensing.services import VictoriaMetrics

ReadingKey = tuple[str, str, int, int]
"""(gateway, device, epoch, seq), as sensing.testing.counting counts them"""


@runtime_checkable
class Pipeline(Protocol):
    name: str

    def start(self, broker_port: int, store_url: str, workdir: Path) -> None:
        """Start and return once subscribed."""

    def pids(self) -> list[int]:
        """The processes whose CPU and peak RSS count (their children are added)."""

    def stored(self, store: VictoriaMetrics) -> int:
        """Readings it stored, counted in the store (cheap enough to poll every second)."""

    def stop(self) -> None:
        """Stop, leaving no process behind."""


@runtime_checkable
class SeqSeries(Protocol):
    """Optional: the series selector of the per-reading `seq` field in the store (e.g.
    '{__name__="reading_seq"}'), for the exact tally of lost and stored-twice readings."""

    seq_selector: str


@runtime_checkable
class StoredKeys(Protocol):
    """Optional, instead of SeqSeries: every stored reading and how many times it is stored."""

    def stored_keys(self, store: VictoriaMetrics) -> Counter[ReadingKey]: ...
