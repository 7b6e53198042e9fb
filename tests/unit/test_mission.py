"""Mission bundles: the demo is valid, and every mistake is named with file, line and fix."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from cloudrone.mission.model import MissionError, load
from tests.conftest import ROOT

# A bundle of the first format (no version): it still loads, and the checks of
# drones and networks are shown on it.
DEMO = """\
---
# The demo mission: three simulated drones on this machine, each a Raspberry
# Pi 2 as in the Cloudrone paper. `cloudrone_cli mission up` runs it when no
# bundle is named.
mission: demo
description: Three simulated Pi 2 drones over a relief camp
target: sim
admin_user: cloudrone
networks:
  # The controller's link to the drones (the base camp's WiFi or Ethernet).
  management: 10.250.0.0/24
  # The drones' ad-hoc radio mesh.
  mesh: 10.42.0.0/24
  # Phones on the ground: each drone's access point takes its own /24 of
  # this (drone N: 10.43.N.0/24), unless the drone gives an ap_subnet.
  ground: 10.43.0.0/16
# Each drone may also give system_id, its flight bridge's MAVLink system id
# (1-255, unique in the fleet); by default its position in this list.
drones:
  - name: drone-1
    management_address: 10.250.0.11
    mesh_address: 10.42.0.11
    model: pi2
  - name: drone-2
    management_address: 10.250.0.12
    mesh_address: 10.42.0.12
    model: pi2
  - name: drone-3
    management_address: 10.250.0.13
    mesh_address: 10.42.0.13
    model: pi2
