"""The new detectors behind the detection engine: alert types, grades, onsets, latching."""

from __future__ import annotations

from sensing.detect.engine import DetectionEngine, Readings
from sensing.detect.fall import FallDetector
from sensing.detect.fault import default_fault_detectors
from sensing.detect.inactivity import InactivityDetector
from sensing.registry import Registry
from sensing.wire import BatchBuilder
from sensing.wire.messages import Grade

from .support import HOUR_MS, LOCAL_MIDNIGHT

Row = tuple[str, int, dict[str, float]]


class Engine:
    def __init__(self) -> None:
        self.registry = Registry()
        self.engine = DetectionEngine(self.registry, [
            FallDetector(), InactivityDetector(), *default_fault_detectors()])
        self.seq = 0

    def feed(self, rows: list[Row]) -> list[tuple[str, Grade | None, int]]:
        b = BatchBuilder()
        for device, ts, values in rows:
            b.add(device, "wearable", 0, self.seq, ts, values, 0.9)
            self.seq += 1
        batch = b.build()
        dev, chan = self.registry.intern_batch(batch, "gw", "a")
        out = self.engine.process(Readings(dev, batch.ts, batch.battery, batch.value_row, chan,
                                           batch.value))
        return [(c.type, c.grade, c.ts_event) for c in out]


def wearable(ts: int, accel: float, steps: float = 0.0, hr: float = 70.0) -> Row:
    return ("w-1", ts, {"accel_g": accel, "steps": steps, "heart_rate": hr, "sos": 0.0})


def test_a_fall_is_critical_and_stays_open_until_resolved() -> None:
    eng = Engine()
    t0 = LOCAL_MIDNIGHT + 10 * HOUR_MS
    fall = [wearable(t0, 1.3, 5, 71), wearable(t0 + 1000, 3.2, 0, 74)] + [
        wearable(t0 + 1000 * i, 1.0, 0, 70 + i % 3) for i in range(2, 14)]
    assert eng.feed(fall) == [("wearable.fall", Grade.CRITICAL, t0 + 1000)]
    later = [wearable(t0 + 20_000 + 1000 * i, 1.3, 4, 80 + i % 3) for i in range(60)]
    assert eng.feed(later) == []
    eng.engine.forget(0, "wearable.fall")
    again = [wearable(t0 + 200_000, 2.9)] + [
        wearable(t0 + 200_000 + 1000 * i, 1.0, 0, 70 + i % 3) for i in range(1, 12)]
    assert eng.feed(again) == [("wearable.fall", Grade.CRITICAL, t0 + 200_000)]


def test_inactivity_and_a_fault_come_and_go() -> None:
    eng = Engine()
    t0 = LOCAL_MIDNIGHT + 12 * HOUR_MS
    still = [wearable(t0 + i * 600_000, 1.0, 0.0, 70 + i % 4) for i in range(20)]
    assert eng.feed(still) == [("wearable.inactivity", Grade.MAJOR, t0)]
    moving = [wearable(t0 + 20 * 600_000, 1.3, 30.0, 90.0)]
    assert eng.feed(moving) == [("wearable.inactivity", None, t0)]
    t1 = t0 + 21 * 600_000
    sos = [("w-1", t1 + i * 1000, {"sos": 0.5}) for i in range(2)]
    assert eng.feed(sos) == [("device.fault", Grade.MINOR, t1)]
