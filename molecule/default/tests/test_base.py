"""What the base role must leave on a drone, checked on the drone itself."""

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import docker
import pytest

# molecule.yml: each platform's address on each link
ADDRESSES = {
    "drone-m1": {"mgmt": "10.251.0.11", "mesh": "10.251.1.11", "ground-m1": "10.251.11.1"},
    "drone-m2": {"mgmt": "10.251.0.12", "mesh": "10.251.1.12", "ground-m2": "10.251.12.1"},
}
RELEASES = {"drone-m1": "12", "drone-m2": "13"}


@pytest.fixture
def drone(host) -> str:
    return host.backend.get_hostname()


def test_each_release_the_roles_claim_is_here(host, drone):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.split(".")[0] == RELEASES[drone]


def test_hostname(host, drone):
    assert host.check_output("hostname") == drone
    assert drone in host.file("/etc/hosts").content_string


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
        ("permitemptypasswords", "no"),
        ("pubkeyauthentication", "yes"),
        ("authenticationmethods", "publickey"),
        ("permitrootlogin", "no"),
        ("allowusers", "cloudrone"),
        ("x11forwarding", "no"),
    ],
)
def test_sshd_settings_in_force(host, key, value):
    effective = dict(
        line.split(" ", 1) for line in host.check_output("sshd -T").splitlines() if " " in line
    )
    assert effective[key] == value


def test_an_ssh_auditor_finds_no_failure(drone):
    """ssh-audit, a third party's auditor, against the drone's SSH from a host of its
    management link. Stock Debian 12 sshd: 6 failures (NIST curves, SHA-1 MACs) and 18
    warnings. Not from the controller: OpenSSH 9.8 and newer hold back a source that
    opens many connections without logging in (PerSourcePenalties), as the auditor
    does, and the operator's own logins below would then be refused for a while."""
    import ssh_audit

    package = str(Path(ssh_audit.__file__).parent)
    client = docker.from_env()
    image = client.containers.get(f"cloudrone-molecule-default-{drone}").image
    auditor = client.containers.run(
        image, ["python3", "-m", "ssh_audit", "-j", ADDRESSES[drone]["mgmt"]],
        entrypoint=[], network="cloudrone-molecule-default-mgmt", cap_drop=["ALL"],
        environment={"PYTHONPATH": "/opt/audit"},
        volumes={package: {"bind": "/opt/audit/ssh_audit", "mode": "ro"}}, detach=True,
    )  # fmt: skip
    try:
        code = auditor.wait(timeout=120)["StatusCode"]
        out = auditor.logs(stdout=True, stderr=False).decode()
    finally:
        auditor.remove(force=True)
    report = json.loads(out)
    recommendations = report.get("recommendations", {})
    assert "critical" not in recommendations, recommendations["critical"]
    # 0: nothing to say; 2: warnings alone (curve25519 is not post-quantum)
    assert code in (0, 2), out[-2000:]
    offered = {k["algorithm"] for k in report["key"]}
    assert offered and not any("nistp" in k for k in offered), offered


def test_sshd_running(host):
    ssh = host.service("ssh")
    assert ssh.is_running
    assert ssh.is_enabled


def test_chrony_serves_but_never_sets_the_shared_clock(host):
    chrony = host.service("chrony")
    assert chrony.is_running
    assert chrony.is_enabled
    cmdline = host.check_output("cat /proc/$(pidof chronyd | cut -d' ' -f1)/cmdline | tr '\\0' ' '")
    assert " -x" in cmdline
    conf = host.file("/etc/chrony/chrony.conf").content_string
    assert "local stratum 10 orphan" in conf
    assert "allow 10.251.1.0/24" in conf
    # chronyd answers its control socket
    assert "Reference ID" in host.check_output("chronyc -n tracking")


