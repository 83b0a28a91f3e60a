"""The loop closed end to end: a live fleet through Mosquitto into the real core with a
generated directory, the simulated responders answering its dispatch, every case disposed.

The life-safety and care chains are shortened (a directory's [policy] replaces the shipped
chain of the same name) and the people are twenty times as quick, so the run takes two minutes
instead of forty; everything else is as deployed."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sensing.dispatch.directory import load_directory
from sensing.services import Mosquitto, VictoriaMetrics
from sensing_sim.directory_gen import directory_doc, write_directory
from sensing_sim.fleet import Fleet, FleetSpec
from sensing_sim.live import LiveOptions, run_live
from sensing_sim.responders import COMMAND_ROLES, FAMILY_ROLES, Behaviour, role_of
from sensing_sim.responders_live import RespondersSetup
from sensing_sim.score_dispatch import dispatch_score
from sensing_sim.score_sources import Messages, listen
from tests.helpers import running_core

QUICK_LIFE_SAFETY = {"chains": {"life_safety": {"steps": [
    {"whom": "grid_worker", "after_s": 0, "renotify_s": 10},
    {"whom": "relatives", "after_s": 5, "renotify_s": 30},
    {"whom": "volunteers", "after_s": 10, "renotify_s": 30},
    {"whom": "duty_officer", "after_s": 15, "renotify_s": 30},
    {"whom": "street_command", "after_s": 25, "renotify_s": 30},
]}, "care": {"steps": [  # a vitals alert opens its case as major: care, pinned
    {"whom": "grid_worker", "after_s": 0, "renotify_s": 10},
    {"whom": "relatives", "after_s": 5, "renotify_s": 30},
    {"whom": "duty_officer", "after_s": 20, "renotify_s": 30},
]}}}


@pytest.mark.e2e
def test_a_live_fleet_with_responders_ends_with_every_case_disposed(
        broker: Mosquitto, store: VictoriaMetrics, tmp_path: Path) -> None:
    duration = 60.0
    fleet = Fleet(FleetSpec(n_gateways=4, n_devices=200, areas=("c-1", "c-2"), seed=3))
    fleet.schedule_demo_incidents(duration)
    doc: dict[str, Any] = directory_doc(fleet) | {"policy": QUICK_LIFE_SAFETY}
    path = tmp_path / "dir.toml"
    write_directory(path, doc)
    setup = RespondersSetup(load_directory(path), Behaviour(time_scale=0.05), linger_s=240)
    heard: list[Messages] = []
    stop = threading.Event()
    with running_core(broker, store, tmp_path / "core", directory_file=path):
        listener = threading.Thread(target=lambda: heard.append(listen(
            "127.0.0.1", broker.port, lambda: time.time() + 3600, stop=stop)))
        listener.start()
        try:
            report = run_live(fleet, LiveOptions(port=broker.port, duration_s=duration,
                                                 confirm="core"), responders=setup)
            time.sleep(1.0)
        finally:
            stop.set()
            listener.join(15)
    people = report.responders
    assert people is not None
    assert people["cases"] >= 10 and people["cases_open"] == 0, people["cases_by_state"]
    assert people["cases_by_state"] == {"disposed": people["cases"]}
    assert people["refused"] == {} and people["heard"]["invalid"] == 0
    assert report.linger_s < 240

    ds = dispatch_score(heard[0].cases, report.incidents, stopping_ms=report.stopping_ms)
    total = ds.total
    assert total.opened == total.disposed >= 10
    assert total.outcome_rate == 1.0, ds.outcomes
    assert total.climbed_family >= 1 and total.climbed_command >= 1
    assert total.notify_p95_s is not None and total.notify_p95_s < 2.0
    # the case nobody local answered went up both chains to a street command centre
    climbed = [r for r in people["case_records"] if r["unanswered"]]
    assert climbed and all(r["taken_by"].startswith("cc-street") for r in climbed)
    roles = {role_of(str(m.get("role"))) for m in heard[0].cases if m["event"] == "notified"}
    assert set(FAMILY_ROLES) <= roles and "street_command" in roles & set(COMMAND_ROLES)
