"""A line of five drones: routes converge, ping crosses every hop, routes are kept honest."""

from __future__ import annotations

import signal

import pytest

from cloudrone.bench import lab as lab_mod

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_line_of_five(lab) -> None:
    names = lab_mod.build_line(lab, 5)
    # a route the daemon did not make: it must survive everything below
    lab_mod.run("ip", "-n", lab.ns("d1"), "route", "add", "10.98.0.0/24", "via", "10.99.1.2")
    # a foreign route to the same destination as one of the daemon's, another metric
    lab_mod.run(
        "ip", "-n", lab.ns("d1"), "route", "add", "10.99.4.5/32", "via", "10.99.1.2",
        "metric", "50",
    )  # fmt: skip
    # a route of the daemon's protocol left behind by a crashed run: removed at start
    lab_mod.run(
        "ip", "-n", lab.ns("d1"), "route", "add", "10.97.0.0/24", "via", "10.99.1.2",
        "proto", "100",
    )  # fmt: skip
    for name in names:
        lab.start(name)

    assert lab_mod.wait_until(lambda: lab_mod.converged(lab, names), 30), lab.dump_logs()

    # d1 reaches d5's far address through d2, as a 4-hop route
    r1 = lab.routes("d1")
    assert "10.97.0.0/24" not in r1
    assert r1["10.99.4.5/32"]["gateway"] == "10.99.1.2"
    assert r1["10.99.1.2/32"]["gateway"] is None  # the neighbour itself is on the link
    # ping end to end, and through every hop: TTL 3 dies on the way, TTL 4 arrives
    for target in ("10.99.1.2", "10.99.2.3", "10.99.3.4", "10.99.4.5"):
        assert lab.ping("d1", target), target
    assert lab.ping("d5", "10.99.1.1")
    assert not lab.ping("d1", "10.99.4.5", ttl=3)
    assert lab.ping("d1", "10.99.4.5", ttl=4)

    # JSON status of the middle drone
    st = lab.status("d3")
    assert st["mainAddress"] == "10.99.2.3"
    sym = {n["ipAddress"] for n in st["neighbors"] if n["symmetric"]}
    assert sym == {"10.99.1.2", "10.99.3.4"}
    assert set(st["mpr"]["mprs"]) == {"10.99.1.2", "10.99.3.4"}
    assert {link["currentLinkStatus"] for link in st["links"]} == {"SYMMETRIC"}
    assert all(link["validityTime"] > 0 for link in st["links"])
    assert {(r["destination"], r["metric"]) for r in st["routes"]} >= {
        ("10.99.1.1", 2),
        ("10.99.4.5", 2),
    }
    assert any(m["main"]["ipAddress"] == "10.99.1.2" for m in st["mid"])  # d2 has two ifaces
    # its own broadcasts come back to it and are ignored, never taken for a neighbour
    assert st["stats"]["counters"]["own_packets"] > 0
    assert not {link["remoteIP"] for link in st["links"]} & {"10.99.2.3", "10.99.3.3"}
    assert lab.status("d1", "mpr")["mpr"]["mprs"] == ["10.99.1.2"]
    assert "links" not in lab.status("d1", "mpr")

    # a route deleted by hand is put back
    # (the daemon hears the kernel's delete event and may put it back before a look here
    # would see it gone: that the delete succeeded is the proof it was removed)
    lab_mod.run("ip", "-n", lab.ns("d1"), "route", "del", "10.99.4.5/32", "proto", "100")
    assert lab_mod.wait_until(lambda: "10.99.4.5/32" in lab.routes("d1"), 10)
    assert lab.ping("d1", "10.99.4.5")

    # the route someone else made was never touched; a clean exit removes all of ours
    assert "10.98.0.0/24" in lab.routes("d1", proto=None)
    assert lab.stop("d1", signal.SIGTERM) == 0
    assert lab.routes("d1") == {}
    assert "10.98.0.0/24" in lab.routes("d1", proto=None)
    foreign = lab_mod.run("ip", "-n", lab.ns("d1"), "route", "show", "10.99.4.5/32").stdout
    assert "metric 50" in foreign and "proto 100" not in foreign
    assert '"event": "stopped"' in lab.log("d1")
