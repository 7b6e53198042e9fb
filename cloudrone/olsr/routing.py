"""Routing table calculation (RFC 3626 section 10, HNA routes of section 12.6). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cloudrone.olsr.constants import WILL_NEVER


@dataclass(frozen=True, slots=True)
class Route:
    """One routing table entry: reach ``dest/prefix`` through ``next_hop`` on ``iface``."""

    dest: str
    prefix: int
    next_hop: str
    iface: str  # local interface address the next hop is reached through
    hops: int


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

    # Step 5: other interface addresses of nodes already in the table (MID).
    for iface, main in sorted(mid.items()):
        if iface in own_set or host(iface) is not None:
            continue
        via = host(main)
        if via is not None:
            table[(iface, 32)] = Route(iface, 32, via.next_hop, via.iface, via.hops)

    # Section 12.6: networks announced by gateways, through the nearest gateway.
    local_nets = set(own_hna)
    for gateway, network, prefix in sorted(hna):
        if (network, prefix) in local_nets or gateway in own_set:
            continue
        via = host(gateway)
        if via is None:
            continue
        current = table.get((network, prefix))
        if prefix == 32 and current is not None:
            continue
        if current is None or via.hops < current.hops:
            table[(network, prefix)] = Route(network, prefix, via.next_hop, via.iface, via.hops)
    return table
