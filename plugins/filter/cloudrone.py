"""Filters the roles share: which interface holds an address, and IPv4 arithmetic.

The address filters stand in for ansible.utils.ipaddr, which needs netaddr on
the controller; these need the standard library alone.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from cloudrone.rules import channels_allowed, docker_archive_images, memory_bytes
from cloudrone.wheelhouse import Target


def interfaces_holding(facts: dict[str, Any], addresses: list[str]) -> list[str]:
    """The interfaces (sorted) whose IPv4 addresses include any of ``addresses``.

    ``facts`` is ``ansible_facts``: each interface's facts sit under its name
    with '-', '.' and ':' turned into '_'.
    """
    wanted = {a for a in addresses if a}
    found = []
    for name in facts.get("interfaces", []):
        iface = facts.get(re.sub(r"[-.:]", "_", name)) or {}
        held = [(iface.get("ipv4") or {}).get("address")]
        held += [s.get("address") for s in iface.get("ipv4_secondaries") or []]
        if wanted & set(held):
            found.append(name)
    return sorted(found)


def network_host(network: str, index: int) -> str:
    """The ``index``-th address of ``network``: 1 is the first host, -1 the last."""
    net = ipaddress.IPv4Network(network, strict=False)
    base = net.network_address if index >= 0 else net.broadcast_address
    address = base + index
    if address not in net:
        raise ValueError(f"{network} has no address number {index}")
    return str(address)


def network_prefix(network: str) -> int:
    return ipaddress.IPv4Network(network, strict=False).prefixlen


def networks_overlap(a: str, b: str) -> bool:
    return ipaddress.IPv4Network(a, strict=False).overlaps(ipaddress.IPv4Network(b, strict=False))


def address_in(address: str, network: str) -> bool:
    return ipaddress.IPv4Address(address) in ipaddress.IPv4Network(network, strict=False)


def is_ipv4_network(value: Any) -> bool:
    try:
        ipaddress.IPv4Network(str(value), strict=True)
    except ValueError:
        return False
    return "/" in str(value)


def dhcp_range(network: str) -> list[str]:
    """The addresses a drone's DHCP server hands to phones: the upper half of its
    access point subnet, short of the last two (its first host is the drone,
    the low half is left for fixed addresses)."""
    net = ipaddress.IPv4Network(network, strict=False)
    if net.num_addresses < 8:
        raise ValueError(f"{network} is too small for phones; give a /29 or larger")
    first = net.network_address + net.num_addresses // 2
    last = net.broadcast_address - 2
    return [str(first), str(last)]


def default_route_split(metric: int) -> list[str]:
    """The default route as a gateway of this preference announces it (HNA).

    OLSR's HNA carries no metric, and each drone takes the longest prefix that
    matches, so preference is expressed by prefix length: metric 3 announces
    0.0.0.0/0, metric 2 its two halves (/1), metric 1 its four quarters (/2). A
    drone sends by the most preferred gateway it hears; when that one is lost,
    its prefixes go and the next one's take over.
    """
    if metric not in (1, 2, 3):
        raise ValueError(f"a gateway metric is 1 (preferred), 2 or 3; not {metric!r}")
    default = ipaddress.IPv4Network("0.0.0.0/0")
    return [str(n) for n in default.subnets(prefixlen_diff=3 - metric)]


def utf8_length(text: Any) -> int:
    """Bytes of ``text`` in UTF-8: what a WiFi SSID's 32-byte limit counts."""
    return len(str(text).encode("utf-8"))


def dpkg_installed(listing: Any) -> dict[str, str]:
    """Package name -> version of what dpkg holds installed.

    ``listing`` is the output of ``dpkg-query --show --showformat='${db:Status-Abbrev}
    ${Package} ${Version}\n'``: the status's second letter ``i`` is installed; a
    package dpkg knows but has removed (``un``, ``rc``) is left out.
    """
    installed = {}
    for line in str(listing).splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0][1:2] == "i":
            installed[fields[1]] = fields[2]
    return installed


def found_paths(looked: dict[str, Any]) -> dict[str, bool]:
    """Path -> whether it exists, from a registered ``stat`` loop over paths
    (``register: x`` with ``loop: [paths]``); empty where the loop did not run."""
    return {r["item"]: bool(r.get("stat", {}).get("exists")) for r in looked.get("results", [])}


def wheel_target(facts: dict[str, Any]) -> str:
    """A drone's wheel target (``cp311-aarch64``) from its ``ansible_facts``."""
    version = facts["python"]["version"]
    return str(Target(int(version["major"]), int(version["minor"]), facts["architecture"]))