def test_chrony_has_its_leap_second_table(host):
    # Debian 13 has no right/ zones: chrony would ignore the table and say so
    # only in its log; 4.5 and newer read tzdata's leap-seconds.list instead
    log = host.check_output("journalctl -u chrony -b --no-pager -o cat")
    assert "failed leap second check" not in log
    conf = host.file("/etc/chrony/chrony.conf").content_string
    version = host.package("chrony").version
    if host.system_info.release.split(".")[0] == "12":
        assert "leapsectz right/UTC" in conf, version
    else:
        assert "leapseclist /usr/share/zoneinfo/leap-seconds.list" in conf, version


def test_ipv4_forwarding_on_and_persistent(host):
    assert host.file("/proc/sys/net/ipv4/ip_forward").content_string.strip() == "1"
    assert "net.ipv4.ip_forward=1" in host.file("/etc/sysctl.d/60-cloudrone.conf").content_string


def test_admin_user_has_sudo_and_only_its_key(host):
    user = host.user("cloudrone")
    assert "sudo" in user.groups
    keys = host.file("/home/cloudrone/.ssh/authorized_keys").content_string.strip().splitlines()
    assert len(keys) == 1
    assert keys[0].startswith("ssh-ed25519 ")
    assert "NOPASSWD: ALL" in host.check_output("sudo -l -U cloudrone")
    # the password the imager set is locked: no password login even if sshd allowed one
    assert host.check_output("passwd -S cloudrone").split()[1] in ("L", "LK")
    assert host.check_output("passwd -S root").split()[1] in ("L", "LK")


def test_flashed_image_leftovers_are_gone(host):
    # the simulated drone's first boot created these, as an imager does
    for leftover in (
        "/etc/sudoers.d/010_cloudrone-nopasswd",
        "/etc/sudoers.d/90-cloud-init-users",
        "/etc/ssh/sshd_config.d/50-cloud-init.conf",
    ):
        assert not host.file(leftover).exists, leftover
    # sudo without a password comes from the role's own file, for the admin alone
    grants = host.check_output("grep -rl NOPASSWD /etc/sudoers.d || true").split()
    assert grants == ["/etc/sudoers.d/cloudrone-admin"]


def test_ssh_guard_is_disarmed_and_holds_what_got_in(host):
    # the last run proved a fresh login and cancelled the drone's own rollback
    assert not host.service("cloudrone-ssh-rollback.timer").is_running
    guard = "/var/lib/cloudrone/ssh-guard"
    assert host.file(f"{guard}/sshd_config").content == host.file("/etc/ssh/sshd_config").content
    assert (
        host.file(f"{guard}/authorized_keys").content
        == host.file("/home/cloudrone/.ssh/authorized_keys").content
    )


def test_apt_goes_through_the_base_camp_cache(host):
    proxy = host.file("/etc/apt/apt.conf.d/01cloudrone-proxy").content_string
    assert 'Acquire::http::Proxy "http://10.251.0.254:3142";' in proxy


def test_drone_package_importable_in_its_venv(host):
    out = host.check_output(
        "/opt/cloudrone/venv/bin/python -c "
        "'import cloudrone, pyroute2, pymavlink, yaml; print(cloudrone.__version__)'"
    )
    assert out.count(".") == 2
    # installed from the controller's wheels, not from an index
    assert host.file("/opt/cloudrone/cloudrone-bundle.tar").exists
    assert "index-url" not in host.check_output("/opt/cloudrone/venv/bin/pip config list || true")


def test_the_drone_carries_drone_code_only_at_the_pinned_versions(host):
    venv = "/opt/cloudrone/venv"
    # the controller's half is not there: no CLI, no fleet, no Ansible runner
    assert not host.file(f"{venv}/bin/cloudrone_cli").exists
    assert host.file(f"{venv}/bin/cloudrone-olsrd").exists
    assert host.file(f"{venv}/bin/cloudrone-flight-bridge").exists
    missing = host.run(f"{venv}/bin/python -c 'import cloudrone.cli'")
    assert missing.rc != 0 and "No module named 'cloudrone.cli'" in missing.stderr
    # exactly requirements/drone.lock, and the drone's own package
    installed = {
        p["name"].lower().replace("_", "-"): p["version"]
        for p in json.loads(host.check_output(f"{venv}/bin/pip list --format json"))
    }
    lock = os.path.join(os.path.dirname(__file__), "..", "..", "..", "requirements", "drone.lock")
    with open(lock) as f:
        pins = dict(
            line.strip().lower().split("==") for line in f if line.strip() and line[0] != "#"
        )
    assert {k: v for k, v in installed.items() if k not in ("pip", "setuptools")} == {
        **pins,
        "cloudrone-drone": installed["cloudrone-drone"],
    }


