"""Attacks on the core's fast path (the JSON lane, BulkSession, the commit thread).

Each test either shows a defence that holds or pins a break that was found and fixed: the
lane must give what the message-by-message path gives, for any input, including the state it
leaves behind (a device's owner, area and kind decide the tags of every later line and alert).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensing.core import StreamCore, _Commit
from sensing.dedup.journal import DedupJournal
from sensing.ingest.frames import Control
from sensing.ingest.received import Incoming, Received
from sensing.ingest.session import BulkSession
from sensing.kernels.mqttframes import PUBACK
from sensing.pipeline import Pipeline
from sensing.services import Mosquitto
from sensing.settings import CoreSettings
from sensing.stage import Stage
from sensing.wire import topics
from tests.helpers import wait_until
from tests.test_bulk_session import Publisher
from tests.test_json_lane import _both

NOW = int(time.time() * 1000)
SMOKE = {"obscuration": 0.1, "temp_c": 21.5, "co_ppm": 1.0}


def _reading(device: str, seq: int, kind: str = "smoke", **extra: Any) -> dict[str, Any]:
    values = SMOKE if kind == "smoke" else {"heart_rate": 70.0, "spo2": 97.0}
    return {"device": device, "kind": kind, "seq": seq, "ts": NOW - 1000 + seq,
            "values": values, "battery": 0.9, **extra}


def _message(area: str, gateway: str, payload: bytes | object) -> tuple[str, bytes]:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return topics.readings_topic(area, gateway), raw



# -- the lane against the slow path: state changed by a slow message in the same step -----


def test_an_area_move_to_a_new_area_in_the_step_is_seen_by_the_lane(tmp_path: Path) -> None:
    """A gateway moves to an area the core has not seen, then back, in one step: the first
    message takes the slow path (its topic is new), the second the lane. The slow path moves
    the device to the new area and back; the lane must not keep it in the new one (its lines
    and alerts would carry the wrong area from then on)."""
    with_lane, _ = _both(tmp_path, [
        [_message("a1", "gw-1", _reading("smoke-1", 1))],
        [_message("a2", "gw-1", _reading("smoke-1", 2)),
         _message("a1", "gw-1", _reading("smoke-1", 3))],
    ])
    assert with_lane.json_lane.lane_messages >= 0


def test_a_new_gateway_taking_a_device_in_the_step_is_seen_by_the_lane(tmp_path: Path
                                                                       ) -> None:
    """With `devices_follow_gateway`, a gateway the core has not seen takes a device and its
    old gateway takes it back, in one step: the lane must end where the slow path ends."""
    _both(tmp_path, [
        [_message("a1", "gw-1", _reading("smoke-1", 1))],
        [_message("a1", "gw-2", _reading("smoke-1", 2)),
         _message("a1", "gw-1", _reading("smoke-1", 3))],
    ], devices_follow_gateway=True)


# -- the lane against the slow path: odd bytes and numbers ---------------------------------

_BASE = ('{"device":"smoke-1","kind":"smoke","seq":%d,"ts":%d,"battery":0.5,'
         '"values":{"temp_c":%s}}')
_NUMBERS = [
    "-0.0", "-0", "0e0", "0E-0", "1E+2", "1e-2", "0.1e1", "1e400", "-1e400", "1e-400",
    "5e-324", "4.9406564584124654e-324", "2.4703282292062327e-324",
    "2.4703282292062328e-324", "2.2250738585072011e-308", "2.2250738585072014e-308",
    "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308",
    "9007199254740993", "9007199254740993.0", "123456789012345678901234567890",
    "1.00000000000000011102230246251565404236316680908203125",
    "1.00000000000000011102230246251565404236316680908203124",
    "1.00000000000000011102230246251565404236316680908203126",
    "0.000000000000000000000000000000000000001", "1" + "0" * 400, "0." + "0" * 400 + "1",
    "1e", "01", "1.", ".5", "+1", "-", "1e+", "NaN", "Infinity", "-Infinity", "0x10",
    "true", "false", "null", '"1"', "[1]", "{}", "1 2", "--1", "1e2.5", "9" * 20,
    "-9223372036854775808", "18446744073709551616",
]
_INTEGERS = ["9223372036854775807", "9223372036854775808", "-9223372036854775808", "-1",
             "-0", "1.0", "1e3", "00", "18446744073709551615", "0.0", "1E0", "true", "null"]
_BATTERIES = ["1", "1.0", "0", "-0.0", "1.0000000000000001", "1.0000000000000002",
              "0.99999999999999999", "1e0", "null", "true", '"0.5"', "-0", "1e-400"]
_STRUCTURE = [
    b' {"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{}} ',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{}}x',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{}}{}',
    b'[{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{}},]',
    b'[{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{}}]]',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{}}\x0c',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{}}\x00',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{}}\xc2\xa0',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x":"a\x01b"}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x":"\xff"}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x":"\\ud800"}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x\xff":1}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x":' + b"[" * 31
    + b"]" * 31 + b"}",
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x":' + b"[" * 40
    + b"]" * 40 + b"}",
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x":' + b"[" * 2000
    + b"]" * 2000 + b"}",
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x":[1,]}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x":{"a":1,}}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x":{"a" 1}}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x":{1:1}}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x":tru}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"x":nulll}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"dev\\u0069ce":"smoke-2"}',
    b'{"device":"smoke-1","device":"smoke-2","kind":"smoke","seq":SEQ,"ts":TS,"values":{}}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{"temp_c":1,"temp_c":2}}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{"temp_c":1,'
    b'"temp\\u005fc":2}}',
    b'{"device":"smoke\\u002d1","kind":"smoke","seq":SEQ,"ts":TS,"values":{}}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"gateway":"gw-1"}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"gateway":"gw-2"}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"gateway":"gw-1 "}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"gateway":"GW-1"}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"gateway":""}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"gateway":null}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"gateway":1}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"area":"a1"}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"area":"a2"}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"area":"a\\u0031"}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{},"area":"a1\xc3\xa9"}',
    b'{"device":"smoke-1","kind":"wearable","seq":SEQ,"ts":TS,"values":{}}',
    b'[{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{}},'
    b'{"device":"smoke-1","kind":"wearable","seq":SEQ1,"ts":TS,"values":{}}]',
    b'[{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{}},'
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{}}]',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{"":1}}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"values":{"co_ppm":1e308,'
    b'"temp_c":-1e308}}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"epoch":0,"epoch":1,"values":{}}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"battery":null,"values":{}}',
    b'{"device":"smoke-1","kind":"smoke","seq":SEQ,"ts":TS,"battery":null,"battery":1,'
    b'"values":{}}',
    b"[]", b"{}", b"[{}]", b"[1]", b"[[]]", b'["x"]', b"[null]", b"{", b"[", b"",
]


def _variants() -> list[bytes]:
    """Payloads for one device, one per case, with a fresh seq each."""
    out: list[bytes] = []
    seq = 10
    ts = NOW - 5000
    for number in _NUMBERS:
        seq += 2
        out.append((_BASE % (seq, ts, number)).encode())
    for integer in _INTEGERS:
        seq += 2
        for field in ("seq", "epoch", "ts"):
            doc = (_BASE % (seq, ts, "1.5")).replace(f'"{field}":', f'"{field}":{integer},"_":')
            out.append(doc.encode())
    for level in _BATTERIES:
        seq += 2
        out.append((_BASE % (seq, ts, "1.5")).replace('"battery":0.5',
                                                       f'"battery":{level}').encode())
    for shape in _STRUCTURE:
        seq += 2
        out.append(shape.replace(b"SEQ1", str(seq + 1).encode())
                   .replace(b"SEQ", str(seq).encode()).replace(b"TS", str(ts).encode()))
    return out


def test_odd_numbers_and_bytes_decode_as_on_the_slow_path(tmp_path: Path) -> None:
    """Each odd payload in its own step after the lane is warm (one device, one gateway):
    the lane takes it only when it gives what the slow path gives."""
    warm = [_message("a1", "gw-1", [_reading("smoke-1", 1), _reading("smoke-2", 1)]),
            _message("a1", "gw-1", {"device": "band-1", "kind": "wearable", "seq": 1,
                                    "ts": NOW - 5000, "values": {"heart_rate": 60}})]
    topic = topics.readings_topic("a1", "gw-1")
    steps = [warm] + [[(topic, payload)] for payload in _variants()]
    with_lane, _ = _both(tmp_path, steps)
    assert with_lane.json_lane.lane_messages > 30  # the lane took the plain cases


def test_odd_payloads_in_one_step_decode_as_on_the_slow_path(tmp_path: Path) -> None:
    """The same payloads in one step: lanes mixed for one device, in message order."""
    warm = [_message("a1", "gw-1", [_reading("smoke-1", 1), _reading("smoke-2", 1)])]
    topic = topics.readings_topic("a1", "gw-1")
    _both(tmp_path, [warm, [(topic, payload) for payload in _variants()]])


# -- the commit thread: nothing acknowledged or remembered before it is durable -----------


def test_a_snapshot_never_holds_readings_that_were_not_spooled(tmp_path: Path) -> None:
    """A stop while the spool is full (the store down for long) leaves a step unspooled and
    unacknowledged: the broker sends it again after the restart. A dedup snapshot captured
    after that step must not be written, or the restarted core drops the redelivery as a
    duplicate of a reading it never stored: lost."""
    settings = CoreSettings(state_dir=tmp_path, spool_max_bytes=1000,
                            store_url="http://127.0.0.1:9")
    core = StreamCore(settings)
    assert core.spool.add(b"x" * 1000, [])  # the store is down: the spool is full
    topic, payload = _message("a1", "gw-1", _reading("smoke-1", 1))
    messages = Received.from_messages([Incoming(topic, payload, 1, 1, 0)])
    out = core.pipeline.process(messages, NOW)
    assert out.admitted[0].shape[0] == 1
    capture = core.journal.capture()  # the snapshot came due after this step
    core.stop_event.set()
    core._commit([_Commit(messages.acks(), out), capture])
    assert core._unspooled  # nothing acknowledged: the broker keeps the message
    core.journal.close(compact=False)  # as the core's stop does then
    core.spool.close()
    core.pipeline.book.close()

    again = Pipeline(CoreSettings(state_dir=tmp_path))
    DedupJournal(tmp_path, again.dedup, again.registry.devices,
                 registry=again.registry).recover()
    again.process(messages, NOW + 1000)  # the redelivery
    again.book.close()
    assert again.stats.duplicates_dropped == 0
    assert again.stats.readings_stored == 1


# -- the session's I/O thread ----------------------------------------------------------------


class _FailsOnce(BulkSession):
    """A session whose I/O thread meets an error it does not expect, once: a bug (or a
    MemoryError) there must not leave the core connected to nothing."""

    failed = False

    def _handle(self, controls: Iterable[Control]) -> None:
        controls = list(controls)
        if not self.failed and any(c.kind == PUBACK for c in controls):
            self.failed = True
            raise RuntimeError("an error the I/O thread does not expect")
        super()._handle(controls)


@pytest.mark.e2e
def test_an_unexpected_error_on_the_io_thread_does_not_stall_the_session(
        tmp_path: Path) -> None:
    """Against a real Mosquitto: after an unexpected error on the I/O thread the session
    connects again and delivers what is published next."""
    with Mosquitto.start(tmp_path) as broker:
        session = _FailsOnce("127.0.0.1", broker.port, f"core-{uuid.uuid4().hex[:8]}",
                             reconnect_delays=(0.1, 0.5))
        session.start(15)
        try:
            session.publish("sensing/v1/alerts/t", b"{}")  # its PUBACK meets the fault
            assert wait_until(lambda: session.failed, 10)
            topic, payload = _message("t", "gw-1", _reading("smoke-1", 1))
            publisher = Publisher(broker.port)
            publisher.send([(topic, payload)])
            publisher.close()
            got: list[bytes] = []

            def arrived() -> bool:
                got.extend(m.payload for m in session.receive(10, 0.1).messages())
                return payload in got

            assert wait_until(arrived, 15)
        finally:
            session.stop()


# -- defences that hold ------------------------------------------------------------------


def test_a_gateway_cannot_speak_for_another_gateways_device_through_the_lane(
        tmp_path: Path) -> None:
    """gw-2, known and warm in the lane, names gw-1's device (alone, in an array with its
    own, and with `gateway` set to gw-1 in the payload): refused as on the slow path, never
    stored under either gateway."""
    own = _reading("smoke-2", 1)
    with_lane, _ = _both(tmp_path, [
        [_message("a1", "gw-1", _reading("smoke-1", 1)), _message("a1", "gw-2", own)],
        [_message("a1", "gw-2", _reading("smoke-1", 2)),
         _message("a1", "gw-2", [_reading("smoke-2", 2), _reading("smoke-1", 3)]),
         _message("a1", "gw-2", _reading("smoke-1", 4, gateway="gw-1")),
         _message("a1", "gw-1", _reading("smoke-1", 5))],
    ])
    assert with_lane.stats.readings_rejected == 3
    assert with_lane.registry.describe(0)[2] == "gw-1"


def test_a_cut_payload_never_takes_the_lane(tmp_path: Path) -> None:
    """A payload over the limit arrives cut (`size` its real length); its kept start may be
    valid JSON (a reading and then spaces): refused as too large, on either path."""
    topic, payload = _message("a1", "gw-1", _reading("smoke-1", 2))
    limit = len(payload) + 10
    kept = payload + b" " * 11
    settings = CoreSettings(state_dir=tmp_path / "x", max_payload_bytes=limit)
    for lane in (True, False):
        pipe = Pipeline(settings.model_copy(update={"state_dir": tmp_path / str(lane)}),
                        json_lane=lane)
        pipe.process([Incoming(*_message("a1", "gw-1", _reading("smoke-1", 1)), 1, 1, 0)],
                     NOW)
        out = pipe.process(Received.from_messages(
            [Incoming(topic, kept, 2, 1, 0, size=10 * limit)]), NOW + 1000)
        pipe.book.close()
        assert pipe.stats.readings_stored == 1
        assert [orjson.loads(p)["code"] for _, p in out.publish] == ["payload_too_large"]


def test_a_failed_commit_stops_the_stage_and_what_follows_it(tmp_path: Path) -> None:
    """A commit that raises stops the commit stage: the steps after it are never handled (so
    never acknowledged), and the feeding thread learns of it at its next `put` or `join`."""
    handled: list[int] = []

    def commit(items: list[int]) -> None:
        for item in items:
            if item == 2:
                raise OSError("disk gone")
            handled.append(item)

    stage: Stage[int] = Stage("commit-test", commit, depth=2)
    stage.start()
    stage.put(1)
    stage.put(2)
    assert wait_until(lambda: stage.error is not None, 10)
    with pytest.raises(RuntimeError, match="stopped"):
        stage.put(3)
    with pytest.raises(RuntimeError, match="stopped"):
        stage.join()
    assert handled == [1]


def test_the_commit_stage_holds_its_feeder_back_by_bytes() -> None:
    """Items weighing more than the stage's bound together wait for the ones before them to be
    handled: the steps between processing and the store never hold more than the bound (one
    alone may, or a huge step would wait forever)."""
    release = threading.Event()
    handled: list[int] = []

    def commit(items: list[int]) -> None:
        release.wait(10)
        handled.extend(items)

    stage: Stage[int] = Stage("commit-test", commit, depth=32, max_bytes=100)
    stage.start()
    stage.put(1, 150)  # over the bound alone: taken
    second = threading.Thread(target=stage.put, args=(2, 60))
    second.start()
    second.join(0.5)
    assert second.is_alive() and stage.weight == 150  # waits for the first to be handled
    release.set()
    second.join(10)
    assert not second.is_alive()
    stage.join()
    assert handled == [1, 2] and stage.weight == 0


def test_a_put_waiting_on_weight_learns_that_the_stage_failed() -> None:
    """The commit fails while the step loop waits for room by bytes: the put raises instead
    of waiting forever for weight that is never handled, and join raises too."""
    release = threading.Event()

    def commit(items: list[int]) -> None:
        release.wait(10)
        raise OSError("disk gone")

    stage: Stage[int] = Stage("commit-test", commit, depth=32, max_bytes=100)
    stage.start()
    stage.put(1, 90)
    errors: list[BaseException] = []

    def put_heavy() -> None:
        try:
            stage.put(2, 50)
        except RuntimeError as exc:
            errors.append(exc)

    waiting = threading.Thread(target=put_heavy)
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive()
    release.set()
    waiting.join(10)
    assert not waiting.is_alive() and len(errors) == 1
    with pytest.raises(RuntimeError, match="stopped"):
        stage.join()


def _held_bytes(commit: _Commit) -> int:
    """What a step waiting for the commit thread holds: its lines, the messages it published
    (dead letters carry the base64 of the raw payload) and its readings' columns."""
    out = commit.out
    arrays = [*out.admitted, *(a for chunk in out.handled for a in chunk[3:])]
    return (sum(len(x) for x in out.lines)
            + sum(len(p) for _, p in out.publish + out.announce)
            + sum(np.asarray(a).nbytes for a in arrays))


