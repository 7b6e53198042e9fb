"""Routing table calculation (RFC 3626 section 10, HNA routes of section 12.6), by hop
count or, with link quality, by the least total ETX (Dijkstra, as olsrd does). Pure."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cloudrone.olsr.constants import WILL_NEVER
from cloudrone.olsr.lq import BROKEN


@dataclass(frozen=True, slots=True)
class Route:
    """One routing table entry: reach ``dest/prefix`` through ``next_hop`` on ``iface``."""

    dest: str
    prefix: int
    next_hop: str
    iface: str  # local interface address the next hop is reached through
    hops: int
    cost: int = 0  # total ETX in lq.SCALE units (link quality only; 0 by hop count)


@dataclass(frozen=True, slots=True)
class SymLink:
    local: str
    neighbor_iface: str
    neighbor_main: str


def calculate_routes(
    own: Iterable[str],
    links: Iterable[SymLink],
    willingness: Mapping[str, int],
    two_hop: Iterable[tuple[str, str]],
    topology: Iterable[tuple[str, str]],
    mid: Mapping[str, str],
    hna: Iterable[tuple[str, str, int]],
    own_hna: Iterable[tuple[str, int]] = (),
) -> dict[tuple[str, int], Route]:
    """The routing table, keyed by (destination, prefix length).

    ``links`` are this node's symmetric links; ``willingness`` is per neighbour main
    address; ``two_hop`` holds (neighbour main, 2-hop address) pairs; ``topology``
    holds (last hop, destination) pairs from TC messages; ``mid`` maps an interface
    address to its node's main address; ``hna`` holds (gateway, network, prefix);
    ``own_hna`` the networks this node announces itself (no route is made for them).
    """
    own_set = set(own)
    table: dict[tuple[str, int], Route] = {}

    def host(addr: str) -> Route | None:
        return table.get((addr, 32))

    # Step 2: one-hop neighbours, by interface address and by main address.
    by_main: dict[str, list[SymLink]] = {}
    for link in sorted(links, key=lambda x: (x.neighbor_iface, x.local)):
        if link.neighbor_iface in own_set:
            continue
        if host(link.neighbor_iface) is None:
            table[(link.neighbor_iface, 32)] = Route(
                link.neighbor_iface, 32, link.neighbor_iface, link.local, 1
            )
        by_main.setdefault(link.neighbor_main, []).append(link)
    for main, main_links in sorted(by_main.items()):
        if main in own_set or host(main) is not None:
            continue
        first = main_links[0]
        table[(main, 32)] = Route(main, 32, first.neighbor_iface, first.local, 1)

    # Step 3: strict 2-hop neighbours through a neighbour willing to relay.
    for neighbor, addr in sorted(two_hop):
        if addr in own_set or host(addr) is not None:
            continue
        if willingness.get(neighbor, WILL_NEVER) == WILL_NEVER:
            continue
        via = host(neighbor)
        if via is None:
            continue
        table[(addr, 32)] = Route(addr, 32, via.next_hop, via.iface, 2)

    # Step 4: topology entries, hop by hop.
    edges = sorted(set(topology))
    hops = 1
    while hops <= max((r.hops for r in table.values()), default=0):
        for last, dest in edges:
            via = host(last)
            if via is None or via.hops != hops or dest in own_set or host(dest) is not None:
                continue
            table[(dest, 32)] = Route(dest, 32, via.next_hop, via.iface, hops + 1)
        hops += 1

    # Step 5 (MID) and section 12.6 (HNA, through the nearest gateway).
    _add_mid_and_hna(table, own_set, mid, hna, own_hna)
    return table


def _add_mid_and_hna(
    table: dict[tuple[str, int], Route],
    own_set: set[str],
    mid: Mapping[str, str],
    hna: Iterable[tuple[str, str, int]],
    own_hna: Iterable[tuple[str, int]],
) -> None:
    """Routes to other interfaces of known nodes, and to networks through the cheapest
    gateway (the nearest, by hop count)."""
    for iface, main in sorted(mid.items()):
        if iface in own_set or (iface, 32) in table:
            continue
        via = table.get((main, 32))
        if via is not None:
            table[(iface, 32)] = Route(iface, 32, via.next_hop, via.iface, via.hops, via.cost)
    local_nets = set(own_hna)
    for gateway, network, prefix in sorted(hna):
        if (network, prefix) in local_nets or gateway in own_set:
            continue
        via = table.get((gateway, 32))
        if via is None:
            continue
        current = table.get((network, prefix))
        if prefix == 32 and current is not None:
            continue
        if current is None or (via.cost, via.hops) < (current.cost, current.hops):
            table[(network, prefix)] = Route(
                network, prefix, via.next_hop, via.iface, via.hops, via.cost
            )


@dataclass(frozen=True, slots=True)
class LqLink:
    """A symmetric link of this node with its ETX cost (lq.SCALE per clean hop)."""

    local: str
    neighbor_iface: str
    neighbor_main: str
    cost: int


def calculate_lq_routes(
    own: Iterable[str],
    links: Iterable[LqLink],
    willingness: Mapping[str, int],
    two_hop: Mapping[tuple[str, str], int],
    topology: Mapping[tuple[str, str], int],
    mid: Mapping[str, str],
    hna: Iterable[tuple[str, str, int]],
    own_hna: Iterable[tuple[str, int]] = (),
) -> dict[tuple[str, int], Route]:
    """The routing table by least total ETX, keyed by (destination, prefix length).

    ``links`` are this node's symmetric links with their cost; ``two_hop`` maps
    (neighbour main, 2-hop address) and ``topology`` (last hop, destination) to the
    cost their sender reported. Broken links (cost lq.BROKEN) are never used; a
    neighbour with willingness WILL_NEVER is reached but never relays. Equal costs go
    to fewer hops, then to the lower address, so the table is the same on every run.
    """
    own_set = set(own)
    table: dict[tuple[str, int], Route] = {}
    edges: dict[str, list[tuple[str, int]]] = {}
    for (last, dest), c in sorted({**two_hop, **topology}.items()):
        if c < BROKEN:
            edges.setdefault(last, []).append((dest, c))

    # neighbour interfaces are reached over their own link, whatever it costs
    best: dict[str, tuple[int, int, str, LqLink]] = {}  # main -> (cost, 1, iface, link)
    for link in sorted(links, key=lambda x: (x.cost, x.neighbor_iface, x.local)):
        if link.cost >= BROKEN or link.neighbor_iface in own_set:
            continue
        if (link.neighbor_iface, 32) not in table:
            table[(link.neighbor_iface, 32)] = Route(
                link.neighbor_iface, 32, link.neighbor_iface, link.local, 1, link.cost
            )
        if link.neighbor_main not in best:
            best[link.neighbor_main] = (link.cost, 1, link.neighbor_iface, link)

    # Dijkstra over node main addresses, from every neighbour's cheapest link
    heap: list[tuple[int, int, str, str, str]] = []  # cost, hops, node, next hop, iface
    for main, (c, _h, _i, link) in best.items():
        heapq.heappush(heap, (c, 1, main, link.neighbor_iface, link.local))
    done: set[str] = set(own_set)
    while heap:
        c, hops, node, next_hop, iface = heapq.heappop(heap)
        if node in done:
            continue
        done.add(node)
        if (node, 32) not in table or table[(node, 32)].cost > c:
            table[(node, 32)] = Route(node, 32, next_hop, iface, hops, c)
        if hops == 1 and willingness.get(node, WILL_NEVER) == WILL_NEVER:
            continue  # reached, but relays nothing
        for dest, edge in edges.get(node, ()):
            if dest not in done:
                heapq.heappush(heap, (c + edge, hops + 1, dest, next_hop, iface))
    _add_mid_and_hna(table, own_set, mid, hna, own_hna)
    return table
