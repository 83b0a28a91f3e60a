"""Silences and actions through the core's pipeline (messages in, messages out), with a
directory file: who may set a silence, what a bad one gets, and a fire it holds back."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from sensing.ingest.received import Incoming
from sensing.pipeline import Pipeline, StepOutput
from sensing.settings import CoreSettings
from sensing.wire import topics
from tests.dispatch.test_dispatch_live import AREA, DEVICE, GATEWAY, directory

NOW = int(time.time() * 1000)


def pipeline(tmp_path: Path) -> Pipeline:
    return Pipeline(CoreSettings(state_dir=tmp_path / "core", directory_file=directory(
        tmp_path / "dir.toml", "http://127.0.0.1:9", 60, 120)))


def step(pipe: Pipeline, topic: str, doc: object, now: int = NOW) -> StepOutput:
    return pipe.process([Incoming(topic, orjson.dumps(doc), 1, 1, 0)], now)


def codes(out: StepOutput) -> list[str]:
    return [str(orjson.loads(p)["code"]) for _t, p in out.publish]


def test_only_operators_of_the_area_set_silences_and_bad_ones_are_dead_lettered(
        tmp_path: Path) -> None:
    pipe = pipeline(tmp_path)
    good = {"action": "add", "area": AREA, "reason": "fire drill", "ends_ms": NOW + 600_000}
    assert codes(step(pipe, topics.PREFIX + "/silences/grid-1", good)) == [
        "ack_not_authorized"]                                       # a grid worker: no
    assert codes(step(pipe, topics.PREFIX + "/silences/nobody", good)) == [
        "ack_unknown_responder"]
    assert codes(step(pipe, topics.PREFIX + "/silences/duty-1",
                      {**good, "area": "", "type": ""})) == ["silence_invalid"]  # matches all
    assert codes(step(pipe, topics.PREFIX + "/silences/duty-1",
                      {**good, "ends_ms": NOW + 10**12})) == ["silence_invalid"]  # > 90 days
    assert codes(step(pipe, topics.PREFIX + "/silences/duty-1", {"action": "mute"})) == [
        "silence_invalid"]
    assert codes(step(pipe, topics.PREFIX + "/silences/duty-1", good)) == []
    (silence,) = pipe.dispatch.silences.active
    assert silence.author == "duty-1" and silence.area == AREA

    # a fire in the silenced community: the case is opened and recorded, nobody is told
    rtopic = topics.readings_topic(AREA, GATEWAY)
    events: list[str] = []
    for i in range(6):
        out = step(pipe, rtopic, {"device": DEVICE, "kind": "smoke", "seq": i,
                                  "ts": NOW - 10_000 + i * 1000,
                                  "values": {"obscuration": 0.1 if i < 3 else 14.0}})
        events = [orjson.loads(p)["event"] for t, p in out.announce if "/cases/" in t]
        if events:
            break
    assert events == ["opened", "held"]
    assert not [t for t, _ in out.announce if "/dispatch/" in t]
    assert any(line.startswith("case,") for line in map(str, out.lines))

    # the author ends it early: in that very step the chain goes on where its clock stands
    out = step(pipe, topics.PREFIX + "/silences/duty-1",
               {"action": "remove", "silence_id": silence.silence_id})
    assert codes(out) == []
    assert [orjson.loads(p)["responder"] for t, p in out.announce
            if "/dispatch/" in t] == ["grid-1"]
    assert codes(step(pipe, topics.PREFIX + "/silences/duty-1",
                      {"action": "remove", "silence_id": silence.silence_id})) == [
        "silence_invalid"]                                          # none in force now