def test_a_step_waiting_for_the_store_weighs_what_it_holds(tmp_path: Path) -> None:
    """1,024 steps may wait for a stalled store: each must be held back by what it holds, not
    only by its lines. Garbage (a dead letter each, ~88 kB of base64 per message) and replayed
    duplicates (no line, but the readings to confirm) made steps that weighed nothing: at 4 MiB
    a step, gigabytes waiting for one slow store write."""
    core = StreamCore(CoreSettings(state_dir=tmp_path, store_url="http://127.0.0.1:9"))
    try:
        readings = [_reading(f"smoke-{i}", 1) for i in range(300)]
        topic, payload = _message("a1", "gw-1", readings)
        garbage = [Incoming(topic, b"{" + b"x" * 60_000, i, 1, 0) for i in range(1, 5)]
        for batch in ([Incoming(topic, payload, 9, 1, 0)], garbage,
                      [Incoming(topic, payload, 10, 1, 0)]):  # lines, dead letters, duplicates
            core.step(Received.from_messages(batch))
        queued = list(core.committer._queue.queue)
        assert len(queued) == 3
        assert core.pipeline.stats.duplicates_dropped == 300
        for item, weight in queued:
            assert isinstance(item, _Commit)
            assert _held_bytes(item) <= weight
    finally:
        core.journal.close(compact=False)
        core.spool.close()
        core.pipeline.book.close()


