"""Whole-protocol behaviour on simulated meshes of real nodes with one fake clock."""

from __future__ import annotations

import importlib.util
import pathlib

from cloudrone.olsr import codec
from cloudrone.olsr.codec import Message, Tc
from cloudrone.olsr.constants import HELLO_MESSAGE, TC_MESSAGE, TC_REDUNDANCY_SELECTORS, WILL_ALWAYS
from cloudrone.olsr.protocol import Node

_spec = importlib.util.spec_from_file_location(
    "olsr_unit_conftest", pathlib.Path(__file__).with_name("conftest.py")
)
assert _spec is not None and _spec.loader is not None
sim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sim)


def all_addresses(mesh) -> set[str]:
    return set().union(*(n.interfaces.values() for n in mesh.nodes.values()))


def test_line_of_five_converges_hop_by_hop(mesh) -> None:
    names = sim.line(mesh, 5, timers=sim.FAST)
    mesh.run(10)
    everyone = all_addresses(mesh)
    for name in names:
        node = mesh.nodes[name]
        routes = mesh.routes(name)
        assert {d for d, _p in routes} == everyone - set(node.interfaces.values())
    r1 = mesh.routes("n1")
    assert r1[("10.99.4.5", 32)].hops == 4
    assert r1[("10.99.4.5", 32)].next_hop == "10.99.1.2"
    r3 = mesh.routes("n3")
    assert r3[("10.99.1.1", 32)].next_hop == "10.99.2.2"
    assert r3[("10.99.4.5", 32)].next_hop == "10.99.3.4"
    # the inner nodes relay, the ends do not need to
    assert mesh.nodes["n3"].mpr_set == {"10.99.1.2", "10.99.3.4"}
    assert mesh.nodes["n1"].mpr_set == {"10.99.1.2"}
    assert mesh.forwarded["n1"] == 0 and mesh.forwarded["n5"] == 0
    assert all(mesh.forwarded[n] > 0 for n in ("n2", "n3", "n4"))


def test_grid_all_reach_all_and_mprs_limit_relaying(mesh) -> None:
    names = sim.grid(mesh, 4, timers=sim.FAST)
    mesh.run(15)
    everyone = all_addresses(mesh)
    for name in names:
        own = set(mesh.nodes[name].interfaces.values())
        assert {d for d, _p in mesh.routes(name)} == everyone - own, name
    # corner r0c0 reaches the far corner in 6 hops
    far = mesh.nodes["r3c3"].main_address
    assert mesh.routes("r0c0")[(far, 32)].hops == 6
    relays = {n for n in names if mesh.forwarded[n] > 0}
    assert relays and len(relays) < len(names)
    # pure flooding retransmits every TC/MID message once at every other node
    flooded = sum(c for (_n, t), c in mesh.sent.items() if t != HELLO_MESSAGE)
    assert sum(mesh.forwarded.values()) < 0.8 * flooded * (len(names) - 1)


def test_node_removed_routes_go_around_it(mesh) -> None:
    sim.grid(mesh, 3, timers=sim.FAST)
    mesh.run(10)
    victim = "r1c1"  # the centre of the 3x3 grid
    victim_addrs = set(mesh.nodes[victim].interfaces.values())
    src, dst = "r0c1", "r2c1"  # the centre is their only 2-hop path
    dst_main = mesh.nodes[dst].main_address
    assert mesh.routes(src)[(dst_main, 32)].hops == 2
    mesh.remove(victim)
    # within the holding times (neighbour 1.5 s, topology 3 s) the path goes around
    mesh.run(sim.FAST.neighb_hold + sim.FAST.top_hold + 1)
    route = mesh.routes(src)[(dst_main, 32)]
    assert route.hops == 4
    for name in mesh.nodes:
        if name == victim:
            continue
        routes = mesh.routes(name)
        assert not victim_addrs & {d for d, _p in routes}, name
        assert not victim_addrs & {r.next_hop for r in routes.values()}, name


def test_hna_networks_reach_the_far_end(mesh) -> None:
    sim.line(mesh, 4, timers=sim.FAST)
    mesh.nodes["n4"].hna_networks = [("10.42.4.0", 24)]
    mesh.nodes["n2"].hna_networks = [("0.0.0.0", 0)]
    mesh.run(8)
    r1 = mesh.routes("n1")
    assert r1[("10.42.4.0", 24)].hops == 3
    assert r1[("10.42.4.0", 24)].next_hop == "10.99.1.2"
    assert r1[("0.0.0.0", 0)].hops == 1
    assert ("10.42.4.0", 24) not in mesh.routes("n4")


def test_mid_lets_far_nodes_reach_every_interface(mesh) -> None:
    sim.line(mesh, 4, timers=sim.FAST)
    mesh.run(8)
    n1 = mesh.nodes["n1"]
    # n3's second interface is known through MID, mapped to n3's main address
    assert n1.mid["10.99.3.3"][0] == mesh.nodes["n3"].main_address


