"""The fuzz run's largest find, made small: gateways whose 10,000 devices each reported once
and then fell silent (hostile one-shot device ids do this; so does a real fleet after an
outage) set off one device.offline alert per device in one step. The core must publish every
one of them and stay up, however many publishes that leaves waiting for the broker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sensing.services import Mosquitto, VictoriaMetrics
from sensing.testing.processes import CoreProcess
from sensing.testing.traffic import Publisher, Recorder
from sensing.wire import snb1

pytestmark = [pytest.mark.e2e, pytest.mark.robust]

GATEWAYS = 5
DEVICES = 10_000
"""per gateway: the most a gateway may introduce (sensing.wire.limits)"""


def test_fifty_thousand_offline_alerts_at_once_are_all_published_and_the_core_stays_up(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    recorder = Recorder(broker.port, "sensing/v1/alerts/storm")
    core = CoreProcess(broker.port, store.url, tmp_path / "core")
    core.start()
    publisher = Publisher(broker.port)
    try:
        now = time.time_ns() // 1_000_000
        # every device once, seven minutes ago (a backlog): longer than a smoke detector's
        # timeout (5 of its 60 s intervals and the allowances, OfflinePolicy)
        for g in range(GATEWAYS):
            rows: list[snb1.Reading] = [(f"storm{g}-{i}", "smoke", 0, 0, now - 420_000,
                                         {"temp_c": 22.0}, 0.9) for i in range(DEVICES)]
            publisher.publish(f"sensing/v1/storm/gw{g}/readings", snb1.encode_readings(rows))
        publisher.flush()
        time.sleep(2)
        for g in range(GATEWAYS):  # then one of them now: the others are silent for 7 min
            rows = [(f"storm{g}-0", "smoke", 0, 1, now, {"temp_c": 22.0}, 0.9)]
            publisher.publish(f"sensing/v1/storm/gw{g}/readings", snb1.encode_readings(rows))
        publisher.flush()
        expected = GATEWAYS * (DEVICES - 1)
        deadline = time.monotonic() + 120
        offline: set[str] = set()
        while time.monotonic() < deadline and core.check_alive() and len(offline) < expected:
            time.sleep(1)
            offline = {str(doc["device"]) for _, doc in recorder.json("sensing/v1/alerts/storm")
                       if doc.get("type") == "device.offline" and doc.get("state") == "raised"}
        time.sleep(2)
        alive = core.check_alive()
        print(f"\nstorm: {len(offline)} of {expected} device.offline alerts, core alive "
              f"{alive}, exits {core.crashes}, peak RSS {core.peak_rss_kb // 1024} MB")
        assert alive and not core.crashes, core.log_tail(0, 1500)
        assert len(offline) == expected
    finally:
        publisher.close()
        recorder.close()
        core.stop()
