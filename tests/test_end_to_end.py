"""The walking skeleton, end to end on real parts: a simulated fleet behind real edge agents ->
Mosquitto -> the stream core -> VictoriaMetrics and the alert, dispatch and dead-letter topics."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from sensing.services import Mosquitto, VictoriaMetrics
from sensing.wire import topics
from sensing.wire.messages import GRADE_RANK, Grade
from sensing_sim import Fleet, FleetSpec, LiveOptions, run_live
from tests.helpers import Listener, running_core

pytestmark = pytest.mark.e2e

DURATION_S = 50.0


def test_fleet_with_incidents_duplicates_and_malformed_messages(
    broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path
) -> None:
    fleet = Fleet(FleetSpec(n_gateways=3, n_devices=240, interval_s=0.5, seed=7))
    incidents = fleet.schedule_demo_incidents(DURATION_S)
    assert {i.type for i in incidents} >= {"smoke.fire", "smoke.co", "manhole.gas",
                                           "manhole.displaced", "wearable.sos"}
    listener = Listener(broker, topics.ALERTS_FILTER, topics.DISPATCH_FILTER, topics.CASES_FILTER,
                        topics.DEADLETTER_FILTER)
    with running_core(broker, store, tmp_path / "core") as core:
        report = run_live(fleet, LiveOptions(port=broker.port, duration_s=DURATION_S,
                                             duplicate_rate=0.05, malformed=6,
                                             confirm="core"))
        assert report.all_acked
        listener.wait_for(lambda: core.stats.readings_received
                          >= report.readings_sent_unique + report.duplicate_readings_injected)
        assert listener.wait_for(
            lambda: len(listener.json("sensing/v1/deadletter/")) >= report.malformed_total)

        # every reading stored exactly once, duplicates dropped, counted in the real store
        stored = store.settled_count("reading_seq", report.readings_sent_unique)
        assert stored == report.readings_sent_unique
        assert core.stats.duplicates_dropped == report.duplicate_readings_injected > 0

        # every malformed message was dead-lettered with a reason and its raw bytes
        dead = listener.json("sensing/v1/deadletter/")
        assert len(dead) == report.malformed_total == 6
        assert all(d["reason"] and base64.b64decode(str(d["payload"])) for d in dead)

        # every incident raised its alert type, on its device, at its grade; nothing else
        # raised a device alert (quiet signals and everyday nuisances stay quiet)
        alerts = listener.json("sensing/v1/alerts/")
        device_alerts = [a for a in alerts if a["type"] != "gateway.offline"]
        worst: dict[tuple[str, str], int] = {}
        for a in device_alerts:
            key = (str(a["device"]), str(a["type"]))
            worst[key] = max(worst.get(key, 0), GRADE_RANK[Grade(a["grade"])])
        expected = {(i.device, i.type): GRADE_RANK[Grade(i.grade)] for i in incidents}
        assert worst == expected
        for inc in incidents:
            raised = next(a for a in device_alerts
                          if a["device"] == inc.device and a["state"] == "raised")
            assert raised["gateway"] == inc.gateway and raised["area"] == inc.area
        # every alert raised is in a case, and every case reached its first responders: the
        # grid worker for people's emergencies, maintenance for hazards and faults
        cases = listener.json("sensing/v1/cases/")
        case_of = {str(m): str(c["case_id"]) for c in cases for m in c["members"]}
        notified = {str(c["case_id"]) for c in cases
                    if c["event"] == "notified" and c["step"] == 0}
        raised = {str(a["alert_id"]) for a in device_alerts if a["state"] == "raised"}
        assert raised <= case_of.keys()
        assert {case_of[a] for a in raised} <= notified
        dispatched = listener.json("sensing/v1/dispatch/")
        assert {case_of[a] for a in raised} <= {str(d["case_id"]) for d in dispatched}
        assert {str(d["tier"]) for d in dispatched} >= {"grid", "maintenance"}
        # the agents signed off: their retained offline status raised gateway.offline
        assert listener.wait_for(lambda: {
            a["device"] for a in listener.json("sensing/v1/alerts/")
            if a["type"] == "gateway.offline"} == {g.id for g in fleet.gateways})
    listener.close()
