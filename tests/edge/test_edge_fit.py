"""Batches the core takes: the agent cuts a batch whose payload would exceed the core's
`max_payload_bytes` or the contract's per-message counts (issue 11, adversarial finding r23:
JSON batches of 10,000 readings came to 1.6 MB, the core refused every one, the agent re-sent
them and finally gave them up)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sensing.services import Mosquitto, VictoriaMetrics
from sensing.settings import CoreSettings
from sensing.wire import decode_readings
from sensing.wire.limits import (
    MAX_CHANNEL_NAME,
    MAX_CHANNELS_PER_MESSAGE,
    MAX_DEVICE_ID,
    MAX_DEVICES_PER_MESSAGE,
    MAX_VALUES_PER_READING,
)
from sensing.wire.topics import deadletter_topic, readings_topic
from sensing_edge import AgentSettings, GatewayAgent, SensorSample, wall_clock_ms
from sensing_edge.batching import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MIN_PAYLOAD_BYTES,
    NumberedSample,
    PayloadFormat,
    Segment,
    encode_batch,
    encode_fitting,
)
from sensing_edge.config import load_config
from tests.edge.support import ListDriver, Subscriber, readings_of
from tests.helpers import Listener, running_core

FORMATS: tuple[PayloadFormat, ...] = ("json", "snb1")
TS0 = 1_795_478_819_832
LARGE = 1 << 26


def numbered(samples: list[SensorSample], epoch: int = 7) -> list[NumberedSample]:
    return [NumberedSample(s, epoch, i) for i, s in enumerate(samples)]


def smoke(devices: int, per_device: int = 1, ts0: int = TS0) -> list[SensorSample]:
    return [SensorSample(f"dev-{d:05d}", "smoke", ts0 + i,
                         {"obscuration": 0.125 * i, "temp_c": 21.5 + d % 7}, 0.9)
            for i in range(per_device) for d in range(devices)]


def decoded_keys(segments: list[Segment], max_bytes: int) -> list[tuple[str, int, int]]:
    """(device, epoch, seq) of every reading of the segments' payloads, in order, decoded as
    the core decodes them with `max_bytes` as its limit (which raises if it refuses one)."""
    keys: list[tuple[str, int, int]] = []
    for seg in segments:
        assert seg.payload is not None and len(seg.payload) <= max_bytes
        decoded = decode_readings(seg.payload, "gw-1", "a-1", max_bytes)
        assert decoded.rejected == [], decoded.reason
        batch = decoded.batch
        keys += [(batch.devices[int(d)], int(e), int(s))
                 for d, e, s in zip(batch.device, batch.epoch, batch.seq, strict=True)]
    return keys


def keys_of(readings: list[NumberedSample]) -> list[tuple[str, int, int]]:
    return [(n.sample.device, n.epoch, n.seq) for n in readings]


def assert_partition(segments: list[Segment], count: int) -> None:
    """The segments cover 0..count-1 once each, in order."""
    assert segments and segments[0].start == 0 and segments[-1].stop == count
    for a, b in itertools.pairwise(segments):
        assert a.stop == b.start and a.start < a.stop


def test_the_agent_defaults_to_the_cores_payload_limit() -> None:
    assert CoreSettings.model_fields["max_payload_bytes"].default == DEFAULT_MAX_PAYLOAD_BYTES
    assert AgentSettings(gateway="g", area="a").max_payload_bytes == DEFAULT_MAX_PAYLOAD_BYTES


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_batch_that_fits_is_one_payload_as_before(fmt: PayloadFormat) -> None:
    readings = numbered(smoke(200))
    assert encode_fitting(readings, fmt, DEFAULT_MAX_PAYLOAD_BYTES) == [
        Segment(0, 200, encode_batch(readings, fmt))]


def test_a_json_batch_of_10000_readings_goes_as_payloads_the_core_takes() -> None:
    """The finding's batch: 10,000 JSON readings, about 1.6 MB in one payload."""
    readings = numbered(smoke(2_000, 5))
    assert len(encode_batch(readings, "json")) > DEFAULT_MAX_PAYLOAD_BYTES  # the problem
    segments = encode_fitting(readings, "json", DEFAULT_MAX_PAYLOAD_BYTES)
    assert len(segments) >= 2
    assert_partition(segments, len(readings))
    assert decoded_keys(segments, DEFAULT_MAX_PAYLOAD_BYTES) == keys_of(readings)


