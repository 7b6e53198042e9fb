"""Routing across the line A - B - C: through B, and around a cut link."""

from __future__ import annotations

import json
import time

import pytest

from cloudrone.bench.lab import wait_until

MESH = {"drone-a": "10.246.1.11", "drone-b": "10.246.1.12", "drone-c": "10.246.1.13"}
C_NETWORK = "10.246.13.0/24"  # drone-c's access point subnet, announced by HNA
# the fast profile: a neighbour is lost after 1.5 s, a topology entry after 6 s
HOLD = 6.0
# every check looks from drone-a, the end of the line
testinfra_hosts = ["ansible://drone-a"]


@pytest.fixture
def a(host):
    assert host.backend.get_hostname() == "drone-a"
    return host


def route(host, destination: str) -> str:
    return host.check_output(f"ip route show {destination} proto 100")


def daemon_route(host, destination: str) -> dict | None:
    routes = json.loads(host.check_output("curl -sf http://127.0.0.1:9090/routes"))["routes"]
    return next((r for r in routes if r["destination"] == destination.split("/")[0]), None)


def test_a_reaches_c_through_b_and_the_daemon_agrees_with_the_kernel(a):
    c, b = MESH["drone-c"], MESH["drone-b"]
    assert wait_until(lambda: f"via {b}" in route(a, c), 20), route(a, c)
    assert daemon_route(a, c)["gateway"] == b
    assert f"via {b}" in route(a, C_NETWORK)
    assert daemon_route(a, C_NETWORK)["gateway"] == b
    # and traffic really takes it: two hops
    trace = a.check_output(f"ping -n -c 1 -W 2 -R {c} || true")
    assert b in trace


def test_only_b_is_a_neighbour_of_a(a):
    neighbours = json.loads(a.check_output("curl -sf http://127.0.0.1:9090/neighbors"))
    heard = {n["ipAddress"] for n in neighbours["neighbors"] if n["symmetric"]}
    assert heard == {MESH["drone-b"]}


def test_cut_b_c_and_c_leaves_a_within_the_hold_time(a, fleet):
    c = MESH["drone-c"]
    fleet.set_range("drone-b", "drone-c", None)
    try:
        cut = time.monotonic()
        gone = wait_until(lambda: route(a, c) == "" and route(a, C_NETWORK) == "", HOLD + 4)
        took = time.monotonic() - cut
        assert gone, f"A still routes to C {took:.1f} s after the cut: {route(a, c)}"
        assert daemon_route(a, c) is None
    finally:
        fleet.set_range("drone-b", "drone-c", 0)
    # healed: back through B
    assert wait_until(lambda: f"via {MESH['drone-b']}" in route(a, c), 20)


def test_put_a_and_c_in_range_and_traffic_goes_direct(a, fleet):
    c = MESH["drone-c"]
    fleet.set_range("drone-a", "drone-c", 0)
    try:
        # with link quality a new link has to prove itself before it beats two clean
        # hops (ETX under 2): some 10 to 20 s at the fast profile's pace
        direct = wait_until(lambda: "via" not in route(a, c) and route(a, c) != "", 45)
        assert direct, route(a, c)
        # the daemon's table and the kernel's may differ for a moment while it settles
        assert wait_until(lambda: (daemon_route(a, c) or {}).get("gateway") == c, 10), daemon_route(
            a, c
        )
        # C's way back may still be settling (its new links start with a poor name)
        assert wait_until(lambda: a.run(f"ping -n -c 1 -W 1 {c}").rc == 0, 15)
    finally:
        fleet.set_range("drone-a", "drone-c", None)


def test_a_lossy_link_to_c_is_not_taken_with_etx(a, fleet):
    """A and C in range at 40% loss, A-B and B-C clean: by hop count A would send to C
    direct and lose about 40%; by ETX (the role's default) it stays on B."""
    c, b = MESH["drone-c"], MESH["drone-b"]

    def links() -> set[str]:
        st = json.loads(a.check_output("curl -sf http://127.0.0.1:9090/links"))
        assert st["linkQuality"] == "etx"
        return {lk["remoteIP"] for lk in st["links"]}

    # from no link at all: a link that was clean keeps its good name for a while
    assert wait_until(lambda: c not in links(), 10), links()
    fleet.set_range("drone-a", "drone-c", 40)
    try:
        assert wait_until(lambda: c in links(), 10)  # A hears C now, however poorly ...
        # ... and for 15 s every look finds the route through B
        for _ in range(15):
            assert f"via {b}" in route(a, c), route(a, c)
            time.sleep(1)
        costs = {
            lk["remoteIP"]: lk["linkCost"]
            for lk in json.loads(a.check_output("curl -sf http://127.0.0.1:9090/links"))["links"]
        }
        assert costs[b] < costs[c], costs
        # and traffic arrives: 200 pings, at most 2 lost
        out = a.check_output(f"ping -n -q -c 200 -i 0.02 -W 2 {c} || true")
        received = int(out.split(" received")[0].rsplit(",", 1)[-1].strip())
        assert received >= 198, out
    finally:
        fleet.set_range("drone-a", "drone-c", None)