"""


def bundle_with(tmp_path: Path, text: str) -> Path:
    (tmp_path / "mission.yml").write_text(text)
    return tmp_path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(MissionError) as caught:
        load(bundle_with(tmp_path, text))
    return caught.value.problems


def line_of(text: str, needle: str, nth: int = 1) -> int:
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            count += 1
            if count == nth:
                return number
    raise AssertionError(needle)


def test_demo_mission_is_valid():
    mission = load(ROOT / "missions" / "demo")
    assert mission.name == "demo"
    assert mission.target == "sim"
    assert [d.name for d in mission.drones] == ["drone-1", "drone-2", "drone-3"]
    assert mission.mesh == ipaddress.IPv4Network("10.42.0.0/24")
    assert mission.controller_address == ipaddress.IPv4Address("10.250.0.254")
    assert all(d.resources == {"memory": "1g", "cpus": 1.0} for d in mission.drones)


def test_unknown_field_named_with_its_line_and_the_known_ones(tmp_path):
    text = DEMO.replace("admin_user: cloudrone", "admin_usr: cloudrone")
    (problem,) = problems(tmp_path, text)
    assert problem.startswith(f"{tmp_path}/mission.yml:{line_of(text, 'admin_usr')} admin_usr:")
    assert "unknown field" in problem and "admin_user" in problem


def test_duplicate_address_names_the_owner_and_the_range(tmp_path):
    text = DEMO.replace("mesh_address: 10.42.0.13", "mesh_address: 10.42.0.12")
    (problem,) = problems(tmp_path, text)
    line = line_of(text, "mesh_address: 10.42.0.12", nth=2)
    assert problem == (
        f"{tmp_path}/mission.yml:{line} drones[2].mesh_address: 10.42.0.12 is already used "
        "by drone-2; pick another address in 10.42.0.0/24"
    )


def test_duplicate_name(tmp_path):
    text = DEMO.replace("name: drone-3", "name: drone-1")
    (problem,) = problems(tmp_path, text)
    assert "drones[2].name: drone-1 is already the name of drones[0]" in problem


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("mesh_address: 10.42.0.11", "mesh_address: 10.43.0.11", "not a usable host address"),
        ("mesh_address: 10.42.0.11", "mesh_address: 10.42.0.255", "not a usable host address"),
        ("management_address: 10.250.0.11", "management_address: 10.250.0.254", "controller's"),
        ("mesh_address: 10.42.0.11", "mesh_address: ten", "is not an IPv4 address"),
        ("mesh: 10.42.0.0/24", "mesh: 10.250.0.0/25", "overlaps the management network"),
        ("mesh: 10.42.0.0/24", "mesh: 10.42.0.1/24", "has host bits set"),
        ("model: pi2", "model: pi9", "use one of pi2, pi3, pi4, pi5"),
        ("target: sim", "target: cloud", "use sim (containers on this machine) or ssh"),
        ("- name: drone-1", "- name: Drone_1", "lower-case letters, digits and dashes"),
    ],
)
def test_bad_values_are_explained(tmp_path, old, new, expected):
    text = DEMO.replace(old, new, 1)
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found
    assert all(p.startswith(f"{tmp_path}/mission.yml:") for p in found)


def test_missing_required_field(tmp_path):
    text = DEMO.replace("target: sim\n", "")
    (problem,) = problems(tmp_path, text)
    assert "'target' is a required property" in problem


def test_every_problem_at_once(tmp_path):
    text = DEMO.replace("mesh_address: 10.42.0.13", "mesh_address: 10.42.0.12").replace(
        "name: drone-3", "name: drone-1"
    )
    assert len(problems(tmp_path, text)) == 2


def test_not_yaml(tmp_path):
    (problem,) = problems(tmp_path, "mission: demo\n  drones: [\n")
    assert problem.startswith(f"{tmp_path}/mission.yml:")
    assert "not valid YAML" in problem


def test_no_mission_file(tmp_path):
    (problem,) = problems_missing(tmp_path)
    assert "no such file" in problem and "missions/demo" in problem


def problems_missing(tmp_path: Path) -> list[str]:
    with pytest.raises(MissionError) as caught:
        load(tmp_path)
    return caught.value.problems


def test_ssh_target_accepts_host_names(tmp_path):
    text = DEMO.replace("target: sim", "target: ssh").replace(
        "management_address: 10.250.0.11", "management_address: drone-1.local"
    )
    mission = load(bundle_with(tmp_path, text))
    assert mission.drones[0].management_address == "drone-1.local"
    assert str(mission.ssh_key).endswith(".ssh/id_ed25519")


def test_system_ids_default_to_the_position_in_the_list():
    mission = load(ROOT / "missions" / "demo")
    assert [d.system_id for d in mission.drones] == [1, 2, 3]


def test_system_id_may_be_given(tmp_path):
    text = DEMO.replace("name: drone-2\n", "name: drone-2\n    system_id: 42\n")
    mission = load(bundle_with(tmp_path, text))
    assert [d.system_id for d in mission.drones] == [1, 42, 3]


def test_duplicate_system_id_is_named_with_its_line_and_a_free_id(tmp_path):
    text = DEMO.replace("name: drone-3\n", "name: drone-3\n    system_id: 2\n")
    (problem,) = problems(tmp_path, text)
    assert problem == (
        f"{tmp_path}/mission.yml:{line_of(text, 'system_id: 2')} drones[2].system_id: "
        "system id 2 is already drones[1]'s (its position in the list); "
        "give every drone its own system_id, e.g. 3"
    )


def test_a_position_taken_by_an_explicit_system_id_is_reported(tmp_path):
    text = DEMO.replace("name: drone-1\n", "name: drone-1\n    system_id: 2\n")
    (problem,) = problems(tmp_path, text)
    assert problem.startswith(
        f"{tmp_path}/mission.yml:{line_of(text, '- name: drone-2')} drones[1].system_id: "
    )
    assert "already drones[0]'s (its system_id) (drones[1] has it by its position)" in problem
    assert problem.endswith("; give every drone its own system_id, e.g. 1")


@pytest.mark.parametrize("value", ["0", "256", "one"])
def test_system_id_out_of_range(tmp_path, value):
    text = DEMO.replace("name: drone-2\n", f"name: drone-2\n    system_id: {value}\n")
    (problem,) = problems(tmp_path, text)
    assert problem.startswith(
        f"{tmp_path}/mission.yml:{line_of(text, 'system_id:')} drones[1].system_id: "
    )
    assert problem.endswith("; give each drone its own MAVLink system id from 1 to 255")


def test_each_drone_gets_its_own_phone_network_from_networks_ground():
    mission = load(ROOT / "missions" / "demo")
    assert [str(d.ap_subnet) for d in mission.drones] == [
        "10.43.1.0/24",
        "10.43.2.0/24",
        "10.43.3.0/24",
    ]
    assert str(mission.drones[0].ap_address) == "10.43.1.1"


def test_an_ap_subnet_may_be_given(tmp_path):
    text = DEMO.replace(
        "    mesh_address: 10.42.0.12\n",
        "    mesh_address: 10.42.0.12\n    ap_subnet: 10.44.7.0/24\n",
    )
    mission = load(bundle_with(tmp_path, text))
    assert str(mission.drones[1].ap_subnet) == "10.44.7.0/24"


@pytest.mark.parametrize(
    ("subnet", "expected"),
    [
        (
            "10.42.0.0/25",
            "overlaps the mesh network 10.42.0.0/24; phones need a network of their own",
        ),
        ("10.250.0.128/25", "overlaps the management network 10.250.0.0/24"),
        ("10.43.1.0/24", "overlaps drone-1's 10.43.1.0/24; give each drone its own"),
        ("10.43.2.1/24", "has host bits set; give the network address, like 10.43.2.0/24"),
        ("10.43.2.0/30", "too small for phones"),
    ],
)
def test_a_phone_network_that_cannot_work_is_named_with_its_line(tmp_path, subnet, expected):
    text = DEMO.replace(
        "    mesh_address: 10.42.0.12\n", f"    mesh_address: 10.42.0.12\n    ap_subnet: {subnet}\n"
    )
    found = problems(tmp_path, text)
    line = line_of(text, "    ap_subnet:")
    assert any(f"mission.yml:{line} drones[1].ap_subnet" in p and expected in p for p in found), (
        found
    )


def test_a_ground_network_too_small_for_the_drones_is_refused(tmp_path):
    text = DEMO.replace("  ground: 10.43.0.0/16", "  ground: 10.43.0.0/25")
    found = problems(tmp_path, text)
    line = line_of(text, "  ground:")
    assert any(f":{line} networks.ground: 10.43.0.0/25 holds no /24" in p for p in found), found
