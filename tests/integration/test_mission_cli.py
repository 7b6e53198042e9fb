"""`cloudrone_cli mission` end to end: real fleet, provision.yml over SSH, faults, bad input."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import docker
import pytest

from cloudrone.fleet import sim
from tests.conftest import tool

pytestmark = pytest.mark.integration

MISSION = """\
---
mission: itest-cli
description: one simulated drone for the CLI tests
target: sim
admin_user: pilot
ssh_key: {key}
networks:
  management: 10.252.0.0/24
  mesh: 10.252.1.0/24
drones:
  - name: solo
    management_address: 10.252.0.21
    mesh_address: 10.252.1.21
    model: pi2
"""


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("cloudrone_cli"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )


def changed_count(output: str) -> int:
    match = re.search(r"Fleet ready: (\d+) task\(s\) changed", output)
    assert match, output
    return int(match.group(1))


def ssh(key: Path, command: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            *options,
            "pilot@10.252.0.21",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, drone_image):
    folder = tmp_path_factory.mktemp("bundle")
    key = folder / "key"
    (folder / "mission.yml").write_text(MISSION.format(key=key))
    sim.down("itest-cli", log=lambda _m: None)
    first = cli("mission", "up", str(folder))
    assert first.returncode == 0, first.stdout + first.stderr
    yield folder, key, first
    sim.down("itest-cli", log=lambda _m: None)


def test_up_provisions_and_says_how_to_reach_the_drone(bundle):
    folder, key, first = bundle
    assert changed_count(first.stdout) > 0
    assert "ssh -i" in first.stdout and "pilot@10.252.0.21" in first.stdout
    assert key.exists() and (folder / ".cloudrone" / "inventory.yml").exists()


def test_operator_logs_in_with_the_key_and_becomes_root(bundle):
    _, key, _ = bundle
    result = ssh(key, "hostname; sudo -n id -u")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["solo", "0"]


def test_password_login_is_refused(bundle):
    _, key, _ = bundle
    result = ssh(
        key, "true", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"
    )
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_second_run_changes_nothing(bundle):
    folder, _, _ = bundle
    again = cli("mission", "up", str(folder))
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed_count(again.stdout) == 0


def test_check_mode_on_a_converged_drone_finds_nothing_to_change(bundle):
    folder, _, _ = bundle
    dry = cli("mission", "up", "--check", str(folder))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Fleet ready: 0 task(s) would change" in dry.stdout


def test_packages_came_through_the_base_camp_cache(bundle):
    # the drone has no Internet: chrony reached it through the controller's apt-cacher-ng
    cached = list(Path("/var/cache/apt-cacher-ng").rglob("chrony_*.deb"))
    assert cached, "apt-cacher-ng holds no chrony package"


def test_status_shows_the_drone_answering(bundle):
    folder, _, _ = bundle
    result = cli("mission", "status", str(folder))
    assert result.returncode == 0, result.stdout
    assert re.search(r"solo\s.*running\s.*10\.252\.0\.21\s.*answers", result.stdout)
    # the flight bridge on the drone, read from its own status file
    assert re.search(r"disarmed, (no )?FIFO, p99 [\d.]+ ms, \d+ missed\s.*12\.4 V", result.stdout)


def test_a_lost_drone_is_reported_and_recovered_with_nothing_lost(bundle):
    folder, key, _ = bundle
    marker = ssh(key, "sudo -n sh -c 'echo payload > /var/lib/cloudrone-itest-marker'")
    assert marker.returncode == 0, marker.stderr
    docker.from_env().containers.get("cloudrone-itest-cli-solo").kill()
    lost = cli("mission", "status", str(folder))
    assert lost.returncode == 1
    assert re.search(r"solo\s.*exited\s.*no answer", lost.stdout), lost.stdout
    back = cli("mission", "up", str(folder))
    assert back.returncode == 0, back.stdout + back.stderr
    assert changed_count(back.stdout) == 0  # its configuration survived the loss
    assert ssh(key, "cat /var/lib/cloudrone-itest-marker").stdout.strip() == "payload"


def test_bad_bundle_is_explained_and_changes_nothing(tmp_path, docker_engine):
    text = (
        MISSION.format(key=tmp_path / "k")
        .replace("itest-cli", "itest-bad")
        .replace("mesh_address: 10.252.1.21", "mesh_address: 10.252.9.21")
    )
    (tmp_path / "mission.yml").write_text(text)
    result = cli("mission", "up", str(tmp_path))
    assert result.returncode == 2
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "10.252.9.21" in ln)
    assert (
        f"{tmp_path}/mission.yml:{line} drones[0].mesh_address: 10.252.9.21 is not a usable host "
        "address in 10.252.1.0/24" in " ".join(result.stderr.split())
    )
    client = docker.from_env()
    label = {"label": f"{sim.LABEL_FLEET}=itest-bad"}
    assert client.containers.list(all=True, filters=label) == []
    assert client.networks.list(filters=label) == []
    assert not (tmp_path / "k").exists()
    assert not (tmp_path / ".cloudrone").exists()


def test_check_mode_creates_no_drones(tmp_path, docker_engine):
    (tmp_path / "mission.yml").write_text(
        MISSION.format(key=tmp_path / "k")
        .replace("itest-cli", "itest-dry")
        .replace("10.252.", "10.249.")
    )
    result = cli("mission", "up", "--check", str(tmp_path))
    assert result.returncode == 2
    assert "solo would be created or started" in " ".join(result.stderr.split())
    label = {"label": f"{sim.LABEL_FLEET}=itest-dry"}
    assert docker.from_env().containers.list(all=True, filters=label) == []
    assert docker.from_env().networks.list(filters=label) == []


def test_down_refuses_real_drones(tmp_path, docker_engine):
    (tmp_path / "mission.yml").write_text(
        MISSION.format(key=tmp_path / "k").replace("target: sim", "target: ssh")
    )
    result = cli("mission", "down", str(tmp_path))
    assert result.returncode == 2
    assert "only removes simulated fleets" in " ".join(result.stderr.split())
