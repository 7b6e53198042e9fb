"""The simulated drone, on the real engine: boots systemd, links with fixed subnets, no Internet."""

from __future__ import annotations

import subprocess
import time

import docker
import pytest

from cloudrone.fleet import sim

pytestmark = pytest.mark.integration

SPEC = {
    "fleet": "itest-sim",
    "links": [
        {"name": "mgmt", "subnet": "10.253.0.0/24"},
        {"name": "mesh", "subnet": "10.253.1.0/24"},
    ],
    "drones": [
        {"name": "a", "links": {"mgmt": "10.253.0.11", "mesh": "10.253.1.11"}, "memory": "1g"},
        {"name": "b", "links": {"mgmt": "10.253.0.12", "mesh": "10.253.1.12"}},
    ],
}


@pytest.fixture(scope="module")
def fleet(drone_image):
    spec = sim.FleetSpec.from_dict(SPEC)
    sim.down(spec.fleet, log=lambda _m: None)
    f = sim.SimFleet(spec, log=lambda _m: None)
    f.up(drone_image, public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests tests")
    yield f
    sim.down(spec.fleet, log=lambda _m: None)


def sh(container_name: str, command: str) -> tuple[int, str]:
    c = docker.from_env().containers.get(container_name)
    rc, out = c.exec_run(["/bin/sh", "-c", command])
    return rc, out.decode().strip()


def test_systemd_is_pid_1_and_running(fleet):
    for d in ("a", "b"):
        _, out = sh(f"cloudrone-itest-sim-{d}", "systemctl is-system-running")
        assert out in ("running", "degraded"), out
        assert sh(f"cloudrone-itest-sim-{d}", "cat /proc/1/comm")[1] == "systemd"


def test_each_drone_has_its_name_and_fixed_addresses(fleet):
    assert sh("cloudrone-itest-sim-a", "hostname")[1] == "a"
    addrs = sh("cloudrone-itest-sim-a", "ip -4 -o addr show | awk '{print $4}'")[1].split()
    assert "10.253.0.11/24" in addrs and "10.253.1.11/24" in addrs


def test_fleet_sh_gives_exit_code_and_all_output_and_leaves_nothing_behind(fleet):
    """SimFleet.sh spools a command's output on the drone and reads it back, so
    a lost exec stream cannot turn an answer into an empty string."""
    code, out = fleet.sh("a", "echo one; echo two >&2; exit 3  # a comment ends the line")
    assert code == 3 and out.split() == ["one", "two"], (code, out)
    assert fleet.sh("b", "true") == (0, "")
    # a daemon left running does not hold the call open
    started = time.monotonic()
    assert fleet.sh("a", "sleep 30 & echo started")[1] == "started\n"
    assert time.monotonic() - started < 10
    # many short commands in a row, each with its answer
    answers = [fleet.sh("b", f"echo {i}") for i in range(40)]
    assert answers == [(0, f"{i}\n") for i in range(40)]
    time.sleep(0.5)  # the spools are removed by a detached exec
    # what is left is this very command's own spool
    assert fleet.sh("a", "ls /run | grep cloudrone-sh || true")[1].count("cloudrone-sh") == 1


def test_drones_reach_each_other_over_the_mesh_link(fleet):
    rc, out = sh("cloudrone-itest-sim-a", "ping -c 2 -W 2 10.253.1.12")
    assert rc == 0, out


def test_links_are_internal_nothing_leaves_for_the_outside(fleet, drone_image):
    # Try to get out: a listener on an ordinary (not internal) network of this
    # engine answers the controller, but not a drone, whose only way off its
    # links is the controller, which must not forward for it.
    client = docker.from_env()
    net = client.networks.get("cloudrone-itest-sim-mesh")
    assert net.attrs["Internal"] is True
    assert net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.253.1.0/24"
    outside = client.networks.create(
        "cloudrone-itest-sim-outside",
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.253.9.0/24")]),
    )
    listener = None
    try:
        listener = client.containers.run(
            drone_image, ["python3", "-m", "http.server", "8000"], detach=True,
            network=outside.name, name="cloudrone-itest-sim-outside-host",
        )  # fmt: skip
        listener.reload()
        ip = listener.attrs["NetworkSettings"]["Networks"][outside.name]["IPAddress"]
        probe = f"timeout 3 bash -c 'echo > /dev/tcp/{ip}/8000'"
        import subprocess

        deadline = time.monotonic() + 20
        while subprocess.run(["sh", "-c", probe], check=False).returncode != 0:
            assert time.monotonic() < deadline, "the outside listener never answered the controller"
            time.sleep(0.3)
        rc, out = sh("cloudrone-itest-sim-a", probe)
        assert rc != 0, f"a drone reached {ip} outside its links: {out}"
    finally:
        if listener is not None:
            listener.remove(force=True)
        outside.remove()


def test_engine_storage_is_its_own_volume(fleet):
    c = docker.from_env().containers.get("cloudrone-itest-sim-a")
    mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
    assert mounts["/var/lib/docker"]["Type"] == "volume"
    assert mounts["/var/lib/docker"]["Name"] == "cloudrone-itest-sim-a-docker"
    # overlay2 needs a real file system under /var/lib/docker, not the container's overlay
    fstype = sh("cloudrone-itest-sim-a", "stat -f -c %T /var/lib/docker")[1]
    assert fstype != "overlayfs"


def test_memory_limit_of_a_pi2(fleet):
    c = docker.from_env().containers.get("cloudrone-itest-sim-a")
    assert c.attrs["HostConfig"]["Memory"] == 1024**3


def test_first_boot_leaves_what_a_flashed_image_leaves(fleet):
    rc, out = sh(
        "cloudrone-itest-sim-b", "sudo -l -U cloudrone; cat /home/cloudrone/.ssh/authorized_keys"
    )
    assert rc == 0
    assert "NOPASSWD: ALL" in out
    assert "FakeKeyForTests" in out
    # the leftovers the base role must undo are really there on a new drone
    rc, out = sh(
        "cloudrone-itest-sim-b",
        "ls /etc/sudoers.d /etc/ssh/sshd_config.d; passwd -S cloudrone",
    )
    assert rc == 0, out
    for leftover in ("010_cloudrone-nopasswd", "90-cloud-init-users", "50-cloud-init.conf"):
        assert leftover in out
    assert out.splitlines()[-1].split()[1] == "P"  # a usable password, as the imager sets


def test_a_key_made_after_the_drones_lets_the_operator_in(fleet, tmp_path):
    key = tmp_path / "new_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
           "cloudrone@10.253.0.11", "true"]  # fmt: skip
    assert subprocess.run(ssh, capture_output=True, check=False).returncode == 255
    fleet.authorize_key(key.with_suffix(".pub").read_text())
    fleet.authorize_key(key.with_suffix(".pub").read_text())  # once is enough
    login = subprocess.run(ssh, capture_output=True, text=True, check=False)
    assert login.returncode == 0, login.stderr
    _, keys = sh("cloudrone-itest-sim-a", "cat /home/cloudrone/.ssh/authorized_keys")
    assert "FakeKeyForTests" in keys
    assert keys.count(key.with_suffix(".pub").read_text().split()[1]) == 1


