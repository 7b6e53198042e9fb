"""One swarm on the mesh: managers, labels, images, spread and binpack."""

from __future__ import annotations

import collections
import urllib.request

import pytest

DRONES = ["drone-s1", "drone-s2", "drone-s3", "drone-s4"]
MESH = {d: f"10.247.1.{11 + i}" for i, d in enumerate(DRONES)}

MANAGER = "drone-s2"  # any manager answers for the cluster


def nodes(docker_json):
    return docker_json(MANAGER, "docker node inspect $(docker node ls -q) --format '{{json .}}'")


def running_tasks(docker_json, service: str) -> list[str]:
    """Hostnames running a task of ``service`` (a task per line)."""
    rows = docker_json(
        MANAGER,
        f"docker service ps {service} --filter desired-state=running --format '{{{{json .}}}}'",
    )
    return [r["Node"] for r in rows if r["CurrentState"].startswith("Running")]


def test_every_node_ready_on_its_mesh_address(docker_json):
    found = {n["Description"]["Hostname"]: n for n in nodes(docker_json)}
    assert sorted(found) == DRONES
    for name, node in found.items():
        assert node["Status"]["State"] == "ready", (name, node["Status"])
        assert node["Status"]["Addr"] == MESH[name], (name, node["Status"])


def test_three_managers_reachable_one_leader_and_a_worker(docker_json):
    found = {n["Description"]["Hostname"]: n for n in nodes(docker_json)}
    managers = {h: n["ManagerStatus"] for h, n in found.items() if n["Spec"]["Role"] == "manager"}
    assert sorted(managers) == ["drone-s1", "drone-s2", "drone-s3"]
    assert all(m["Reachability"] == "reachable" for m in managers.values()), managers
    assert sum(bool(m.get("Leader")) for m in managers.values()) == 1, managers
    assert all(m["Addr"] == f"{MESH[h]}:2377" for h, m in managers.items()), managers
    assert found["drone-s4"]["Spec"]["Role"] == "worker"


def test_labels_come_from_the_inventory(docker_json):
    labels = {n["Description"]["Hostname"]: n["Spec"]["Labels"] for n in nodes(docker_json)}
    assert labels["drone-s1"] == {"model": "pi2", "tier": "air", "zone": "north"}
    assert labels["drone-s4"] == {"model": "pi2", "tier": "ground", "zone": "south"}


def test_short_failure_timers_and_the_swarm_label(docker_json):
    (swarm,) = docker_json(MANAGER, "docker info --format '{{json .Swarm.Cluster}}'")
    spec = swarm["Spec"]
    assert spec["Labels"] == {"cloudrone.mission": "swarm-test"}
    assert spec["Dispatcher"]["HeartbeatPeriod"] == 2_000_000_000
    assert spec["Raft"]["ElectionTick"] == 5


@pytest.mark.parametrize("drone", DRONES)
def test_the_image_is_held_on_every_drone(on_drone, drone):
    code, out = on_drone(
        drone, "docker image ls --format '{{.Repository}}:{{.Tag}}' cloudrone/tinyweb"
    )
    assert code == 0 and out.strip().startswith("cloudrone/tinyweb:"), out
    # and nothing was left behind on the drone's storage
    assert on_drone(drone, "ls /var/lib/cloudrone/images 2>/dev/null | wc -l")[1].strip() == "0"


def test_spread_service_runs_on_three_nodes_and_answers_on_each(docker_json):
    hosts = running_tasks(docker_json, "swarm-test_web")
    assert len(hosts) == 3 and len(set(hosts)) == 3, hosts
    # the tier preference: both tiers hold a replica
    assert "drone-s4" in hosts, hosts
    for host in hosts:
        with urllib.request.urlopen(f"http://{MESH[host]}:8080/", timeout=5) as reply:
            assert reply.status == 200
            assert b"Cloudrone" in reply.read()


def test_spread_preference_puts_one_pair_replica_in_each_zone(docker_json):
    hosts = running_tasks(docker_json, "swarm-test_pair")
    assert len(hosts) == 2 and "drone-s1" in hosts, hosts


def test_binpack_fills_one_drone_before_the_next(docker_json):
    # three replicas of 300 MiB; a Pi 2 has 1024 - 192 MiB for services: two fit
    per_node = collections.Counter()
    for service in ("swarm-test_packed-drone-s1", "swarm-test_packed-drone-s2"):
        per_node.update(running_tasks(docker_json, service))
    assert per_node == {"drone-s1": 2, "drone-s2": 1}, per_node
    rows = docker_json(MANAGER, "docker service ls --format '{{json .}}'")
    assert not any("packed-drone-s3" in r["Name"] or "packed-drone-s4" in r["Name"] for r in rows)
