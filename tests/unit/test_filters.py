"""The filters the roles share."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location(
    "cloudrone_filters", ROOT / "plugins/filter/cloudrone.py"
)
filters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(filters)

FACTS = {
    "interfaces": ["lo", "eth0", "wlan0", "br-ap.5"],
    "lo": {"ipv4": {"address": "127.0.0.1"}},
    "eth0": {"ipv4": {"address": "10.250.0.11"}},
    "wlan0": {"ipv4": {"address": "10.9.9.9"}, "ipv4_secondaries": [{"address": "10.42.0.11"}]},
    "br_ap_5": {"ipv4": {"address": "10.42.11.1"}},
    "ghost": {},
}


def test_the_interfaces_holding_addresses_primary_or_secondary():
    found = filters.interfaces_holding(FACTS, ["10.42.0.11", "10.250.0.11"])
    assert found == ["eth0", "wlan0"]
    assert filters.interfaces_holding(FACTS, ["10.42.11.1"]) == ["br-ap.5"]
    assert filters.interfaces_holding(FACTS, ["", "192.0.2.1"]) == []
    assert filters.interfaces_holding({}, ["10.42.0.11"]) == []


def test_addresses_of_a_network_counted_from_either_end():
    assert filters.network_host("10.42.11.0/24", 1) == "10.42.11.1"
    assert filters.network_host("10.42.11.0/24", -1) == "10.42.11.254"
    assert filters.network_prefix("10.42.11.0/24") == 24
    import pytest

    with pytest.raises(ValueError, match="no address number 300"):
        filters.network_host("10.42.11.0/24", 300)


def test_overlaps_and_membership():
    assert filters.networks_overlap("10.42.0.0/16", "10.42.11.0/24")
    assert not filters.networks_overlap("10.42.11.0/24", "10.42.12.0/24")
    assert filters.address_in("10.42.0.11", "10.42.0.0/24")
    assert not filters.address_in("10.43.0.11", "10.42.0.0/24")
    assert filters.is_ipv4_network("10.42.11.0/24")
    assert not filters.is_ipv4_network("10.42.11.1/24")  # a host, not a network
    assert not filters.is_ipv4_network("10.42.11.0")
    assert not filters.is_ipv4_network("lots")


def test_phones_get_the_upper_half_of_the_subnet_short_of_the_last_two():
    assert filters.dhcp_range("10.42.11.0/24") == ["10.42.11.128", "10.42.11.253"]
    assert filters.dhcp_range("10.42.11.0/29") == ["10.42.11.4", "10.42.11.5"]


def test_channels_follow_the_regulatory_domain():
    assert 13 in filters.channels_allowed("GB") and 14 not in filters.channels_allowed("GB")
    assert 12 not in filters.channels_allowed("US") and 149 in filters.channels_allowed("us")
    assert 14 in filters.channels_allowed("JP")
    assert 149 not in filters.channels_allowed("DE")
    # an unlisted country gets what is legal nearly everywhere
    assert filters.channels_allowed("XX") == [*range(1, 12), 36, 40, 44, 48]
    assert 52 not in filters.channels_allowed("US")  # radar detection: not for drones


def test_a_preferred_gateway_announces_longer_prefixes():
    assert filters.default_route_split(3) == ["0.0.0.0/0"]
    assert filters.default_route_split(2) == ["0.0.0.0/1", "128.0.0.0/1"]
    assert len(filters.default_route_split(1)) == 4
    import pytest

    with pytest.raises(ValueError, match="1 \\(preferred\\), 2 or 3"):
        filters.default_route_split(0)


# --- The micro cloud -----------------------------------------------------------------


def test_sizes_as_docker_writes_them():
    assert filters.memory_bytes("300M") == 300 * 2**20
    assert filters.memory_bytes("1g") == 2**30
    assert filters.memory_bytes("512MiB") == 512 * 2**20
    assert filters.memory_bytes(1024) == 1024
    assert filters.memory_bytes("0.5G") == 2**29
    with pytest.raises(ValueError, match="64M, 1G"):
        filters.memory_bytes("lots")


def _node(name, mb, cpus, state="ready", availability="active"):
    return {
        "Description": {
            "Hostname": name,
            "Resources": {"MemoryBytes": mb * 2**20, "NanoCPUs": int(cpus * 1e9)},
        },
        "Status": {"State": state},
        "Spec": {"Availability": availability},
    }


def test_capacity_in_fleet_order_from_the_model_or_the_engine_whichever_is_less():
    nodes = [
        _node("b", 24000, 2),
        _node("a", 24000, 4),
        _node("c", 900, 4),
        _node("gone", 1024, 4, state="down"),
        _node("drained", 1024, 4, availability="drain"),
    ]
    out = filters.swarm_capacity(
        nodes, ["a", "b", "c", "gone", "drained"], {"a": 1024, "b": 0, "c": 1024}, 192, 70
    )
    assert [n["name"] for n in out] == ["a", "b", "c"]
    assert out[0] == {"name": "a", "memory": 832 * 2**20, "cpus": pytest.approx(2.8)}
    assert out[1]["memory"] == (24000 - 192) * 2**20  # no model: the engine's figure
    assert out[2]["memory"] == (900 - 192) * 2**20  # the engine reports less than the model


def test_binpack_services_are_read_from_the_mission():
    services = [
        {"name": "web", "image": "x", "placement": "spread"},
        {"name": "packed", "replicas": 3, "memory": "300M", "cpus": 0.25, "placement": "binpack"},
        {"name": "api", "memory": "64M", "placement": "binpack", "ports": [{"target": 80}]},
    ]
    assert filters.binpack_services(services) == [
        {"name": "packed", "replicas": 3, "memory": 300 * 2**20, "cpus": 0.25, "host_ports": False},
        {"name": "api", "replicas": 1, "memory": 64 * 2**20, "cpus": 0.0, "host_ports": True},
    ]


def test_binpack_plan_pins_replicas_and_refuses_what_cannot_work():
    nodes = [
        {"name": "a", "memory": 832 * 2**20, "cpus": 1.4},
        {"name": "b", "memory": 832 * 2**20, "cpus": 1.4},
    ]
    plan = filters.binpack_plan(
        nodes,
        [{"name": "packed", "replicas": 3, "memory": 300 * 2**20, "cpus": 0, "host_ports": False}],
    )
    assert plan == [
        {
            "name": "packed-a",
            "service": "packed",
            "replicas": 2,
            "constraints": ["node.hostname==a"],
        },
        {
            "name": "packed-b",
            "service": "packed",
            "replicas": 1,
            "constraints": ["node.hostname==b"],
        },
    ]
    with pytest.raises(ValueError, match=r"packed: a replica reserving 900 MiB.*fits on no drone"):
        filters.binpack_plan(
            nodes, [{"name": "packed", "replicas": 1, "memory": 900 * 2**20, "cpus": 0}]
        )
    with pytest.raises(ValueError, match=r"api: binpack puts 2 replicas on a.*mode=host"):
        filters.binpack_plan(
            nodes, [{"name": "api", "replicas": 2, "memory": 2**20, "cpus": 0, "host_ports": True}]
        )


def test_a_docker_save_archive_lists_its_images_as_docker_image_ls(tmp_path):
    import io
    import json
    import tarfile

    def archive(manifest):
        path = tmp_path / "a.tar"
        with tarfile.open(path, "w") as tar:
            data = json.dumps(manifest).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return str(path)

    legacy = archive([{"Config": "abc123.json", "RepoTags": ["web:1", "web:latest"]}])
    assert filters.docker_archive_images(legacy) == [
        "sha256:abc123 web:1",
        "sha256:abc123 web:latest",
    ]
    oci = archive([{"Config": "blobs/sha256/def456", "RepoTags": None}])
    assert filters.docker_archive_images(oci) == ["sha256:def456 <none>:<none>"]
    (tmp_path / "not.tar").write_text("hello")
    with pytest.raises(ValueError, match="not a docker save archive"):
        filters.docker_archive_images(str(tmp_path / "not.tar"))


def test_what_dpkg_holds_installed_by_name_and_version():
    import subprocess

    listing = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${db:Status-Abbrev} ${Package} ${Version}\n"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    installed = filters.dpkg_installed(listing)
    assert installed["dpkg"] == subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Version}", "dpkg"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # removed with its settings kept, known but never installed, half-configured
    made_up = "rc  gone 1.0\nun  never <none>\niF  broken 2.0\nhi  held 3.1-2\n"
    assert filters.dpkg_installed(made_up) == {"held": "3.1-2"}


def test_a_stat_loop_read_by_path():
    looked = {"results": [{"item": "/a", "stat": {"exists": True}},
                          {"item": "/b", "stat": {"exists": False}}]}  # fmt: skip
    assert filters.found_paths(looked) == {"/a": True, "/b": False}
    assert filters.found_paths({"skipped": True}) == {}


def test_a_wheel_target_from_a_drones_facts():
    facts = {"python": {"version": {"major": 3, "minor": 11}}, "architecture": "armv7l"}
    assert filters.wheel_target(facts) == "cp311-armv7l"