def binpack_plan(nodes: list[dict], services: list[dict]) -> list[dict]:
    """The binpack placement (cloudrone.mission.placement) as Swarm services.

    ``nodes``: [{name, memory (bytes), cpus}] in fleet order; ``services``:
    [{name, replicas, memory, cpus, host_ports}]. One Swarm service per
    (service, drone), pinned by ``node.hostname``. A replica that fits nowhere,
    or two replicas on one drone publishing the same port in mode=host, is
    refused with a message that names the service and the fix.
    """
    from cloudrone.mission.placement import Node, PlacementError, Service, binpack

    try:
        plan = binpack(
            [Node(n["name"], int(n["memory"]), float(n["cpus"])) for n in nodes],
            [
                Service(s["name"], int(s["replicas"]), int(s["memory"]), float(s["cpus"]))
                for s in services
            ],
        )
    except PlacementError as exc:
        raise ValueError(str(exc)) from None
    host_ports = {s["name"] for s in services if s.get("host_ports")}
    out = plan.swarm_services()
    for entry in out:
        if entry["service"] in host_ports and entry["replicas"] > 1:
            raise ValueError(
                f"service {entry['service']}: binpack puts {entry['replicas']} replicas on "
                f"{entry['constraints'][0].split('==')[1]}, and they publish the same port in "
                "mode=host: place it with spread, or publish no port (the ingress mesh "
                "needs IPVS)"
            )
    return out


def swarm_capacity(
    nodes: list[dict], hosts: list[str], model_mb: dict[str, int], reserve_mb: int, share: int
) -> list[dict]:
    """What binpack may fill on each ready, active swarm node, in fleet order.

    ``nodes``: ``docker node inspect`` results; ``hosts``: the fleet's drones in
    order (node hostname = drone name); ``model_mb``: each drone's memory by its
    model, 0 when unknown. A node's memory is the model's or what its engine
    reports, whichever is less, minus ``reserve_mb``; its CPUs ``share`` percent
    of its cores.
    """
    by_name = {
        n["Description"]["Hostname"]: n
        for n in nodes
        if n.get("Status", {}).get("State") == "ready"
        and n.get("Spec", {}).get("Availability") == "active"
    }
    out = []
    for host in hosts:
        node = by_name.get(host)
        if node is None:
            continue
        resources = node["Description"]["Resources"]
        engine_mb = int(resources["MemoryBytes"]) // 2**20
        mb = min(engine_mb, int(model_mb.get(host) or engine_mb)) - int(reserve_mb)
        cpus = int(resources["NanoCPUs"]) / 1e9 * int(share) / 100
        out.append({"name": host, "memory": max(mb, 0) * 2**20, "cpus": cpus})
    return out


def fleet_capacity(
    hosts: list[str], models: dict[str, str], model_mb: dict[str, int], reserve_mb: int
) -> list[dict]:
    """What each drone has for services by its model alone (no drone asked):
    [{name, memory, cpus}] in fleet order, CPUs not counted; empty when a
    drone's model is unknown (the services role then checks on the drones)."""
    if any(int(model_mb.get(models.get(h) or "", 0)) <= 0 for h in hosts):
        return []
    return [
        {
            "name": h,
            "memory": max(int(model_mb[models[h]]) - int(reserve_mb), 0) * 2**20,
            "cpus": float("inf"),
        }
        for h in hosts
    ]


def binpack_services(services: list[dict]) -> list[dict]:
    """The binpack services of a mission as the planner takes them."""
    return [
        {
            "name": s["name"],
            "replicas": int(s.get("replicas", 1)),
            "memory": memory_bytes(s.get("memory", 0)),
            "cpus": float(s.get("cpus", 0)),
            "host_ports": bool(s.get("ports")),
        }
        for s in services
        if s.get("placement") == "binpack"
    ]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "interfaces_holding": interfaces_holding,
            "network_host": network_host,
            "network_prefix": network_prefix,
            "networks_overlap": networks_overlap,
            "address_in": address_in,
            "is_ipv4_network": is_ipv4_network,
            "dhcp_range": dhcp_range,
            "channels_allowed": channels_allowed,
            "default_route_split": default_route_split,
            "utf8_length": utf8_length,
            "dpkg_installed": dpkg_installed,
            "found_paths": found_paths,
            "wheel_target": wheel_target,
            "docker_archive_images": docker_archive_images,
            "binpack_plan": binpack_plan,
            "memory_bytes": memory_bytes,
            "swarm_capacity": swarm_capacity,
            "binpack_services": binpack_services,
            "fleet_capacity": fleet_capacity,
        }
