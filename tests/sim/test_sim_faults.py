"""Malformed payloads break the contract in exactly one way; the unique-reading tally."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from sensing.wire import WireError, decode_readings
from sensing_sim import MALFORMED_REASONS, UniqueReadings, malformed_payload

TS = 1_795_478_819_832
CORE_LIMIT = 1 << 20


@pytest.mark.parametrize("reason", MALFORMED_REASONS)
def test_every_malformed_payload_is_rejected_by_the_wire_decoder(reason: str) -> None:
    payload = malformed_payload(reason, 3, TS, "gw-02")
    with pytest.raises(WireError):
        decode_readings(payload, "gw-01", "demo-a", CORE_LIMIT)


def test_each_payload_is_broken_in_its_own_way_only() -> None:
    by = {r: malformed_payload(r, 3, TS, "gw-02") for r in MALFORMED_REASONS}
    assert b"NaN" in by["nan_value"]
    assert len(by["oversize"]) == 2 * 1024 * 1024
    # beyond its size the oversize reading is valid, as is the foreign one on its own topic
    assert len(decode_readings(by["oversize"], "gw-01", "demo-a", 1 << 24).batch) == 1
    assert len(decode_readings(by["foreign_gateway"], "gw-02", "demo-a", CORE_LIMIT).batch) == 1
    assert orjson.loads(by["wrong_type"])["seq"] == "3"
    assert "ts" not in orjson.loads(by["missing_field"])
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(by["malformed_json"])
    devices = {orjson.loads(p)["device"] for r, p in by.items()
               if r not in ("malformed_json", "nan_value")}
    assert devices == {"sim-fault-0003"}, "phantom devices, never one of the fleet"
    with pytest.raises(ValueError):
        malformed_payload("gremlins", 0, TS, "gw-02")


def test_unique_readings_matches_a_set_in_any_order() -> None:
    rng = np.random.default_rng(0)
    names = [(f"d{d}", e, s) for d in range(20) for e in (0, 1) for s in range(50, 120)]
    stream = [names[i] for i in rng.integers(len(names), size=6000)]
    tally = UniqueReadings()
    fresh = [tally.add(*n) for n in stream]
    reference: set[tuple[str, int, int]] = set()
    expected = []
    for n in stream:
        expected.append(n not in reference)
        reference.add(n)
    assert fresh == expected
    assert tally.unique == len(reference) and tally.repeated == len(stream) - len(reference)