@pytest.mark.parametrize("fmt", FORMATS)
def test_more_devices_than_a_message_may_name_are_cut_apart(fmt: PayloadFormat) -> None:
    readings = numbered(smoke(MAX_DEVICES_PER_MESSAGE + 500))
    segments = encode_fitting(readings, fmt, LARGE)  # the bytes alone would fit
    assert len(segments) >= 2
    assert_partition(segments, len(readings))
    assert decoded_keys(segments, LARGE) == keys_of(readings)


@pytest.mark.parametrize("fmt", FORMATS)
def test_more_channels_than_a_message_may_name_are_cut_apart(fmt: PayloadFormat) -> None:
    samples = [SensorSample(f"dev-{i}", "smoke", TS0, {f"ch_{i}": 1.0}, None)
               for i in range(MAX_CHANNELS_PER_MESSAGE + 44)]
    readings = numbered(samples)
    segments = encode_fitting(readings, fmt, LARGE)
    assert len(segments) == 2
    assert_partition(segments, len(readings))
    assert decoded_keys(segments, LARGE) == keys_of(readings)


def test_a_reading_too_large_alone_is_left_out_with_the_reason() -> None:
    big = SensorSample("dev-big", "smoke", TS0, {f"c{i}": 1.0 / 3 for i in range(60)}, None)
    readings = numbered([*smoke(20), big, *smoke(20)])
    segments = encode_fitting(readings, "json", 1_000)
    assert_partition(segments, len(readings))
    unsent = [s for s in segments if s.payload is None]
    assert [(s.start, s.stop) for s in unsent] == [(20, 21)]
    assert "more than the limit of 1000" in unsent[0].reason
    sent = [s for s in segments if s.payload is not None]
    assert decoded_keys(sent, 1_000) == keys_of(readings[:20] + readings[21:])


def test_a_reading_the_format_cannot_hold_costs_only_itself() -> None:
    """An epoch past 32 bits does not fit SNB: before, the whole batch was dropped."""
    readings = numbered(smoke(50))
    readings[17] = NumberedSample(readings[17].sample, 2**33, 17)
    segments = encode_fitting(readings, "snb1", DEFAULT_MAX_PAYLOAD_BYTES)
    unsent = [s for s in segments if s.payload is None]
    assert [(s.start, s.stop) for s in unsent] == [(17, 18)] and "epoch" in unsent[0].reason
    sent = [s for s in segments if s.payload is not None]
    assert decoded_keys(sent, DEFAULT_MAX_PAYLOAD_BYTES) == keys_of(
        readings[:17] + readings[18:])


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_largest_reading_the_contract_allows_fits_the_smallest_bound(
        fmt: PayloadFormat) -> None:
    values = {f"{i:02d}".ljust(MAX_CHANNEL_NAME, "c"): -1.2345678901234567e-300
              for i in range(MAX_VALUES_PER_READING)}
    sample = SensorSample("d" * MAX_DEVICE_ID, "wearable", TS0, values, 0.123456789)
    reading = NumberedSample(sample, 2**32 - 1, 2**53)
    assert len(encode_batch([reading], fmt)) < MIN_PAYLOAD_BYTES
    assert encode_fitting([reading], fmt, MIN_PAYLOAD_BYTES)[0].payload is not None


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 12), min_size=1, max_size=150),
       max_bytes=st.integers(200, 6_000), fmt=st.sampled_from(FORMATS))
def test_segments_cover_every_reading_once_in_order_within_the_bound(
        sizes: list[int], max_bytes: int, fmt: PayloadFormat) -> None:
    samples = [SensorSample(f"dev-{i % 9}", "manhole", TS0 + i,
                            {f"ch_{j}": j / 7 for j in range(n)}, None)
               for i, n in enumerate(sizes)]
    readings = numbered(samples)
    segments = encode_fitting(readings, fmt, max_bytes)
    assert_partition(segments, len(readings))
    for seg in segments:  # only a single reading too large alone is left out
        if seg.payload is None:
            assert seg.stop - seg.start == 1
            assert len(encode_batch(readings[seg.start:seg.stop], fmt)) > max_bytes
    sent = [s for s in segments if s.payload is not None]
    kept = [n for s in sent for n in readings[s.start:s.stop]]
    assert decoded_keys(sent, max_bytes) == keys_of(kept)


