"""An olsrd node with link quality on (its default) next to a drone: the drone says so.

The olsrd node is played by a UDP sender in its own namespace sending what olsrd with
LinkQualityLevel 2 sends from port 698: LQ_HELLO (201) and LQ_TC (202) messages.
"""

from __future__ import annotations

import json
import sys

import pytest

from cloudrone.bench import lab as lab_mod

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PACKETS = 20
OLSRD_LQ = r"""
import socket, sys, time
from cloudrone.olsr import codec
from cloudrone.olsr.codec import Message

me, neighbour, broadcast, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind((me, 698))
# LQ_HELLO: reserved, Htime, willingness, one link block (SYM_NEIGH, SYM_LINK) with the
# neighbour and its link-quality bytes; LQ_TC: ANSN, reserved, the neighbour, its LQ
lq_entry = socket.inet_aton(neighbour) + bytes([255, 255, 0, 0])
hello = bytes([0, 0, 0x86, 3, 6, 0, 0, 4 + len(lq_entry)]) + lq_entry
tc = bytes([0, 1, 0, 0]) + lq_entry
for seq in range(1, count + 1):
    if seq % 5:
        msg = Message(201, codec.encode_time(20.0), me, 1, 0, seq, hello)
    else:
        msg = Message(202, codec.encode_time(300.0), me, 255, 0, seq, tc)
    s.sendto(codec.encode_packet(seq, [codec.encode_message(msg)]), (broadcast, 698))
    time.sleep(0.05)
print(count)
"""


def test_a_drone_warns_once_about_an_olsrd_node_with_link_quality(lab) -> None:
    lab_mod.build_line(lab, 3)  # d1 (olsrd with LQ) - d2 - d3
    lab.start("d2")
    lab.start("d3")
    assert lab_mod.wait_until(lambda: lab_mod.converged(lab, ["d2", "d3"]), 20)

    sent = lab_mod.run(
        "ip", "netns", "exec", lab.ns("d1"), sys.executable, "-c", OLSRD_LQ,
        "10.99.1.1", "10.99.1.2", "10.99.1.255", str(PACKETS),
    )  # fmt: skip
    assert int(sent.stdout) == PACKETS

    def warned() -> list[dict]:
        rows = lab.status("d2", "warnings")["warnings"]
        return rows if rows and rows[0]["packets"] == PACKETS else []

    rows = lab_mod.wait_until(warned, 10)
    assert rows, lab.status("d2", "warnings")
    assert len(rows) == 1
    w = rows[0]
    assert (w["kind"], w["address"], w["originators"]) == (
        "link_quality",
        "10.99.1.1",
        ["10.99.1.1"],
    )
    assert (w["messageTypes"], w["messageNames"]) == ([201, 202], ["LQ_HELLO", "LQ_TC"])
    assert w["active"] is True
    assert w["firstSeen"] <= w["lastSeen"]
    assert "LinkQualityLevel 0" in w["fix"] and "10.99.1.1" in w["fix"]

    # one warning in the log for twenty packets, naming the sender and the fix
    warnings = [
        json.loads(line) for line in lab.log("d2").splitlines() if '"link_quality_sender"' in line
    ]
    assert len(warnings) == 1, warnings
    line = warnings[0]
    assert (line["level"], line["address"]) == ("warning", "10.99.1.1")
    assert "LinkQualityLevel 2 (ETX)" in line["msg"] and "never become neighbours" in line["msg"]
    assert line["fix"] == w["fix"]

    # it is no neighbour; the RFC neighbour and the routes are as they were
    st = lab.status("d2", "neighbors/stats")
    assert [n["ipAddress"] for n in st["neighbors"]] == ["10.99.2.3"]
    assert st["stats"]["counters"]["link_quality"] == PACKETS
    assert lab.status("d3", "warnings")["warnings"] == []
    assert lab_mod.converged(lab, ["d2", "d3"])
    assert lab.alive("d2")