def _ssh(drone: str, *options: str) -> subprocess.CompletedProcess:
    key = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "drone_key")
    return subprocess.run(
        ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", *options,
         f"cloudrone@{ADDRESSES[drone]['mgmt']}", "sudo -n hostname"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_operator_gets_in_with_the_key_after_hardening(drone):
    result = _ssh(drone)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == drone


def test_passwords_are_refused(drone):
    result = _ssh(drone, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password")
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


# --- The firewall, tried from the outside ------------------------------------
# A scanner container on each of the drone's links connects to its ports as
# any host there could. open: something answered; closed: the firewall let
# the packet through and the kernel refused it (nothing listens); filtered:
# the firewall dropped it.
SCAN = r"""
import asyncio, json, socket, sys
target, tcp_ports, udp_ports = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
async def tcp(port):
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(target, port), 2.5)
        w.close()
        return port, "open"
    except ConnectionRefusedError:
        return port, "closed"
    except (asyncio.TimeoutError, OSError):
        return port, "filtered"
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2.5)
    s.connect((target, port))
    try:
        for _ in range(2):
            s.send(b"cloudrone-scan")
            try:
                s.recv(100)
                return "open"
            except socket.timeout:
                continue
        return "filtered"
    except ConnectionRefusedError:
        return "closed"
async def main():
    # every port at once: a dropped probe costs its timeout once, not once per port
    found = await asyncio.gather(*(tcp(p) for p in tcp_ports),
                                 *(asyncio.to_thread(udp, p) for p in udp_ports))
    res = dict(found[:len(tcp_ports)])
    print(json.dumps({"tcp": res, "udp": dict(zip(udp_ports, found[len(tcp_ports):]))}))
asyncio.run(main())
"""
TCP_PORTS = [*range(1, 1025), 2375, 2376, 2377, 7946, 8080, 9090]
MANAGEMENT_TCP = {2375, 2376, 2377, 7946}
UDP_PORTS = [4789, 7946, 9999]


def _scan(drone: str, link: str) -> dict:
    client = docker.from_env()
    image = client.containers.get(f"cloudrone-molecule-default-{drone}").image
    # any host on that link: the engine gives the scanner a free address there
    out = client.containers.run(
        image, ["python3", "-c", SCAN, ADDRESSES[drone][link], json.dumps(TCP_PORTS),
                json.dumps(UDP_PORTS)],
        entrypoint=[], network=f"cloudrone-molecule-default-{link}", cap_drop=["ALL"],
        remove=True, stdout=True, stderr=False,
    )  # fmt: skip
    scan = json.loads(out)
    return {"tcp": {int(k): v for k, v in scan["tcp"].items()},
            "udp": {int(k): v for k, v in scan["udp"].items()}}  # fmt: skip


@pytest.fixture(scope="module")
def listener(host):
    # something listening on every address that no rule allows: it must not be reached
    host.run("systemd-run --unit=scan-listener python3 -m http.server --bind 0.0.0.0 8080")
    for _ in range(50):
        if host.socket("tcp://0.0.0.0:8080").is_listening:
            break
        time.sleep(0.1)
    assert host.socket("tcp://0.0.0.0:8080").is_listening
    yield
    host.run("systemctl stop scan-listener")


@pytest.mark.parametrize("link", ["mgmt", "mesh"])
def test_management_and_mesh_reach_ssh_and_the_cluster_ports_only(listener, drone, link):
    scan = _scan(drone, link)
    tcp = scan["tcp"]
    assert {p for p, s in tcp.items() if s == "open"} == {22}
    # the cluster's ports get through (nothing listens yet: the kernel refuses)
    assert {p for p, s in tcp.items() if s == "closed"} == MANAGEMENT_TCP
    # everything else is dropped, the listener on 8080 included
    assert tcp[8080] == "filtered"
    assert scan["udp"] == {4789: "closed", 7946: "closed", 9999: "filtered"}


def test_the_ground_side_reaches_dns_alone(listener, drone):
    # the access point's own link, where phones are: only its resolver answers
    scan = _scan(drone, f"ground-{drone.removeprefix('drone-')}")
    assert {p for p, s in scan["tcp"].items() if s != "filtered"} == {53}
    assert scan["tcp"][53] == "open"
    assert set(scan["udp"].values()) == {"filtered"}


def test_firewall_is_its_own_table_and_loads_at_boot(host):
    assert host.service("cloudrone-firewall").is_enabled
    ruleset = host.check_output("nft list table inet cloudrone")
    assert "policy drop" in ruleset
    # the file in force passes nft's own check
    assert host.run("nft -c -f /etc/cloudrone/firewall.nft").rc == 0


# --- A firewall that fails closed ----------------------------------------------------------
TOOL = "/usr/local/sbin/cloudrone-firewall"
BROKEN = "add rule inet cloudrone roles_input tcp dport 8080 acept\n"  # a typo nft refuses


def _table(host) -> str:
    return host.check_output("nft list table inet cloudrone")


def test_a_fragment_that_does_not_parse_never_goes_live(host):
    """What every role's fragment template runs as its validate step."""
    before = _table(host)
    host.run(f"printf %s {shlex.quote(BROKEN)} > /tmp/broken.nft")
    check = host.run(f"{TOOL} check /tmp/broken.nft 20-mesh.nft")
    assert check.rc != 0 and "acept" in check.stderr, check.stderr  # nft's own message
    assert "acept" not in host.file("/etc/cloudrone/firewall.d/20-mesh.nft").content_string
    assert _table(host) == before
    sound = host.run(f"{TOOL} check /etc/cloudrone/firewall.d/20-mesh.nft 20-mesh.nft")
    assert sound.rc == 0, sound.stderr
    # the running table is what the files say: the base role's next run leaves it
    assert host.check_output(f"{TOOL} load --if-stale --dry-run") == "current"


def test_a_boot_with_a_broken_table_lets_in_ssh_on_the_management_link_alone(host, drone, listener):
    broken = "/etc/cloudrone/firewall.d/99-broken.nft"
    try:
        host.run(f"printf %s {shlex.quote(BROKEN)} > {broken}")
        boot = host.run("systemctl restart cloudrone-firewall")  # what boot runs
        assert boot.rc != 0  # the unit fails, loudly...
        journal = host.check_output("journalctl -u cloudrone-firewall -n 30 --no-pager")
        assert "the fallback is in force" in journal, journal
        # ...with the operator's SSH on the management link, and nothing else
        mgmt, mesh = _scan(drone, "mgmt"), _scan(drone, "mesh")
        assert {p for p, s in mgmt["tcp"].items() if s != "filtered"} == {22}
        assert {p for p, s in mesh["tcp"].items() if s != "filtered"} == set()
        assert set(mesh["udp"].values()) == {"filtered"}
        assert _ssh(drone).returncode == 0
        # the stale table is reloaded by the base role's next run
        assert host.check_output(f"{TOOL} load --if-stale --dry-run") == "would load"
    finally:
        host.run(f"rm -f {broken}")
        host.run("systemctl restart cloudrone-firewall")
    assert host.service("cloudrone-firewall").is_running
    assert "flight_ifaces" in _table(host)
    assert host.check_output(f"{TOOL} load --if-stale --dry-run") == "current"
