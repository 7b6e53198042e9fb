"""MPR selection heuristic of RFC 3626 section 8.3.1 on known topologies."""

from __future__ import annotations

from cloudrone.olsr.constants import WILL_ALWAYS, WILL_DEFAULT, WILL_HIGH, WILL_LOW, WILL_NEVER
from cloudrone.olsr.mpr import select_mprs, strict_two_hop

D = WILL_DEFAULT


def covers(mprs: set[str], two_hop: dict[str, set[str]], targets: set[str]) -> bool:
    return targets <= set().union(*(two_hop[m] for m in mprs)) if mprs else not targets


def test_no_two_hop_neighbors_no_mprs() -> None:
    assert select_mprs({"b": D, "c": D}, {"b": set(), "c": set()}) == set()


def test_sole_provider_is_chosen() -> None:
    two_hop = {"b": {"x"}, "c": {"y"}, "d": {"x"}}
    mprs = select_mprs({"b": D, "c": D, "d": D}, two_hop)
    assert "c" in mprs  # only c reaches y
    assert len(mprs) == 2 and covers(mprs, two_hop, {"x", "y"})


def test_greedy_prefers_most_coverage() -> None:
    # the choice matters: b alone covers everything; c, d, e each cover one node
    two_hop = {"b": {"x", "y", "z"}, "c": {"x"}, "d": {"y"}, "e": {"z"}}
    assert select_mprs(dict.fromkeys(two_hop, D), two_hop) == {"b"}


def test_willingness_decides_before_coverage() -> None:
    two_hop = {"b": {"x", "y", "z"}, "c": {"x", "y"}, "d": {"z"}}
    assert select_mprs({"b": D, "c": D, "d": D}, two_hop) == {"b"}
    # c and d are more willing: they win although b covers more
    assert select_mprs({"b": WILL_LOW, "c": WILL_HIGH, "d": WILL_HIGH}, two_hop) == {"c", "d"}


def test_degree_breaks_coverage_ties() -> None:
    # d is forced (only way to v) and covers w; x is left, and b and c would each add
    # one node: c reaches more 2-hop nodes in all (D(c) = 2), so c wins over b
    two_hop = {"b": {"x"}, "c": {"x", "w"}, "d": {"w", "v"}}
    assert select_mprs(dict.fromkeys(two_hop, D), two_hop) == {"c", "d"}


def test_will_never_is_never_selected_and_its_reach_ignored() -> None:
    two_hop = {"b": {"x", "y"}, "c": {"x"}}
    assert select_mprs({"b": WILL_NEVER, "c": D}, two_hop) == {"c"}
    assert strict_two_hop({"b": WILL_NEVER, "c": D}, two_hop) == {"c": {"x"}}


def test_will_always_is_always_selected() -> None:
    two_hop = {"b": {"x", "y"}, "c": set()}
    assert select_mprs({"b": D, "c": WILL_ALWAYS}, two_hop) == {"b", "c"}


def test_neighbors_and_self_are_not_two_hop() -> None:
    # c is a neighbour too, and "a" is the node itself: b covers nothing strict
    two_hop = {"b": {"c", "a"}, "c": set()}
    assert select_mprs({"b": D, "c": D}, two_hop, excluded={"a"}) == set()


def test_redundant_mpr_is_removed() -> None:
    # step 3 forces b (sole provider of p) and d (sole provider of q); together they
    # cover x as well, so c, although it covers x, is not needed
    two_hop = {"b": {"p", "x"}, "c": {"x"}, "d": {"q", "x"}}
    assert select_mprs(dict.fromkeys(two_hop, D), two_hop) == {"b", "d"}


def test_result_covers_all_strict_two_hop_in_a_ring() -> None:
    # a ring of 8 around the node: 2-hop coverage overlaps, every target covered
    neighbors = [f"n{i}" for i in range(8)]
    two_hop = {n: {f"t{i}", f"t{(i + 1) % 8}"} for i, n in enumerate(neighbors)}
    mprs = select_mprs(dict.fromkeys(neighbors, D), two_hop)
    assert covers(mprs, two_hop, {f"t{i}" for i in range(8)})
    assert len(mprs) == 4
