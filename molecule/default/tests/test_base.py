"""What the base role must leave on a drone, checked on the drone itself."""

import os
import subprocess

import pytest

DRONE = "drone-m1"
MGMT_ADDRESS = "10.251.0.11"  # molecule.yml: platforms[0].links mgmt


def test_hostname(host):
    assert host.check_output("hostname") == DRONE
    assert DRONE in host.file("/etc/hosts").content_string


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
        ("permitemptypasswords", "no"),
        ("pubkeyauthentication", "yes"),
        ("authenticationmethods", "publickey"),
        ("permitrootlogin", "without-password"),
        ("x11forwarding", "no"),
    ],
)
def test_sshd_settings_in_force(host, key, value):
    effective = dict(
        line.split(" ", 1) for line in host.check_output("sshd -T").splitlines() if " " in line
    )
    assert effective[key] == value


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
    # a locked password: no password login even if sshd allowed one
    assert host.check_output("passwd -S cloudrone").split()[1] in ("L", "LK")


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


def _ssh(*options: str) -> subprocess.CompletedProcess:
    key = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "drone_key")
    return subprocess.run(
        ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", *options,
         f"cloudrone@{MGMT_ADDRESS}", "sudo -n hostname"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_operator_gets_in_with_the_key_after_hardening():
    result = _ssh()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == DRONE


def test_passwords_are_refused():
    result = _ssh("-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password")
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr
