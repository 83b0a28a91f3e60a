"""Attacks on the core's fast path (the JSON lane, BulkSession, the commit thread).

Each test either shows a defence that holds or pins a break that was found and fixed: the
lane must give what the message-by-message path gives, for any input, including the state it
leaves behind (a device's owner, area and kind decide the tags of every later line and alert).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from sensing.ingest.received import Incoming, Received
from sensing.pipeline import Pipeline, StepOutput
from sensing.settings import CoreSettings
from sensing.wire import topics

NOW = int(time.time() * 1000)
SMOKE = {"obscuration": 0.1, "temp_c": 21.5, "co_ppm": 1.0}


def _reading(device: str, seq: int, kind: str = "smoke", **extra: Any) -> dict[str, Any]:
    values = SMOKE if kind == "smoke" else {"heart_rate": 70.0, "spo2": 97.0}
    return {"device": device, "kind": kind, "seq": seq, "ts": NOW - 1000 + seq,
            "values": values, "battery": 0.9, **extra}


def _message(area: str, gateway: str, payload: bytes | object) -> tuple[str, bytes]:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return topics.readings_topic(area, gateway), raw


def _normalized(out: StepOutput) -> dict[str, object]:
    """A step's output with alert ids (random) replaced by their order of appearance."""
    ids: dict[str, str] = {}

    def fix(text: str) -> str:
        return re.sub(r"[0-9a-f]{32}", lambda m: ids.setdefault(m.group(0), f"#{len(ids)}"),
                      text)

    lines = [x if isinstance(x, bytes) else x.encode() for x in out.lines]
    return {
        "lines": fix(b"\n".join(lines).decode()),
        "messages": [(t, fix(p.decode())) for t, p in out.messages],
        "admitted": [a.tolist() for a in out.admitted],
        "handled": sorted(
            (area, gw, sorted(zip((names[int(d)] for d in np.asarray(dev).tolist()),
                                  np.asarray(ep).tolist(), np.asarray(sq).tolist(),
                                  strict=True)))
            for area, gw, names, dev, ep, sq in out.handled),
    }


def _placement(pipe: Pipeline) -> dict[str, tuple[str, str, str]]:
    reg = pipe.registry
    return {reg.devices.names[d]: reg.describe(d)[1:] for d in range(len(reg.devices))}


def _both(tmp_path: Path, steps: list[list[tuple[str, bytes]]], **settings: Any
          ) -> tuple[Pipeline, Pipeline]:
    """The steps through a pipeline with the JSON lane and one without, compared step by
    step (output and the registry's placement of every device)."""
    with_lane = Pipeline(CoreSettings(state_dir=tmp_path / "lane", **settings))
    without = Pipeline(CoreSettings(state_dir=tmp_path / "slow", **settings), json_lane=False)
    mid = 0
    for k, step in enumerate(steps):
        batch = []
        for topic, payload in step:
            mid += 1
            batch.append(Incoming(topic, payload, mid, 1, 0))
        now = NOW + 1000 * k
        a = with_lane.process(Received.from_messages(batch), now)
        b = without.process(Received.from_messages(batch), now)
        assert _normalized(a) == _normalized(b), f"step {k}"
        assert _placement(with_lane) == _placement(without), f"step {k}"
    assert with_lane.stats.as_dict() == without.stats.as_dict()
    with_lane.book.close()
    without.book.close()
    return with_lane, without


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
