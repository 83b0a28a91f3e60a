"""Scenario files: the shipped pilot, a small run from a file, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from sensing.wire import Grade
from sensing_sim.cli import main
from sensing_sim.scenario import Scenario, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "simulators" / "scenarios"


def test_the_pilot_community_has_its_fleet_and_one_incident_of_each_kind() -> None:
    scenario = load_scenario(SCENARIOS / "pilot.toml")
    fleet = scenario.build()
    assert len(fleet.devices) == 6800 and len(fleet.gateways) == 68
    assert len({g.area for g in fleet.gateways}) == 20
    fires = [i for i in fleet.incidents if i.type == "smoke.fire"]
    assert len(fires) == 2 and {i.area for i in fires} == {"compound-12"}
    assert {i.gateway for i in fires} == {"gw-12"} and len({i.device for i in fires}) == 2
    assert all(i.grade is Grade.CRITICAL for i in fires)
    assert {i.type for i in fleet.incidents} == {
        "smoke.fire", "smoke.co", "manhole.displaced", "manhole.gas", "manhole.overflow",
        "wearable.vitals", "wearable.sos", "wearable.fall", "device.battery", "device.fault",
        "device.offline", "gateway.offline"}
    flaps = fleet.gateway_outages("gw-07")  # while the link of gateway 7 flaps
    assert len(flaps) == 3 and all(i.end_s - i.start_s == 30 for i in flaps)


def test_a_small_scenario_file_runs_offline_and_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "s.toml").write_text(
        '[fleet]\ngateways = 2\ndevices = 60\nseed = 3\n'
        '[run]\nduration_s = 300\n'
        '[[incidents]]\ntype = "manhole.gas"\ngateway = "gw-02"\nstart_s = 60\n'
        '[[incidents]]\ntype = "wearable.sos"\ngateway = "gw-01"\nstart_s = 120\n')
    assert main(["offline", "--scenario", str(tmp_path / "s.toml"), "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["simulated_s"] == 300 and doc["readings"] == 60 * 150
    assert {(s["type"], s["recall"], s["precision"]) for s in doc["score"]["types"]} == {
        ("manhole.gas", 1.0, 1.0), ("wearable.sos", 1.0, 1.0)}


@pytest.mark.parametrize(("text", "named"), [
    ('[[incidents]]\ntype = "smoke.flood"\ngateway = "gw-01"\nstart_s = 1\n', "unknown incident"),
    ('[[incidents]]\ntype = "smoke.co"\ngateway = "gw-01"\ndevice = "x"\nstart_s = 1\n',
     "device or a gateway"),
    ("[fleet]\ngatways = 3\n", "gatways"),
    ("[run]\nduration_s = -5\n", "duration_s"),
])
def test_a_bad_scenario_is_a_usage_error_naming_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, named: str
) -> None:
    (tmp_path / "s.toml").write_text(text)
    assert main(["offline", "--scenario", str(tmp_path / "s.toml")]) == 2
    assert named in capsys.readouterr().err


def test_an_incident_on_an_unknown_gateway_or_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ValueError, match=r"incidents\[0\]"):
        Scenario.model_validate({"incidents": [
            {"type": "smoke.co", "gateway": "gw-99", "start_s": 1}]}).build()
    scenario = Scenario.model_validate({"fleet": {"mix": {"manhole": 1}}, "incidents": [
        {"type": "smoke.co", "gateway": "gw-01", "start_s": 1}]})
    with pytest.raises(ValueError, match="no free smoke device under gw-01"):
        scenario.build()
    with pytest.raises(ValidationError):
        Scenario.model_validate({"run": {"start_ms": 5}})


def test_the_district_load_scenario_builds_its_fleet() -> None:
    """100,000 devices behind 1,000 gateways, every device under exactly one of them."""
    fleet = load_scenario(SCENARIOS / "district.toml").build()
    assert len(fleet.devices) == 100_000 and len(fleet.gateways) == 1000
    assert len({g.area for g in fleet.gateways}) == 50
    assert sum(len(fleet.devices_of(g.id)) for g in fleet.gateways) == 100_000
    assert len(fleet.incidents) >= 9


def test_the_chaos_scenario_labels_every_alert_type_of_the_contract_and_injects_every_fault(
) -> None:
    contract = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text()
    types = set(re.findall(r"^\| `([a-z]+\.[a-z]+)` \|", contract, re.MULTILINE))
    assert len(types) == 13
    scenario = load_scenario(SCENARIOS / "chaos.toml")
    fleet = scenario.build()
    assert {i.type for i in fleet.incidents} == types
    faults = scenario.faults.transport()
    assert faults.duplicate_rate > 0 and faults.late_rate > 0 and faults.malformed > 0
    assert faults.restarts and faults.clock_skew and scenario.faults.link_flaps
    assert all(i.end_s <= scenario.run.duration_s for i in fleet.incidents)


def test_the_faults_section_becomes_transport_faults_and_link_flaps_become_labels() -> None:
    scenario = Scenario.model_validate({
        "fleet": {"gateways": 8, "devices": 80},
        "run": {"duration_s": 1200, "speed": 30},
        "faults": {"duplicate_rate": 0.02, "late_rate": 0.01, "late_max_s": 20, "malformed": 6,
                   "restarts": [{"gateway": "gw-03", "at_s": 300, "down_s": 5}],
                   "clock_skew": [{"gateway": "gw-05", "skew_s": -90}],
                   "link_flaps": [{"gateway": "gw-07", "start_s": 600, "count": 3,
                                   "down_s": 20, "every_s": 120}]},
        "incidents": [{"type": "gateway.offline", "gateway": "gw-02", "start_s": 100,
                       "end_s": 160},
                      {"type": "device.fault", "gateway": "gw-04", "variant": "stuck",
                       "start_s": 10}]})
    fleet = scenario.build()
    faults = scenario.faults.transport()
    assert (faults.duplicate_rate, faults.late_rate, faults.late_max_s, faults.malformed) == (
        0.02, 0.01, 20, 6)
    assert [(r.gateway, r.at_s, r.down_s) for r in faults.restarts] == [("gw-03", 300, 5)]
    assert [(c.gateway, c.skew_s) for c in faults.clock_skew] == [("gw-05", -90)]
    flaps = [(i.start_s, i.end_s) for i in fleet.gateway_outages("gw-07")]
    assert flaps == [(600, 620), (720, 740), (840, 860)]
    assert [(i.device, i.start_s) for i in fleet.gateway_outages("gw-02")] == [("gw-02", 100)]
    stuck = next(i for i in fleet.incidents if i.type == "device.fault")
    assert stuck.variant == "stuck" and fleet.device(stuck.device).kind in ("smoke", "wearable")
    assert scenario.run.speed == 30


@pytest.mark.parametrize(("faults", "named"), [
    ({"restarts": [{"gateway": "gw-77", "at_s": 1}]}, "faults.restarts[0]"),
    ({"clock_skew": [{"gateway": "gw-77", "skew_s": 1}]}, "faults.clock_skew[0]"),
    ({"link_flaps": [{"gateway": "gw-77", "start_s": 1, "down_s": 5}]}, "faults.link_flaps[0]"),
])
def test_faults_on_an_unknown_gateway_are_refused_by_name(faults: dict[str, object],
                                                          named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        Scenario.model_validate({"fleet": {"gateways": 2, "devices": 20},
                                 "faults": faults}).build()


def test_a_flapping_link_needs_a_period_longer_than_its_drops_and_incidents_within_the_run(
) -> None:
    with pytest.raises(ValidationError, match="every_s > down_s"):
        Scenario.model_validate({"faults": {"link_flaps": [
            {"gateway": "gw-01", "start_s": 1, "count": 2, "down_s": 30, "every_s": 20}]}})
    with pytest.raises(ValueError, match="after the run ends"):
        Scenario.model_validate({"run": {"duration_s": 100}, "incidents": [
            {"type": "wearable.sos", "gateway": "gw-01", "start_s": 150}]}).build()
