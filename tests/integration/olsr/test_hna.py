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
