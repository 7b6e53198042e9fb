"""The daemon's state as JSON, shaped like olsrd's jsoninfo 1.1 plugin, plus the MPR set
and the warnings an operator has to act on.

Validity times are milliseconds from now. Pure: builds dictionaries from a node.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cloudrone.olsr.constants import MESSAGE_NAMES
from cloudrone.olsr.protocol import LqSender, Node

SECTIONS = (
    "links", "neighbors", "2hop", "topology", "hna", "mid", "routes", "mpr", "stats",
    "warnings",
)  # fmt: skip


def _ms(until: float, now: float) -> int:
    return max(round((until - now) * 1000), 0)


def _netmask(prefix: int) -> str:
    return str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask)


def links(node: Node, iface_names: dict[str, str], now: float) -> list[dict[str, Any]]:
    out = []
    for t in sorted(node.links.values(), key=lambda x: (x.local, x.neighbor_iface)):
        if t.sym_time >= now:
            status = "SYMMETRIC"
        elif t.asym_time >= now:
            status = "ASYMMETRIC"
        else:
            status = "LOST"
        name = iface_names.get(t.local, "")
        out.append(
            {
                "localIP": t.local,
                "remoteIP": t.neighbor_iface,
                "remoteMainIP": t.neighbor_main,
                "olsrInterface": name,
                "ifName": name,
                "validityTime": _ms(t.time, now),
                "symmetryTime": _ms(t.sym_time, now),
                "asymmetryTime": _ms(t.asym_time, now),
                "currentLinkStatus": status,
                "linkQuality": 1.0,
                "neighborLinkQuality": 1.0,
                "linkCost": 1.0,
            }
        )
    return out


def neighbors(node: Node, now: float) -> list[dict[str, Any]]:
    sym = node.symmetric_neighbors()
    selectors = {a for a, t in node.mpr_selectors.items() if t >= now}
    two_hop = node.two_hop_map()
    out = []
    for addr in sorted(node.neighbors()):
        reach = sorted(two_hop.get(addr, ()))
        out.append(
            {
                "ipAddress": addr,
                "symmetric": addr in sym,
                "willingness": node.neighbor_willingness.get(addr, 3),
                "isMultiPointRelay": addr in node.mpr_set,
                "multiPointRelay": addr in node.mpr_set,
                "multiPointRelaySelector": addr in selectors,
                "skip": False,
                "twoHopNeighborCount": len(reach),
                "twoHopNeighbors": [{"ipAddress": a} for a in reach],
            }
        )
    return out


def two_hop(node: Node, now: float) -> list[dict[str, Any]]:
    return [
        {"ipAddress": addr, "lastHopIP": neighbor, "validityTime": _ms(t, now)}
        for (neighbor, addr), t in sorted(node.two_hop.items())
    ]


def topology(node: Node, now: float) -> list[dict[str, Any]]:
    return [
        {
            "lastHopIP": t.last,
            "destinationIP": t.dest,
            "ansn": t.seq,
            "validityTime": _ms(t.time, now),
            "linkQuality": 1.0,
            "neighborLinkQuality": 1.0,
            "tcEdgeCost": 1.0,
        }
        for t in sorted(node.topology.values(), key=lambda x: (x.last, x.dest))
    ]


def hna(node: Node, now: float) -> list[dict[str, Any]]:
    own = [
        {
            "gateway": node.main_address,
            "destination": net,
            "genmask": prefix,
            "netmask": _netmask(prefix),
            "validityTime": 0,
            "local": True,
        }
        for net, prefix in node.hna_networks
    ]
    learned = [
        {
            "gateway": gw,
            "destination": net,
            "genmask": prefix,
            "netmask": _netmask(prefix),
            "validityTime": _ms(t, now),
            "local": False,
        }
        for (gw, net, prefix), t in sorted(node.hna.items())
    ]
    return own + learned


def mid(node: Node, now: float) -> list[dict[str, Any]]:
    by_main: dict[str, list[dict[str, Any]]] = {}
    for iface, (main, t) in sorted(node.mid.items()):
        by_main.setdefault(main, []).append({"ipAddress": iface, "validityTime": _ms(t, now)})
    return [{"main": {"ipAddress": m}, "aliases": a} for m, a in sorted(by_main.items())]


def routes(
    installed: dict[tuple[str, int], Any], iface_names: dict[str, str], metric: int
) -> list[dict[str, Any]]:
    out = []
    for (dest, prefix), r in sorted(installed.items()):
        out.append(
            {
                "destination": dest,
                "genmask": prefix,
                "gateway": r.next_hop,
                "metric": r.hops,
                "rtpMetricCost": r.hops,
                "networkInterface": iface_names.get(r.iface, ""),
                "kernelMetric": metric,
            }
        )
    return out


def mpr(node: Node, now: float) -> dict[str, Any]:
    return {
        "mainAddress": node.main_address,
        "willingness": node.willingness,
        "mprs": sorted(node.mpr_set),
        "mprSelectors": sorted(a for a, t in node.mpr_selectors.items() if t >= now),
        "ansn": node.ansn,
        "advertised": sorted(node.advertised_set()),
    }


# --- warnings --------------------------------------------------------------------------


def lq_names(sender: LqSender) -> list[str]:
    return [MESSAGE_NAMES.get(t, str(t)) for t in sorted(sender.types)]


def lq_problem(sender: LqSender) -> str:
    """What is wrong with a sender of olsrd link-quality messages, in one sentence."""
    kinds = ", ".join(f"{MESSAGE_NAMES.get(t, t)} (type {t})" for t in sorted(sender.types))
    return (
        f"{sender.address} sends olsrd link-quality messages ({kinds}): it runs olsrd "
        "with LinkQualityLevel 2 (ETX) while this daemon routes by hop count with RFC 3626 "
        "HELLO and TC, so the two will never become neighbours"
    )


def lq_fix(sender: LqSender) -> str:
    return (
        f"set LinkQualityLevel 0 in olsrd.conf on the node at {sender.address} and restart "
        "olsrd; cloudrone-olsrd has no link-quality mode yet"
    )


def warnings(node: Node, now: float, wall: float) -> list[dict[str, Any]]:
    """Conditions that keep the mesh apart and need an operator: one entry each.

    ``now`` is the node's (monotonic) clock, ``wall`` the Unix time at ``now``; the
    ``firstSeen`` and ``lastSeen`` times are Unix seconds, like ``systemTime``.
    """
    return [
        {
            "kind": "link_quality",
            "address": s.address,
            "originators": sorted(s.originators),
            "messageTypes": sorted(s.types),
            "messageNames": lq_names(s),
            "packets": s.packets,
            "firstSeen": round(wall - (now - s.first), 3),
            "lastSeen": round(wall - (now - s.last), 3),
            "active": s.until >= now,
            "problem": lq_problem(s),
            "fix": lq_fix(s),
        }
        for s in sorted(node.lq_senders.values(), key=lambda x: x.address)
    ]
