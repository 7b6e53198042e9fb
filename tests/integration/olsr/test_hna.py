"""HNA: a drone's access-point subnet and a gateway's default route reach the far end."""

from __future__ import annotations

import pytest

from cloudrone.bench import lab as lab_mod

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_hna_subnet_and_gateway(lab) -> None:
    names = lab_mod.build_line(lab, 3)
    # a phone on d3's access point, and a base camp behind d1's uplink
    lab.add_node("phone")
    lab.add_node("camp")
    ap, phone_if = lab.link("d3", "phone", "10.99.200", 1, 10)
    uplink, camp_if = lab.link("d1", "camp", "10.99.201", 1, 2)
    lab_mod.run("ip", "-n", lab.ns("phone"), "route", "add", "default", "via", "10.99.200.1")
    lab_mod.run("ip", "-n", lab.ns("camp"), "route", "add", "default", "via", "10.99.201.1")

    lab.start("d1", interfaces=["v0a"], hna={"networks": ["0.0.0.0/0", "10.99.201.0/24"]})
    lab.start("d2")
    lab.start("d3", interfaces=["v1b"], hna={"networks": ["10.99.200.0/24"]})

    def ready() -> bool:
        return "10.99.200.0/24" in lab.routes("d1") and "0.0.0.0/0" in lab.routes("d3")

    assert lab_mod.wait_until(ready, 30), lab.dump_logs()
    assert lab.routes("d1")["10.99.200.0/24"]["gateway"] == "10.99.1.2"
    assert lab.routes("d3")["0.0.0.0/0"]["gateway"] == "10.99.2.2"
    # nobody routes its own announcements
    assert "10.99.200.0/24" not in lab.routes("d3")
    assert "0.0.0.0/0" not in lab.routes("d1")

    # the phone is reachable from the far end, and reaches the camp through the default
    assert lab.ping("d1", "10.99.200.10")
    assert lab.ping("camp", "10.99.200.10")
    assert lab.ping("phone", "10.99.201.2")

    hna = lab.status("d2", "hna")["hna"]
    assert {(h["gateway"], h["destination"], h["genmask"]) for h in hna} == {
        ("10.99.1.1", "0.0.0.0", 0),
        ("10.99.1.1", "10.99.201.0", 24),
        ("10.99.2.3", "10.99.200.0", 24),
    }
    assert all(h["validityTime"] > 0 for h in hna)
    assert names == ["d1", "d2", "d3"] and ap and phone_if and uplink and camp_if


def test_only_the_missions_networks_are_believed_and_strangers_are_reported(lab) -> None:
    """A stranger's olsrd once made drones install 0.0.0.0/0 and a /32 inside a phone
    subnet. d1 believes the mission's networks from the fleet, the default route from
    the declared gateway alone, and reports what it refused and who is not in the fleet."""
    for node in ("d1", "d2", "gw", "x"):
        lab.add_node(node)
    air = lab.air(["d1", "d2", "gw", "x"])  # 10.99.0.1 .. 10.99.0.4, all in range
    policy = {
        "accept": ["10.99.0.0/24", "10.60.0.0/16"],  # the mesh, the phones' ground network
        "gateways": [air["gw"]],
        "fleet": [air["d1"], air["d2"], air["gw"]],
    }
    lab.start("d1", profile="fast", hna={"networks": ["10.60.1.0/24"], **policy})
    # a fleet drone: its phones (believed) and a network that is none of the mission's
    lab.start("d2", profile="fast", hna={"networks": ["10.60.2.0/24", "10.70.0.0/24"]})
    lab.start("gw", profile="fast", hna={"networks": ["0.0.0.0/0"]})
    # the stranger: the default route and one phone of d1's, for itself
    lab.start("x", profile="fast", hna={"networks": ["0.0.0.0/0", "10.60.1.5/32"]})

    def refusals() -> set[tuple[str, str, str]]:
        rows = lab.status("d1", "warnings")["warnings"]
        return {
            (r["originator"], r["network"], r["reason"]) for r in rows if r["kind"] == "hna_refused"
        }

    expected = {
        (air["d2"], "10.70.0.0/24", "outside"),
        (air["x"], "0.0.0.0/0", "stranger"),
        (air["x"], "10.60.1.5/32", "stranger"),
    }

    def settled() -> bool:
        routes = lab.routes("d1")
        return "10.60.2.0/24" in routes and "0.0.0.0/0" in routes and refusals() == expected

    assert lab_mod.wait_until(settled, 30), (lab.routes("d1"), refusals())
    routes = lab.routes("d1")
    assert routes["10.60.2.0/24"]["gateway"] == air["d2"]
    assert routes["0.0.0.0/0"]["gateway"] == air["gw"]  # never the stranger
    assert "10.70.0.0/24" not in routes and "10.60.1.5/32" not in routes
    hna = {(h["gateway"], h["destination"], h["genmask"]) for h in lab.status("d1", "hna")["hna"]}
    assert not any(g == air["x"] for g, _, _ in hna), hna
    strangers = [r for r in lab.status("d1", "warnings")["warnings"] if r["kind"] == "stranger"]
    assert [s["originator"] for s in strangers] == [air["x"]]
    assert strangers[0]["messages"] > 0 and "not in the fleet" in strangers[0]["problem"]
    log = lab.log("d1")
    assert log.count('"event": "hna_refused"') == 3, log[-3000:]
    assert log.count('"event": "stranger"') == 1, log[-3000:]
    # d2 has no policy: as RFC 3626 has it, it believes everyone (the role always sets one)
    assert lab_mod.wait_until(lambda: "10.60.1.5/32" in lab.routes("d2"), 15)
