"""The mesh role's radio files, rendered by Ansible with the role's own defaults.

No WiFi here: the IBSS cell and its address are checked as the files a real
drone gets (the wired mesh runs for real in molecule/default).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "mesh"
BIN = Path(sys.executable).parent

PLAY = """
- name: Render the mesh role's radio templates
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
  tasks:
    - name: Render them
      ansible.builtin.template:
        src: {role}/templates/{src}
        dest: {out}/{dest}
        mode: "0600"
      loop_control: {{loop_var: t}}
      vars: {{src: "{{{{ t.0 }}}}", dest: "{{{{ t.1 }}}}"}}
      loop:
        - [etc/wpa_supplicant/wpa_supplicant-ibss.conf.j2, wpa.conf]
        - [etc/systemd/network/20-cloudrone-mesh.network.j2, mesh.network]
        - [etc/cloudrone/olsrd.yml.j2, olsrd.yml]
"""


def render(tmp_path: Path, **overrides) -> dict[str, str]:
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(role=ROLE, out=tmp_path, src="{{ src }}", dest="{{ dest }}"))
    extra = {
        "ansible_facts": {"interfaces": ["lo"]},
        "cloudrone_mesh_address": "10.42.0.7",
        "cloudrone_mesh_network": "10.42.0.0/24",
        "mesh_link_mode": "ibss",
        "ansible_python_interpreter": sys.executable,
        **overrides,
    }
    r = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-e", json.dumps(extra), str(play)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return {n: (tmp_path / n).read_text() for n in ("wpa.conf", "mesh.network", "olsrd.yml")}


def test_an_open_ibss_cell_on_its_channel(tmp_path):
    files = render(tmp_path, mesh_channel=6, mesh_country="DE")
    wpa = files["wpa.conf"]
    assert "country=DE" in wpa and "mode=1" in wpa and "frequency=2437" in wpa
    assert "bssid=02:ca:fe:00:00:01" in wpa and "key_mgmt=NONE" in wpa and "psk" not in wpa
    assert "Name=wlan0" in files["mesh.network"]
    assert "Address=10.42.0.7/24" in files["mesh.network"]
    assert "- name: wlan0" in files["olsrd.yml"]


def test_a_protected_cell_on_5ghz_and_the_fast_profile(tmp_path):
    files = render(tmp_path, mesh_channel=36, mesh_passphrase="correct horse battery",
                   mesh_olsr_profile="fast", mesh_gateway=True,
                   cloudrone_ap_subnet="10.43.7.0/24")  # fmt: skip
    wpa = files["wpa.conf"]
    assert "frequency=5180" in wpa
    assert 'psk="correct horse battery"' in wpa and "proto=RSN" in wpa and "key_mgmt=WPA-PSK" in wpa
    assert "profile: fast" in files["olsrd.yml"].splitlines()
    # the profile's timers live in the daemon only, not in the role
    assert "hello:" not in files["olsrd.yml"] and "max_jitter" not in files["olsrd.yml"]
    assert '"0.0.0.0/0"' in files["olsrd.yml"]
    # what it believes of others: the mission's networks from the fleet, the rest from
    # the gateways (here the one drone of a one-drone inventory, a gateway itself)
    hna = yaml.safe_load(files["olsrd.yml"])["hna"]
    assert hna["accept"] == ["10.42.0.0/24", "10.43.7.0/24"]
    assert hna["fleet"] == ["10.42.0.7"] and hna["gateways"] == ["10.42.0.7"]


def test_the_rendered_olsr_configuration_passes_the_daemons_check(tmp_path):
    """The role names the profile; the daemon knows it and runs with its timers."""
    files = render(tmp_path, mesh_interface="lo", mesh_olsr_profile="fast")
    check = subprocess.run(
        [str(BIN / "cloudrone-olsrd"), "--check", str(tmp_path / "olsrd.yml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr + files["olsrd.yml"]
    assert "timers fast, HELLO 0.5 s" in check.stdout
