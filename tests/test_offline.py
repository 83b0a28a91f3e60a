"""device.offline on event time, held back while the gateway is offline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.detect.offline import OfflinePolicy, OfflineWatch
from sensing.kernels.offline import HELD, OFFLINE, REPORTING, note_seen, offline_scan
from sensing.wire.kinds import KINDS

T0 = 1_795_478_819_832
S = 1000
POLICY = OfflinePolicy(min_timeout_s=60, factor=5, lateness_s=5, idle_s=10, restart_s=0,
                       batch_delay_s=0, default_interval_s=0.001,
                       intervals_s=dict.fromkeys(KINDS, 0.001))
"""the timeouts before issue 13, max(60 s, 5 usual gaps), for the watermark's tests"""


def watch_with(devices: int, gateways: int) -> tuple[OfflineWatch, np.ndarray]:
    w = OfflineWatch(POLICY, capacity=1, gateways=1)
    w.ensure_capacity(devices, gateways)
    return w, np.arange(devices, dtype=np.int32) % gateways


def feed(w: OfflineWatch, dev: int, ts: int, gw: int, wall: int) -> None:
    w.seen(np.array([dev], np.int32), np.array([ts], np.int64), gw, wall)


def test_a_silent_device_goes_offline_on_its_gateways_event_time() -> None:
    w, gw_of = watch_with(2, 1)
    for i in range(10):  # both report every 2 s
        for d in (0, 1):
            feed(w, d, T0 + i * 2 * S, 0, T0 + i * 2 * S)
    # device 1 falls silent; device 0 keeps the gateway's clock going
    for i in range(10, 50):
        feed(w, 0, T0 + i * 2 * S, 0, T0 + i * 2 * S)
        changes = w.scan(gw_of, 2, 1, T0 + i * 2 * S)
        if changes:
            break
    assert [(c.device, c.offline) for c in changes] == [(1, True)]
    assert changes[0].silent_since == T0 + 18 * S
    # silent for > 60 s of event time, minus 5 s lateness
    assert (T0 + i * 2 * S) - 5 * S - (T0 + 18 * S) > 60 * S
    feed(w, 1, T0 + i * 2 * S, 0, T0 + i * 2 * S)
    assert [(c.device, c.offline) for c in w.scan(gw_of, 2, 1, T0 + i * 2 * S)] == [(1, False)]


def test_replayed_fast_or_in_real_time_the_same_event_times_give_the_same_alerts() -> None:
    """A replay ends at the wall time it finishes, its times in the past (sensing_sim.replay)."""
    def run(speedup: float) -> list[tuple[int, bool, int]]:
        w, gw_of = watch_with(3, 1)
        out = []
        for i in range(200):
            ts = T0 + i * S
            wall = T0 + 199 * S - int((199 - i) * S / speedup)
            for d in (0, 1) if i > 50 else (0, 1, 2):
                feed(w, d, ts, 0, wall)
            out += [(c.device, c.offline, c.silent_since) for c in w.scan(gw_of, 3, 1, wall)]
        return out

    assert run(1.0) == run(60.0) == [(2, True, T0 + 50 * S)]


def test_gateway_offline_holds_back_its_devices_and_gives_them_time_when_back() -> None:
    w, gw_of = watch_with(2, 2)  # device 0 on gateway 0, device 1 on gateway 1
    for i in range(5):
        feed(w, 0, T0 + i * S, 0, T0 + i * S)
        feed(w, 1, T0 + i * S, 1, T0 + i * S)
    w.gateway_status(1, online=False, ts=T0 + 5 * S)
    # a long time later on the wall clock, nothing at all arrives
    later = T0 + 600 * S
    changes = w.scan(gw_of, 2, 2, later)
    assert [(c.device, c.offline) for c in changes] == [(0, True)]  # device 1 is held back
    assert int(w.state[1]) == HELD
    w.gateway_status(1, online=True, ts=later)
    assert w.scan(gw_of, 2, 2, later + 10 * S) == []  # a fresh timeout from its return
    assert [c.device for c in w.scan(gw_of, 2, 2, later + 200 * S)] == [1]


def reference(events: list[tuple[int, int]], n: int, mark: int, interval: list[int],
              min_timeout: int, factor: float, restart: int, delay: int,
              alpha: float) -> list[int]:
    """The timeouts as the README states them, one device at a time (gaps kept in float32)."""
    last = {d: -1 for d in range(n)}
    gap = {d: np.float32(0) for d in range(n)}
    for d, t in events:
        if t <= last[d]:
            continue
        if last[d] >= 0:
            g = float(t - last[d])
            gap[d] = np.float32(g if gap[d] <= 0 else (1 - alpha) * float(gap[d]) + alpha * g)
        last[d] = t
    out: list[int] = []
    for d in range(n):
        cadence = max(float(gap[d]), float(interval[d]))
        timeout = max(min_timeout, factor * cadence, restart + cadence) + delay
        out.append(int(OFFLINE if last[d] >= 0 and mark - last[d] > timeout else REPORTING))
    return out


@pytest.mark.kernel
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 10**6)), max_size=80),
       st.integers(0, 2 * 10**6), st.lists(st.integers(1, 400_000), min_size=5, max_size=5),
       st.integers(0, 200_000), st.integers(0, 30_000), st.floats(1.0, 10.0))
def test_kernels_match_the_reference(events: list[tuple[int, int]], mark: int,
                                     interval: list[int], restart: int, delay: int,
                                     factor: float) -> None:
    n = 5
    last = np.full(n, -1, np.int64)
    gap = np.zeros(n, np.float32)
    for d, t in events:
        assert note_seen(np.array([d], np.int32), np.array([t], np.int64), last, gap, 0.2) == t
    if events:
        dev, ts = (np.array(c, dtype) for c, dtype in zip(zip(*events, strict=True),
                                                           (np.int32, np.int64), strict=True))
        assert note_seen(dev, ts, last.copy(), gap.copy(), 0.2) == max(t for _, t in events)
    assert note_seen(np.zeros(0, np.int32), np.zeros(0, np.int64), last, gap, 0.2) == -1
    state = np.zeros(n, np.int8)
    out_dev = np.empty(n, np.int64)
    out_state = np.empty(n, np.int8)
    out_silent = np.empty(n, np.int64)
    k = offline_scan(n, last, gap, np.array(interval, np.int32), np.zeros(n, np.int32),
                     np.array([mark], np.int64), np.zeros(1, np.bool_), np.full(1, -1, np.int64),
                     60_000, factor, restart, delay, state, out_dev, out_state, out_silent)
    expected = reference(events, n, mark, interval, 60_000, factor, restart, delay, 0.2)
    assert state.tolist() == expected
    assert sorted(out_dev[:k].tolist()) == [d for d in range(n) if expected[d] != REPORTING]
    assert out_silent[:k].tolist() == [mark - int(last[d]) for d in out_dev[:k]]
