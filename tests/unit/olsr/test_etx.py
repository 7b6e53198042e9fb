"""ETX link quality (``link_quality: etx``): olsrd's LQ_HELLO and LQ_TC on the wire, the
quality each node measures, routes by least total ETX and relays chosen by cost."""

from __future__ import annotations

import importlib.util
import pathlib
import socket

import pytest

from cloudrone.olsr import codec, lq
from cloudrone.olsr.codec import Hello, LinkBlock, Message, Tc
from cloudrone.olsr.constants import (
    HELLO_MESSAGE,
    LQ_HELLO_MESSAGE,
    LQ_TC_MESSAGE,
    SYM_LINK,
    SYM_NEIGH,
    TC_MESSAGE,
    WILL_NEVER,
)
from cloudrone.olsr.mpr import select_lq_mprs
from cloudrone.olsr.routing import LqLink, calculate_lq_routes

_spec = importlib.util.spec_from_file_location(
    "olsr_unit_conftest_etx", pathlib.Path(__file__).with_name("conftest.py")
)
assert _spec is not None and _spec.loader is not None
sim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sim)

A, B, C = "10.99.0.1", "10.99.0.2", "10.99.0.3"


# --- the wire ----------------------------------------------------------------------------


def test_lq_hello_body_is_olsrds_layout_and_round_trips() -> None:
    body = Hello(0x86, 3, [LinkBlock((SYM_NEIGH << 2) | SYM_LINK, [B, C], [(255, 200), (25, 0)])])
    raw = codec.encode_body(body)
    # reserved, Htime, willingness; link code, reserved, size 4 + 2 x 8; then each
    # address followed by LQ, NLQ and two zero bytes
    assert raw == (
        bytes([0, 0, 0x86, 3, 6, 0, 0, 20])
        + socket.inet_aton(B)
        + bytes([255, 200, 0, 0])
        + socket.inet_aton(C)
        + bytes([25, 0, 0, 0])
    )
    msg = Message(LQ_HELLO_MESSAGE, codec.encode_time(6.0), A, 1, 0, 7, body)
    got = codec.decode_message(codec.encode_message(msg))
    assert got.type == LQ_HELLO_MESSAGE and got.body == body


def test_lq_tc_has_border_bytes_and_a_quality_per_address() -> None:
    tc = Tc(0x1234, [B, C], [(255, 255), (128, 90)])
    raw = codec.encode_body(tc)
    assert raw[:4] == bytes([0x12, 0x34, 0xFF, 0xFF])  # ANSN, whole set in one message
    assert raw[4:] == socket.inet_aton(B) + bytes([255, 255, 0, 0]) + socket.inet_aton(C) + bytes(
        [128, 90, 0, 0]
    )
    msg = Message(LQ_TC_MESSAGE, codec.encode_time(15.0), A, 255, 0, 9, tc)
    assert codec.decode_message(codec.encode_message(msg)).body == tc


def test_a_misaligned_lq_body_is_malformed() -> None:
    msg = Message(LQ_TC_MESSAGE, 0x86, A, 255, 0, 1, bytes([0, 1, 255, 255]) + bytes(6))
    with pytest.raises(codec.MalformedPacket) as exc:
        codec.decode_message(codec.encode_message(msg))
    assert exc.value.reason == "lq_tc_misaligned"


# --- measuring ---------------------------------------------------------------------------


def test_cost_is_etx_in_olsrds_fixed_point() -> None:
    assert lq.cost(255, 255) == lq.SCALE
    assert lq.as_float(lq.cost(153, 153)) == pytest.approx(1 / 0.36, rel=0.01)  # 60% each way
    assert lq.cost(255, 24) == lq.BROKEN  # under a tenth one way: unusable
    assert lq.as_float(lq.BROKEN) == 4096.0  # finite: the status is strict JSON


class Feed:
    """Packets from one neighbour to a LinkQuality, second by second."""

    def __init__(self) -> None:
        self.q = lq.LinkQuality()
        self.seq = 0
        self.t = 0.0

    def run(self, seconds: int, per_second: int, lost_every: int = 0) -> int:
        for _s in range(seconds):
            for i in range(per_second):
                self.seq += 1
                if lost_every and self.seq % lost_every == 0:
                    continue
                self.q.packet(self.seq & 0xFFFF, self.t + i / per_second)
            self.t += 1.0
            self.q.tick(self.t, 0.5)
        return self.q.lq


def test_quality_counts_gaps_in_packet_sequence_numbers() -> None:
    assert Feed().run(40, 4) == 255
    assert Feed().run(40, 5, lost_every=5) == pytest.approx(0.8 * 255, abs=3)  # 1 in 5 lost


def test_a_new_link_starts_pessimistic_and_a_silent_one_decays() -> None:
    feed = Feed()
    assert 0 < feed.run(1, 2) < 128  # quick start: three packets assumed lost per bucket
    assert 128 < feed.run(9, 2) < 200  # ... until the window has passed over them
    assert feed.run(30, 2) == 255
    assert feed.run(5, 0) < 230  # silent: fewer packets, and missed HELLOs cut the rest
    assert feed.run(20, 0) < 64


def test_cost_follows_only_changes_over_a_tenth() -> None:
    q = lq.LinkQuality(lq=200, nlq=200)
    assert q.settle() and q.cost == lq.cost(200, 200)
    q.lq = 195
    assert not q.settle() and q.smooth_lq == 200
    q.lq = 170
    assert q.settle() and q.cost == lq.cost(170, 200)


