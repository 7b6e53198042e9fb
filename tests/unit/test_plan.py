"""From mission to inventory and fleet: the demo's rendering is the checked-in one."""

from __future__ import annotations

import ipaddress
import shutil

import yaml

from cloudrone.mission.model import load
from cloudrone.mission.plan import fleet_spec, render_inventory
from tests.conftest import ROOT


def test_rendered_demo_inventory_is_inventory_sim(monkeypatch):
    # the demo's built image is kept under the user's state folder (~ in the inventory)
    monkeypatch.delenv("CLOUDRONE_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    rendered = yaml.safe_load(render_inventory(load(ROOT / "missions" / "demo")))
    checked_in = yaml.safe_load((ROOT / "inventory" / "sim.yml").read_text())
    assert rendered == checked_in


def test_inventory_reaches_drones_over_ssh_through_the_cache():
    inv = yaml.safe_load(render_inventory(load(ROOT / "missions" / "demo")))
    hosts = inv["drones"]["hosts"]
    assert hosts["drone-2"]["ansible_host"] == "10.250.0.12"
    assert hosts["drone-2"]["cloudrone_mesh_address"] == "10.42.0.12"
    v = inv["drones"]["vars"]
    assert v["ansible_user"] == v["base_admin_user"] == "cloudrone"
    assert v["base_apt_proxy"] == "http://10.250.0.254:3142"
    assert v["cloudrone_simulated"] is True
    assert "cloudrone_sim_ed25519.pub" in v["base_admin_authorized_keys"][0]


def test_ssh_target_renders_no_simulation_settings(tmp_path):
    text = (
        (ROOT / "missions" / "demo" / "mission.yml")
        .read_text()
        .replace("target: sim", "target: ssh")
    )
    # real radios hear whom they hear: no simulated range
    text = text[: text.index("  range:")] + text[text.index("# The WiFi phones") :]
    shutil.copytree(ROOT / "missions" / "demo" / "site", tmp_path / "site")
    (tmp_path / "mission.yml").write_text(text)
    v = yaml.safe_load(render_inventory(load(tmp_path)))["drones"]["vars"]
    assert "cloudrone_simulated" not in v
    assert "base_apt_proxy" not in v
    assert "StrictHostKeyChecking" not in v.get("ansible_ssh_common_args", "")


def test_fleet_spec_has_management_mesh_and_an_access_point_each_and_pi_sized_drones():
    spec = fleet_spec(load(ROOT / "missions" / "demo"))
    assert spec.fleet == "demo"
    assert {link.name: str(link.subnet) for link in spec.links} == {
        "mgmt": "10.250.0.0/24",
        "mesh": "10.42.0.0/24",
        "ground-drone-1": "10.43.1.0/24",
        "ground-drone-2": "10.43.2.0/24",
        "ground-drone-3": "10.43.3.0/24",
    }
    d1 = spec.drones[0]
    assert d1.addresses == {
        "mgmt": ipaddress.IPv4Address("10.250.0.11"),
        "mesh": ipaddress.IPv4Address("10.42.0.11"),
        "ground-drone-1": ipaddress.IPv4Address("10.43.1.1"),
    }
    assert (d1.memory, d1.cpus) == ("1g", 1.0)
