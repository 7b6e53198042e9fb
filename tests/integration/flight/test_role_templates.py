"""The flight_bridge role's templates, rendered by Ansible with the role's own
defaults, make a configuration the bridge accepts and a unit systemd accepts.

The bridge's own defaults (I2C addresses, ports, endpoints, timers) are defined
once, in cloudrone/flight/config.py: the role writes a key only when this drone
decides it or the operator sets it.

(The role itself runs against a simulated drone in molecule/default.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cloudrone.flight.config import FlightConfig, load_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "flight_bridge"
BIN = Path(sys.executable).parent
BRIDGE = BIN / "cloudrone-flight-bridge"

PLAY = """
- name: Render the flight bridge role's templates
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {role}/defaults/main.yml
  tasks:
    - name: The role's variables pass its own argument specification
      ansible.builtin.validate_argument_spec:
        argument_spec: "{{{{ (lookup('ansible.builtin.file',
          '{role}/meta/argument_specs.yml') | from_yaml).argument_specs.main.options }}}}"
    - name: Render flight.yml, checked by the bridge
      ansible.builtin.template:
        src: {role}/templates/etc/cloudrone/flight.yml.j2
        dest: {out}/flight.yml
        mode: "0644"
        validate: "{{{{ flight_bridge_binary }}}} --check %s"
    - name: Render the unit
      ansible.builtin.template:
        src: {role}/templates/etc/systemd/system/cloudrone-flight-bridge.service.j2
        dest: {out}/cloudrone-flight-bridge.service
        mode: "0644"
"""


def run_play(
    tmp_path: Path, play: Path, extra: dict[str, object], **env: str
) -> subprocess.CompletedProcess[str]:
    """``play`` on this machine with ``extra`` variables, as the project's ansible.cfg has it."""
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-e", json.dumps(extra), str(play)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={
            "PATH": f"{BIN}:/usr/bin:/bin",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
            "HOME": str(tmp_path),
            **env,
        },
    )


# What an operator may set for one drone; each lands in its key, nothing else changes.
OVERRIDES = {
    "flight_bridge_ina219_address": 68,
    "flight_bridge_channels": {"rudder": {"reversed": True, "expo": 0.2}},
    "flight_bridge_failsafe_hold_s": 0.8,
}


