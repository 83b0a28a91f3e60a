"""Live runs in worker processes: the shards add up to the fleet, nothing lost or counted
twice; scenario files in live mode; how gateways are shared out."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from sensing.services import Mosquitto
from sensing_sim import Fleet, FleetSpec, LiveError, LiveOptions, run_live
from sensing_sim.live_shard import Shard, auto_poll_interval
from sensing_sim.live_workers import (
    FleetRecipe,
    default_processes,
    min_processes,
    plan_shards,
)
from sensing_sim.scenario import load_scenario
from tests.sim.test_sim_live import Subscriber

SCENARIOS = Path(__file__).parents[2] / "simulators" / "scenarios"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto.start(tmp_path) as b:
        yield b


def test_recipe_rebuilds_the_same_fleet_with_its_incidents() -> None:
    fleet = load_scenario(SCENARIOS / "pilot.toml").build()
    assert any(fleet.gateway_outages(gw.id) for gw in fleet.gateways)
    again = FleetRecipe.of(fleet).build()
    assert again.devices == fleet.devices and again.incidents == fleet.incidents
    assert fleet.nuisances and again.nuisances == fleet.nuisances
    assert all(again.gateway_outages(g.id) == fleet.gateway_outages(g.id) for g in fleet.gateways)
    a, b = fleet.driver("gw-03", 1_795_478_400_000), again.driver("gw-03", 1_795_478_400_000)
    t = 1_795_478_400_000 + 30_000
    assert a.poll(t) == b.poll(t)


def test_gateways_are_shared_out_in_contiguous_runs_within_the_descriptor_limit() -> None:
    fleet = Fleet(FleetSpec(n_gateways=1000, n_devices=1000, seed=1))
    assert min_processes(fleet) == 4
    assert default_processes(fleet) == 8  # 125 agents each
    shards = plan_shards(fleet, 4)
    assert [len(s) for s in shards] == [250] * 4
    assert [g for s in shards for g in s] == [gw.id for gw in fleet.gateways]
    with pytest.raises(ValueError, match="at least 4 processes"):
        plan_shards(fleet, 3)
    with pytest.raises(LiveError, match="file descriptors"):
        Shard(fleet, fleet.gateways[:400], LiveOptions(), epoch=1)
    small = Fleet(FleetSpec(n_gateways=10, n_devices=100, seed=1))
    assert default_processes(small) == 1
    assert auto_poll_interval(10.0) == 1.0 and auto_poll_interval(0.5) == 0.1
    assert auto_poll_interval(2.0) == pytest.approx(0.2)


@pytest.mark.e2e
def test_two_processes_publish_every_reading_once(broker: Mosquitto) -> None:
    sub = Subscriber(broker.port)
    fleet = Fleet(FleetSpec(n_gateways=20, n_devices=400, interval_s=1.0, seed=8))
    fleet.schedule_demo_incidents(6.0)
    report = run_live(fleet, LiveOptions(
        port=broker.port, duration_s=6.0, processes=2, duplicate_rate=0.2, malformed=4,
    ))
    expected = report.readings_sent_unique + report.duplicate_readings_injected
    sub.wait_for(lambda: sub.rejected >= 4 and sub.readings >= expected, 15)
    sub.close()

    assert report.processes == 2 and report.all_acked and not report.stopped_early
    assert 2000 <= report.readings_sampled <= 2800  # 400 devices, one reading/s, ~6 s
    assert report.readings_sent_unique == report.readings_sampled == report.readings_acked
    assert report.readings_published == report.readings_sampled
    assert len(sub.names) == report.readings_sent_unique
    assert {name[0] for name in sub.names} == {d.id for d in fleet.devices}
    assert {name[1] for name in sub.names} == {report.epoch}
    assert sub.readings - len(sub.names) == report.duplicate_readings_injected > 0
    assert sub.rejected == report.malformed_total == 4
    assert report.connects == 20
    assert report.sim_cpu_s > 0 and report.sim_max_rss_mb > 0


@pytest.mark.e2e
def test_cli_runs_a_scenario_file_in_two_processes(broker: Mosquitto, tmp_path: Path) -> None:
    scenario = tmp_path / "small.toml"
    scenario.write_text("""
[fleet]
gateways = 4
devices = 40
interval_s = 0.5
seed = 11

[run]
duration_s = 7

[faults]
malformed = 2
late_rate = 0.1
link_flaps = [{ gateway = "gw-02", start_s = 2, down_s = 2 }]

[[incidents]]
type = "wearable.sos"
gateway = "gw-03"
start_s = 1
""")
    cli = Path(sys.executable).parent / "sensing-sim"
    proc = subprocess.run(
        [str(cli), "live", "--broker-port", str(broker.port), "--scenario", str(scenario),
         "--processes", "2", "--progress-every", "1", "--json",
         "--confirm", "broker"],  # no core behind this broker
        capture_output=True, timeout=90, env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    report = orjson.loads(proc.stdout)
    err = proc.stderr.decode()
    assert "in 2 processes" in err and "1 link outages" in err
    assert "ignored: late delivery" in err
    assert b" online " in proc.stderr
    assert report["processes"] == 2 and report["gateways"] == 4 and report["all_acked"]
    assert 6.5 <= report["duration_s"] < 12
    assert report["readings_sent_unique"] == report["readings_sampled"] > 0
    assert report["malformed_total"] == 2
    assert {i["type"] for i in report["incidents"]} == {"wearable.sos", "gateway.offline"}
    (outage,) = report["outages"]
    assert outage["gateway"] == "gw-02" and outage["restored_at_s"] is not None
    assert report["connects"] == 5
