"""The wire format as an independent decoder reads it: tshark's OLSR dissector."""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any

import pytest

from cloudrone.bench import lab as lab_mod

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark (apt install tshark)"),
    pytest.mark.timeout(120),
]


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def messages(pcap: pathlib.Path) -> list[dict[str, Any]]:
    """Every OLSR message in the capture, as tshark decodes it, one dict per message."""
    out = lab_mod.run(
        "tshark", "-r", str(pcap), "-T", "json", "--no-duplicate-keys", "-Y", "olsr"
    ).stdout
    found = []
    for frame in json.loads(out):
        layers = frame["_source"]["layers"]
        for tree in as_list(layers["olsr"].get("olsr.message_tree")):
            msg = {
                "type": int(tree["olsr.message_type"]),
                "origin": tree["olsr.origin_addr"],
                "vtime": float(tree["olsr.vtime"]),
                "ttl": int(tree["olsr.ttl"]),
                "hops": int(tree["olsr.hop_count"]),
                "src": layers["ip"]["ip.src"],
                "ip_ttl": int(layers["ip"]["ip.ttl"]),
                "ip_tos": int(layers["ip"]["ip.dsfield"], 16),
                "udp": (int(layers["udp"]["udp.srcport"]), int(layers["udp"]["udp.dstport"])),
            }
            if msg["type"] == 1:
                msg["htime"] = float(tree["olsr.htime"])
                msg["willingness"] = int(tree["olsr.willingness"])
                codes = as_list(tree.get("olsr.link_type"))
                blocks = as_list(tree.get("olsr.link_type_tree"))
                msg["links"] = {
                    int(code): set(as_list(block.get("olsr.neighbor_addr")))
                    for code, block in zip(codes, blocks, strict=True)
                }
            elif msg["type"] == 2:
                msg["ansn"] = int(tree["olsr.ansn"])
                msg["neighbors"] = set(as_list(tree.get("olsr.neighbor_addr")))
            elif msg["type"] == 3:
                msg["interfaces"] = set(as_list(tree.get("olsr.interface_addr")))
            elif msg["type"] == 4:
                msg["networks"] = set(
                    zip(
                        as_list(tree.get("olsr.network_addr")),
                        as_list(tree.get("olsr.netmask")),
                        strict=True,
                    )
                )
            found.append(msg)
    return found


def test_tshark_decodes_what_the_daemon_sends(lab, tmp_path: pathlib.Path) -> None:
    lab_mod.build_line(lab, 3)
    lab.start("d1", willingness=6, hna={"networks": ["10.99.201.0/24", "0.0.0.0/0"]})
    lab.start("d2")
    lab.start("d3")
    assert lab_mod.wait_until(lambda: lab_mod.converged(lab, ["d1", "d2", "d3"]), 30)
    assert lab_mod.wait_until(lambda: lab.status("d1", "mpr")["mpr"]["mprs"] == ["10.99.1.2"], 10)

    pcap = tmp_path / "d2.pcap"
    lab_mod.run(
        "ip", "netns", "exec", lab.ns("d2"), "tshark", "-i", "v0b", "-f", "udp port 698",
        "-a", "duration:4", "-w", str(pcap), "-q", timeout=30,
    )  # fmt: skip
    ansn_d2 = lab.status("d2", "mpr")["mpr"]["ansn"]
    msgs = messages(pcap)
    assert msgs, "nothing captured"
    # every packet as olsrd sends it: UDP 698 to 698, the system's default IP TTL,
    # TOS 0xC0 (DSCP CS6, network control)
    assert {m["udp"] for m in msgs} == {(698, 698)}
    assert {m["ip_ttl"] for m in msgs} == {64}
    assert {m["ip_tos"] for m in msgs} == {0xC0}

    hellos = [m for m in msgs if m["type"] == 1]
    d1_hello = next(m for m in hellos if m["origin"] == "10.99.1.1")
    assert (d1_hello["vtime"], d1_hello["htime"], d1_hello["willingness"]) == (1.5, 0.5, 6)
    assert (d1_hello["ttl"], d1_hello["hops"]) == (1, 0)
    # d1 selected d2 as MPR: MPR_NEIGH (2) << 2 | SYM_LINK (2) = 10
    assert d1_hello["links"] == {10: {"10.99.1.2"}}

    d2_hello = next(m for m in hellos if m["origin"] == "10.99.1.2")
    assert d2_hello["willingness"] == 3
    # d1 on this link: SYM_NEIGH (1) << 2 | SYM_LINK (2) = 6; d3 on d2's other interface
    # by main address with UNSPEC_LINK (0): 1 << 2 | 0 = 4
    assert d2_hello["links"] == {6: {"10.99.1.1"}, 4: {"10.99.2.3"}}

    tcs = [m for m in msgs if m["type"] == 2]
    d2_tc = [m for m in tcs if m["origin"] == "10.99.1.2"]
    assert d2_tc and all(m["neighbors"] == {"10.99.1.1", "10.99.2.3"} for m in d2_tc)
    assert d2_tc[-1]["ansn"] == ansn_d2
    assert {(m["vtime"], m["ttl"], m["hops"]) for m in d2_tc} == {(3.0, 255, 0)}
    # d3's TC, relayed by d2 (its MPR) with TTL and hop count updated
    relayed = [m for m in tcs if m["origin"] == "10.99.2.3"]
    assert relayed and {(m["ttl"], m["hops"], m["src"]) for m in relayed} == {(254, 1, "10.99.1.2")}
    assert relayed[-1]["neighbors"] == {"10.99.1.2"}  # neighbours by main address

    mids = [m for m in msgs if m["type"] == 3 and m["origin"] == "10.99.1.2"]
    assert mids and mids[-1]["interfaces"] == {"10.99.2.2"}

    hnas = [m for m in msgs if m["type"] == 4 and m["origin"] == "10.99.1.1"]
    assert hnas and hnas[-1]["networks"] == {
        ("10.99.201.0", "255.255.255.0"),
        ("0.0.0.0", "0.0.0.0"),
    }
    assert hnas[-1]["vtime"] == 3.0


