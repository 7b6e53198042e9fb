"""Routing table calculation (RFC 3626 section 10) and HNA routes (section 12.6)."""

from __future__ import annotations

from cloudrone.olsr.constants import WILL_DEFAULT, WILL_NEVER
from cloudrone.olsr.routing import Route, SymLink, calculate_routes

D = WILL_DEFAULT


def table(routes: dict) -> dict[str, tuple[str, int]]:
    return {f"{d}/{p}": (r.next_hop, r.hops) for (d, p), r in routes.items()}


def test_line_by_neighbors_two_hop_and_topology() -> None:
    # a - b - c - d - e, seen from a; b reports c as 2-hop; c and d send TCs
    routes = calculate_routes(
        own={"a"},
        links=[SymLink("a-if", "b", "b")],
        willingness={"b": D},
        two_hop=[("b", "c")],
        topology=[("c", "b"), ("c", "d"), ("d", "c"), ("d", "e"), ("b", "c")],
        mid={},
        hna=[],
    )
    assert table(routes) == {
        "b/32": ("b", 1),
        "c/32": ("b", 2),
        "d/32": ("b", 3),
        "e/32": ("b", 4),
    }
    assert routes[("e", 32)].iface == "a-if"


def test_neighbor_interfaces_and_main_address() -> None:
    routes = calculate_routes(
        own={"a", "a2"},
        links=[SymLink("a", "b1", "b"), SymLink("a2", "b2", "b")],
        willingness={"b": D},
        two_hop=[],
        topology=[],
        mid={"b1": "b", "b2": "b"},
        hna=[],
    )
    assert table(routes) == {"b1/32": ("b1", 1), "b2/32": ("b2", 1), "b/32": ("b1", 1)}
    assert routes[("b2", 32)].iface == "a2"


def test_two_hop_through_will_never_is_not_used() -> None:
    routes = calculate_routes(
        own={"a"},
        links=[SymLink("a", "b", "b"), SymLink("a", "c", "c")],
        willingness={"b": WILL_NEVER, "c": D},
        two_hop=[("b", "x"), ("c", "x"), ("b", "y")],
        topology=[],
        mid={},
        hna=[],
    )
    assert table(routes)["x/32"] == ("c", 2)
    assert "y/32" not in table(routes)


def test_shortest_path_wins_and_unreachable_is_left_out() -> None:
    # a-b-c-d and a-e-d: d is 2 hops through e; island z-w is not reachable
    routes = calculate_routes(
        own={"a"},
        links=[SymLink("a", "b", "b"), SymLink("a", "e", "e")],
        willingness={"b": D, "e": D},
        two_hop=[("b", "c"), ("e", "d")],
        topology=[("b", "c"), ("c", "d"), ("e", "d"), ("z", "w")],
        mid={},
        hna=[],
    )
    assert table(routes)["d/32"] == ("e", 2)
    assert "w/32" not in table(routes)


def test_mid_aliases_follow_their_main_address() -> None:
    routes = calculate_routes(
        own={"a"},
        links=[SymLink("a", "b", "b")],
        willingness={"b": D},
        two_hop=[("b", "c")],
        topology=[],
        mid={"c-eth1": "c", "z-eth1": "z"},
        hna=[],
    )
    assert table(routes)["c-eth1/32"] == ("b", 2)
    assert "z-eth1/32" not in table(routes)


def test_hna_uses_the_nearest_gateway_and_skips_own_networks() -> None:
    routes = calculate_routes(
        own={"10.0.0.1"},
        links=[SymLink("10.0.0.1", "10.0.0.2", "10.0.0.2")],
        willingness={"10.0.0.2": D},
        two_hop=[("10.0.0.2", "10.0.0.3")],
        topology=[("10.0.0.3", "10.0.0.4")],
        mid={},
        hna=[
            ("10.0.0.4", "0.0.0.0", 0),
            ("10.0.0.3", "0.0.0.0", 0),
            ("10.0.0.4", "10.42.4.0", 24),
            ("10.0.0.9", "10.42.9.0", 24),  # gateway not reachable
            ("10.0.0.2", "10.42.1.0", 24),  # this node's own network
        ],
        own_hna=[("10.42.1.0", 24)],
    )
    assert routes[("0.0.0.0", 0)] == Route("0.0.0.0", 0, "10.0.0.2", "10.0.0.1", 2)
    assert routes[("10.42.4.0", 24)].hops == 3
    assert ("10.42.9.0", 24) not in routes
    assert ("10.42.1.0", 24) not in routes


def test_own_addresses_never_get_routes() -> None:
    routes = calculate_routes(
        own={"a", "a2"},
        links=[SymLink("a", "b", "b")],
        willingness={"b": D},
        two_hop=[("b", "a2")],
        topology=[("b", "a"), ("b", "a2")],
        mid={"a2": "a"},
        hna=[],
    )
    assert set(table(routes)) == {"b/32"}
