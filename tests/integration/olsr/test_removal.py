"""A drone drops out of a 3x3 grid: routes go around it within the holding times."""

from __future__ import annotations

import time

import pytest

from cloudrone.bench import lab as lab_mod

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_node_removed_routes_go_around(lab) -> None:
    grid = lab_mod.build_grid(lab, 3)
    names = [n for row in grid for n in row]
    for name in names:
        lab.start(name)
    assert lab_mod.wait_until(lambda: lab_mod.converged(lab, names), 40, step=0.5), lab.dump_logs()

    # r0c1 -> r2c1 goes straight through the centre r1c1 (2 hops)
    target = lab.addresses["r2c1"]
    dest = sorted(target.values())[0]
    centre = set(lab.addresses["r1c1"].values())
    assert lab.routes("r0c1")[f"{dest}/32"]["gateway"] in centre
    assert lab.ping("r0c1", dest, ttl=2)

    lab.remove_node("r1c1")
    gone = time.monotonic()
    rest = [n for n in names if n != "r1c1"]
    survivors = lab.all_addresses(rest)

    def routed_around() -> bool:
        for name in rest:
            routes = lab.routes(name)
            gateways = {r["gateway"] for r in routes.values()}
            if gateways & centre or {d.split("/")[0] for d in routes} & centre:
                return False
            if not survivors - set(lab.addresses[name].values()) <= {
                d.split("/")[0] for d in routes
            }:
                return False
        return True

    # neighbour hold 1.5 s + topology hold 3 s, plus margin for a busy machine
    assert lab_mod.wait_until(routed_around, 15, step=0.3), lab.dump_logs()
    took = time.monotonic() - gone
    print(f"routes around the lost drone after {took:.1f} s")
    assert lab.ping("r0c1", dest)
    assert not lab.ping("r0c1", dest, ttl=3)  # now 4 hops around the hole
    assert all(lab.alive(n) for n in rest)


def test_interface_vanishing_does_not_stop_the_daemon(lab) -> None:
    names = lab_mod.build_line(lab, 3)
    for name in names:
        lab.start(name)
    assert lab_mod.wait_until(lambda: lab_mod.converged(lab, names), 20), lab.dump_logs()
    # d3's namespace goes, and with it d2's interface towards d3
    lab.unplug("d3")
    assert lab_mod.wait_until(lambda: '"interface_down"' in lab.log("d2"), 10), lab.log("d2")
    assert lab.alive("d2") and lab.alive("d1")
    st = lab.status("d2", "stats/neighbors")
    assert st["stats"]["interfaces"] == ["v0b"]
    assert lab_mod.wait_until(
        lambda: (
            {n["ipAddress"] for n in lab.status("d2", "neighbors")["neighbors"]} == {"10.99.1.1"}
        ),
        10,
    )
    assert lab_mod.wait_until(lambda: "10.99.2.3/32" not in lab.routes("d1"), 10)
    assert lab.ping("d1", "10.99.1.2")
