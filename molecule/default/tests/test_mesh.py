"""The mesh role: cloudrone-olsrd routes the (wired) mesh between the scenario's drones."""

from __future__ import annotations

import json
import subprocess

import pytest

from cloudrone.bench.lab import wait_until
from cloudrone.fleet import sim

MESH = {"drone-m1": "10.251.1.11", "drone-m2": "10.251.1.12"}
HNA = {"drone-m1": "10.251.11.0/24"}  # molecule.yml: drone-m1's mesh_hna_networks


@pytest.fixture
def drone(host) -> str:
    return host.backend.get_hostname()


def olsr(host, section: str) -> dict:
    return json.loads(host.check_output(f"curl -sf http://127.0.0.1:9090/{section}"))


def test_the_daemon_runs_from_the_packaged_unit(host):
    olsrd = host.service("cloudrone-olsrd")
    assert olsrd.is_running and olsrd.is_enabled
    link = host.file("/usr/local/bin/cloudrone-olsrd")
    assert link.is_symlink and link.linked_to == "/opt/cloudrone/venv/bin/cloudrone-olsrd"
    assert host.run("/usr/local/bin/cloudrone-olsrd --check /etc/cloudrone/olsrd.yml").rc == 0


def test_each_drone_has_the_other_as_symmetric_neighbour(host, drone):
    other = next(a for d, a in MESH.items() if d != drone)
    neighbours = wait_until(
        lambda: [n for n in olsr(host, "neighbors")["neighbors"] if n["symmetric"]], timeout=20
    )
    assert [n["ipAddress"] for n in neighbours] == [other]


def test_announced_networks_become_kernel_routes_and_the_daemon_agrees(host, drone):
    for origin, network in HNA.items():
        if origin == drone:
            continue
        gateway = MESH[origin]
        kernel = wait_until(
            lambda n=network: host.check_output(f"ip route show {n} proto 100"), timeout=20
        )
        assert f"via {gateway}" in kernel
        routes = olsr(host, "routes")["routes"]
        mine = [r for r in routes if f"{r['destination']}/{r['genmask']}" == network]
        assert mine and mine[0]["gateway"] == gateway


def test_the_mesh_interface_is_trusted_and_relays(host):
    mesh_iface = host.check_output("ip -o -4 addr show | awk '$4 ~ /^10[.]251[.]1[.]/ {print $2}'")
    trusted = host.check_output("nft list set inet cloudrone trusted_ifaces")
    assert f'"{mesh_iface}"' in trusted
    relay = host.check_output("nft list set inet cloudrone relay_ifaces")
    assert f'"{mesh_iface}"' in relay


CONTROLLER = "10.251.1.254"  # the test machine's address on the mesh link


def test_a_relay_passes_on_a_reply_whose_request_went_another_way(host, drone):
    """Round a loop of drones the two directions may take different paths: here
    the controller's ping goes straight to the other drone, whose reply is sent
    back through this one, which never saw the request."""
    other = next(d for d in MESH if d != drone)
    fleet = sim.molecule_fleet("molecule-default")
    code, out = fleet.sh(other, f"ip route replace {CONTROLLER}/32 via {MESH[drone]}")
    assert code == 0, out
    try:
        code, route = fleet.sh(other, f"ip -4 route get {CONTROLLER}")
        assert f"via {MESH[drone]}" in route, route
        ping = subprocess.run(["ping", "-c", "3", "-W", "2", MESH[other]],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        fleet.sh(other, f"ip route del {CONTROLLER}/32")
