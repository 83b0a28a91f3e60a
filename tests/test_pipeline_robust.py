"""The pipeline step never crashes on what a gateway sends: bad readings become dead letters,
the good ones of the same message are stored."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from sensing.ingest.mqtt import Incoming
from sensing.pipeline import Pipeline
from sensing.settings import CoreSettings
from sensing.wire import BatchBuilder, binary, topics

NOW = int(time.time() * 1000)


def test_a_device_of_an_unknown_kind_is_dead_lettered_and_the_rest_stored(tmp_path: Path
                                                                          ) -> None:
    b = BatchBuilder()
    b.add("toaster-1", "toaster", 0, 1, NOW, {"temp_c": 210.0}, 0.9)
    b.add("smoke-1", "smoke", 0, 1, NOW, {"obscuration": 0.2}, 0.9)
    pipe = Pipeline(CoreSettings(state_dir=tmp_path))
    topic = topics.readings_topic("area-1", "gw-1")
    out = pipe.process([Incoming(topic, binary.encode(b.build()), 1, 1, 0)], NOW)
    lines = b"".join(x if isinstance(x, bytes) else x.encode() for x in out.lines)
    assert b"smoke-1" in lines and b"toaster-1" not in lines
    dead = [orjson.loads(p) for t, p in out.messages if t.startswith("sensing/v1/deadletter/")]
    assert len(dead) == 1 and "unknown kind 'toaster'" in dead[0]["reason"]
    assert pipe.stats.readings_stored == 1 and pipe.stats.readings_rejected == 1
    # and the next message from the same gateway goes through as usual
    b2 = BatchBuilder()
    b2.add("smoke-1", "smoke", 0, 2, NOW + 1000, {"obscuration": 0.3}, 0.9)
    pipe.process([Incoming(topic, binary.encode(b2.build()), 2, 1, 0)], NOW + 1000)
    assert pipe.stats.readings_stored == 2
    pipe.book.close()


def test_a_backlog_from_an_earlier_epoch_is_stored_but_not_detected(tmp_path: Path) -> None:
    """A gateway restarted (epoch 2) and then sent what it had buffered before (epoch 1): the
    window cannot place those readings, so they are stored without running the detectors
    (their smoke would otherwise raise an alarm now), and nothing is dead-lettered."""
    pipe = Pipeline(CoreSettings(state_dir=tmp_path))
    topic = topics.readings_topic("area-1", "gw-1")

    def send(epoch: int, seqs: range, obscuration: float, mid: int) -> tuple[bytes, int]:
        b = BatchBuilder()
        for s in seqs:
            b.add("smoke-1", "smoke", epoch, s, NOW - 60_000 * (3 - epoch) + s * 1000,
                  {"obscuration": obscuration}, 0.9)
        out = pipe.process([Incoming(topic, binary.encode(b.build()), mid, 1, 0)], NOW)
        assert not [t for t, _ in out.messages if t.startswith("sensing/v1/deadletter/")]
        alerts = [t for t, _ in out.messages if t.startswith("sensing/v1/alerts/")]
        return b"".join(x if isinstance(x, bytes) else x.encode() for x in out.lines), len(alerts)

    send(2, range(5), 0.1, 1)
    lines, alerts = send(1, range(20), 30.0, 2)  # far above the smoke alarm level
    assert lines.count(b"epoch=1i") == 20 and alerts == 0
    assert pipe.stats.readings_stored == 25 and pipe.stats.readings_late == 20
    assert pipe.stats.readings_rejected == 0 and pipe.stats.deadletters == 0
    # the same smoke in the current epoch does go through the detectors
    _, alerts = send(2, range(5, 25), 30.0, 3)
    assert alerts >= 1
    assert pipe.stats.readings_stored == 45 and pipe.stats.readings_late == 20
    pipe.book.close()