def test_the_config_file_sets_the_bound_and_refuses_one_too_small(tmp_path: Path) -> None:
    head = '[gateway]\nid = "gw-1"\narea = "a"\n[[drivers]]\ntype = "simulated"\n[publish]\n'
    (tmp_path / "ok.toml").write_text(head + "max_payload_bytes = 65536\n")
    assert load_config(tmp_path / "ok.toml").agent_settings().max_payload_bytes == 65_536
    (tmp_path / "small.toml").write_text(head + "max_payload_bytes = 4096\n")
    with pytest.raises(ValidationError, match=r"publish\.max_payload_bytes\n.*16384"):
        load_config(tmp_path / "small.toml")
    with pytest.raises(ValidationError, match="max_payload_bytes"):
        AgentSettings(gateway="g", area="a", max_payload_bytes=MIN_PAYLOAD_BYTES - 1)
    example = Path(__file__).resolve().parents[2] / "edge" / "gateway.example.toml"
    assert load_config(example).agent_settings().max_payload_bytes == DEFAULT_MAX_PAYLOAD_BYTES


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_agent_publishes_what_fits_and_drops_only_a_reading_too_large_alone(
        broker: Mosquitto, subscribe: Callable[..., Subscriber], gateway: str,
        fmt: PayloadFormat) -> None:
    """Through a real Mosquitto (its PUBACK confirms): 3,000 readings, one of them with 2,000
    values (no valid reading has that many, but a driver may hand one), max_payload_bytes at
    its smallest: every payload within it, the big one dropped and counted, nothing else."""
    area = "fit-agent"
    sub = subscribe(broker.port, readings_topic(area, gateway))
    big = SensorSample("dev-big", "smoke", TS0, {f"c{i}": i / 3 for i in range(2_000)}, None)
    samples = [*smoke(1_500), big, *smoke(1_500, ts0=TS0 + 1)]
    settings = AgentSettings(gateway=gateway, area=area, broker_port=broker.port,
                             payload_format=fmt, batch_max_readings=5_000,
                             max_payload_bytes=MIN_PAYLOAD_BYTES, confirm="broker",
                             poll_interval_s=0.02, batch_max_age_s=0.1)
    agent = GatewayAgent(settings, [ListDriver(samples)])
    agent.start()
    try:
        assert agent.wait_connected(10)
        assert agent.wait_acked(20), agent.stats()
    finally:
        agent.stop(5)
    assert sub.wait_for(lambda m: len(readings_of(m, gateway, area)) >= 3_000, 10)
    messages = sub.messages
    assert max(len(m.payload) for m in messages) <= MIN_PAYLOAD_BYTES
    got = [(r["device"], r["ts"]) for r in readings_of(messages, gateway, area)]
    assert got == [(x.device, x.ts) for x in samples if x is not big]
    stats = agent.stats()
    assert stats.readings_dropped == 1 and stats.readings_buffered == 0
    assert stats.batches_split >= 1 and stats.batches == len(messages)


@pytest.mark.e2e
def test_a_json_agent_with_batches_of_10000_gets_every_reading_stored_once(
        store: VictoriaMetrics, tmp_path: Path) -> None:
    """Through a real Mosquitto, the core and VictoriaMetrics: 2,000 devices, 12,000 readings
    in batches of up to 10,000 JSON readings (1.6 MB each before the fix: all dead-lettered)."""
    gateway, area = "gw-fit", "fit-test"
    samples = smoke(2_000, 6, wall_clock_ms() - 60_000)
    with Mosquitto.start(tmp_path / "broker") as broker, \
            running_core(broker, store, tmp_path / "core"):
        letters = Listener(broker, deadletter_topic(area, gateway))
        driver = ListDriver()
        settings = AgentSettings(gateway=gateway, area=area, broker_port=broker.port,
                                 payload_format="json", batch_max_readings=10_000,
                                 batch_max_age_s=1.0, buffer_path=tmp_path / "buffer.db")
        agent = GatewayAgent(settings, [driver])
        agent.start()
        assert agent.wait_connected(10)
        driver.feed(samples)
        time.sleep(0.5)
        confirmed = agent.stop(timeout=60)
        stats = agent.stats()
        match = f'{{__name__="reading_seq",gateway="{gateway}"}}'
        stored = store.settled_count(match, len(samples), 60)
        assert letters.messages == []
        letters.close()
    assert confirmed, stats
    assert stats.readings_sampled == stored == len(samples)
    assert stats.batches_split >= 1 and stats.batches >= 3
    assert stats.readings_dropped == stats.readings_refused == stats.readings_buffered == 0
    assert stats.readings_resent == 0
