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
    dead = [orjson.loads(p) for t, p in out.publish if t.startswith("sensing/v1/deadletter/")]
    assert len(dead) == 1 and "unknown kind 'toaster'" in dead[0]["reason"]
    assert pipe.stats.readings_stored == 1 and pipe.stats.readings_rejected == 1
    # and the next message from the same gateway goes through as usual
    b2 = BatchBuilder()
    b2.add("smoke-1", "smoke", 0, 2, NOW + 1000, {"obscuration": 0.3}, 0.9)
    pipe.process([Incoming(topic, binary.encode(b2.build()), 2, 1, 0)], NOW + 1000)
    assert pipe.stats.readings_stored == 2
    pipe.book.close()
