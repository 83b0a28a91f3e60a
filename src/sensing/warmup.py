"""Compile (or load from the cache) every kernel before the first real batch: a synthetic
batch of every kind and channel through a throwaway pipeline. The first start on a machine
compiles for about 20 s; later starts load the cache in well under a second."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sensing.ingest.received import Incoming
from sensing.ingest.session import warm_up as session_warm_up
from sensing.pipeline import Pipeline
from sensing.settings import CoreSettings
from sensing.wire import BatchBuilder, binary, json_codec, topics
from sensing.wire.confirm_columns import ConfirmFormatter
from sensing.wire.kinds import KIND_CHANNELS

T0 = 1_795_478_819_832
QUIET = {"obscuration": 0.2, "temp_c": 21.0, "co_ppm": 1.0, "tilt_deg": 0.5, "water_m": 2.0,
         "gas_lel": 0.5, "heart_rate": 70.0, "spo2": 97.0, "accel_g": 1.0, "steps": 5.0,
         "sos": 0.0}
"""everyday values, so that the warm-up raises (and logs) no alert"""


def warm_up() -> tuple[float, int]:
    """Run the kernels once; returns the seconds it took and the alert transitions it made
    (none: its readings are everyday values)."""
    started = time.perf_counter()
    b = BatchBuilder()
    for i in range(30):
        for kind, channels in KIND_CHANNELS.items():
            b.add(f"warm-{kind}-{i % 3}", kind, 0, i, T0 + i * 1000,
                  {c: QUIET[c] for c in channels}, 0.9)
    topic = topics.readings_topic("warm-up", "warm-up")
    # the same readings in both codecs: their checks compile for each codec's arrays
    def json_payload(seq: int) -> bytes:
        return json_codec.encode([
            {"device": f"warm-json-{kind}", "kind": kind, "seq": seq, "ts": T0 + seq,
             "values": {c: QUIET[c] for c in channels}, "battery": 0.9}
            for kind, channels in KIND_CHANNELS.items()])

    messages = [Incoming(topic, binary.encode(b.build()), 1, 1, 0),
                Incoming(topic, json_payload(0), 1, 1, 0)]
    session_warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        # defaults only: no environment or config file has a say in a warm-up
        pipe = Pipeline(CoreSettings.model_construct(state_dir=Path(tmp)))
        try:
            pipe.process(messages, T0 + 60_000)
            # the gateway is known now: its next JSON message takes the JSON lane
            out = pipe.process([Incoming(topic, json_payload(1), 2, 1, 0)], T0 + 61_000)
            # the commit thread's first confirmation must not wait for its kernel
            ConfirmFormatter()(out.handled)
        finally:
            pipe.book.close()
    return time.perf_counter() - started, sum(pipe.stats.alerts.values())
