"""Radio range in the simulated fleet: one mesh segment, and a filter for who hears whom."""

from __future__ import annotations

import re
import subprocess

import docker
import pytest

from cloudrone.fleet import sim

pytestmark = pytest.mark.integration

# a line, as drones strung out from the base camp: a hears b, b hears c
SPEC = {
    "fleet": "itest-radio",
    "links": [
        {"name": "mgmt", "subnet": "10.248.0.0/24"},
        {"name": "mesh", "subnet": "10.248.1.0/24"},
    ],
    "drones": [
        {"name": n, "links": {"mgmt": f"10.248.0.{i}", "mesh": f"10.248.1.{i}"}}
        for i, n in ((11, "a"), (12, "b"), (13, "c"))
    ],
    "radio": {"link": "mesh", "range": [{"between": ["a", "b"]}, {"between": ["b", "c"]}]},
}
MESH = {"a": "10.248.1.11", "b": "10.248.1.12", "c": "10.248.1.13"}


@pytest.fixture(scope="module")
def fleet(drone_image):
    spec = sim.FleetSpec.from_dict(SPEC)
    sim.down(spec.fleet, log=lambda _m: None)
    f = sim.SimFleet(spec, log=lambda _m: None)
    f.up(drone_image)
    yield f
    sim.down(spec.fleet, log=lambda _m: None)


def ping(src: str, dst: str, count: int = 3, interval: float = 0.2) -> float:
    """Percent of pings from src to dst (over the mesh) that got no answer."""
    c = docker.from_env().containers.get(f"cloudrone-itest-radio-{src}")
    # a fresh neighbour lookup each time, as a radio would have to make
    c.exec_run(["ip", "neigh", "flush", "dev", "all"])
    _, out = c.exec_run(
        ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1", MESH[dst]]
    )
    match = re.search(r"(\d+(?:\.\d+)?)% packet loss", out.decode())
    assert match, out.decode()
    return float(match.group(1))


def test_one_segment_one_address_per_drone(fleet):
    for name, address in MESH.items():
        c = docker.from_env().containers.get(f"cloudrone-itest-radio-{name}")
        _, out = c.exec_run(["ip", "-o", "-4", "addr", "show"])
        assert out.decode().count("inet 10.248.1.") == 1
        assert f"{address}/24" in out.decode()


def test_drones_in_range_hear_each_other_and_others_do_not(fleet):
    assert ping("a", "b") == 0
    assert ping("b", "c") == 0
    assert ping("a", "c") == 100
    assert ping("c", "a") == 100


def test_a_link_is_cut_and_restored_at_run_time(fleet):
    fleet.set_range("a", "b", None)
    assert ping("a", "b") == 100
    fleet.set_range("a", "b", 0)
    assert ping("a", "b") == 0
    # and a new link comes into range
    fleet.set_range("a", "c", 0)
    assert ping("a", "c") == 0
    fleet.set_range("a", "c", None)
    assert ping("a", "c") == 100


def test_a_lossy_link_loses_its_share(fleet):
    fleet.set_range("a", "b", 40)
    try:
        # 40% each way: a ping and its answer both get through 36% of the time
        lost = ping("a", "b", count=200, interval=0.01)
    finally:
        fleet.set_range("a", "b", 0)
    assert 45 <= lost <= 80, lost


def test_a_range_that_cannot_be_applied_changes_nothing(fleet):
    """A drone that is down cannot have its range set: the fleet's range stays as
    it was, and a later change does not carry the failed one along."""
    c = docker.from_env().containers.get("cloudrone-itest-radio-c")
    c.stop(timeout=1)
    try:
        with pytest.raises(sim.FleetError, match="drone c: its container is exited"):
            fleet.set_range("a", "b", None)
        assert frozenset(("a", "b")) in fleet.spec.radio.in_range
    finally:
        c.start()
    # its host-side interface is new after the restart
    fleet.set_range("a", "c", None)
    assert ping("a", "b") == 0
    assert ping("b", "c") == 0
    assert ping("a", "c") == 100


def test_the_controller_still_reaches_every_drone(fleet):
    # the base camp sits on the segment itself: range is between drones only
    for address in MESH.values():
        assert subprocess.run(["ping", "-c", "1", "-W", "1", address], capture_output=True,
                              check=False).returncode == 0  # fmt: skip


def test_down_takes_the_range_away(drone_image):
    links = [
        {"name": "mgmt", "subnet": "10.233.0.0/24"},
        {"name": "mesh", "subnet": "10.233.1.0/24"},
    ]
    radio = {"link": "mesh", "range": []}
    spec = sim.FleetSpec.from_dict({"fleet": "itest-radio2", "links": links, "drones": [],
                                    "radio": radio})  # fmt: skip
    sim.SimFleet(spec, log=lambda _m: None).up(drone_image)
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    assert "cloudrone_radio_itest_radio2" in tables.stdout
    sim.down("itest-radio2", log=lambda _m: None)
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    assert "cloudrone_radio_itest_radio2" not in tables.stdout


def test_a_radio_naming_an_unknown_drone_is_refused():
    bad = {**SPEC, "radio": {"link": "mesh", "range": [{"between": ["a", "z"]}]}}
    with pytest.raises(sim.FleetError, match=r"radio.range\[0\].between: no drone named z"):
        sim.FleetSpec.from_dict(bad)
    bad = {**SPEC, "radio": {"link": "mesh", "range": [{"between": ["a", "b"], "loss": 100}]}}
    with pytest.raises(sim.FleetError, match=r"loss: 100: give a whole percent"):
        sim.FleetSpec.from_dict(bad)
