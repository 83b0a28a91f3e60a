"""The agent's side of the end-to-end acknowledgement, against a real Mosquitto and a fake core
that confirms what it hears (tests.edge.support.FakeCore): a reading leaves the buffer when the
core confirms it, not at the PUBACK; what the core never confirms is re-sent with backoff, a
silent core costs one probe at a time and never a reading, a refused reading is given up after
a bounded number of tries, and the readings awaiting confirmation are bounded. The same with
the real core, the store and a broker crash: tests/test_edge_loss.py."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sensing.services import Mosquitto
from sensing.wire.topics import stored_topic
from sensing_edge import AgentSettings, GatewayAgent, ReadingBuffer, SimulatedDriver
from sensing_edge import agent as agent_module
from tests.edge.support import FakeCore, ListDriver, running, smoke_samples
from tests.helpers import wait_until

AREA = "ack-test"


def make_settings(gateway: str, port: int, **overrides: Any) -> AgentSettings:
    fast: dict[str, Any] = {"poll_interval_s": 0.02, "batch_max_age_s": 0.05,
                            "confirm_timeout_s": 0.3, "confirm_timeout_max_s": 0.6}
    return AgentSettings.model_validate(
        {"gateway": gateway, "area": AREA, "broker_port": port, **fast, **overrides})


@pytest.fixture
def fake_core(broker: Mosquitto, gateway: str) -> Iterator[FakeCore]:
    core = FakeCore(broker.port, AREA, gateway)
    yield core
    core.close()


def test_the_puback_keeps_a_reading_and_the_core_s_confirmation_deletes_it(
    broker: Mosquitto, gateway: str, fake_core: FakeCore
) -> None:
    fake_core.mode = "hold"  # the core is down; the broker keeps its queue
    agent = GatewayAgent(make_settings(gateway, broker.port, confirm_timeout_s=60,
                                       confirm_timeout_max_s=60),
                         [ListDriver(smoke_samples("smoke-1", 50))])
    with running(agent, stop_timeout_s=2):
        assert wait_until(lambda: agent.stats().readings_acked == 50, 10)
        time.sleep(0.3)
        held = agent.stats()
        assert held.readings_buffered == held.readings_awaiting_core == 50
        assert held.readings_confirmed == 0 and held.pending_batches == 0
        fake_core.release()
        assert agent.wait_acked(10)
        done = agent.stats()
    assert done.readings_confirmed == 50 and done.readings_buffered == 0
    assert done.readings_awaiting_core == 0 and done.readings_resent == 0
    assert done.confirmations >= 1


def test_what_the_broker_lost_is_re_sent_probing_while_the_core_is_silent(
    broker: Mosquitto, gateway: str, fake_core: FakeCore
) -> None:
    """Ten batches the core never hears (lost): while it confirms nothing, one batch at a time
    probes at the backoff; once it confirms again, the others follow (one at a time here: no
    live readings flow to prove that the core has moved past them)."""
    fake_core.mode = "ignore"
    agent = GatewayAgent(make_settings(gateway, broker.port, batch_max_readings=10),
                         [ListDriver(smoke_samples("smoke-1", 100))])
    with running(agent, stop_timeout_s=2):
        assert wait_until(lambda: agent.stats().readings_acked >= 100, 10)
        time.sleep(3)  # about 6 timeouts of 0.3-0.6 s
        silent = agent.stats()
        heard_silent = Counter(fake_core.heard_keys())
        fake_core.mode = "confirm"
        assert agent.wait_acked(10), agent.stats()
        done = agent.stats()
    # one batch of 10 probed, about once per timeout, not all ten batches each time
    assert 10 <= silent.readings_resent <= 80, silent
    assert len({k for k, n in heard_silent.items() if n > 1}) == 10
    assert silent.readings_buffered == 100 and silent.readings_refused == 0
    assert done.readings_confirmed == 100 and done.readings_refused == 0
    assert sorted({k[2] for k in fake_core.heard_keys()}) == list(range(100))


def test_a_core_down_for_long_never_makes_the_agent_give_a_reading_up(
    broker: Mosquitto, gateway: str, fake_core: FakeCore
) -> None:
    """Timeouts of 0.1 s and giving up after one ignored resend: 3 s of a silent core are 30
    timeouts, and still nothing is dropped."""
    fake_core.mode = "hold"
    driver = SimulatedDriver([(f"smoke-{i}", "smoke") for i in range(20)], interval_s=0.1, seed=1)
    agent = GatewayAgent(make_settings(gateway, broker.port, confirm_timeout_s=0.1,
                                       confirm_timeout_max_s=0.1, confirm_give_up_after=1),
                         [driver])
    with running(agent, stop_timeout_s=2):
        time.sleep(3)
        down = agent.stats()
        assert down.readings_refused == 0 and down.readings_confirmed == 0
        assert down.readings_sampled > 400  # and all of them still buffered (a poll's more)
        assert down.readings_buffered >= down.readings_sampled
        fake_core.release()
        assert wait_until(lambda: agent.stats().readings_confirmed >= down.readings_sampled, 15)
        done = agent.stats()
    assert done.readings_refused == 0 and done.readings_dropped == 0
    heard = set(fake_core.heard_keys())
    assert all((f"smoke-{i}", agent.epoch, 0) in heard for i in range(20))


def test_after_a_core_outage_the_batches_that_waited_are_not_sent_again_for_nothing(
    broker: Mosquitto, gateway: str, fake_core: FakeCore
) -> None:
    """The broker kept the core's queue: the core confirms the originals in order, slowly, and
    only the probe (one batch) went twice, not the ten batches that waited."""
    fake_core.mode = "hold"
    agent = GatewayAgent(make_settings(gateway, broker.port, batch_max_readings=10,
                                       confirm_timeout_s=0.2, confirm_timeout_max_s=0.2),
                         [ListDriver(smoke_samples("smoke-1", 100))])
    with running(agent, stop_timeout_s=2):
        assert wait_until(lambda: agent.stats().readings_acked >= 100, 10)
        time.sleep(1.5)  # every batch overdue many times over; one of them probing
        fake_core.release(pause_s=0.1)  # 2 s or more: several resend scans meanwhile
        assert agent.wait_acked(10), agent.stats()
        done = agent.stats()
    twice = {seq for (_, _, seq), n in Counter(fake_core.heard_keys()).items() if n > 1}
    assert len(twice) <= 20, sorted(twice)  # the probe, and at most one more batch
    assert done.readings_confirmed == 100 and done.readings_refused == 0


def test_readings_the_core_refuses_are_given_up_after_bounded_tries(
    broker: Mosquitto, gateway: str, fake_core: FakeCore
) -> None:
    """The core confirms a live stream but never smoke-bad's readings (it dead-letters them):
    after confirm_give_up_after resends they are deleted and counted; the rest is untouched."""
    fake_core.refuse = {"smoke-bad"}
    good = SimulatedDriver([("smoke-good", "smoke")], interval_s=0.05, seed=2)
    bad = ListDriver(smoke_samples("smoke-bad", 5))
    agent = GatewayAgent(make_settings(gateway, broker.port, confirm_timeout_s=0.2,
                                       confirm_timeout_max_s=0.2, confirm_give_up_after=2),
                         [good, bad])
    with running(agent, stop_timeout_s=2):
        assert wait_until(lambda: agent.stats().readings_refused == 5, 15), agent.stats()
        time.sleep(0.5)
        stats = agent.stats()
    heard = Counter(k for k in fake_core.heard_keys() if k[0] == "smoke-bad")
    assert set(heard.values()) == {3}  # sent once, re-sent twice, given up
    assert stats.readings_refused == 5 and stats.readings_dropped == 0
    assert stats.readings_confirmed + 5 + stats.readings_buffered == stats.readings_sampled


def test_readings_awaiting_confirmation_are_bounded_and_the_rest_waits_in_the_buffer(
    broker: Mosquitto, gateway: str, fake_core: FakeCore
) -> None:
    fake_core.mode = "hold"
    samples = smoke_samples("smoke-1", 1_000)
    agent = GatewayAgent(make_settings(gateway, broker.port, batch_max_readings=20,
                                       max_unconfirmed_readings=100, confirm_timeout_s=60,
                                       confirm_timeout_max_s=60),
                         [ListDriver(samples)])
    with running(agent, stop_timeout_s=2):
        assert wait_until(lambda: agent.stats().readings_acked >= 100, 10)
        time.sleep(1)
        held = agent.stats()
        assert 100 <= held.readings_published < 120, held  # the bound, and one batch at most
        assert held.readings_buffered == 1_000
        fake_core.release()
        assert agent.wait_acked(20), agent.stats()
        done = agent.stats()
    assert done.readings_confirmed == 1_000 and done.readings_published == 1_000
    assert sorted(k[2] for k in fake_core.heard_keys()) == list(range(1_000))


def test_open_batches_are_bounded_too(
    broker: Mosquitto, gateway: str, fake_core: FakeCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quiet gateway's batches are small: their number is bounded beside the readings'."""
    monkeypatch.setattr(agent_module, "MAX_OPEN_BATCHES", 5)
    fake_core.mode = "hold"
    agent = GatewayAgent(make_settings(gateway, broker.port, batch_max_readings=1,
                                       confirm_timeout_s=60, confirm_timeout_max_s=60),
                         [ListDriver(smoke_samples("smoke-1", 50))])
    with running(agent, stop_timeout_s=2):
        assert wait_until(lambda: agent.stats().batches_acked >= 5, 10)
        time.sleep(0.5)
        held = agent.stats()
        assert held.batches == 5 and held.readings_buffered == 50
        fake_core.release()
        assert agent.wait_acked(20), agent.stats()
    assert agent.stats().readings_confirmed == 50


