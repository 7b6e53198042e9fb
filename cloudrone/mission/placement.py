"""Binpack placement for the swarm: which drone runs which replica.

SwarmKit spreads replicas and has no binpack strategy (classic Swarm had one,
and the Cloudrone paper uses it to keep drones free for the next service). So
the project plans binpack itself: a pure function from the drones' free memory
and CPU and the services' reservations to a plan, applied as placement
constraints (one Swarm service per drone it uses, pinned by
``node.hostname``). First-fit decreasing: the largest replicas first, each on
the first drone in fleet order where it fits; one drone fills before the next.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class PlacementError(ValueError):
    """A replica that fits on no drone: names the service and what it asks."""


@dataclass(frozen=True)
class Node:
    name: str
    memory: int  # bytes free for services
    cpus: float  # cores free for services


@dataclass(frozen=True)
class Service:
    name: str
    replicas: int
    memory: int  # reserved per replica, bytes
    cpus: float = 0.0  # reserved per replica, cores


@dataclass
class Plan:
    """Replicas per drone for each service, and what each drone has left."""

    placed: dict[str, Counter[str]] = field(default_factory=dict)
    free: dict[str, tuple[int, float]] = field(default_factory=dict)

    def nodes_used(self) -> set[str]:
        return {node for counts in self.placed.values() for node in counts}

    def swarm_services(self) -> list[dict]:
        """The plan as Swarm services: one per (service, drone), pinned to it."""
        out = []
        for service, counts in sorted(self.placed.items()):
            for node, replicas in sorted(counts.items()):
                out.append(
                    {
                        "name": f"{service}-{node}",
                        "service": service,
                        "replicas": replicas,
                        "constraints": [f"node.hostname=={node}"],
                    }
                )
        return out


def binpack(nodes: list[Node], services: list[Service]) -> Plan:
    """Place every replica; raise PlacementError if one fits nowhere."""
    free = {n.name: [n.memory, n.cpus] for n in nodes}
    order = [n.name for n in nodes]
    replicas = [s for s in services for _ in range(s.replicas)]
    # largest first: memory, then CPU; the name keeps equal ones in a fixed order
    replicas.sort(key=lambda s: (-s.memory, -s.cpus, s.name))
    plan = Plan(placed={s.name: Counter() for s in services if s.replicas > 0})
    for s in replicas:
        node = next(
            (n for n in order if free[n][0] >= s.memory and free[n][1] >= s.cpus - 1e-9), None
        )
        if node is None:
            biggest = max(nodes, key=lambda n: (n.memory, n.cpus), default=None)
            raise PlacementError(
                f"service {s.name}: a replica reserving {s.memory // 2**20} MiB and "
                f"{s.cpus:g} CPU fits on no drone (the largest, "
                f"{biggest.name if biggest else 'none'}, has "
                f"{(biggest.memory // 2**20) if biggest else 0} MiB free); lower its "
                "reservations or its replicas, or add a drone"
            )
        free[node][0] -= s.memory
        free[node][1] -= s.cpus
        plan.placed[s.name][node] += 1
    plan.free = {n: (m, c) for n, (m, c) in free.items()}
    return plan
