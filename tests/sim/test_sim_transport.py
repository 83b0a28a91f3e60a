"""The simulated transport: what reaches the broker, with and without faults."""

from __future__ import annotations

import hashlib

from sensing.wire import decode_readings
from sensing.wire.topics import parse_gateway_topic
from sensing_sim.fleet import Fleet, FleetSpec
from sensing_sim.offline import run_offline
from sensing_sim.transport import (
    DUPLICATE,
    READINGS,
    STATUS,
    ClockSkew,
    FleetStream,
    Message,
    Restart,
    TransportFaults,
)

START = 1_795_478_400_000
LIMIT = 1 << 24


def all_messages(stream: FleetStream) -> list[tuple[int, Message]]:
    return [(now, m) for now, arrived in stream.steps() for m in arrived]


def readings_of(m: Message) -> list[tuple[str, int, int, int]]:
    """(device, epoch, seq, ts) of a readings message."""
    topic = parse_gateway_topic(m.topic)
    assert topic is not None
    batch = decode_readings(m.payload, topic.gateway, topic.area, LIMIT).batch
    return [(batch.devices[d], e, s, t) for d, e, s, t in zip(
        batch.device.tolist(), batch.epoch.tolist(), batch.seq.tolist(), batch.ts.tolist(),
        strict=True)]


def test_a_perfect_network_delivers_every_reading_once_in_order() -> None:
    fleet = Fleet(FleetSpec(n_gateways=3, n_devices=30, interval_s=2.0, seed=2))
    stream = FleetStream(fleet, 60, start_ms=START)
    got = all_messages(stream)
    assert [m.what for _, m in got[:3]] == [STATUS] * 3  # each agent says it is online
    assert all(m.at_ms <= now for now, m in got)
    assert [m.at_ms for _, m in got] == sorted(m.at_ms for _, m in got)
    names = [r[:3] for _, m in got if m.what == READINGS for r in readings_of(m)]
    assert len(names) == len(set(names)) == 30 * 30 == stream.counts.readings_sent
    assert stream.counts.readings_sampled == stream.counts.readings_sent
    per_device: dict[str, list[int]] = {}
    for device, epoch, seq in names:
        assert epoch == 1
        per_device.setdefault(device, []).append(seq)
    assert all(seqs == list(range(30)) for seqs in per_device.values())


def test_the_same_seed_gives_the_same_messages() -> None:
    def digest(seed: int) -> str:
        fleet = Fleet(FleetSpec(n_gateways=2, n_devices=20, seed=seed))
        fleet.schedule_demo_incidents(120)
        faults = TransportFaults(duplicate_rate=0.1, late_rate=0.1, malformed=6)
        h = hashlib.sha256()
        for _, m in all_messages(FleetStream(fleet, 120, start_ms=START, faults=faults)):
            h.update(f"{m.at_ms} {m.topic} {m.what}".encode() + m.payload)
        return h.hexdigest()

    assert digest(4) == digest(4) != digest(5)


def test_duplicates_and_late_messages_arrive_as_counted() -> None:
    fleet = Fleet(FleetSpec(n_gateways=2, n_devices=40, interval_s=1.0, seed=3))
    faults = TransportFaults(duplicate_rate=0.2, late_rate=0.2, late_max_s=10)
    stream = FleetStream(fleet, 120, start_ms=START, faults=faults)
    got = [m for _, m in all_messages(stream)]
    dups = [m for m in got if m.what == DUPLICATE]
    assert dups and sum(m.readings for m in dups) == stream.counts.duplicate_readings
    originals = {m.payload for m in got if m.what == READINGS}
    assert all(d.payload in originals for d in dups)
    assert stream.counts.late_messages > 0
    # late delivery puts some readings behind newer ones of the same gateway
    newest: dict[str, int] = {}
    behind = 0
    for m in got:
        if m.what != READINGS:
            continue
        ts = max(r[3] for r in readings_of(m))
        behind += ts < newest.get(m.topic, 0)
        newest[m.topic] = max(newest.get(m.topic, 0), ts)
    assert behind > 0
    names = [r[:3] for m in got if m.what == READINGS for r in readings_of(m)]
    assert len(names) == len(set(names)) == stream.counts.readings_sampled


