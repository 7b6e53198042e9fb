"""olsrd's link-quality messages (LQ_HELLO 201, LQ_TC 202): reported once per sender.

An olsrd node with its default LinkQualityLevel 2 sends these instead of HELLO and TC
and never becomes a neighbour; the node remembers who sends them and the daemon warns
once per sending address and lists them in the status under ``warnings``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import pytest

from cloudrone.olsr import codec, daemon, status
from cloudrone.olsr.codec import Message
from cloudrone.olsr.config import Config
from cloudrone.olsr.constants import (
    LQ_HELLO_MESSAGE,
    LQ_TC_MESSAGE,
    MAX_LQ_SENDERS,
    SYM_LINK,
    SYM_NEIGH,
)
from cloudrone.olsr.protocol import Node
from tests.unit.olsr.test_link_sensing import hello_from

A = "10.99.0.1"  # this node
B = "10.99.0.2"  # an olsrd node with LinkQualityLevel 2
C = "10.99.0.3"  # another one
D = "10.99.0.4"  # a node speaking RFC 3626
EVENT = "link_quality_sender"  # the log event
FIX_B = (
    "set link_quality: etx in this daemon's configuration (the mesh role's"
    " mesh_link_quality) to route with it, or set LinkQualityLevel 0 in olsrd.conf on the"
    f" node at {B} and restart olsrd; every node of a mesh must use the same"
)


def lq_packet(origin: str, mtype: int = LQ_HELLO_MESSAGE, seqno: int = 1) -> bytes:
    """A packet with one olsrd link-quality message, its body as olsrd lays it out."""
    if mtype == LQ_HELLO_MESSAGE:
        # reserved, Htime, willingness; one link block: SYM_NEIGH/SYM_LINK, one
        # neighbour with its link quality and neighbour link quality bytes
        link = socket.inet_aton(A) + bytes([255, 255, 0, 0])
        body = bytes([0, 0, 0x86, 3, 6, 0, 0, 4 + len(link)]) + link
        ttl = 1
    else:
        body = bytes([0, seqno, 0, 0]) + socket.inet_aton(A) + bytes([255, 255, 0, 0])
        ttl = 255
    msg = Message(mtype, codec.encode_time(20.0), origin, ttl, 0, seqno, body)
    return codec.encode_packet(seqno, [codec.encode_message(msg)])


def node(clock) -> Node:
    return Node(A, {"eth0": A}, clock=clock)


def test_many_packets_from_one_sender_are_one_entry_reported_once(clock) -> None:
    n = node(clock)
    for seq in range(1, 21):
        assert n.receive(lq_packet(B, seqno=seq), B, "eth0") == []
        clock.advance(0.5)
    assert n.lq_new == [B]
    sender = n.lq_senders[B]
    assert (sender.packets, sender.types, sender.originators) == (20, {LQ_HELLO_MESSAGE}, {B})
    assert sender.last - sender.first == pytest.approx(9.5)
    assert n.counters["link_quality"] == 20
    assert n.counters["unknown_type"] == 0
    assert n.links == {}  # and it is no neighbour
    n.lq_new.clear()
    n.receive(lq_packet(B, LQ_TC_MESSAGE, 30), B, "eth0")
    assert n.lq_new == []  # a new message type is no new sender
    assert n.lq_senders[B].types == {LQ_HELLO_MESSAGE, LQ_TC_MESSAGE}


def test_a_second_sender_gets_its_own_entry(clock) -> None:
    n = node(clock)
    n.receive(lq_packet(B), B, "eth0")
    n.receive(lq_packet(B, seqno=2), B, "eth0")
    n.receive(lq_packet(C, LQ_TC_MESSAGE), C, "eth0")
    assert n.lq_new == [B, C]
    assert {a: s.packets for a, s in n.lq_senders.items()} == {B: 2, C: 1}
    assert n.lq_senders[C].types == {LQ_TC_MESSAGE}


def test_the_sender_is_the_packets_source_not_the_originator(clock) -> None:
    n = node(clock)
    n.receive(lq_packet("10.99.9.9"), B, "eth0")  # olsrd's main address on another card
    assert list(n.lq_senders) == [B]
    assert n.lq_senders[B].originators == {"10.99.9.9"}


def test_rfc_hellos_are_unaffected(clock) -> None:
    n = node(clock)
    n.receive(lq_packet(B), B, "eth0")
    n.receive(hello_from(D, [(SYM_LINK, SYM_NEIGH, [A])]), D, "eth0")
    assert list(n.lq_senders) == [B]
    assert n.symmetric_neighbors() == {D}
    assert n.counters["hello"] == 1 and n.counters["link_quality"] == 1


def test_senders_kept_are_bounded(clock) -> None:
    n = node(clock)
    for i in range(MAX_LQ_SENDERS + 5):
        source = f"10.99.1.{i + 1}"
        n.receive(lq_packet(source), source, "eth0")
    assert len(n.lq_senders) == len(n.lq_new) == MAX_LQ_SENDERS
    assert n.counters["link_quality_senders_not_kept"] == 5


def test_status_lists_each_sender_with_the_fix(clock) -> None:
    n = node(clock)
    n.receive(lq_packet(C, LQ_TC_MESSAGE), C, "eth0")
    n.receive(lq_packet(B), B, "eth0")
    clock.advance(2.0)
    n.receive(lq_packet(B, LQ_TC_MESSAGE, 2), B, "eth0")
    clock.advance(1.0)
    got = status.warnings(n, clock(), 1_700_000_000.0)
    assert [w["address"] for w in got] == [B, C]
    assert got[0] == {
        "kind": "link_quality",
        "address": B,
        "originators": [B],
        "messageTypes": [201, 202],
        "messageNames": ["LQ_HELLO", "LQ_TC"],
        "packets": 2,
        "firstSeen": 1_699_999_997.0,
        "lastSeen": 1_699_999_999.0,
        "active": True,
        "problem": (
            f"{B} sends olsrd link-quality messages (LQ_HELLO (type 201), LQ_TC (type 202)):"
            " it runs with link quality (olsrd's LinkQualityLevel 2 (ETX), or link_quality:"
            " etx) while this daemon routes by hop count with RFC 3626 HELLO and TC, so the"
            " two will never become neighbours"
        ),
        "fix": FIX_B,
    }
    clock.advance(20.0)  # past the messages' 20 s validity: it stopped sending
    assert [w["active"] for w in status.warnings(n, clock(), 0.0)] == [False, False]


# --- the daemon's receive path: log lines and the HTTP status ----------------------------


def with_daemon(check: Any) -> None:
    """Run ``check(d)`` against a daemon with a node on eth0 (no sockets, no timers)."""

    async def go() -> None:
        d = daemon.Daemon(Config(interfaces=["eth0"], status_port=0))
        try:
            d.node = Node(A, {"eth0": A}, clock=lambda: 1000.0)
            check(d)
        finally:
            d.route_table.close()
            d.ipr.close()

    asyncio.run(go())


def lq_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "fields", {}).get("event") == EVENT]


def test_daemon_warns_once_per_sender(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    notified: list[str] = []
    monkeypatch.setattr(daemon.sdnotify, "notify", notified.append)

    def check(d: daemon.Daemon) -> None:
        with caplog.at_level(logging.INFO, logger="cloudrone.olsr"):
            for seq in range(1, 51):
                d.on_datagram(lq_packet(B, seqno=seq), B, "eth0")
            d.on_datagram(lq_packet(B, LQ_TC_MESSAGE, 60), B, "eth0")
            d.on_datagram(lq_packet(C), C, "eth0")
            d.on_datagram(lq_packet(C, seqno=2), C, "eth0")
            d.on_datagram(hello_from(D, [(SYM_LINK, SYM_NEIGH, [A])]), D, "eth0")
        got = lq_warnings(caplog)
        assert [r.fields["address"] for r in got] == [B, C]  # type: ignore[attr-defined]
        first = got[0]
        assert first.levelno == logging.WARNING
        assert first.fields == {  # type: ignore[attr-defined]
            "event": EVENT,
            "address": B,
            "originators": [B],
            "message_types": ["LQ_HELLO"],
            "fix": FIX_B,
        }
        msg = first.getMessage()
        assert msg.startswith(f"{B} sends olsrd link-quality messages (LQ_HELLO (type 201))")
        assert "LinkQualityLevel 2 (ETX)" in msg and "hop count" in msg
        assert "never become neighbours" in msg
        # the JSON line as journald gets it
        line = json.loads(daemon.JsonFormatter().format(first))
        assert (line["level"], line["event"], line["address"]) == ("warning", EVENT, B)

        # systemctl status says it too, once per new sender
        assert len(notified) == 2
        assert notified[-1].startswith("STATUS=")
        assert notified[-1].endswith(
            "; 2 node(s) with link quality cannot be neighbours: every node of a mesh "
            "needs the same link quality setting (see /warnings)"
        )
        # the RFC neighbour is there as before
        assert d.node.symmetric_neighbors() == {D}

    with_daemon(check)


def http_get(d: daemon.Daemon, path: str) -> tuple[str, dict[str, Any]]:
    head, _, body = d.http_response(f"GET {path} HTTP/1.0\r\n\r\n".encode()).partition(b"\r\n\r\n")
    return head.decode().split("\r\n")[0], json.loads(body)


def test_status_serves_the_warnings_and_keeps_the_other_sections() -> None:
    def check(d: daemon.Daemon) -> None:
        code, empty = http_get(d, "/warnings")
        assert code == "HTTP/1.0 200 OK" and empty["warnings"] == []
        for seq in range(1, 6):
            d.on_datagram(lq_packet(B, seqno=seq), B, "eth0")
        d.on_datagram(lq_packet(C, LQ_TC_MESSAGE), C, "eth0")
        d.on_datagram(hello_from(D, [(SYM_LINK, SYM_NEIGH, [A])]), D, "eth0")
        _, st = http_get(d, "/warnings")
        rows = {w["address"]: w for w in st["warnings"]}
        assert set(rows) == {B, C}
        assert (rows[B]["packets"], rows[B]["messageNames"]) == (5, ["LQ_HELLO"])
        assert (rows[C]["packets"], rows[C]["messageNames"]) == (1, ["LQ_TC"])
        assert rows[B]["fix"] == FIX_B
        assert rows[B]["firstSeen"] <= rows[B]["lastSeen"] <= st["systemTime"] + 1

        _, everything = http_get(d, "/all")
        assert set(everything) >= {
            "links", "neighbors", "2hop", "topology", "hna", "mid", "routes", "mpr",
            "stats", "warnings", "pid", "systemTime", "timeSinceStartup", "mainAddress",
        }  # fmt: skip
        assert [n["ipAddress"] for n in everything["neighbors"]] == [D]
        assert [x["remoteIP"] for x in everything["links"]] == [D]
        assert everything["stats"]["counters"]["link_quality"] == 6

    with_daemon(check)
