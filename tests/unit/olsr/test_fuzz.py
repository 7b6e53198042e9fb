"""Hostile input: random bytes and mutated valid packets never crash or corrupt a node."""

from __future__ import annotations

import copy
import importlib.util
import ipaddress
import pathlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudrone.olsr import codec
from cloudrone.olsr.codec import Hello, Hna, LinkBlock, MalformedPacket, Message, Mid, Tc
from cloudrone.olsr.constants import HELLO_MESSAGE, HNA_MESSAGE, MID_MESSAGE, TC_MESSAGE
from cloudrone.olsr.protocol import Node

_spec = importlib.util.spec_from_file_location(
    "olsr_unit_conftest", pathlib.Path(__file__).with_name("conftest.py")
)
assert _spec is not None and _spec.loader is not None
sim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sim)

NEIGHBOR = "10.99.1.1"  # n1, a symmetric neighbour of n2 on interface "left"
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def converged_node() -> Node:
    mesh = sim.Mesh(sim.FakeClock())
    sim.line(mesh, 3, timers=sim.FAST)
    mesh.run(4)
    node = mesh.nodes["n2"]
    assert node.symmetric_neighbors() == {"10.99.1.1", "10.99.2.3"}
    return node


_BASE = converged_node()


def state(node: Node) -> dict[str, Any]:
    return copy.deepcopy(
        {
            "links": node.links,
            "willingness": node.neighbor_willingness,
            "two_hop": node.two_hop,
            "mpr": node.mpr_set,
            "selectors": node.mpr_selectors,
            "topology": node.topology,
            "mid": node.mid,
            "hna": node.hna,
            "dup": node.duplicates,
            "ansn": node.ansn,
        }
    )


def check_invariants(node: Node) -> None:
    own = node.own_addresses
    for t in node.links.values():
        ipaddress.IPv4Address(t.neighbor_iface)
        assert t.neighbor_iface not in own and t.neighbor_main not in own
    assert node.mpr_set <= node.symmetric_neighbors()
    for _neighbor, addr in node.two_hop:
        assert addr not in own
        ipaddress.IPv4Address(addr)
    for _gw, net, prefix in node.hna:
        assert 0 <= prefix <= 32
        ipaddress.IPv4Network(f"{net}/{prefix}")
    routes = node.routes()
    for (dest, _prefix), route in routes.items():
        assert dest not in own
        assert 1 <= route.hops <= 255
    node.make_hello("left")
    node.make_tc()


def valid_packets() -> list[bytes]:
    msgs = [
        Message(
            HELLO_MESSAGE, 0x86, NEIGHBOR, 1, 0, 900,
            Hello(5, 3, [LinkBlock(10, ["10.99.1.2", "10.99.7.7"])]),
        ),
        Message(TC_MESSAGE, 0xE7, "10.99.9.9", 200, 3, 901, Tc(5, ["10.99.9.1", "10.99.9.2"])),
        Message(MID_MESSAGE, 0xE7, "10.99.9.9", 200, 3, 902, Mid(["10.99.8.9"])),
        Message(HNA_MESSAGE, 0xE7, "10.99.9.9", 200, 3, 903, Hna([("10.42.9.0", 24)])),
    ]  # fmt: skip
    return [codec.encode_packet(1, [codec.encode_message(m)]) for m in msgs]


VALID = valid_packets()


@FUZZ
def decodes(data: bytes) -> bool:
    """Whether the codec takes ``data`` as a packet (the daemon then may act on it)."""
    try:
        codec.decode_packet(data)
    except MalformedPacket:
        return False
    return True


@given(st.binary(max_size=600))
def test_random_bytes_are_dropped_counted_and_change_nothing(data: bytes) -> None:
    node = copy.deepcopy(_BASE)
    before = state(node)
    malformed = node.counters["malformed"]
    parses = decodes(data)
    node.receive(data, NEIGHBOR, "left")
    if not parses:
        assert node.counters["malformed"] == malformed + 1
        assert state(node) == before
    check_invariants(node)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.just(0)),
)


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, value in ops:
        i = pos % (len(buf) + 1)
        if op == "flip" and buf:
            buf[i % len(buf)] ^= value
        elif op == "cut":
            del buf[i:]
        elif op == "insert":
            buf.insert(i, value)
        elif op == "delete" and buf:
            del buf[i % len(buf)]
    return bytes(buf)


@FUZZ
@given(st.sampled_from(VALID), st.lists(mutation, min_size=1, max_size=4), st.booleans())
def test_mutated_valid_packets_never_crash_or_corrupt(
    packet: bytes, ops: list[tuple[str, int, int]], fix_length: bool
) -> None:
    node = copy.deepcopy(_BASE)
    data = mutate(packet, ops)
    if fix_length and len(data) >= 2:
        data = len(data).to_bytes(2, "big") + data[2:]  # get past the first length check
    before = state(node)
    parses = decodes(data)
    node.receive(data, NEIGHBOR, "left")
    if not parses:
        assert state(node) == before
    check_invariants(node)


@FUZZ
@given(st.binary(min_size=4, max_size=300))
def test_decoding_is_stable_under_reencoding(data: bytes) -> None:
    try:
        packet = codec.decode_packet(data)
    except MalformedPacket:
        return
    again = codec.decode_packet(
        codec.encode_packet(packet.seqno, [codec.encode_message(m) for m in packet.messages])
    )
    assert [(m.type, m.originator, m.seqno, m.body) for m in again.messages] == [
        (m.type, m.originator, m.seqno, m.body) for m in packet.messages
    ]


def test_valid_packets_do_change_state() -> None:
    # the property tests above must not pass merely because nothing is ever processed
    node = copy.deepcopy(_BASE)
    before = state(node)
    for data in VALID:
        node.receive(data, NEIGHBOR, "left")
    assert state(node) != before
    assert ("10.42.9.0", 24) in {(n, p) for _g, n, p in node.hna}
    assert node.counters["malformed"] == 0
