"""Multipoint relay selection (RFC 3626 section 8.3.1). Pure: no clock, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cloudrone.olsr.constants import WILL_ALWAYS, WILL_NEVER


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
