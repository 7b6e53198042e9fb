"""The tuned engine on every drone: daemon.json, limits, slice, firewall."""

from __future__ import annotations

import json

import pytest

DRONES = ["drone-s1", "drone-s2", "drone-s3", "drone-s4"]
MESH = {d: f"10.247.1.{11 + i}" for i, d in enumerate(DRONES)}

pytestmark = pytest.mark.parametrize("drone", DRONES)


def test_dense_profile_is_live(on_drone, drone):
    code, out = on_drone(drone, "cat /etc/docker/daemon.json")
    assert code == 0, out
    config = json.loads(out)
    assert config["log-driver"] == "none"
    assert config["userland-proxy"] is False and config["ipv6"] is False
    assert config["live-restore"] is False and config["iptables"] is True
    code, out = on_drone(
        drone,
        "docker info --format '{{.CgroupDriver}} {{.LoggingDriver}} {{.Swarm.LocalNodeState}}'",
    )
    assert out.split() == ["systemd", "none", "active"], out


def test_swarm_tasks_start_from_the_image_on_board(on_drone, drone):
    # the engine never tries a pull before a task starts: nothing to ask in flight
    code, out = on_drone(drone, "tr '\\0' '\\n' < /proc/$(pidof dockerd)/environ")
    assert code == 0, out
    assert "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1" in out.splitlines()


def test_limits_are_lifted_on_containerd_and_docker(on_drone, drone):
    for unit in ("containerd", "docker"):
        _code, out = on_drone(
            drone,
            f"systemctl show {unit} -p LimitNPROC -p LimitSIGPENDING -p TasksMax -p LimitNOFILE",
        )
        props = dict(line.split("=", 1) for line in out.split())
        assert props["LimitNPROC"] == "infinity", (unit, props)
        assert props["LimitSIGPENDING"] == "infinity", (unit, props)
        assert props["TasksMax"] == "infinity", (unit, props)
        assert props["LimitNOFILE"] == "1048576", (unit, props)


def test_service_containers_run_in_the_slice_off_the_flight_core(on_drone, drone):
    # every drone runs some task of the mission's services
    code, ids = on_drone(drone, "docker ps -q")
    assert code == 0 and ids.split(), ids
    nproc = int(on_drone(drone, "nproc --all")[1])
    for cid in ids.split():
        code, pid = on_drone(drone, f"docker inspect -f '{{{{.State.Pid}}}}' {cid}")
        code, cgroup = on_drone(drone, f"cat /proc/{pid.strip()}/cgroup")
        assert "cloudrone-services.slice" in cgroup, cgroup
        code, status = on_drone(drone, f"grep Cpus_allowed_list /proc/{pid.strip()}/status")
        allowed = status.split()[-1]
        if nproc > 1:
            # the last core is the flight bridge's
            assert str(nproc - 1) not in allowed.replace("-", ",").split(","), status


def test_a_bad_daemon_json_is_refused_before_it_goes_live(on_drone, drone):
    on_drone(drone, """printf '{"log-driver": "none", "no-such-option": 1}' > /tmp/bad.json""")
    code, help_text = on_drone(drone, "dockerd --help")
    if "--validate" in help_text:  # Debian 13's engine checks it itself
        code, out = on_drone(drone, "dockerd --validate --config-file /tmp/bad.json")
    else:  # Debian 12's 20.10 has no --validate: the role's checker
        code, out = on_drone(
            drone, "/usr/local/libexec/cloudrone-docker-config-check /tmp/bad.json"
        )
        assert "no-such-option" in out, out
    assert code != 0, out
    code, out = on_drone(
        drone, "/usr/local/libexec/cloudrone-docker-config-check /etc/docker/daemon.json"
    )
    assert code == 0, out


def test_firewall_forwards_to_containers_and_engine_leaves_routing_alone(on_drone, drone):
    code, out = on_drone(drone, "nft list chain inet cloudrone roles_forward")
    assert 'oifname "docker*" accept' in out, out
    code, out = on_drone(drone, "iptables -S DOCKER-USER")
    assert code == 0, out
    assert out.splitlines()[1:4] == [
        "-A DOCKER-USER -o docker+ -j RETURN",
        "-A DOCKER-USER -o br-+ -j RETURN",
        "-A DOCKER-USER -j ACCEPT",
    ], out