@pytest.mark.skipif(shutil.which("ansible-playbook", path=str(BIN)) is None, reason="no ansible")
@pytest.mark.parametrize(("simulated", "rt_group"), [(True, True), (False, False)])
def test_role_templates_render_valid_files(tmp_path: Path, simulated: bool, rt_group: bool) -> None:
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(role=ROLE, out=tmp_path))
    key = "0123456789abcdef" * 4
    key_file = tmp_path / "flight-signing.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    extra: dict[str, object] = {
        "ansible_facts": {"processor_nproc": 4, "default_ipv4": {"address": "10.250.0.99"}},
        "cloudrone_simulated": simulated,
        "flight_bridge_venv_dir": str(BIN.parent),
        "flight_bridge_rt_group_sched": rt_group,
        "flight_bridge_ground_stations": ["10.42.0.253", "10.250.0.0/24"],
        # the ground station defaults to the management network's last host address
        "cloudrone_management_network": "10.250.0.0/24",
    }
    if simulated:  # the management address from the inventory's ansible_host
        extra["ansible_host"] = "10.250.0.11"
    else:  # a host name: the default IPv4 address; a signed link; the operator's overrides
        extra["ansible_host"] = "drone-a.local"
        extra["flight_bridge_signing_key"] = key
        extra["flight_bridge_signing_key_file"] = str(key_file)
        extra["flight_bridge_signing_max_ahead_s"] = 45
        extra.update(OVERRIDES)
    r = run_play(tmp_path, play, extra)
    assert r.returncode == 0, r.stdout + r.stderr
    config = (tmp_path / "flight.yml").read_text()
    assert config.startswith("#")  # ansible_managed comes first
    check = subprocess.run(
        [str(BRIDGE), "--check", str(tmp_path / "flight.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert f"backend {'sim' if simulated else 'pca9685'}" in check.stdout
    assert "ground station 10.250.0.254:14550" in check.stdout
    listen = "10.250.0.11" if simulated else "10.250.0.99"
    assert f"MAVLink on {listen}:14555" in check.stdout
    rendered = yaml.safe_load(config)["mavlink"]
    assert rendered["allowed_senders"] == ["10.250.0.254", "10.42.0.253", "10.250.0.0/24"]
    assert key not in config  # the key stays in its 0600 file
    assert rendered.get("signing_key_file") == (None if simulated else str(key_file))
    assert rendered.get("signing_max_ahead_s") == (None if simulated else 45.0)
    # The bridge's defaults are not repeated: only what this drone decides is written.
    written = yaml.safe_load(config)
    decided = {"mavlink", "backend", "battery", "gps", "realtime", "status_file"}
    assert set(written) == decided | (set() if simulated else {"channels", "failsafe"})
    assert set(written["backend"]) == {"type", "sim"}
    assert written["realtime"] == {"fifo_priority": 50}
    loaded, bridge_default = load_config(tmp_path / "flight.yml"), FlightConfig()
    assert loaded.backend.pca9685 == bridge_default.backend.pca9685
    assert loaded.kk2 == bridge_default.kk2 and loaded.gps.gpsd == bridge_default.gps.gpsd
    if simulated:
        assert written["battery"] == {"source": "sim"} and "channels" not in written
        assert loaded.battery.ina219 == bridge_default.battery.ina219
        assert loaded.channels == bridge_default.channels
        assert loaded.failsafe == bridge_default.failsafe
    else:
        assert written["battery"] == {"source": "ina219", "ina219": {"address": 68}}
        assert written["channels"] == {"rudder": {"reversed": True, "expo": 0.2}}
        assert written["failsafe"] == {"hold_s": 0.8}
        assert loaded.battery.ina219.address == 68
        assert loaded.battery.ina219.bus == bridge_default.battery.ina219.bus
        rudder, default_rudder = loaded.channels["rudder"], bridge_default.channels["rudder"]
        assert rudder.reversed and rudder.expo == 0.2 and rudder.output == default_rudder.output
        assert loaded.failsafe.hold_s == 0.8
        assert loaded.failsafe.descent_us == bridge_default.failsafe.descent_us
    unit = (tmp_path / "cloudrone-flight-bridge.service").read_text()
    assert unit.startswith("#")
    for line in (
        "Type=notify",
        "WatchdogSec=2",
        "Restart=on-failure",
        "CPUAffinity=3",
        "LimitMEMLOCK=infinity",
        f"ExecStart={BRIDGE} --config /etc/cloudrone/flight.yml",
        "User=cloudrone-flight",
        "AmbientCapabilities=CAP_SYS_NICE CAP_IPC_LOCK",
        "CapabilityBoundingSet=CAP_SYS_NICE CAP_IPC_LOCK",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_UNIX",
    ):
        assert line in unit.splitlines(), line
    if rt_group:
        # Root for this step alone: it writes cgroup files outside the sandbox.
        assert f"ExecStartPre=-+{BRIDGE} --grant-rt-budget 100000" in unit
        assert "CPUSchedulingPolicy=fifo" not in unit
    else:
        assert "CPUSchedulingPolicy=fifo" in unit.splitlines()
        assert "CPUSchedulingPriority=50" in unit.splitlines()
    # Real hardware (PCA9685, INA219) through the i2c group; the sim needs no devices.
    if simulated:
        assert "PrivateDevices=yes" in unit.splitlines() and "SupplementaryGroups" not in unit
    else:
        assert "SupplementaryGroups=i2c" in unit.splitlines() and "PrivateDevices" not in unit
    if shutil.which("systemd-analyze"):
        v = subprocess.run(
            ["systemd-analyze", "verify", str(tmp_path / "cloudrone-flight-bridge.service")],
            capture_output=True,
            text=True,
        )
        problems = [
            line
            for line in v.stderr.splitlines()
            if "cloudrone-flight-bridge.service" in line and "network-online" not in line
        ]
        assert not problems, v.stderr


VALIDATE_PLAY = """
- name: The flight bridge role's checks before any change
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {role}/defaults/main.yml
  tasks:
    - name: The role's own checks
      ansible.builtin.import_tasks: {role}/tasks/validate.yml
"""


@pytest.mark.skipif(shutil.which("ansible-playbook", path=str(BIN)) is None, reason="no ansible")
@pytest.mark.parametrize(
    ("given", "refused"),
    [
        ({}, "flight_bridge_signing_key is empty"),
        ({"flight_bridge_signing_key": "12ab"}, "must be 64 hex digits"),
        (
            {"flight_bridge_allow_unsigned": True, "cloudrone_management_network": None},
            "is not ADDRESS:PORT",
        ),
        ({"flight_bridge_allow_unsigned": True}, None),
        ({"flight_bridge_signing_key": "ab" * 32}, None),
    ],
)
def test_the_role_flies_signed_or_says_so(
    tmp_path: Path, given: dict[str, object], refused: str | None
) -> None:
    """No key and no explicit word: the play stops before any change, and says how."""
    play = tmp_path / "validate.yml"
    play.write_text(VALIDATE_PLAY.format(role=ROLE))
    extra = {"cloudrone_management_network": "10.250.0.0/24", **given}
    if extra["cloudrone_management_network"] is None:
        del extra["cloudrone_management_network"]
    # the key would be read from the environment when no variable gives it
    r = run_play(tmp_path, play, extra, CLOUDRONE_FLIGHT_SIGNING_KEY="")
    out = r.stdout + r.stderr
    if refused is None:
        assert r.returncode == 0, out
    else:
        assert r.returncode != 0 and refused in out, out
    assert "ab" * 32 not in out  # the key never shows