def test_a_malformed_or_sweeping_confirmation_cannot_stop_the_agent(
    broker: Mosquitto, gateway: str, fake_core: FakeCore
) -> None:
    """Garbage on the confirmation topic is logged and ignored; a range over all 2**63 seqs
    costs the work of the readings awaited, not of the range."""
    fake_core.mode = "hold"
    agent = GatewayAgent(make_settings(gateway, broker.port, confirm_timeout_s=60,
                                       confirm_timeout_max_s=60),
                         [ListDriver(smoke_samples("smoke-1", 10))])
    topic = stored_topic(AREA, gateway)
    with running(agent, stop_timeout_s=2):
        assert wait_until(lambda: agent.stats().readings_acked == 10, 10)
        for junk in (b"", b"{", b'{"ts": 1, "readings": [["smoke-1", 0, 5, 1]]}', b"\xff" * 100):
            fake_core.sub.client.publish(topic, junk, qos=1).wait_for_publish(5)
        time.sleep(0.5)
        assert agent.stats().readings_buffered == 10 and agent.stats().confirmations == 0
        sweep = orjson.dumps({"ts": 1, "readings": [["smoke-1", agent.epoch, 0, 2**63 - 1]]})
        started = time.monotonic()
        fake_core.sub.client.publish(topic, sweep, qos=1).wait_for_publish(5)
        assert agent.wait_acked(5)
        assert time.monotonic() - started < 2
        stats = agent.stats()
    assert stats.readings_confirmed == 10 and stats.confirmations == 1


def test_readings_unconfirmed_at_stop_are_sent_by_the_next_run(
    broker: Mosquitto, gateway: str, fake_core: FakeCore, tmp_path: Path
) -> None:
    fake_core.mode = "hold"
    path = tmp_path / "buffer.db"
    settings = make_settings(gateway, broker.port, buffer_path=path)
    first = GatewayAgent(settings, [ListDriver(smoke_samples("smoke-1", 30))])
    first.start()
    assert first.wait_connected(10)
    assert wait_until(lambda: first.stats().readings_acked == 30, 10)
    assert first.stop(timeout=0.5) is False  # PUBACKed, never confirmed: all 30 stay
    assert first.stats().readings_buffered == 30
    fake_core.release("ignore")  # and the broker lost them
    fake_core.mode = "confirm"
    second = GatewayAgent(settings, [ListDriver(smoke_samples("smoke-2", 5))])
    second.start()
    try:
        assert second.wait_connected(10)
        assert second.wait_acked(10), second.stats()
    finally:
        second.stop(2)
    assert len(ReadingBuffer(path)) == 0
    firsts = {k[2] for k in fake_core.heard_keys() if k[1] == first.epoch}
    assert firsts == set(range(30))