# --- choosing ---------------------------------------------------------------------------


def test_routes_take_two_clean_hops_over_one_lossy_one() -> None:
    lossy = lq.cost(153, 153)  # 2.78
    clean = lq.SCALE
    links = [LqLink(A, B, B, clean), LqLink(A, C, C, lossy)]
    routes = calculate_lq_routes(
        {A}, links, {B: 3, C: 3}, {(B, C): clean, (C, B): lossy}, {}, {}, []
    )
    assert (routes[(C, 32)].next_hop, routes[(C, 32)].hops) == (B, 2)
    assert routes[(C, 32)].cost == 2 * clean
    # a clean direct link wins again
    links[1] = LqLink(A, C, C, clean)
    routes = calculate_lq_routes({A}, links, {B: 3, C: 3}, {(B, C): clean}, {}, {}, [])
    assert (routes[(C, 32)].next_hop, routes[(C, 32)].hops) == (C, 1)


def test_a_neighbour_unwilling_to_relay_is_reached_but_not_through() -> None:
    links = [LqLink(A, B, B, lq.SCALE)]
    routes = calculate_lq_routes(
        {A}, links, {B: WILL_NEVER}, {(B, C): lq.SCALE}, {(B, C): lq.SCALE}, {}, []
    )
    assert (B, 32) in routes and (C, 32) not in routes


def test_mprs_by_cost_cover_a_lossy_neighbour_through_a_clean_one() -> None:
    lossy = lq.cost(153, 153)
    costs = {B: lq.SCALE, C: lossy}
    two_hop = {(B, C): lq.SCALE, (C, B): lossy}
    assert select_lq_mprs({B: 3, C: 3}, costs, two_hop, {A}) == {B}
    # with every link clean, the direct links serve and nobody needs a relay
    clean = {B: lq.SCALE, C: lq.SCALE}
    assert select_lq_mprs({B: 3, C: 3}, clean, {(B, C): lq.SCALE}, {A}) == set()


# --- whole meshes ------------------------------------------------------------------------


def _triangle(mesh, link_quality: str) -> list[str]:
    names = sim.shared(mesh, 3, timers=sim.FAST, link_quality=link_quality)
    mesh.loss[frozenset(("n1", "n3"))] = 0.4  # n1 and n3 in range, losing 40%
    return names


def test_etx_routes_around_a_lossy_link_and_hop_count_does_not(clock) -> None:
    etx = sim.Mesh(clock, seed=3)
    _triangle(etx, "etx")
    etx.run(40)
    r1, r3 = etx.routes("n1"), etx.routes("n3")
    assert (r1[(C, 32)].next_hop, r1[(C, 32)].hops) == (B, 2)
    assert (r3[(A, 32)].next_hop, r3[(A, 32)].hops) == (B, 2)
    assert etx.routes("n2")[(C, 32)].next_hop == C  # the clean links stay direct
    assert B in etx.nodes["n1"].mpr_set
    link = next(t for t in etx.nodes["n1"].links.values() if t.neighbor_iface == C)
    assert link.quality is not None
    assert link.quality.smooth_lq == pytest.approx(0.6 * 255, abs=30)
    assert link.quality.smooth_nlq == pytest.approx(0.6 * 255, abs=30)
    # every node sent LQ_HELLO and LQ_TC, never the plain ones
    assert {t for _n, t in etx.sent} <= {LQ_HELLO_MESSAGE, LQ_TC_MESSAGE, 3, 4}

    hops = sim.Mesh(clock, seed=3)
    _triangle(hops, "none")
    hops.run(40)
    r1 = hops.routes("n1")
    assert (r1[(C, 32)].next_hop, r1[(C, 32)].hops) == (C, 1)
    assert {t for _n, t in hops.sent} <= {HELLO_MESSAGE, TC_MESSAGE, 3, 4}


def test_a_grid_with_etx_reaches_everyone(clock) -> None:
    mesh = sim.Mesh(clock)
    names = sim.grid(mesh, 4, timers=sim.FAST, link_quality="etx")
    mesh.run(40)
    mesh.forwarded.clear()
    mesh.run(10)  # settled: who relays now
    everyone = set().union(*(n.interfaces.values() for n in mesh.nodes.values()))
    for name in names:
        own = set(mesh.nodes[name].interfaces.values())
        assert {d for d, _p in mesh.routes(name)} == everyone - own, name
    far = mesh.nodes["r3c3"].main_address
    route = mesh.routes("r0c0")[(far, 32)]
    assert route.hops == 6 and route.cost == pytest.approx(6 * lq.SCALE, rel=0.05)
    relays = {n for n in names if mesh.forwarded[n] > 0}
    assert relays and len(relays) < len(names)


def test_the_two_dialects_never_pair_and_each_names_the_other(clock) -> None:
    mesh = sim.Mesh(clock)
    mesh.add("plain", {"wlan0": (A, "air")}, timers=sim.FAST)
    mesh.add("etx", {"wlan0": (B, "air")}, timers=sim.FAST, link_quality="etx")
    mesh.run(10)
    plain, etx = mesh.nodes["plain"], mesh.nodes["etx"]
    assert plain.symmetric_neighbors() == set() == etx.symmetric_neighbors()
    assert list(plain.lq_senders) == [B] and plain.lq_senders[B].etx
    assert list(etx.lq_senders) == [A] and not etx.lq_senders[A].etx
    assert plain.counters["link_quality"] > 0 and etx.counters["no_link_quality"] > 0
    assert plain.links == {} == etx.links
