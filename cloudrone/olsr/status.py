"""The daemon's state as JSON, shaped like olsrd's jsoninfo 1.1 plugin, plus the MPR set
and the warnings an operator has to act on.

Validity times are milliseconds from now. Pure: builds dictionaries from a node.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cloudrone.olsr import lq
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


def _quality(link: Any) -> tuple[float, float, float]:
    """(linkQuality, neighborLinkQuality, linkCost) as olsrd's jsoninfo shows them."""
    q = link.quality
    if q is None:
        return 1.0, 1.0, 1.0
    return round(q.smooth_lq / 255, 3), round(q.smooth_nlq / 255, 3), lq.as_float(q.cost)


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
        quality, neighbor_quality, cost = _quality(t)
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
                "linkQuality": quality,
                "neighborLinkQuality": neighbor_quality,
                "linkCost": cost,
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
            "tcEdgeCost": lq.as_float(t.cost),
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
                "rtpMetricCost": lq.as_float(r.cost) if r.cost else r.hops,
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
    """What keeps a node speaking the other dialect apart, in one sentence."""
    kinds = ", ".join(f"{MESSAGE_NAMES.get(t, t)} (type {t})" for t in sorted(sender.types))
    if sender.etx:
        return (
            f"{sender.address} sends olsrd link-quality messages ({kinds}): it runs with "
            "link quality (olsrd's LinkQualityLevel 2 (ETX), or link_quality: etx) while "
            "this daemon routes by hop count with RFC 3626 HELLO and TC, so the two will "
            "never become neighbours"
        )
    return (
        f"{sender.address} sends plain RFC 3626 messages ({kinds}): it routes by hop count "
        "(olsrd's LinkQualityLevel 0, or link_quality: none) while this daemon runs with "
        "link quality (LQ_HELLO and LQ_TC, ETX), so the two will never become neighbours"
    )


def lq_fix(sender: LqSender) -> str:
    if sender.etx:
        return (
            "set link_quality: etx in this daemon's configuration (the mesh role's "
            "mesh_link_quality) to route with it, or set LinkQualityLevel 0 in olsrd.conf "
            f"on the node at {sender.address} and restart olsrd; every node of a mesh must "
            "use the same"
        )
    return (
        f"run the node at {sender.address} with link quality: olsrd's default "
        "LinkQualityLevel 2 (LinkQualityAlgorithm etx_ff), or link_quality: etx on a drone; "
        "or set link_quality: none here; every node of a mesh must use the same"
    )


def hna_problem(r: Any) -> str:
    why = (
        "it is not a node of this fleet"
        if r.reason == "stranger"
        else "the network is none of the mission's and it is no declared gateway"
    )
    return f"{r.originator} announced {r.network}/{r.prefix}: not installed, {why}"


def hna_fix(r: Any) -> str:
    if r.reason == "stranger":
        return "if it is one of the mission's drones, add its mesh address to hna.fleet"
    return (
        "if the network is the mission's, add it to hna.accept; if the drone is a gateway, "
        "declare it (hna.gateways; a mission's gateways: field)"
    )


def stranger_problem(s: Any) -> str:
    return f"{s.originator} speaks OLSR on the mesh (from {s.source}) and is not in the fleet"


def warnings(node: Node, now: float, wall: float) -> list[dict[str, Any]]:
    """Conditions that keep the mesh apart and need an operator: one entry each.

    ``now`` is the node's (monotonic) clock, ``wall`` the Unix time at ``now``; the
    ``firstSeen`` and ``lastSeen`` times are Unix seconds, like ``systemTime``.
    """
    refused = [
        {
            "kind": "hna_refused",
            "originator": r.originator,
            "network": f"{r.network}/{r.prefix}",
            "reason": r.reason,
            "address": r.source,
            "announcements": r.count,
            "firstSeen": round(wall - (now - r.first), 3),
            "lastSeen": round(wall - (now - r.last), 3),
            "problem": hna_problem(r),
            "fix": hna_fix(r),
        }
        for r in sorted(node.hna_refused.values(), key=lambda x: (x.originator, x.network))
    ]
    strangers = [
        {
            "kind": "stranger",
            "originator": s.originator,
            "address": s.source,
            "messages": s.messages,
            "firstSeen": round(wall - (now - s.first), 3),
            "lastSeen": round(wall - (now - s.last), 3),
            "problem": stranger_problem(s),
            "fix": "if it is a drone of this mission, add its mesh address to the fleet "
            "(hna.fleet); if not, someone else is on the mesh: the mesh's passphrase keeps "
            "strangers off the radio",
        }
        for s in sorted(node.strangers.values(), key=lambda x: x.originator)
    ]
    return (
        refused
        + strangers
        + [
            {
                "kind": "link_quality" if s.etx else "no_link_quality",
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
    )
