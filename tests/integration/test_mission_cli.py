"""`cloudrone_cli mission` end to end: real fleet, provision.yml over SSH, faults, bad input."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import docker
import pytest

from cloudrone.fleet import sim
from tests.conftest import BIN, ROOT, tool

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
  # clear of the demo's phones (10.43.0.0/16), which may be up beside it
  ground: 10.252.64.0/18
drones:
  - name: solo
    management_address: 10.252.0.21
    mesh_address: 10.252.1.21
    model: pi2
"""


# The CLI's environment. A secret the controller happens to hold must not
# end up in anything a run writes down.
ENV = {"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
SECRET = "vault-pass-5e1f0c2a9d"
STARTED: dict[str, float] = {}


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("cloudrone_cli"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=ENV,
    )


@pytest.fixture(scope="module", autouse=True)
def state_home(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    ENV["CLOUDRONE_STATE_DIR"] = str(state)
    ENV["CLOUDRONE_WPA_PASSPHRASE"] = SECRET
    ENV["ANSIBLE_VAULT_PASSWORD"] = SECRET
    yield state
    for name in ("CLOUDRONE_STATE_DIR", "CLOUDRONE_WPA_PASSPHRASE", "ANSIBLE_VAULT_PASSWORD"):
        ENV.pop(name)


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
    STARTED["up"] = time.time()
    first = cli("mission", "up", str(folder))
    assert first.returncode == 0, first.stdout + first.stderr
    yield folder, key, first
    sim.down("itest-cli", log=lambda _m: None)


def test_up_provisions_and_says_how_to_reach_the_drone(bundle):
    _, key, first = bundle
    assert changed_count(first.stdout) > 0
    assert "ssh -i" in first.stdout and "pilot@10.252.0.21" in first.stdout
    assert key.exists()


def test_run_state_stays_out_of_the_bundle_and_holds_no_secret(bundle, state_home):
    folder, _, _ = bundle
    # the bundle holds what the operator put there, and nothing a run wrote
    assert sorted(p.name for p in folder.iterdir()) == ["key", "key.pub", "mission.yml"]
    state = state_home / "missions" / "itest-cli"
    assert (state / "inventory.yml").is_file()
    records = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.name == "command" for p in records)  # ansible-runner's record of the run
    for path in records:
        assert SECRET.encode() not in path.read_bytes(), f"{path} holds the controller's secret"


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


def test_a_key_that_locks_the_operator_out_is_rolled_back(bundle, state_home, tmp_path):
    folder, key, _ = bundle
    wrong = tmp_path / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    wrong_pub = (tmp_path / "wrong.pub").read_text().strip()
    state = state_home / "missions" / "itest-cli"
    result = subprocess.run(
        [tool("ansible-playbook"), "-i", str(state / "inventory.yml"), "provision.yml",
         "--tags", "base", "-e", json.dumps({
             "base_admin_authorized_keys": [wrong_pub],
             "base_ssh_guard_timeout": 8, "base_ssh_rollback_after": 20})],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**ENV, "PATH": f"{BIN}:{ENV['PATH']}", "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(state / "facts")},
    )  # fmt: skip
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-3000:]
    assert "a fresh SSH connection with the operator's key could not get in" in output
    assert "The drone restored the settings it had before" in output
    # the operator's key gets in again, the wrong one is gone, and the drone says what it did
    guard_log = "/var/lib/cloudrone/ssh-guard/rollbacks.log"
    back = ssh(key, f"cat ~/.ssh/authorized_keys; sudo -n cat {guard_log}")
    assert back.returncode == 0, back.stderr
    assert (Path(str(key) + ".pub")).read_text().split()[1] in back.stdout
    assert wrong_pub.split()[1] not in back.stdout
    assert "restored the settings the operator last got in with" in back.stdout
    # and the drone is exactly as provisioned before
    dry = cli("mission", "up", "--check", str(folder))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Fleet ready: 0 task(s) would change" in dry.stdout


def test_packages_came_through_the_base_camp_cache(bundle):
    # the drone has no Internet: its chrony came through the controller's
    # apt-cacher-ng, whose log names each client (this run's drone, since it came up)
    log = Path("/var/log/apt-cacher-ng/apt-cacher.log").read_text().splitlines()
    served = [
        line.split("|")
        for line in log
        if line.count("|") >= 4 and int(line.split("|")[0]) >= int(STARTED["up"])
    ]
    assert any(
        kind == "O" and client == "10.252.0.21" and "/chrony_" in path and path.endswith(".deb")
        for _, kind, _, client, path in (f[:5] for f in served)
    ), "apt-cacher-ng served no chrony package to this run's drone"


def test_status_shows_the_drone_answering(bundle):
    folder, _, _ = bundle
    result = cli("mission", "status", str(folder))
    assert result.returncode == 0, result.stdout
    assert re.search(r"solo\s.*running\s.*10\.252\.0\.21\s.*answers", result.stdout)
    # its routing daemon answers, and a drone alone hears nobody
    assert re.search(r"answers\s.*\bnone\s.*disarmed", result.stdout), result.stdout
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mission.yml"]


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