def test_a_restart_starts_a_new_epoch_from_seq_0_and_loses_what_is_due_while_down() -> None:
    fleet = Fleet(FleetSpec(n_gateways=2, n_devices=10, interval_s=1.0, seed=6))
    faults = TransportFaults(restarts=(Restart("gw-01", at_s=30, down_s=5),))
    stream = FleetStream(fleet, 60, start_ms=START, faults=faults)
    got = [r for _, m in all_messages(stream) if m.what == READINGS for r in readings_of(m)]
    on_gw1 = {d.id for d in fleet.devices_of("gw-01")}
    for device in on_gw1:
        epochs = sorted({e for d, e, _, _ in got if d == device})
        assert epochs == [1, 2]
        second = sorted(s for d, e, s, _ in got if d == device and e == 2)
        assert second == list(range(len(second)))
        assert all(not (START + 30_000 <= t < START + 35_000) for d, _, _, t in got
                   if d == device)
    assert all(e == 1 for d, e, _, _ in got if d not in on_gw1)
    assert stream.counts.restarts == 1
    assert stream.counts.readings_sampled - stream.counts.readings_sent == 5 * len(on_gw1)


def test_clock_skew_moves_the_gateway_stamps_only() -> None:
    fleet = Fleet(FleetSpec(n_gateways=2, n_devices=10, interval_s=1.0, seed=7))
    stream = FleetStream(fleet, 20, start_ms=START,
                         faults=TransportFaults(clock_skew=(ClockSkew("gw-02", -90.0),)))
    for now, m in all_messages(stream):
        if m.what == READINGS:
            skew = -90_000 if "gw-02" in m.topic else 0
            assert {ts for *_, ts in readings_of(m)} == {now + skew}


def test_through_the_core_every_fault_is_counted_and_nothing_is_stored_twice() -> None:
    fleet = Fleet(FleetSpec(n_gateways=3, n_devices=60, interval_s=2.0, seed=9))
    fleet.schedule_demo_incidents(300)
    faults = TransportFaults(duplicate_rate=0.1, late_rate=0.05, late_max_s=20, malformed=12,
                             restarts=(Restart("gw-02", 100, 2),),
                             clock_skew=(ClockSkew("gw-03", 45.0),))
    run = run_offline(fleet, 300, start_ms=START, faults=faults)
    sent = run.sent
    assert run.core["readings_stored"] == sent["readings_sent"]
    assert run.core["duplicates_dropped"] == sent["duplicate_readings"] > 0
    assert sent["malformed_total"] == 12 == len(run.deadletters) == run.core["deadletters"]
    assert sent["restarts"] == 1 and sent["late_messages"] > 0


def test_a_link_outage_sends_the_last_will_then_online_and_the_backlog_and_is_detected() -> None:
    from sensing_sim.incidents import Incident
    from sensing_sim.score import alerts_from_transitions, score

    fleet = Fleet(FleetSpec(n_gateways=2, n_devices=20, interval_s=2.0, seed=12))
    fleet.add_incident(Incident.of("gateway.offline", "gw-02", "gw-02", "demo-b", 60, 150))
    stream = FleetStream(fleet, 240, start_ms=START)
    got = all_messages(stream)
    statuses = [(m.at_ms, m.payload) for _, m in got if m.what == STATUS and "gw-02" in m.topic]
    assert [s for _, s in statuses] == [
        b'{"state":"online","ts":%d}' % START, b'{"state":"offline","ts":%d}' % (START + 60_000),
        b'{"state":"online","ts":%d}' % (START + 150_000)]
    on_gw2 = [(now, m) for now, m in got if m.what == READINGS and "gw-02" in m.topic]
    assert not [m for now, m in on_gw2 if START + 60_000 <= now < START + 150_000]
    backlog = next(m for now, m in on_gw2 if now == START + 150_000)
    assert min(r[3] for r in readings_of(backlog)) >= START + 60_000 and backlog.readings >= 40
    names = [r[:3] for _, m in got if m.what == READINGS for r in readings_of(m)]
    assert len(names) == len(set(names)) == stream.counts.readings_sampled

    run = run_offline(fleet, 240, start_ms=START)
    assert run.core["readings_stored"] == run.sent["readings_sent"] == run.sent[
        "readings_sampled"]
    labels = [i.to_dict(START) for i in fleet.incidents]
    [s] = score(labels, alerts_from_transitions(run.alerts))
    assert (s.type, s.detected, s.false_positives, s.grade_ok) == ("gateway.offline", 1, 0, 1)
    assert s.latency_median_s is not None and s.latency_median_s <= 1.0