def test_the_controller_is_reachable_on_each_link(fleet):
    # the base camp's package cache listens on the controller's link address
    rc, out = sh("cloudrone-itest-sim-a", "timeout 3 bash -c 'echo > /dev/tcp/10.253.0.254/3142'")
    assert rc == 0, out


def test_up_again_reuses_the_same_containers(fleet, drone_image):
    before = {
        d.name: fleet.client.containers.get(fleet.spec.container_name(d.name)).id
        for d in fleet.spec.drones
    }
    fleet.up(drone_image)
    after = {
        d.name: fleet.client.containers.get(fleet.spec.container_name(d.name)).id
        for d in fleet.spec.drones
    }
    assert before == after


def test_a_stopped_drone_is_started_again(fleet, drone_image):
    c = fleet.client.containers.get("cloudrone-itest-sim-b")
    c.stop(timeout=5)
    fleet.up(drone_image)
    c.reload()
    assert c.status == "running"
    assert sh("cloudrone-itest-sim-b", "systemctl is-system-running")[1] in ("running", "degraded")


def test_overlapping_subnet_is_refused_with_a_fix(fleet, drone_image):
    clash = sim.FleetSpec.from_dict({**SPEC, "fleet": "itest-clash"})
    with pytest.raises(sim.FleetError, match="overlaps a network that already exists"):
        sim.SimFleet(clash, log=lambda _m: None).up(drone_image)
    sim.down("itest-clash", log=lambda _m: None)


def test_down_removes_containers_volumes_and_links(drone_image):
    spec = sim.FleetSpec.from_dict(
        {
            "fleet": "itest-down",
            "links": [{"name": "l", "subnet": "10.253.9.0/24"}],
            "drones": [{"name": "x", "links": {"l": "10.253.9.2"}}],
        }
    )
    sim.SimFleet(spec, log=lambda _m: None).up(drone_image)
    assert sim.down("itest-down", log=lambda _m: None) == 3
    client = docker.from_env()
    label = {"label": f"{sim.LABEL_FLEET}=itest-down"}
    assert client.containers.list(all=True, filters=label) == []
    assert client.networks.list(filters=label) == []
    assert not [v for v in client.volumes.list() if v.name.startswith("cloudrone-itest-down-")]


def test_a_spent_real_time_pool_starts_the_drone_without_one(drone_image, monkeypatch):
    if not sim.rt_budget_available():
        pytest.skip("not applicable: no RT group scheduling in this kernel, so no budget to spend")
    # more than the engine's whole pool (--cpu-rt-runtime=950000): the engine refuses
    monkeypatch.setattr(sim, "RT_RUNTIME_US", 960_000)
    spec = sim.FleetSpec.from_dict(
        {
            "fleet": "itest-rt",
            "links": [{"name": "l", "subnet": "10.253.8.0/24"}],
            "drones": [{"name": "x", "links": {"l": "10.253.8.2"}}],
        }
    )
    said: list[str] = []
    sim.down("itest-rt", log=lambda _m: None)
    try:
        sim.SimFleet(spec, log=said.append).up(drone_image)
        c = docker.from_env().containers.get("cloudrone-itest-rt-x")
        assert c.status == "running"
        assert c.attrs["HostConfig"]["CpuRealtimeRuntime"] == 0
        assert any("real-time pool is spent" in line for line in said), said
    finally:
        sim.down("itest-rt", log=lambda _m: None)