# -- the lane against the slow path: moves, takeovers and kind changes at random ------------

_PLACES = [("a1", "gw-1"), ("a1", "gw-1"), ("a2", "gw-1"), ("a1", "gw-2")]
_DEVICES = [("smoke-1", "smoke"), ("smoke-1", "smoke"), ("smoke-1", "wearable"),
            ("band-1", "wearable")]


@st.composite
def _moving_step(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    out = []
    for _ in range(draw(st.integers(1, 8))):
        area, gateway = draw(st.sampled_from(_PLACES))
        if draw(st.integers(0, 3)) == 0:  # an area or gateway the core has not seen yet
            fresh = draw(st.integers(10, 1 << 30))
            area, gateway = draw(st.sampled_from([(f"a{fresh}", gateway),
                                                  (area, f"gw-{fresh}")]))
        docs = []
        for _ in range(draw(st.integers(1, 3))):
            device, kind = draw(st.sampled_from(_DEVICES))
            docs.append(_reading(device, draw(st.integers(0, 30)), kind))
        out.append(_message(area, gateway, docs if len(docs) > 1 else docs[0]))
    return out


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(_moving_step(), min_size=2, max_size=6), follow=st.booleans())
def test_moves_takeovers_and_kind_changes_give_what_the_slow_path_gives(
        tmp_path_factory: pytest.TempPathFactory, steps: list[list[tuple[str, bytes]]],
        follow: bool) -> None:
    """Gateways moving between areas (new ones too), devices taken over by other gateways
    (`devices_follow_gateway`), kinds changing, all within steps that mix the two paths."""
    _both(tmp_path_factory.mktemp("moving"), steps, devices_follow_gateway=follow)
