"""Link sensing, neighbour and 2-hop sets, MPR selectors (RFC 3626 sections 7, 8)."""

from __future__ import annotations

from cloudrone.olsr import codec
from cloudrone.olsr.codec import Hello, LinkBlock, Message
from cloudrone.olsr.constants import (
    ASYM_LINK,
    HELLO_MESSAGE,
    LOST_LINK,
    MPR_NEIGH,
    NOT_NEIGH,
    SYM_LINK,
    SYM_NEIGH,
    UNSPEC_LINK,
)
from cloudrone.olsr.protocol import Node

A = "10.99.0.1"
B = "10.99.0.2"
C = "10.99.1.3"


def hello_from(
    origin: str, blocks: list[tuple[int, int, list[str]]], willingness: int = 3
) -> bytes:
    links = [LinkBlock((nt << 2) | lt, addrs) for lt, nt, addrs in blocks]
    msg = Message(
        HELLO_MESSAGE, codec.encode_time(6.0), origin, 1, 0, 1, Hello(5, willingness, links)
    )
    return codec.encode_packet(1, [codec.encode_message(msg)])


def link_codes(node: Node, iface: str = "eth0") -> dict[str, int]:
    hello = node.make_hello(iface).body
    assert isinstance(hello, Hello)
    return {a: (b.link_type, b.neighbor_type) for b in hello.links for a in b.addresses}


def test_first_hello_makes_an_asymmetric_link(clock) -> None:
    node = Node(A, {"eth0": A}, clock=clock)
    node.receive(hello_from(B, []), B, "eth0")
    assert node.neighbors() == {B}
    assert node.symmetric_neighbors() == set()
    assert link_codes(node) == {B: (ASYM_LINK, NOT_NEIGH)}


def test_hearing_itself_listed_makes_the_link_symmetric(clock) -> None:
    node = Node(A, {"eth0": A}, clock=clock)
    node.receive(hello_from(B, []), B, "eth0")
    node.receive(hello_from(B, [(ASYM_LINK, NOT_NEIGH, [A])]), B, "eth0")
    assert node.symmetric_neighbors() == {B}
    assert link_codes(node) == {B: (SYM_LINK, SYM_NEIGH)}


def test_lost_link_drops_symmetry_but_keeps_the_link(clock) -> None:
    node = Node(A, {"eth0": A}, clock=clock)
    node.receive(hello_from(B, [(SYM_LINK, SYM_NEIGH, [A])]), B, "eth0")
    assert node.symmetric_neighbors() == {B}
    node.receive(hello_from(B, [(LOST_LINK, NOT_NEIGH, [A])]), B, "eth0")
    assert node.symmetric_neighbors() == set()
    assert link_codes(node) == {B: (ASYM_LINK, NOT_NEIGH)}


def test_symmetry_expires_then_link_is_lost_then_gone(clock) -> None:
    node = Node(A, {"eth0": A}, clock=clock)
    node.receive(hello_from(B, [(SYM_LINK, SYM_NEIGH, [A])]), B, "eth0")
    clock.advance(5.9)
    node.expire()
    assert node.symmetric_neighbors() == {B}
    clock.advance(0.2)  # past Vtime (6 s): L_SYM_time and L_ASYM_time are over
    node.expire()
    assert node.symmetric_neighbors() == set()
    # L_time = L_SYM_time + NEIGHB_HOLD_TIME: the link is still advertised, as lost
    assert link_codes(node) == {B: (LOST_LINK, NOT_NEIGH)}
    clock.advance(6.0)
    node.expire()
    assert node.neighbors() == set()
    assert link_codes(node) == {}


def test_two_hop_set_and_strictness(clock) -> None:
    node = Node(A, {"eth0": A}, clock=clock)
    blocks = [(SYM_LINK, SYM_NEIGH, [A, C]), (ASYM_LINK, NOT_NEIGH, ["10.99.1.9"])]
    node.receive(hello_from(B, blocks), B, "eth0")
    # A itself is never its own 2-hop neighbour; an asymmetric neighbour of B is not one
    assert set(node.two_hop) == {(B, C)}
    assert node.mpr_set == {B}
    # B reports C as lost: the 2-hop tuple goes (NOT_NEIGH)
    node.receive(
        hello_from(B, [(SYM_LINK, SYM_NEIGH, [A]), (UNSPEC_LINK, NOT_NEIGH, [C])]), B, "eth0"
    )
    assert set(node.two_hop) == set()
    assert node.mpr_set == set()


def test_two_hop_needs_a_symmetric_neighbor(clock) -> None:
    node = Node(A, {"eth0": A}, clock=clock)
    node.receive(hello_from(B, [(UNSPEC_LINK, SYM_NEIGH, [C])]), B, "eth0")
    assert node.two_hop == {}


def test_mpr_selector_set_and_neighbor_type(clock) -> None:
    node = Node(A, {"eth0": A}, clock=clock)
    node.receive(hello_from(B, [(SYM_LINK, MPR_NEIGH, [A])]), B, "eth0")
    assert set(node.mpr_selectors) == {B}
    node.receive(hello_from(C, [(SYM_LINK, SYM_NEIGH, [A])]), C, "eth0")
    assert set(node.mpr_selectors) == {B}
    clock.advance(6.5)
    node.expire()
    assert node.mpr_selectors == {}


def test_hello_advertises_mprs_and_other_interfaces_neighbors(clock) -> None:
    node = Node(A, {"eth0": A, "eth1": "10.98.0.1"}, clock=clock)
    node.receive(hello_from(B, [(SYM_LINK, SYM_NEIGH, [A, C])]), B, "eth0")
    d = "10.98.0.4"
    node.receive(hello_from(d, [(SYM_LINK, SYM_NEIGH, ["10.98.0.1"])]), d, "eth1")
    assert node.mpr_set == {B}
    # on eth0: B with its link; D (only linked on eth1) by main address as UNSPEC_LINK
    assert link_codes(node, "eth0") == {B: (SYM_LINK, MPR_NEIGH), d: (UNSPEC_LINK, SYM_NEIGH)}
    assert link_codes(node, "eth1") == {d: (SYM_LINK, SYM_NEIGH), B: (UNSPEC_LINK, MPR_NEIGH)}


def test_hello_message_header(clock) -> None:
    node = Node(A, {"eth0": A}, willingness=6, clock=clock)
    msg = node.make_hello("eth0")
    assert (msg.type, msg.ttl, msg.hop_count, msg.originator) == (HELLO_MESSAGE, 1, 0, A)
    assert msg.validity == 6.0
    assert isinstance(msg.body, Hello)
    assert (codec.decode_time(msg.body.htime), msg.body.willingness) == (2.0, 6)


def test_own_packets_are_ignored(clock) -> None:
    node = Node(A, {"eth0": A}, clock=clock)
    node.receive(hello_from(B, []), A, "eth0")
    node.receive(hello_from(A, []), B, "eth0")
    assert node.neighbors() == set()
    assert node.counters["own_packets"] == 1
    assert node.counters["dropped_ttl_or_own"] == 1


def test_neighbor_willingness_is_followed(clock) -> None:
    node = Node(A, {"eth0": A}, clock=clock)
    node.receive(hello_from(B, [(SYM_LINK, SYM_NEIGH, [A, C])], willingness=0), B, "eth0")
    assert node.neighbor_willingness[B] == 0
    assert node.mpr_set == set()  # WILL_NEVER never relays, C is unreachable by MPR
    node.receive(hello_from(B, [(SYM_LINK, SYM_NEIGH, [A, C])], willingness=1), B, "eth0")
    assert node.mpr_set == {B}