def lq_neighbours(tree: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Address -> (LQ, NLQ) of every neighbour entry under ``tree``, as tshark reads them."""
    return {
        entry["olsr.neighbor_addr"]: (int(entry["olsr.lq"]), int(entry["olsr.nlq"]))
        for entry in as_list(tree.get("olsr.neighbor_tree"))
    }


def test_tshark_decodes_the_link_quality_dialect(lab, tmp_path: pathlib.Path) -> None:
    lab_mod.build_line(lab, 3)
    for node in ("d1", "d2", "d3"):
        lab.start(node, link_quality="etx")
    assert lab_mod.wait_until(lambda: lab_mod.converged(lab, ["d1", "d2", "d3"]), 30)

    pcap = tmp_path / "d2-etx.pcap"
    lab_mod.run(
        "ip", "netns", "exec", lab.ns("d2"), "tshark", "-i", "v0b", "-f", "udp port 698",
        "-a", "duration:4", "-w", str(pcap), "-q", timeout=30,
    )  # fmt: skip
    out = lab_mod.run(
        "tshark", "-r", str(pcap), "-T", "json", "--no-duplicate-keys", "-Y", "olsr"
    ).stdout
    trees = [
        tree
        for frame in json.loads(out)
        for tree in as_list(frame["_source"]["layers"]["olsr"].get("olsr.message_tree"))
    ]
    types = {int(t["olsr.message_type"]) for t in trees}
    assert {201, 202} <= types and not {1, 2} & types, types  # LQ_HELLO, LQ_TC only

    hellos = [t for t in trees if t["olsr.message_type"] == "201"]
    d1 = next(t for t in hellos if t["olsr.origin_addr"] == "10.99.1.1")
    assert (float(d1["olsr.vtime"]), float(d1["olsr.htime"])) == (1.5, 0.5)
    blocks = as_list(d1["olsr.link_type_tree"])
    entries = {a: q for block in blocks for a, q in lq_neighbours(block).items()}
    assert list(entries) == ["10.99.1.2"]
    lq, nlq = entries["10.99.1.2"]
    assert 0 < lq <= 255 and 0 < nlq <= 255

    tcs = [t for t in trees if t["olsr.message_type"] == "202"]
    d2_tc = [t for t in tcs if t["olsr.origin_addr"] == "10.99.1.2"]
    assert d2_tc and set(lq_neighbours(d2_tc[-1])) == {"10.99.1.1", "10.99.2.3"}
    assert (int(d2_tc[-1]["olsr.ttl"]), int(d2_tc[-1]["olsr.hop_count"])) == (255, 0)
    relayed = [t for t in tcs if t["olsr.origin_addr"] == "10.99.2.3"]
    assert relayed and (int(relayed[-1]["olsr.ttl"]), int(relayed[-1]["olsr.hop_count"])) == (
        254,
        1,
    )
    assert set(lq_neighbours(relayed[-1])) == {"10.99.1.2"}
