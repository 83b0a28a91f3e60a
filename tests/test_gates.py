"""The engine's gates (sensing.kernels.gate): event-time order per device, and faults that keep
a channel's values from its threshold rules. Kernels against slow references, the engine
against the pure-Python reference core, and the property that late readings change nothing."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.alerts import AlertBook
from sensing.alerts.lifecycle import Lifecycle
from sensing.detect.bank import BankInput
from sensing.detect.catalog import default_checks
from sensing.detect.checks import CheckBank
from sensing.detect.engine import (
    _OPEN,
    FAULT,
    ConditionChange,
    DetectionEngine,
    Readings,
    check_bank,
)
from sensing.detect.fault import ImpossibleParams, ImpossibleValues
from sensing.detect.rules import DEFAULT_RULES
from sensing.detect.threshold import ThresholdDetector
from sensing.kernels.checks import IMPOSSIBLE
from sensing.kernels.gate import (
    GATED,
    NEGATIVE_CHANNEL,
    ROW_OUTSIDE,
    UNKNOWN_DEVICE,
    fault_gate,
    gate_batch,
)
from sensing.registry import Registry
from sensing.wire import BatchBuilder
from sensing.wire.kinds import KIND_CHANNELS
from sensing.wire.messages import Alert, Grade

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reference_core import ReferenceCore

pytestmark = pytest.mark.kernel

T0 = 1_795_478_819_832
S = 1000

# -- the kernels against their references --------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20)), max_size=12),
                max_size=4))
def test_late_readings_are_those_older_than_their_device_s_newest(
        batches: list[list[tuple[int, int]]]) -> None:
    newest = np.full(4, -1, dtype=np.int64)
    device_kind = np.array([2, 0, -1, 1], dtype=np.int8)
    seen: dict[int, int] = {}
    for batch in batches:
        dev = np.array([d for d, _ in batch], dtype=np.int32)
        ts = np.array([t for _, t in batch], dtype=np.int64)
        kind = np.empty(len(batch), dtype=np.int8)
        late = np.empty(len(batch), dtype=np.bool_)
        want = []
        for d, t in batch:  # in arrival order
            want.append(t < seen.get(d, -1))
            if not want[-1]:
                seen[d] = t
        none = np.zeros(0, dtype=np.int32)
        assert gate_batch(dev, ts, none, none, device_kind, newest, kind, late) == (
            GATED, sum(want), max(dev.tolist(), default=-1),
            max(device_kind[dev].tolist(), default=-1))
        assert late.tolist() == want
        assert kind.tolist() == device_kind[dev].tolist()
    assert newest.tolist() == [seen.get(d, -1) for d in range(4)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-2, 5), min_size=1, max_size=6),
       st.lists(st.tuples(st.integers(-2, 7), st.integers(-2, 3)), max_size=6))
def test_a_batch_with_an_index_the_banks_cannot_use_is_refused_before_any_change(
        devices: list[int], values: list[tuple[int, int]]) -> None:
    """Devices inside the kinds table and the clock (4 each here), value rows inside the batch
    and channels not negative pass; anything else is refused with the first reason in that
    order, and the clock is left as it was."""
    device_kind = np.zeros(4, dtype=np.int8)
    newest = np.full(4, 7, dtype=np.int64)
    dev = np.array(devices, dtype=np.int32)
    rows = np.array([r for r, _ in values], dtype=np.int32)
    channels = np.array([c for _, c in values], dtype=np.int32)
    kind = np.empty(dev.shape[0], dtype=np.int8)
    late = np.empty(dev.shape[0], dtype=np.bool_)
    status, *_ = gate_batch(dev, np.full(dev.shape[0], 9, np.int64), rows, channels,
                            device_kind, newest, kind, late)
    if not all(0 <= d < 4 for d in devices):
        want = UNKNOWN_DEVICE
    elif not all(0 <= r < len(devices) for r, _ in values):
        want = ROW_OUTSIDE
    elif not all(c >= 0 for _, c in values):
        want = NEGATIVE_CHANNEL
    else:
        want = GATED
    assert status == want
    assert newest.tolist() == ([7] * 4 if want != GATED else
                               [9 if d in devices else 7 for d in range(4)])


GATED_CHANNELS = (("smoke", "obscuration"), ("smoke", "temp_c"), ("manhole", "tilt_deg"))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.sampled_from(
        [*GATED_CHANNELS, ("smoke", "co_ppm"), ("smoke", "elsewhere")]), st.sampled_from(
        [-5.0, 0.0, 0.5, 12.0, 99.5, 150.0, 400.0, math.nan, math.inf])), max_size=16),
    st.lists(st.tuples(st.integers(0, 16), st.integers(0, 2), st.booleans()), max_size=6),
    st.sets(st.integers(0, 1)),
)
def test_fault_gate_matches_a_plain_reading_of_the_checks(
        values: list[tuple[int, tuple[str, str], float]],
        events: list[tuple[int, int, bool]], widened: set[int]) -> None:
    """Values impossible for the device's own profile of its channel's check, and values of a
    channel whose check has its fault raised (after the changes at their reading), are
    gated."""
    reg = Registry()
    kinds = ["smoke", "smoke", "manhole", "manhole"]
    for d, kind in enumerate(kinds):
        reg.intern_batch(_one(f"d{d}", kind), "gw", "a")
    checks = [ImpossibleValues(kind, channel) for kind, channel in GATED_CHANNELS]
    engine = DetectionEngine(reg, check_bank(reg, checks).views)
    engine.ensure_capacity(4)
    bank = engine._check_banks[0]
    wide = ImpossibleParams(-10.0, 500.0)  # an override: these smoke detectors read further
    bank.set_profile(0, sorted(widened), bank.profile_index(0, wide))
    width, (mask, to_check, ptr, imp_row, imp_slot) = engine._alone_tables
    plain = np.concatenate([bank._plain, _OPEN])[to_check]
    # one reading per value (rows in order), a device of the right kind for each
    rows = [(d if kinds[d] == kind else (d + 2) % 4, name, v)
            for d, (kind, name), v in values]
    dev = np.array([d for d, _, _ in rows], dtype=np.int32)
    kind_of = np.array([reg.kind_index[kinds[d]] for d, _, _ in rows], dtype=np.int8)
    value_row = np.arange(len(rows), dtype=np.int32)
    value_channel = np.array([reg.channels.intern(name) for _, name, _ in rows],
                             dtype=np.int32)
    value = np.array([v for _, _, v in rows], dtype=np.float64)
    bit = engine._fault_bit
    # a change of one of the checks of the reading's device's kind
    ev = sorted((row, q % 2 if kinds[rows[row][0]] == "smoke" else 2, int(up))
                for row, q, up in ((min(r, len(rows) - 1), q, up) for r, q, up in events)
                if rows)
    fault_bits = np.zeros(4, dtype=np.uint32)
    n_open = np.zeros(1, dtype=np.int64)
    out = np.empty(len(rows), dtype=np.bool_)
    n = fault_gate(dev, kind_of, value_row, value_channel, value, width, fault_bits, mask,
                   n_open, np.array([e[0] for e in ev], np.int64),
                   np.array([bit[e[1]] for e in ev], np.int64),
                   np.array([e[2] for e in ev], np.int64), plain, ptr, imp_row, imp_slot,
                   bank._params[IMPOSSIBLE], bank.state.profiles[IMPOSSIBLE], out)
    raised: set[tuple[int, int]] = set()
    want = []
    e = 0
    for i, (d, name, v) in enumerate(rows):
        while e < len(ev) and ev[e][0] <= i:
            row, q, up = ev[e]
            (raised.add if up else raised.discard)((int(dev[row]), q))
            e += 1
        bad = False
        for q, check in enumerate(checks):
            if (check.spec.kind, check.spec.channel) == (kinds[d], name):
                lim = bank.params_of(q, d)
                bad |= not (math.isfinite(v) and lim.low <= v <= lim.high)
                bad |= (d, q) in raised
        want.append(bad)
    assert out.tolist() == want and n == sum(want)
    assert int(n_open[0]) == sum(bin(b).count("1") for b in fault_bits.tolist())


WRIST = ("heart_rate", "spo2", "accel_g", "steps", "sos")
WRIST_READINGS = ((72.0, 97.0, 1.0, 6.0, 0.0), (72.0, 97.0, 1.0, 0.0, 0.0),
                  (400.0, 30.0, 60.0, 3.5, 2.0), (45.0, 85.0, 4.0, 0.0, 1.0))
"""walking, at rest, garbage from every channel (a fault), an impact"""


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(-90, 600), st.integers(0, 3)),
                max_size=60),
       st.integers(0, 60))
def test_a_check_bank_run_in_order_does_what_it_does_dropping_late_readings_itself(
        steps: list[tuple[int, int, int]], cut: int) -> None:
    """Fed only the readings that are not late (the engine's gate), with `in_order`, the
    bank reports the same changes and ends in the same state as fed everything, without
    reading or moving its own clock."""
    clock = [T0, T0, T0]
    rows = []  # (device, ts, values): each device's clock moves by the step, sometimes back
    for d, step_s, reading in steps:
        clock[d] += step_s * S
        rows.append((d, clock[d], WRIST_READINGS[reading]))
    kinds = ("smoke", "manhole", "wearable")
    kept = []
    newest: dict[int, int] = {}
    for i, (d, t, _) in enumerate(rows):
        if t >= newest.get(d, -1):
            newest[d] = t
            kept.append(i)
    channel = {name: c for c, name in enumerate(dict.fromkeys(
        c for k in kinds for c in KIND_CHANNELS[k]))}
    banks = [CheckBank(default_checks(), kinds, channel.__getitem__, capacity=3,
                       stuck_tick_ms=30 * S) for _ in range(2)]

    def batch(part: list[tuple[int, int, tuple[float, ...]]]) -> BankInput:
        n = len(part)
        return BankInput.checked(
            np.array([d for d, _, _ in part], np.int32),
            np.array([t for _, t, _ in part], np.int64),
            np.full(n, 2, np.int8), np.full(n, np.nan),
            np.repeat(np.arange(n, dtype=np.int32), len(WRIST)),
            np.tile(np.array([channel[c] for c in WRIST], np.int32), n),
            np.array([v for _, _, vs in part for v in vs], np.float64))

    def run(bank: CheckBank, part: list[int], offset: int, in_order: bool
            ) -> list[tuple[int, int, int, int, float]]:
        out = bank.run(batch([rows[i] for i in part]), in_order=in_order)
        return [(part[r] if in_order else offset + r, q, lvl, onset, sig)
                for r, q, lvl, onset, sig in zip(out.row.tolist(), out.rule.tolist(),
                                                 out.level.tolist(), out.onset.tolist(),
                                                 out.signal.tolist(), strict=True)]

    cut = min(cut, len(rows))
    whole = run(banks[0], list(range(cut)), 0, False) + run(
        banks[0], list(range(cut, len(rows))), cut, False)
    gated = run(banks[1], [i for i in kept if i < cut], 0, True) + run(
        banks[1], [i for i in kept if i >= cut], 0, True)
    assert gated == whole
    for a, b in zip(banks[0].state.records, banks[1].state.records, strict=True):
        assert a.tobytes() == b.tobytes()
    assert banks[1].state.newest.tolist() == [-1] * 3


def _one(device: str, kind: str):  # type: ignore[no-untyped-def]
    b = BatchBuilder()
    b.add(device, kind, 0, 0, T0, {}, None)
    return b.build()


# -- the engine ----------------------------------------------------------------------------

Row = tuple[str, str, int, dict[str, float]]
"""(device, kind, ts, values)"""


class Run:
    """An engine fed batches of rows, keeping what it reports."""

    def __init__(self, banked: bool = True) -> None:
        """`banked`: the default detectors; else the rules one by one, beside the checks."""
        self.reg = Registry()
        self.engine = DetectionEngine(self.reg, None if banked else [
            *(ThresholdDetector(rule) for rule in DEFAULT_RULES),
            *check_bank(self.reg, default_checks()).views])
        self.seq: dict[str, int] = {}

    def feed(self, rows: list[Row]) -> list[ConditionChange]:
        if not rows:
            return []
        b = BatchBuilder()
        for device, kind, ts, values in rows:
            seq = self.seq[device] = self.seq.get(device, -1) + 1
            b.add(device, kind, 0, seq, ts, values, None)
        batch = b.build()
        dev, chan = self.reg.intern_batch(batch, "gw", "a")
        return self.engine.process(Readings(dev, batch.ts, batch.battery, batch.value_row,
                                            chan, batch.value))

    def changes(self, batches: list[list[Row]]) -> list[tuple[str, str, Grade | None, int, int]]:
        return [(self.reg.devices.names[c.device], c.type, c.grade, c.ts_event, c.ts)
                for rows in batches for c in self.feed(rows)]


def smoke(t_s: float, obscuration: float, device: str = "smoke-1") -> Row:
    return (device, "smoke", T0 + int(t_s * S), {"obscuration": obscuration, "temp_c": 21.0,
                                                 "co_ppm": 0.0})


@pytest.mark.parametrize("banked", [True, False])
def test_impossible_obscuration_is_a_fault_and_no_fire(banked: bool) -> None:
    got = Run(banked).changes([[smoke(i * 10, 400.0) for i in range(6)]])
    assert [(t, g) for _, t, g, _, _ in got] == [(FAULT, Grade.MINOR)]


@pytest.mark.parametrize("banked", [True, False])
def test_while_a_fault_is_raised_its_channel_neither_raises_nor_clears(banked: bool) -> None:
    run = Run(banked)
    # a fire, then the chamber reports garbage (a fault), then plausible alarm values while
    # the fault holds (10 min and 3 plausible readings): the fire neither clears nor re-raises
    fire = [smoke(i * 10, 12.0) for i in range(4)]
    assert [t for _, t, _, _, _ in run.changes([fire])] == ["smoke.fire"]
    garbage = [smoke(40 + i * 10, 400.0) for i in range(3)]
    assert [(t, g) for _, t, g, _, _ in run.changes([garbage])] == [(FAULT, Grade.MINOR)]
    normal = [smoke(70 + i * 10, 0.1) for i in range(5)]
    assert run.changes([normal]) == []  # the fault holds: no clear of the fire
    # once the fault has cleared (3 plausible readings over 10 min), the channel counts again
    after = [smoke(120 + i * 300, 0.1) for i in range(3)]
    got = run.changes([after])
    assert (FAULT, None) in [(t, g) for _, t, g, _, _ in got]
    assert ("smoke.fire", None) in [(t, g) for _, t, g, _, _ in got]
    # a device whose fault opened before any fire: plausible alarm values raise nothing
    run = Run(banked)
    run.changes([[smoke(i * 10, -3.0, "smoke-2") for i in range(2)]])
    assert run.changes([[smoke(20 + i * 10, 12.0, "smoke-2") for i in range(4)]]) == []


def test_a_late_normal_reading_keeps_the_fire_and_a_late_alarm_does_not_re_raise() -> None:
    run = Run()
    got = run.changes([[smoke(i * 10, 12.0) for i in range(4)]])
    assert [(t, g) for _, t, g, _, _ in got] == [("smoke.fire", Grade.MAJOR)]
    assert run.changes([[smoke(5, 0.1), smoke(1, 0.1)]]) == []  # minutes late, normal
    got = run.changes([[smoke(40 + i * 10, 0.1) for i in range(2)]])
    assert [(t, g) for _, t, g, _, _ in got] == [("smoke.fire", None)]
    assert run.changes([[smoke(20, 12.0), smoke(30, 12.0)]]) == []  # late, alarm-level
    # a reading stamped the same as the newest is not late
    assert [t for _, t, _, _, _ in run.changes([[smoke(50, 12.0), smoke(50, 12.0)]])] == [
        "smoke.fire"]


# -- the engine against the pure-Python reference core ----------------------------------------

CHANNEL_VALUES = {
    "obscuration": [0.1, 3.0, 5.0, 12.0, -1.0, 400.0],
    "temp_c": [21.0, 60.0, 200.0],
    "co_ppm": [0.0, 150.0, 400.0, -3.0],
    "tilt_deg": [0.5, 12.0, 40.0, 200.0],
    "water_m": [2.0, 0.1, 60.0],
    "gas_lel": [0.5, 30.0, 120.0],
}


@st.composite
def streams(draw: st.DrawFn) -> list[list[tuple[int, str, int, list[tuple[str, float]]]]]:
    """Batches of readings of 3 devices (two smoke, one manhole) with late readings."""
    kinds = ["smoke", "smoke", "manhole"]
    clock = [0, 0, 0]
    batches = []
    for _ in range(draw(st.integers(1, 5))):
        batch = []
        for _ in range(draw(st.integers(0, 12))):
            d = draw(st.integers(0, 2))
            if draw(st.integers(0, 4)) == 0 and clock[d] > 0:
                ts = draw(st.integers(0, clock[d] - 1))  # late
            else:
                clock[d] += draw(st.sampled_from([0, 5, 10, 30, 300]))
                ts = clock[d]
            values = [(ch, draw(st.sampled_from(CHANNEL_VALUES[ch])))
                      for ch in KIND_CHANNELS[kinds[d]]]
            batch.append((d, kinds[d], ts, values))
        batches.append(batch)
    return batches


@settings(max_examples=40, deadline=None)
@given(streams())
def test_the_engine_gates_as_the_reference_core_does(
        batches: list[list[tuple[int, str, int, list[tuple[str, float]]]]]) -> None:
    run = Run()
    ref = ReferenceCore()
    seq = 0
    want = []
    got = []
    for batch in batches:
        rows = []
        readings = []
        for d, kind, ts, values in batch:
            rows.append((f"d{d}", kind, T0 + ts * S, dict(values)))
            readings.append((d, kind, 0, seq, T0 + ts * S, values, math.nan))
            seq += 1
        for c in run.feed(rows):
            got.append((int(run.reg.devices.names[c.device][1:]), c.type, c.grade, c.ts_event,
                        c.ts))
        want += [(d, t, g, onset, ts) for d, t, g, onset, ts, _ in ref.process(readings)]
    assert got == want


# -- late readings change nothing: the property ------------------------------------------------

VALUES = [0.1, 1.0, 3.0, 5.0, 9.0, 12.0, 30.0, 400.0, -2.0]


@st.composite
def interleaved(draw: st.DrawFn) -> tuple[list[list[Row]], list[list[Row]]]:
    """A device's in-order stream in batches, and the same with late readings (older than
    the device's newest at their arrival, any values) put anywhere in it."""
    t = 0
    plain: list[list[Row]] = []
    mixed: list[list[Row]] = []
    for _ in range(draw(st.integers(1, 6))):
        batch: list[Row] = []
        extra: list[Row] = []
        for _ in range(draw(st.integers(0, 10))):
            if t > 0 and draw(st.booleans()):
                extra.append(smoke(draw(st.integers(0, t - 1)) / 1000,
                                   draw(st.sampled_from(VALUES))))
            t += draw(st.sampled_from([1, 5_000, 10_000, 25_000, 60_000, 600_000]))
            row = smoke(t / 1000, draw(st.sampled_from(VALUES)))
            batch.append(row)
            extra.append(row)
        plain.append(batch)
        mixed.append(extra)
        if t > 0 and draw(st.booleans()):  # a batch of late readings alone
            mixed.append([smoke(draw(st.integers(0, t - 1)) / 1000, draw(st.sampled_from(
                VALUES))) for _ in range(draw(st.integers(1, 3)))])
            plain.append([])
    return plain, mixed


def alerts(batches: list[list[Row]]) -> list[tuple[str, str, str, int]]:
    """What the engine and the lifecycle make of the batches, ticked after each batch with
    a gateway watermark far ahead of the device (a backlog delivered late)."""
    run = Run()
    life = Lifecycle(AlertBook())
    out: list[Alert] = []
    now = T0 + 10**9
    for rows in batches:
        for c in run.feed(rows):
            out += life.condition(device=run.reg.devices.names[c.device], alert_type=c.type,
                                  grade=c.grade, gateway="gw", area="a", ts_event=c.ts_event,
                                  ts=c.ts, value=c.value, reason=c.reason, now=now,
                                  own_clock=True)
        out += life.tick(lambda gw: now, now, run.engine.event_time)
    return [(a.type, a.grade.value, a.state.value, a.ts_event) for a in out]


@settings(max_examples=80, deadline=None)
@given(interleaved())
def test_late_readings_leave_the_alerts_as_the_in_order_stream_alone(
        streams: tuple[list[list[Row]], list[list[Row]]]) -> None:
    plain, mixed = streams
    assert Run().changes(mixed) == Run().changes(plain)
    assert alerts(mixed) == alerts(plain)


def test_a_device_the_registry_does_not_know_is_refused() -> None:
    run = Run()
    run.feed([smoke(0, 0.1)])
    one = np.ones(1)
    for dev in (1, 5_000):
        with pytest.raises(IndexError):
            run.engine.process(Readings(np.array([dev], np.int32), np.array([T0]), one,
                                        np.array([0], np.int32), np.array([0], np.int32), one))
