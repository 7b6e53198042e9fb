"""The simulated drone's definition: what every node container gets, and bad specs refused."""

from __future__ import annotations

import pytest

from cloudrone.fleet.sim import (
    CAPABILITIES,
    FleetError,
    FleetSpec,
    container_kwargs,
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
