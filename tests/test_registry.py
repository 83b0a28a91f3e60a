"""The registry interns device tables once per distinct table, and still follows moves (with
`devices_follow_gateway`; without it a device keeps its first gateway: test_device_ownership)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sensing.registry import Registry
from sensing.wire import BatchBuilder, binary
from sensing.wire.decode import decode_readings

TS = 1_795_478_819_832


def payload(devices: list[tuple[str, str]]) -> bytes:
    b = BatchBuilder()
    for i, (device, kind) in enumerate(devices):
        b.add(device, kind, 0, i, TS, {"x": 1.0})
    return binary.encode(b.build())


def test_a_repeated_table_maps_to_the_same_indices_and_moves_with_its_gateway() -> None:
    reg = Registry(capacity=1, devices_follow_gateway=True)
    table = [("smoke-1", "smoke"), ("manhole-2", "manhole"), ("wearable-3", "wearable")]
    one = decode_readings(payload(table), "gw-1", "a", 1 << 20).batch
    dev, _ = reg.intern_batch(one, "gw-1", "a")
    again = decode_readings(payload(table), "gw-2", "b", 1 << 20).batch
    assert again.devices is one.devices  # the decoder's table cache
    dev2, _ = reg.intern_batch(again, "gw-2", "b")
    assert dev.tolist() == dev2.tolist() == [0, 1, 2]
    assert [reg.describe(d) for d in range(3)] == [
        ("smoke-1", "smoke", "gw-2", "b"), ("manhole-2", "manhole", "gw-2", "b"),
        ("wearable-3", "wearable", "gw-2", "b")]
    # another table with a known device and a new one
    other = decode_readings(payload([("wearable-3", "wearable"), ("smoke-9", "smoke")]),
                            "gw-1", "a", 1 << 20).batch
    dev3, _ = reg.intern_batch(other, "gw-1", "a")
    assert dev3.tolist() == [2, 3]
    assert reg.describe(2)[2:] == ("gw-1", "a") and reg.describe(0)[2:] == ("gw-2", "b")
    assert reg.device_kind[:4].tolist() == [0, 1, 2, 0]
    assert reg.devices.lookup([]).dtype == np.int32


TABLES = [[("smoke-1", "smoke"), ("manhole-2", "manhole")],
          [("manhole-2", "manhole"), ("wearable-3", "wearable")],
          [("wearable-3", "wearable"), ("smoke-1", "smoke"), ("smoke-4", "smoke")],
          [("smoke-1", "wearable")]]  # a device that changes kind


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(TABLES) - 1), st.sampled_from(["g1", "g2"]),
                          st.sampled_from(["a", "b"])), max_size=25))
def test_devices_follow_the_gateway_area_and_kind_they_last_reported(
    steps: list[tuple[int, str, str]]
) -> None:
    """Against a dictionary of the last table, gateway and area each device came with; the
    decoded tables repeat (the decoder's cache), so most steps take the registry's shortcut."""
    reg = Registry(capacity=1, devices_follow_gateway=True)
    payloads = [payload(t) for t in TABLES]
    last: dict[str, tuple[str, str, str]] = {}
    order: list[str] = []
    for t, gateway, area in steps:
        batch = decode_readings(payloads[t], gateway, area, 1 << 20).batch
        dev, _ = reg.intern_batch(batch, gateway, area)
        for device, kind in TABLES[t]:
            last[device] = (kind, gateway, area)
            if device not in order:
                order.append(device)
        assert dev.tolist() == [order.index(d) for d, _ in TABLES[t]]
        assert {reg.describe(d)[0]: reg.describe(d)[1:] for d in range(len(order))} == last


def test_a_hundred_gateways_tables_of_a_thousand_devices_stay_remembered() -> None:
    """100 gateways sending SNB batches of their 1,000 devices, round after round: every
    table is remembered (a dict hit per batch), not resolved name by name again. Counted at
    80 bytes per kind of each row, the tables overflowed the 16 MB bound and the cache
    started afresh every ~90 tables: every batch paid for its names again."""
    registry = Registry()
    payloads = []
    for g in range(100):
        b = BatchBuilder()
        for d in range(1000):
            b.add(f"dev-{g:03d}-{d:04d}", ("smoke", "manhole", "wearable")[d % 3], 0, 1,
                  1_795_000_000_000, {"battery_v": 3.0}, 0.9)
        payloads.append(binary.encode(b.build()))
    for _ in range(2):
        for g, payload in enumerate(payloads):
            batch = binary.decode(payload)
            assert len({id(k) for k in batch.kinds}) == 3  # one shared str per kind
            registry.intern_batch(batch, f"gw-{g}", "a1")
    assert len(registry._tables) == 100
    assert registry._tables.bytes <= registry._tables.max_bytes
