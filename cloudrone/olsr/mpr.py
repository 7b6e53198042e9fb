"""Multipoint relay selection (RFC 3626 section 8.3.1; by link quality as olsrd does).
Pure: no clock, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cloudrone.olsr.constants import WILL_ALWAYS, WILL_NEVER
from cloudrone.olsr.lq import BROKEN


def strict_two_hop(
    neighbors: Mapping[str, int],
    two_hop: Mapping[str, Iterable[str]],
    excluded: Iterable[str] = (),
) -> dict[str, set[str]]:
    """For every symmetric neighbour that may relay, the strict 2-hop nodes it reaches.

    ``neighbors`` maps each symmetric neighbour's main address to its willingness;
    ``two_hop`` maps a neighbour's main address to the addresses it reports as its own
    symmetric neighbours; ``excluded`` holds this node's addresses and every address of
    its symmetric neighbours. A neighbour with willingness WILL_NEVER reaches nothing.
    """
    skip = set(excluded) | set(neighbors)
    reach: dict[str, set[str]] = {}
    for neighbor, willingness in neighbors.items():
        if willingness == WILL_NEVER:
            continue
        reach[neighbor] = {addr for addr in two_hop.get(neighbor, ()) if addr not in skip}
    return reach


def select_mprs(
    neighbors: Mapping[str, int],
    two_hop: Mapping[str, Iterable[str]],
    excluded: Iterable[str] = (),
) -> set[str]:
    """The MPR set of section 8.3.1, including the optional redundancy removal (step 5).

    Ties the RFC leaves open are broken by the lowest address so that the result is
    the same on every run.
    """
    reach = strict_two_hop(neighbors, two_hop, excluded)
    n2: set[str] = set().union(*reach.values()) if reach else set()
    degree = {n: len(r) for n, r in reach.items()}

    # 1. Every neighbour that always wants to relay.
    mprs = {n for n, w in neighbors.items() if w == WILL_ALWAYS}
    uncovered = set(n2)
    for n in mprs:
        uncovered -= reach.get(n, set())

    # 3. Neighbours that are the only way to some 2-hop node.
    for target in sorted(n2):
        providers = [n for n, r in reach.items() if target in r]
        if len(providers) == 1:
            mprs.add(providers[0])
    for n in mprs:
        uncovered -= reach.get(n, set())

    # 4. Greedy: highest willingness, then most new coverage, then highest degree.
    while uncovered:
        best: tuple[int, int, int, str] | None = None
        for n in sorted(reach):
            if n in mprs:
                continue
            gain = len(reach[n] & uncovered)
            if gain == 0:
                continue
            key = (neighbors[n], gain, degree[n], n)
            if best is None or key[:3] > best[:3]:
                best = key
        if best is None:  # cannot happen: every node of n2 has a provider
            break
        mprs.add(best[3])
        uncovered -= reach[best[3]]

    # 5. Drop MPRs whose 2-hop nodes stay covered without them, lowest willingness first.
    for n in sorted(mprs, key=lambda m: (neighbors.get(m, 0), m)):
        if neighbors.get(n) == WILL_ALWAYS:
            continue
        others = set().union(*(reach.get(m, set()) for m in mprs if m != n))
        if reach.get(n, set()) <= others:
            mprs.discard(n)
    return mprs


def select_lq_mprs(
    neighbors: Mapping[str, int],
    link_cost: Mapping[str, int],
    two_hop: Mapping[tuple[str, str], int],
    excluded: Iterable[str] = (),
) -> set[str]:
    """The MPR set by link quality, as olsrd selects it with ETX.

    ``neighbors`` maps each symmetric neighbour to its willingness, ``link_cost`` each
    to the cost of this node's best link to it, and ``two_hop`` a (neighbour, address)
    pair to the cost the neighbour reports for its link to that address. Every
    neighbour willing to always relay is an MPR; then each address two hops away gets
    the neighbour through which it is cheapest, unless it is a neighbour itself and its
    direct link is no dearer. Of equal costs, the neighbour covering more addresses
    wins (fewer relays), then the lower address.
    """
    skip = set(excluded)
    mprs = {n for n, w in neighbors.items() if w == WILL_ALWAYS}
    paths: dict[str, list[tuple[int, str]]] = {}
    for (neighbor, addr), cost in two_hop.items():
        if addr in skip or addr == neighbor or neighbor not in link_cost:
            continue
        if neighbors.get(neighbor, WILL_NEVER) == WILL_NEVER or cost >= BROKEN:
            continue
        paths.setdefault(addr, []).append((link_cost[neighbor] + cost, neighbor))
    coverage: dict[str, int] = {}
    for options in paths.values():
        for _c, n in options:
            coverage[n] = coverage.get(n, 0) + 1
    for addr, options in sorted(paths.items()):
        direct = link_cost.get(addr, BROKEN) if addr in neighbors else BROKEN
        # equal costs: the neighbour that covers more, so fewer nodes relay
        best_cost, _cover, best = min((c, -coverage[n], n) for c, n in options)
        if best_cost < direct and best_cost < BROKEN:
            mprs.add(best)
    return mprs
