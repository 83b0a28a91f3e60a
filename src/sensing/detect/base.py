"""The one small API every detector has (in the manner of river's anomaly detectors).

A detector watches one channel of one kind of device. Per device it keeps state in
preallocated arrays and, fed readings in arrival order, reports *level changes*: level 0 is
"no condition", levels 1..n are the detector's grades from least to most severe. Scoring is
separate from classifying: `score` gives a per-reading anomaly score in [0, 1] for offline
evaluation, without touching the streaming state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sensing.wire.messages import Grade

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    name: str
    """unique, e.g. "smoke-obscuration"; used in overrides and logs"""
    type: str
    """the alert type it feeds, e.g. "smoke.fire" """
    kind: str
    channel: str
    """a channel name, or "battery" for the reading's battery field"""
    latching: bool = False
    """once raised, the alert stays open until a person resolves it"""


@dataclass(frozen=True, slots=True)
class LevelChanges:
    """One batch's output: per change, the input row, the new level (0 = clear), the onset
    (event time of the first reading of the episode) and the signal value that decided."""

    row: I64
    level: npt.NDArray[np.int8]
    onset: I64
    signal: F64

    @classmethod
    def empty(cls) -> LevelChanges:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int64),
                   np.zeros(0, np.float64))


class Detector(Protocol):
    @property
    def spec(self) -> DetectorSpec: ...

    def grade(self, level: int) -> Grade:
        """The alert grade of level 1..n."""
        ...

    def describe(self, level: int, signal: float, device: int | None = None) -> str:
        """A person's reason for being at `level` with this signal value (quoting the
        parameters `device` has, when given)."""
        ...

    def ensure_capacity(self, n_devices: int) -> None: ...

    def clear(self, device: int) -> None:
        """Forget a device's episode (a person resolved its alert)."""
        ...

    def process(self, dev: I32, ts: I64, val: F64) -> LevelChanges:
        """Readings of this detector's channel, in arrival order; updates state in place."""
        ...

    def score(self, ts: I64, val: F64) -> F64:
        """Anomaly score in [0, 1] per reading of one device's series (stateless)."""
        ...