def test_willing_always_neighbor_relays(mesh) -> None:
    sim.line(mesh, 3, timers=sim.FAST)
    mesh.nodes["n3"].willingness = WILL_ALWAYS
    mesh.run(5)
    # n3 has no 2-hop neighbour to cover for n2, but WILL_ALWAYS makes it an MPR
    assert mesh.nodes["n3"].main_address in mesh.nodes["n2"].mpr_set


def test_tc_redundancy_selectors_only(mesh) -> None:
    sim.line(mesh, 3, timers=sim.FAST, tc_redundancy=TC_REDUNDANCY_SELECTORS)
    mesh.run(6)
    n1, n2 = mesh.nodes["n1"], mesh.nodes["n2"]
    assert n1.advertised_set() == set()  # nobody picked n1 as MPR
    assert n2.advertised_set() == {n1.main_address, mesh.nodes["n3"].main_address}
    assert n1.make_tc() is None


def _tc(origin: str, seq: int, ansn: int, addrs: list[str], ttl: int = 255) -> bytes:
    msg = Message(TC_MESSAGE, codec.encode_time(15.0), origin, ttl, 0, seq, Tc(ansn, addrs))
    return codec.encode_packet(1, [codec.encode_message(msg)])


def _two_node(clock, mesh) -> Node:
    sim.line(mesh, 2)
    mesh.run(5)
    return mesh.nodes["n1"]


def test_tc_ansn_ordering_with_wrap_around(clock, mesh) -> None:
    node = _two_node(clock, mesh)
    src = "10.99.1.2"
    node.receive(_tc("10.9.9.9", 100, 65534, ["10.9.0.1", "10.9.0.2"]), src, "right")
    assert {d for d, last in node.topology if last == "10.9.9.9"} == {"10.9.0.1", "10.9.0.2"}
    # ANSN 1 is newer than 65534 across the wrap: old tuples go, new ones come
    node.receive(_tc("10.9.9.9", 101, 1, ["10.9.0.3"]), src, "right")
    assert {d for d, last in node.topology if last == "10.9.9.9"} == {"10.9.0.3"}
    # a late TC with the older ANSN is ignored
    node.receive(_tc("10.9.9.9", 102, 65535, ["10.9.0.1"]), src, "right")
    assert {d for d, last in node.topology if last == "10.9.9.9"} == {"10.9.0.3"}
    assert node.counters["tc_out_of_order"] == 1


def test_tc_from_a_stranger_is_ignored(clock, mesh) -> None:
    node = _two_node(clock, mesh)
    node.receive(_tc("10.9.9.9", 1, 1, ["10.9.0.1"]), "10.99.1.77", "right")
    assert node.topology == {} or all(last != "10.9.9.9" for _d, last in node.topology)


def test_forwarding_only_for_selectors_once_and_ttl(clock, mesh) -> None:
    sim.line(mesh, 3)
    mesh.run(6)
    n2 = mesh.nodes["n2"]
    src = "10.99.1.1"  # n1 selected n2 as MPR
    assert "10.99.1.1" in n2.mpr_selectors
    out = n2.receive(_tc("10.9.9.9", 500, 1, ["10.9.0.1"]), src, "left")
    assert len(out) == 1
    fwd = codec.decode_message(out[0])
    assert (fwd.ttl, fwd.hop_count, fwd.seqno) == (254, 1, 500)
    # the same message again (from either side) is not processed or forwarded twice
    assert n2.receive(_tc("10.9.9.9", 500, 1, ["10.9.0.1"]), src, "left") == []
    assert n2.receive(_tc("10.9.9.9", 500, 1, ["10.9.0.1"]), "10.99.2.3", "right") == []
    # TTL 1 is processed but never retransmitted
    assert n2.receive(_tc("10.9.9.8", 501, 1, ["10.9.0.2"], ttl=1), src, "left") == []
    assert ("10.9.0.2", "10.9.9.8") in n2.topology
    # n3 reaches n1 only through n2, so n3 selected n2 too
    assert "10.99.2.3" in n2.mpr_selectors


def test_non_selector_traffic_is_processed_not_forwarded(clock, mesh) -> None:
    sim.line(mesh, 2)
    mesh.run(5)
    n1 = mesh.nodes["n1"]
    assert n1.mpr_selectors == {}
    out = n1.receive(_tc("10.9.9.9", 7, 1, ["10.9.0.1"]), "10.99.1.2", "right")
    assert out == []
    assert ("10.9.0.1", "10.9.9.9") in n1.topology


def test_empty_advertised_set_keeps_sending_empty_tc_for_top_hold(clock, mesh) -> None:
    sim.line(mesh, 2, timers=sim.FAST)
    mesh.run(3)
    n1 = mesh.nodes["n1"]
    ansn = n1.ansn
    assert n1.make_tc() is not None
    mesh.remove("n2")
    mesh.run(sim.FAST.neighb_hold + 0.5)
    n1.expire()
    tc = n1.make_tc()
    assert tc is not None and isinstance(tc.body, Tc)
    assert tc.body.addresses == [] and codec.seq_newer(tc.body.ansn, ansn)
    mesh.run(sim.FAST.top_hold + 0.5)
    assert n1.make_tc() is None
