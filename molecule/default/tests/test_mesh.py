"""The mesh role: cloudrone-olsrd routes the (wired) mesh between the scenario's drones."""

from __future__ import annotations

import json

import pytest

from cloudrone.bench.lab import wait_until

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
    forward = host.check_output("nft list chain inet cloudrone roles_forward")
    assert f'iifname "{mesh_iface}" oifname "{mesh_iface}" accept' in forward
