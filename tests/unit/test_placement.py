"""Binpack placement: fills one drone before the next, never over-commits one,
and uses no more drones than first-fit decreasing's proven bound."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudrone.mission.placement import Node, PlacementError, Service, binpack

MiB = 2**20


def test_one_drone_fills_before_the_next():
    nodes = [Node("a", 1000 * MiB, 4), Node("b", 1000 * MiB, 4), Node("c", 1000 * MiB, 4)]
    plan = binpack(nodes, [Service("web", replicas=5, memory=300 * MiB, cpus=0.5)])
    assert plan.placed["web"] == {"a": 3, "b": 2}
    assert plan.free["a"] == (100 * MiB, 2.5)
    assert plan.free["c"] == (1000 * MiB, 4)


def test_largest_first_and_small_ones_fill_the_gaps():
    nodes = [Node("a", 1000 * MiB, 4), Node("b", 1000 * MiB, 4)]
    plan = binpack(
        nodes,
        [
            Service("small", replicas=4, memory=100 * MiB),
            Service("big", replicas=2, memory=600 * MiB),
        ],
    )
    assert plan.placed["big"] == {"a": 1, "b": 1}
    assert plan.placed["small"] == {"a": 4}
    assert plan.nodes_used() == {"a", "b"}


def test_cpu_counts_as_well_as_memory():
    plan = binpack(
        [Node("a", 4000 * MiB, 1), Node("b", 4000 * MiB, 1)], [Service("cpu", 3, MiB, 0.5)]
    )
    assert plan.placed["cpu"] == {"a": 2, "b": 1}


def test_the_plan_becomes_services_pinned_by_host_name():
    plan = binpack(
        [Node("a", 500 * MiB, 2), Node("b", 500 * MiB, 2)], [Service("web", 3, 200 * MiB)]
    )
    assert plan.swarm_services() == [
        {"name": "web-a", "service": "web", "replicas": 2, "constraints": ["node.hostname==a"]},
        {"name": "web-b", "service": "web", "replicas": 1, "constraints": ["node.hostname==b"]},
    ]


def test_a_replica_that_fits_nowhere_is_named_with_the_fix():
    with pytest.raises(PlacementError) as caught:
        binpack([Node("a", 512 * MiB, 1), Node("b", 1024 * MiB, 1)], [Service("db", 1, 2048 * MiB)])
    assert str(caught.value) == (
        "service db: a replica reserving 2048 MiB and 0 CPU fits on no drone (the largest, b, "
        "has 1024 MiB free); lower its reservations or its replicas, or add a drone"
    )


nodes_st = st.lists(
    st.builds(Node, name=st.uuids().map(str), memory=st.integers(0, 4096).map(lambda m: m * MiB),
              cpus=st.integers(0, 8).map(float)),
    min_size=1, max_size=8, unique_by=lambda n: n.name,
)  # fmt: skip
services_st = st.lists(
    st.builds(Service, name=st.text("abcdef", min_size=1, max_size=6),
              replicas=st.integers(0, 6), memory=st.integers(1, 2048).map(lambda m: m * MiB),
              cpus=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0])),
    max_size=6, unique_by=lambda s: s.name,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(nodes_st, services_st)
def test_never_over_commits_a_drone_and_places_every_replica_or_says_why(nodes, services):
    try:
        plan = binpack(nodes, services)
    except PlacementError as exc:
        # refused, never half-placed: the message names a service asked for
        assert any(f"service {s.name}:" in str(exc) for s in services if s.replicas)
        return
    for node in nodes:
        on_it = [(s, plan.placed.get(s.name, Counter())[node.name]) for s in services]
        assert sum(s.memory * k for s, k in on_it) <= node.memory
        assert sum(s.cpus * k for s, k in on_it) <= node.cpus + 1e-9
    for s in services:
        assert sum(plan.placed.get(s.name, Counter()).values()) == s.replicas


def fewest_drones(sizes: list[int], capacity: int) -> int:
    """The optimum, by exhaustive search (small inputs only)."""
    best = len(sizes)

    def place(i: int, loads: list[int]) -> None:
        nonlocal best
        if len(loads) >= best:
            return
        if i == len(sizes):
            best = len(loads)
            return
        for j in range(len(loads)):
            if loads[j] + sizes[i] <= capacity:
                loads[j] += sizes[i]
                place(i + 1, loads)
                loads[j] -= sizes[i]
        place(i + 1, [*loads, sizes[i]])

    place(0, [])
    return best


@settings(max_examples=200, deadline=None)
@given(st.integers(10, 100), st.lists(st.integers(1, 100), min_size=1, max_size=9))
def test_uses_no_more_drones_than_first_fit_decreasing_is_proven_to(capacity, sizes):
    # identical drones; FFD(I) <= 11/9 OPT(I) + 6/9 (Dosa, 2007)
    sizes = [min(size, capacity) for size in sizes]
    nodes = [Node(f"d{i:02}", capacity * MiB, 64) for i in range(len(sizes))]
    plan = binpack(nodes, [Service(f"s{i}", 1, size * MiB) for i, size in enumerate(sizes)])
    optimum = fewest_drones(sorted(sizes, reverse=True), capacity)
    assert len(plan.nodes_used()) <= 11 / 9 * optimum + 6 / 9
