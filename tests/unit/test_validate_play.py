"""The validate play refuses a fleet it cannot build, before any change.

Its checks are assertions evaluated on the controller, so they run here
against inventories that name drones no one can reach: nothing connects.
"""

from __future__ import annotations

import copy
import os
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, tool

GOOD = {
    "drones": {
        "hosts": {
            "d1": {
                "ansible_host": "10.250.0.11",
                "cloudrone_mesh_address": "10.42.0.11",
                "cloudrone_ap_subnet": "10.43.1.0/24",
            },
            "d2": {
                "ansible_host": "10.250.0.12",
                "cloudrone_mesh_address": "10.42.0.12",
                "cloudrone_ap_subnet": "10.43.2.0/24",
                "mesh_gateway": True,
            },
        },
        "vars": {
            "cloudrone_mesh_network": "10.42.0.0/24",
            "cloudrone_management_network": "10.250.0.0/24",
            "base_admin_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAx operator"],
            # a test fleet's flight key (as a mission's inventory reads its key file)
            "flight_bridge_signing_key": "5a" * 32,
        },
    }
}


def validate(tmp_path, inventory: dict, env: dict | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return subprocess.run(
        [tool("ansible-playbook"), "-i", str(path), "playbooks/validate.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "CLOUDRONE_AP_PASSPHRASE": "", **(env or {})},
        timeout=120,
    )


def changed(**hosts_or_vars) -> dict:
    """GOOD with some host's (d1=..., d2=...) or the group's (vars=...) values changed."""
    inv = copy.deepcopy(GOOD)
    for key, values in hosts_or_vars.items():
        target = inv["drones"]["vars"] if key == "vars" else inv["drones"]["hosts"][key]
        target.update(values)
    return inv


def test_a_sound_fleet_passes(tmp_path):
    result = validate(tmp_path, GOOD)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "failed=0" in result.stdout


CASES = {
    "channel the country forbids": (
        changed(d1={"access_point_channel": 13, "access_point_country": "US"}),
        ["d1", "access_point_channel 13", "US", "pick one of 1, 2"],
    ),
    "mesh channel the country forbids": (
        changed(vars={"mesh_channel": 12, "mesh_country": "CA"}),
        ["mesh_channel 12", "CA"],
    ),
    "a drone that would fly unsigned without saying so": (
        changed(d2={"flight_bridge_signing_key": ""}),
        ["d2", "flight_bridge_signing_key is empty", "flight_bridge_allow_unsigned: true"],
    ),
    "overlapping phone networks": (
        changed(d2={"cloudrone_ap_subnet": "10.43.0.0/16"}),
        ["d1 (10.43.1.0/24) and d2 (10.43.0.0/16)", "cloudrone_ap_subnet", "its own network"],
    ),
    "phones on the mesh network": (
        changed(d1={"cloudrone_ap_subnet": "10.42.0.0/25"}),
        ["d1", "mesh network 10.42.0.0/24", "pick another cloudrone_ap_subnet"],
    ),
    "phones on the management network": (
        changed(d2={"cloudrone_ap_subnet": "10.250.0.128/25"}),
        ["d2", "management network 10.250.0.0/24", "pick another cloudrone_ap_subnet"],
    ),
    "mesh address outside the mesh": (
        changed(d2={"cloudrone_mesh_address": "10.44.0.12"}),
        ["d2", "10.44.0.12", "not an address in the mesh network 10.42.0.0/24"],
    ),
    "short WPA passphrase": (
        changed(d1={"access_point_passphrase": "seven77"}),
        ["d1", "access_point_passphrase is 7 characters", "8 to 63"],
    ),
    "SSID over 32 bytes": (
        # 17 characters, 34 bytes: the limit counts bytes
        changed(d2={"access_point_ssid": "ä" * 17}),
        ["d2", "34 bytes", "1 to 32 bytes"],
    ),
    "not a network": (
        changed(d1={"cloudrone_ap_subnet": "10.43.1.1/24"}),
        ["d1", "cloudrone_ap_subnet", "the network address itself"],
    ),
    "a landing page on a service's port": (
        changed(
            vars={
                "cloudrone_services": [{"name": "camp", "address": "10.42.0.12", "port": 8008}],
                "access_point_portal": True,
            }
        ),
        ["access_point_portal_port 8008", "that no service uses (8008)", "change the one"],
    ),
    "a landing page named as a service": (
        changed(
            vars={
                "cloudrone_services": [{"name": "welcome", "address": "10.42.0.12", "port": 80}],
                "access_point_portal": True,
            }
        ),
        ['access_point_portal_name "welcome"', "no service of access_point_services takes"],
    ),
    "two gateways without a metric": (
        changed(d1={"mesh_gateway": True}),
        ["d1, d2 are all gateways", "mesh_gateway_metric", "1 for the preferred uplink"],
    ),
    "an even number of managers": (
        changed(vars={"cloudrone_swarm_role": "manager"}),
        ["would have 2 managers (d1, d2)", "cloudrone_swarm_role", "1, 3 or 5"],
    ),
    "no manager at all": (
        changed(vars={"cloudrone_swarm_role": "worker"}),
        ["would have 0 managers (none)", "cloudrone_swarm_role"],
    ),
    "overlay networks on the phones' networks": (
        changed(vars={"swarm_address_pool": "10.43.0.0/16"}),
        ["d1: swarm_address_pool 10.43.0.0/16 overlaps 10.43.1.0/24", "of its own"],
    ),
    "a service whose image is on board nowhere": (
        changed(vars={"cloudrone_swarm_services": [{"name": "maps", "image": "tiles:1"}]}),
        [
            "cloudrone_swarm_services[0] (maps)",
            "tiles:1 is neither in an archive",
            "cloudrone_registry: none",
        ],
    ),
    "a spread service bigger than any drone": (
        changed(
            vars={
                "cloudrone_model": "pi2",
                "services_registry": "camp:5000",
                "cloudrone_swarm_services": [
                    {"name": "big", "image": "camp:5000/big", "memory": "2G"}
                ],
            }
        ),
        ["service big: a replica reserving 2G fits on no drone", "832 MiB", "lower its memory"],
    ),
    "a binpack service that fits nowhere": (
        changed(
            vars={
                "cloudrone_model": "pi2",
                "services_registry": "camp:5000",
                "cloudrone_swarm_services": [
                    {
                        "name": "db",
                        "image": "camp:5000/db",
                        "memory": "900M",
                        "placement": "binpack",
                    }
                ],
            }
        ),
        ["service db: a replica reserving 900 MiB", "fits on no drone", "add a drone"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_fleet_that_cannot_work_is_refused_naming_host_variable_and_fix(tmp_path, case):
    inventory, expected = CASES[case]
    result = validate(tmp_path, inventory)
    out = " ".join(result.stdout.split())
    assert result.returncode != 0, out[-2000:]
    for text in expected:
        assert text in out, (text, out[-3000:])
    assert "failed=1" in out


def test_two_gateways_with_their_own_metrics_pass(tmp_path):
    inventory = changed(d1={"mesh_gateway": True, "mesh_gateway_metric": 1})
    assert validate(tmp_path, inventory).returncode == 0


def test_the_passphrase_never_shows_even_when_refused(tmp_path):
    secret = "hush123"
    result = validate(tmp_path, GOOD, env={"CLOUDRONE_AP_PASSPHRASE": secret})
    assert result.returncode != 0
    assert "access_point_passphrase is 7 characters" in " ".join(result.stdout.split())
    assert secret not in result.stdout + result.stderr


def fake_archive(path, tags: list[str]):
    """A docker save archive as far as the roles read one: its manifest."""
    import io
    import json
    import tarfile

    manifest = json.dumps([{"Config": "c0ffee.json", "RepoTags": tags, "Layers": []}]).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return str(path)


def registry_fleet(tmp_path, image: str) -> dict:
    archive = fake_archive(tmp_path / "camp.tar", ["cloudrone/tinyweb:1"])
    return changed(
        vars={
            "cloudrone_registry": "camp:5000",
            "cloudrone_registry_archives": [{"path": archive}],
            "cloudrone_swarm_services": [{"name": "web", "image": image}],
        }
    )


def test_a_service_naming_the_registry_needs_an_image_the_base_camp_serves(tmp_path):
    result = validate(tmp_path, registry_fleet(tmp_path, "camp:5000/cloudrone/maps:1"))
    out = " ".join(result.stdout.split())
    assert result.returncode != 0, out[-2000:]
    assert "cloudrone_swarm_services[0] (web)" in out
    assert "camp:5000/cloudrone/maps:1 is neither in an archive" in out
    assert "cloudrone_registry_archives: camp:5000/cloudrone/tinyweb:1" in out


def test_a_service_whose_image_the_base_camp_serves_passes(tmp_path):
    result = validate(tmp_path, registry_fleet(tmp_path, "camp:5000/cloudrone/tinyweb:1"))
    assert result.returncode == 0, result.stdout[-3000:]


def test_a_short_registry_password_is_refused_and_never_shown(tmp_path):
    inventory = copy.deepcopy(GOOD)
    inventory["basecamp"] = {"hosts": {"camp": {"cloudrone_management_address": "10.250.0.2"}}}
    secret = "tooshort99"
    result = validate(tmp_path, inventory, env={"CLOUDRONE_REGISTRY_PASSWORD": secret})
    out = " ".join(result.stdout.split())
    assert result.returncode != 0, out[-2000:]
    assert "camp: basecamp_registry_password is 10 characters long; give 12 or more" in out
    assert secret not in result.stdout + result.stderr
    # a base camp with a good password passes, and is no drone
    good = validate(tmp_path, inventory, env={"CLOUDRONE_REGISTRY_PASSWORD": secret * 2})
    assert good.returncode == 0, good.stdout[-3000:]


def test_a_host_that_is_neither_drone_nor_base_camp_is_refused(tmp_path):
    inventory = copy.deepcopy(GOOD)
    inventory["others"] = {"hosts": {"stray": {"ansible_host": "10.250.0.3"}}}
    result = validate(tmp_path, inventory)
    out = " ".join(result.stdout.split())
    assert result.returncode != 0
    assert "stray is not in the group 'drones'" in out and "nor in 'basecamp'" in out


@pytest.mark.parametrize(
    ("args", "checked"),
    [((), True), (("--tags", "flight"), True), (("--tags", "swarm"), False),
     (("--skip-tags", "flight"), False)],
)  # fmt: skip
def test_the_flight_key_is_asked_for_only_when_the_run_takes_the_flight_stage(
    tmp_path, args, checked
):
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(changed(vars={"flight_bridge_signing_key": ""})))
    result = subprocess.run(
        [tool("ansible-playbook"), "-i", str(path), "playbooks/validate.yml", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "CLOUDRONE_FLIGHT_SIGNING_KEY": ""},
    )  # fmt: skip
    refused = "flight_bridge_signing_key is empty" in result.stdout
    assert refused is checked and (result.returncode != 0) is checked, result.stdout[-3000:]
