"""`sensing-sim directory`: a simulated fleet's dispatch directory, as the core loads it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import orjson
import pytest

from sensing.dispatch.directory import load_directory, parse_directory
from sensing.dispatch.policy import routing_of
from sensing.wire.topics import is_valid_name
from sensing_sim.cli import main
from sensing_sim.directory_gen import (
    DirectoryShape,
    directory_doc,
    person_id,
    toml_lines,
    write_directory,
)
from sensing_sim.fleet import Fleet, FleetSpec
from sensing_sim.scenario import load_scenario

PILOT = Path(__file__).parents[2] / "simulators" / "scenarios" / "pilot.toml"


@pytest.fixture(scope="module")
def pilot() -> Fleet:
    return load_scenario(PILOT).build()


def test_the_pilots_directory_loads_and_routes_every_device(pilot: Fleet, tmp_path: Path) -> None:
    doc = directory_doc(pilot)
    path = tmp_path / "pilot-dir.toml"
    write_directory(path, doc, "the pilot")
    directory = load_directory(path)
    assert routing_of(directory).policies.rules  # the shipped policies fit it too

    communities = sorted(set(pilot.spec.areas))
    levels = {a.id: a.level for a in directory.source.areas}
    assert [a for a, level in levels.items() if level == "community"] == communities
    assert sum(1 for level in levels.values() if level == "street") == 3  # 7 per street
    for area in communities:
        line = directory.ancestors(area)
        assert [levels[a] for a in line] == ["community", "street", "district", "city"]
        for role in ("grid_worker", "duty_officer", "maintenance", "volunteer"):
            assert directory.responders(role, area), (role, area)
            assert directory.responders(role, area)[0].areas == (area,)
        for role in ("street_command", "district_command", "city_command"):
            assert len(directory.responders(role, area)) == 1
        assert 1 <= len(directory.volunteers(area)) <= 3
    # a resident per wristband and per smoke detector, 1-2 relatives each, none for covers
    for device in pilot.devices:
        resident = directory.resident_of(device.id)
        if device.kind == "manhole":
            assert resident is None
            continue
        assert resident is not None and resident.area == device.area
        assert 1 <= len(resident.relatives) <= 2
    alone = [r for r in directory.source.residents if len(r.devices) == 2]
    assert alone and all(r.devices[0].startswith("wearable-") and r.devices[1].startswith(
        "smoke-") and "lives alone" in r.name for r in alone)
    people = [r.id for r in directory.source.responders] + [
        rel.id for res in directory.source.residents for rel in res.relatives]
    assert len(set(people)) == len(people) and all(is_valid_name(p) for p in people)
    contacts = {c.channel for r in directory.source.responders for c in r.contacts}
    assert contacts == {"mqtt"}


def test_the_same_fleet_and_seed_give_the_same_file(pilot: Fleet, tmp_path: Path) -> None:
    again = load_scenario(PILOT).build()
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    write_directory(a, directory_doc(pilot))
    write_directory(b, directory_doc(again))
    assert a.read_bytes() == b.read_bytes()
    other = directory_doc(pilot, seed=pilot.spec.seed + 1)
    assert other["residents"] != directory_doc(pilot)["residents"]
    assert other["areas"] == directory_doc(pilot)["areas"]  # the tree is the fleet's


def test_the_toml_written_reads_back_as_the_document(pilot: Fleet) -> None:
    doc = directory_doc(Fleet(FleetSpec(n_gateways=3, n_devices=40, seed=5)))
    doc["residents"][0]["name"] = 'Mrs "Quote" \\ back\tslash, 老王'
    assert tomllib.loads("\n".join(toml_lines(doc))) == orjson.loads(orjson.dumps(doc))
    parse_directory(doc)


def test_ids_stay_topic_levels_whatever_the_areas_are_called() -> None:
    long = "c" * 64
    fleet = Fleet(FleetSpec(n_gateways=4, n_devices=40, areas=(long, "street-a", "city"),
                            seed=3))
    doc = directory_doc(fleet, DirectoryShape(communities_per_street=1, streets_per_district=2))
    directory = parse_directory(doc)
    ids = [a.id for a in directory.source.areas]
    assert len(set(ids)) == len(ids)
    assert {long, "street-a", "city"} <= {a.id for a in directory.source.areas
                                           if a.level == "community"}
    assert sum(1 for a in directory.source.areas if a.level == "district") == 2
    assert directory.responders("grid_worker", long)[0].id == person_id("grid", long)
    assert len(person_id("grid", long)) <= 64
    assert person_id("res", "dev.1:x") != person_id("res", "dev_1_x")
    assert is_valid_name(person_id("res", "dev.1:x"))


def test_a_reserved_area_cannot_be_a_directory_area() -> None:
    fleet = Fleet(FleetSpec(n_gateways=1, n_devices=2, areas=("cases",)))
    with pytest.raises(ValueError, match="reserved"):
        directory_doc(fleet)


def test_the_command_writes_a_file_the_core_loads(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dir.toml"
    code = main(["directory", "--gateways", "2", "--devices", "30", "--areas", "x1,x2",
                 "--out", str(out), "--json"])
    assert code == 0
    counts = orjson.loads(capsys.readouterr().out)
    directory = load_directory(out)
    assert counts["residents"] == len(directory.source.residents) > 0
    assert counts["areas.community"] == 2
    assert out.read_text().startswith("# The dispatch directory of the fleet options")
    assert main(["directory", "--scenario", str(PILOT), "--out", str(out)]) == 0
    assert len(load_directory(out).source.areas) == 25
    assert main(["directory", "--out", str(tmp_path / "no" / "d.toml")]) == 2
    assert main(["directory", "--out", str(out), "--timezone", "Mars/Base"]) == 2
