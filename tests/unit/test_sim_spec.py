"""The simulated drone's definition: what every node container gets, and bad specs refused."""

from __future__ import annotations

import pytest

from cloudrone.fleet.sim import (
    CAPABILITIES,
    FleetError,
    FleetSpec,
    container_kwargs,
    radio_ruleset,
    spec_digest,
    spec_from_platforms,
)

SPEC = {
    "fleet": "t1",
    "links": [
        {"name": "mgmt", "subnet": "10.99.0.0/24"},
        {"name": "mesh", "subnet": "10.99.1.0/24"},
    ],
    "drones": [
        {"name": "d1", "links": {"mgmt": "10.99.0.11", "mesh": "10.99.1.11"}, "memory": "1g"}
    ],
}


def test_node_container_boots_systemd_with_its_own_engine_volume():
    spec = FleetSpec.from_dict(SPEC)
    kw = container_kwargs(spec, spec.drones[0], "img", privileged=False)
    assert kw["command"] == "/sbin/init"
    assert kw["hostname"] == "d1"
    assert kw["cgroupns"] == "host"
    assert kw["volumes"]["/sys/fs/cgroup"] == {"bind": "/sys/fs/cgroup", "mode": "rw"}
    assert kw["volumes"]["cloudrone-t1-d1-docker"]["bind"] == "/var/lib/docker"
    assert set(kw["tmpfs"]) == {"/run", "/run/lock"}
    assert "seccomp=unconfined" in kw["security_opt"]
    assert kw["mem_limit"] == "1g"
    assert kw["stop_signal"] == "SIGRTMIN+3"


def test_explicit_capabilities_leave_out_sys_resource_and_names_old_engines_reject():
    spec = FleetSpec.from_dict(SPEC)
    kw = container_kwargs(spec, spec.drones[0], "img", privileged=False)
    assert kw["cap_drop"] == ["ALL"]
    assert set(kw["cap_add"]) == set(CAPABILITIES)
    assert not {"SYS_RESOURCE", "BPF", "PERFMON", "CHECKPOINT_RESTORE"} & set(CAPABILITIES)
    assert {"NET_ADMIN", "SYS_ADMIN", "SYS_NICE", "IPC_LOCK"} <= set(CAPABILITIES)


def test_privileged_where_the_host_allows_it():
    spec = FleetSpec.from_dict(SPEC)
    kw = container_kwargs(spec, spec.drones[0], "img", privileged=True)
    assert kw["privileged"] is True
    assert "cap_add" not in kw


def test_spec_digest_changes_with_the_definition():
    spec = FleetSpec.from_dict(SPEC)
    a = container_kwargs(spec, spec.drones[0], "img:1", privileged=False)
    b = container_kwargs(spec, spec.drones[0], "img:2", privileged=False)
    assert spec_digest(a, {}) == spec_digest(dict(a), {})
    assert spec_digest(a, {}) != spec_digest(b, {})
    assert spec_digest(a, {"mesh": "10.99.1.11"}) != spec_digest(a, {"mesh": "10.99.1.12"})


def test_controller_takes_the_last_address_of_each_link():
    spec = FleetSpec.from_dict(SPEC)
    assert str(spec.links[0].gateway) == "10.99.0.254"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["drones"][0]["links"].update(mesh="10.99.2.11"), "is not a host address"),
        (lambda s: s["drones"][0]["links"].update(mesh="10.99.1.254"), "the controller's"),
        (lambda s: s["drones"][0]["links"].update(radio="10.99.1.5"), "no such link"),
        (lambda s: s["links"][0].update(subnet="10.99.0.0/33"), "give a network like"),
        (lambda s: s.update(fleet="bad name"), "letters, digits and dashes"),
    ],
)
def test_bad_fleet_specs_are_refused(change, message):
    import copy

    spec = copy.deepcopy(SPEC)
    change(spec)
    with pytest.raises(FleetError, match=message):
        FleetSpec.from_dict(spec)


def test_molecule_platforms_become_a_fleet():
    spec = spec_from_platforms(
        "molecule-x",
        [
            {
                "name": "a",
                "links": [{"name": "mgmt", "subnet": "10.98.0.0/24", "address": "10.98.0.2"}],
            },
            {
                "name": "b",
                "links": [{"name": "mgmt", "subnet": "10.98.0.0/24", "address": "10.98.0.3"}],
            },
        ],
    )
    assert [d.name for d in spec.drones] == ["a", "b"]
    assert len(spec.links) == 1


def test_molecule_platforms_must_agree_on_a_link_subnet():
    with pytest.raises(FleetError, match="one link, one subnet"):
        spec_from_platforms(
            "m",
            [
                {
                    "name": "a",
                    "links": [{"name": "l", "subnet": "10.98.0.0/24", "address": "10.98.0.2"}],
                },
                {
                    "name": "b",
                    "links": [{"name": "l", "subnet": "10.98.1.0/24", "address": "10.98.1.3"}],
                },
            ],
        )


def _mesh(name: str, i: int, **extra) -> dict:
    return {"name": name, "links": [{"name": "mesh", "subnet": "10.9.1.0/24",
                                     "address": f"10.9.1.{i}"}], **extra}  # fmt: skip


def test_radio_range_from_molecule_platforms_is_symmetric():
    platforms = [_mesh("a", 1, hears=["b"]), _mesh("b", 2, hears={"c": 40}), _mesh("c", 3)]
    radio = spec_from_platforms("r", platforms).radio
    assert radio is not None and radio.link == "mesh"
    assert radio.loss("b", "a") == 0
    assert radio.loss("c", "b") == 40
    assert radio.loss("a", "c") is None


def test_radio_rules_drop_out_of_range_pairs_both_ways_and_thin_lossy_ones():
    spec = spec_from_platforms(
        "my-fleet", [_mesh("a", 1, hears=["b"]), _mesh("b", 2, hears={"c": 25}), _mesh("c", 3)]
    )
    rules = radio_ruleset(spec.fleet, {"a": "vA", "b": "vB", "c": "vC"}, spec.radio)
    assert rules.startswith("table bridge cloudrone_radio_my_fleet\ndelete table bridge")
    assert 'iifname "vA" oifname "vC" drop' in rules and 'iifname "vC" oifname "vA" drop' in rules
    assert 'iifname "vB" oifname "vC" numgen random mod 100 < 25 drop' in rules
    assert 'iifname "vC" oifname "vB" numgen random mod 100 < 25 drop' in rules
    assert '"vA" oifname "vB"' not in rules and '"vB" oifname "vA"' not in rules
