"""A drone found in another swarm: the play stops naming it and the variable, and
changes nothing; allowed to, the drone leaves that swarm and rejoins this one, and
its old entry is gone from the node list. Runs last: it takes drone-s4 out and back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DRONE = "drone-s4"
MESH = "10.247.1.14"
MANAGER = "drone-s2"


def provision_swarm(*extra: str) -> subprocess.CompletedProcess:
    """provision.yml, the swarm role alone (and the validate play), on this scenario."""
    project = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ephemeral / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(project / "roles"),
        "ANSIBLE_FILTER_PLUGINS": str(project / "plugins" / "filter"),
        "ANSIBLE_ACTION_PLUGINS": str(project / "plugins" / "action"),
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(ephemeral / "facts"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    playbook = Path(sys.executable).with_name("ansible-playbook")
    return subprocess.run(
        [str(playbook), "-i", str(ephemeral / "inventory"), "--tags", "swarm",
         str(project / "provision.yml"), *extra],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


def swarm_of(on_drone, drone: str) -> tuple[str, str]:
    """(cluster ID, node ID) as the drone's engine says; a worker sees no cluster ID."""
    code, out = on_drone(drone, "docker info --format '{{json .Swarm}}'")
    assert code == 0, out
    swarm = json.loads(out)
    return (swarm.get("Cluster") or {}).get("ID", ""), swarm.get("NodeID", "")


def node_rows(on_drone) -> list[list[str]]:
    code, out = on_drone(MANAGER, "docker node ls --format '{{.Hostname}} {{.ID}} {{.Status}}'")
    assert code == 0, out
    return [line.split() for line in out.splitlines()]


@pytest.fixture(scope="module")
def foreign(on_drone):
    """drone-s4 leaves this swarm and makes one of its own."""
    ours, old_node = swarm_of(on_drone, MANAGER)[0], swarm_of(on_drone, DRONE)[1]
    code, out = on_drone(
        DRONE,
        f"docker swarm leave --force && docker swarm init --advertise-addr {MESH} "
        f"--listen-addr {MESH}:2377 >/dev/null",
    )
    assert code == 0, out
    theirs = swarm_of(on_drone, DRONE)[0]
    assert theirs and theirs != ours
    return {"ours": ours, "theirs": theirs, "old_node": old_node}


def test_a_drone_in_another_swarm_stops_the_play_and_nothing_changes(on_drone, foreign):
    result = provision_swarm()
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, out[-3000:]
    assert f"{DRONE} belongs to another swarm" in out, out[-3000:]
    assert f"Set swarm_rejoin_foreign: true for {DRONE}" in out
    # it is still where it was, and the fleet's swarm still lists its old entry
    assert swarm_of(on_drone, DRONE)[0] == foreign["theirs"]
    assert [DRONE, foreign["old_node"], "Down"] in node_rows(on_drone)


def test_allowed_to_the_drone_rejoins_and_its_old_entry_goes(on_drone, foreign):
    result = provision_swarm("-e", "swarm_rejoin_foreign=true")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    # a worker again: this swarm's managers list it under its new ID
    _cluster, node = swarm_of(on_drone, DRONE)
    assert node and node != foreign["old_node"]
    rows = node_rows(on_drone)
    assert [r for r in rows if r[0] == DRONE] == [[DRONE, node, "Ready"]], rows
    assert all(status == "Ready" for _host, _id, status in rows), rows
    # its labels are back: the spread services can count on them
    code, out = on_drone(MANAGER, f"docker node inspect {node} --format '{{{{json .Spec}}}}'")
    assert code == 0, out
    assert json.loads(out)["Labels"]["tier"] == "ground", out
