"""A mission bundle: load ``mission.yml``, validate it, and say exactly what is wrong.

Every problem is reported as ``FILE:LINE FIELD: what is wrong; what to do``,
and nothing is created or changed while any problem remains.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cloudrone.mission.schema import SCHEMA
from cloudrone.problems import ConfigProblems, read_yaml
from cloudrone.rules import channels_allowed, docker_archive_images, memory_bytes

# What a simulated drone of each model may use: the Pi's memory and cores.
MODELS: dict[str, dict[str, Any]] = {
    "pi2": {"memory": "1g", "cpus": 1.0},
    "pi3": {"memory": "1g", "cpus": 1.0},
    "pi4": {"memory": "4g", "cpus": 2.0},
    "pi5": {"memory": "8g", "cpus": 2.0},
}

HINTS: dict[str, str] = {
    "mission": "use lower-case letters, digits and dashes, e.g. relief-camp",
    "target": "use sim (containers on this machine) or ssh (real drones)",
    "name": "use lower-case letters, digits and dashes, e.g. drone-1",
    "model": f"use one of {', '.join(sorted(MODELS))}",
    "admin_user": "use a Linux user name such as cloudrone",
    "system_id": "give each drone its own MAVLink system id from 1 to 255",
    "version": "write version: 2 (or leave it out for the first format)",
    "passphrase_env": "name an environment variable, like CLOUDRONE_AP_PASSPHRASE",
    "password_env": "name an environment variable, like CLOUDRONE_REGISTRY_PASSWORD",
    "country": "give an ISO 3166 country code in capitals, like GB or US",
    "dns": "use lower-case letters, digits and dashes, e.g. map",
    "loss": "give a whole percent of frames lost, 0 to 99",
    "metric": "give 1 (preferred), 2 or 3",
    "security": "use open, wpa2 or wpa3",
    "signing": "write true (the default: signed control) or false (unsigned, on purpose)",
    "ground_station": "give the ground station's ADDRESS or ADDRESS:PORT on the management "
    "network, like 10.250.0.254:14550",
    "recipe": "use tinyweb (a static web server for a folder of the bundle), board (the "
    "camp's replicated board) or offline-map "
    "(a map of a .pmtiles or .geojson file of the bundle)",
}

# Fields that would hold a secret in clear: refused, with the way to do it.
SECRET_FIELDS = {
    "passphrase": "passphrase_env",
    "password": "password_env",
    "wpa_passphrase": "passphrase_env",
}

# What services may use on a drone, as the services role counts it: the
# model's memory less what the system keeps (services_model_memory_mb and
# services_system_reserve_mb in roles/services/defaults/main.yml).
MODEL_MEMORY_MB = {"pi2": 1024, "pi3": 1024, "pi4": 4096, "pi5": 8192}
SYSTEM_RESERVE_MB = 192

# The passphrase of the mission's flight key, when the operator gives it (the
# environment or the bundle's vault) instead of letting mission up make one.
FLIGHT_PASSPHRASE_ENV = "CLOUDRONE_FLIGHT_PASSPHRASE"
MAVLINK_GROUND_PORT = 14550
# where every flight bridge takes MAVLink (flight_bridge_mavlink_port)
MAVLINK_BRIDGE_PORT = 14555

# Ports a service may not publish: they manage, route or fly the drone.
RESERVED_PORTS = {
    ("tcp", 22): "SSH",
    ("udp", 53): "DNS (dnsmasq)",
    ("tcp", 53): "DNS (dnsmasq)",
    ("udp", 67): "DHCP",
    ("udp", 123): "NTP (chrony)",
    ("udp", 698): "OLSR",
    ("tcp", 2375): "the Docker API",
    ("tcp", 2376): "the Docker API",
    ("tcp", 2377): "Swarm's control plane",
    ("tcp", 7946): "Swarm's gossip",
    ("udp", 7946): "Swarm's gossip",
    ("udp", 4789): "Swarm's overlay (VXLAN)",
    ("tcp", 9090): "the routing daemon's status",
    ("udp", 14550): "the flight bridge's MAVLink",
    ("udp", MAVLINK_BRIDGE_PORT): "the flight bridge's MAVLink",
}

# Phones' networks when the mission names none: drone N gets 10.43.N.0/24.
DEFAULT_GROUND = "10.43.0.0/16"


class MissionError(ConfigProblems):
    """The bundle is not usable; ``problems`` lists every reason."""


@dataclass(frozen=True)
class DronePlan:
    name: str
    management_address: str
    mesh_address: ipaddress.IPv4Address
    # the drone's access point subnet; it takes the first address
    ap_subnet: ipaddress.IPv4Network
    model: str
    system_id: int = 1
    swarm_role: str = "manager"
    labels: tuple[tuple[str, str], ...] = ()
    # a gateway's preference (1 preferred .. 3); None: not a gateway
    gateway_metric: int | None = None

    @property
    def ap_address(self) -> ipaddress.IPv4Address:
        return self.ap_subnet.network_address + 1

    @property
    def resources(self) -> dict[str, Any]:
        return MODELS[self.model]


@dataclass(frozen=True)
class RadioPlan:
    """The mesh on the air, and for sim who hears whom."""

    ssid: str = "cloudrone-mesh"
    channel: int = 1
    country: str = "GB"
    profile: str = "rfc"
    link_quality: str = "etx"
    passphrase_env: str | None = None
    # sim only: {pair: percent lost}; None: every drone hears every other
    in_range: dict[frozenset[str], int] | None = None
    partitioned: bool = False


# the landing page's name in the access point's domain (the access point role's
# access_point_portal_name)
LANDING_PAGE_NAME = "welcome"


@dataclass(frozen=True)
class AccessPointPlan:
    ssid: str = "cloudrone"
    channel: int = 6
    security: str = "open"
    passphrase_env: str = "CLOUDRONE_AP_PASSPHRASE"
    domain: str = "cloudrone.internal"
    client_isolation: bool = False
    landing_page: bool = False


@dataclass(frozen=True)
class FlightPlan:
    """Who may fly: MAVLink 2 signing (on unless the bundle says false) and the
    ground station the bridges speak to (None: the management network's last host)."""

    signing: bool = True
    ground_station: tuple[ipaddress.IPv4Address, int] | None = None


@dataclass(frozen=True)
class RegistryPlan:
    address: str
    user: str = "cloudrone"
    password_env: str = "CLOUDRONE_REGISTRY_PASSWORD"


@dataclass(frozen=True)
class Port:
    target: int
    published: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class ServicePlan:
    name: str
    # NAME:TAG; None for a built image until it is built (see ``build``)
    image: str | None
    # (recipe, content folder or None) for an image the controller builds
    build: tuple[str, Path | None] | None
    replicas: int
    placement: str
    drones: tuple[str, ...]
    memory: str | None
    memory_bytes: int
    cpus: float
    memory_limit: str | None
    ports: tuple[Port, ...]
    dns: str
    command: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """The node label that marks the drones it may run on (``drones``)."""
        return f"cloudrone.serves.{self.name}"


@dataclass(frozen=True)
class Mission:
    bundle: Path
    name: str
    description: str
    target: str
    admin_user: str
    ssh_key: Path
    management: ipaddress.IPv4Network
    mesh: ipaddress.IPv4Network
    drones: tuple[DronePlan, ...]
    version: int = 1
    radio: RadioPlan = RadioPlan()
    access_point: AccessPointPlan = AccessPointPlan()
    services: tuple[ServicePlan, ...] = ()
    registry: RegistryPlan | None = None
    flight: FlightPlan = FlightPlan()
    # the bundle's image archives (images/*.tar) and the tags each holds
    archives: tuple[tuple[Path, tuple[str, ...]], ...] = ()
    # the bundle's ansible-vault file of secrets, if it has one
    secrets_file: Path | None = None

    @property
    def names_by_mesh_address(self) -> dict[str, str]:
        return {str(d.mesh_address): d.name for d in self.drones}

    def drone(self, name: str) -> DronePlan:
        return next(d for d in self.drones if d.name == name)

    def service_drones(self, service: ServicePlan) -> list[DronePlan]:
        """The drones a service's replicas may land on, in fleet order."""
        if service.drones:
            return [d for d in self.drones if d.name in service.drones]
        return list(self.drones)

    @property
    def controller_address(self) -> ipaddress.IPv4Address:
        """On the simulated fleet, the controller's own address on the management link."""
        return self.management.broadcast_address - 1

    @property
    def ground_station(self) -> tuple[ipaddress.IPv4Address, int]:
        """Where the bridges speak first: the bundle's, else the management network's
        last host (the controller's), as the flight bridge role defaults it."""
        return self.flight.ground_station or (self.controller_address, MAVLINK_GROUND_PORT)


def _ap_subnet(
    raw: dict[str, Any],
    i: int,
    ground: list[ipaddress.IPv4Network],
    nets: dict[str, ipaddress.IPv4Network],
    seen: dict[ipaddress.IPv4Network, str],
    report: Any,
) -> ipaddress.IPv4Network | None:
    """Drone i's network for phones: its own, or its /24 of networks.ground."""
    where = ["drones", i, "ap_subnet"]
    if "ap_subnet" in raw:
        try:
            subnet = ipaddress.IPv4Network(raw["ap_subnet"])
        except ValueError as exc:
            report(where, f"{exc}; give the network address, like 10.43.{i + 1}.0/24")
            return None
        if subnet.prefixlen > 29:
            report(where, f"{subnet} is too small for phones; give a /24 (at least a /29)")
            return None
    elif i + 1 < len(ground):
        subnet = ground[i + 1]
    else:
        if ground:
            report(where, "networks.ground has no /24 left for this drone; give it an ap_subnet")
        return None
    for key, net in nets.items():
        if subnet.overlaps(net):
            report(
                where if "ap_subnet" in raw else ["networks", "ground"],
                f"{subnet} overlaps the {key} network {net}; phones need a network of their own",
            )
            return None
    for other_net, other in seen.items():
        if subnet.overlaps(other_net):
            report(where, f"{subnet} overlaps {other}'s {other_net}; give each drone its own")
            return None
    seen[subnet] = raw["name"]
    return subnet


def load(bundle: Path) -> Mission:
    """Read and validate ``bundle/mission.yml``; raise MissionError with every problem."""
    data, problems = read_yaml(
        bundle / "mission.yml",
        kind="mission",
        error=MissionError,
        missing_fix="a mission bundle is a folder with a mission.yml (see missions/demo)",
    )
    report = problems.add

    validator = jsonschema.Draft202012Validator(SCHEMA)
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        p = list(err.path)
        leaf = next((x for x in reversed(p) if isinstance(x, str)), "")
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            known = ", ".join(err.schema.get("properties", {}))
            for key in extra:
                if key in SECRET_FIELDS and SECRET_FIELDS[key] in err.schema["properties"]:
                    report(
                        [*p, key],
                        "a secret never goes in the bundle in clear; put it in an "
                        f"environment variable and name that in {SECRET_FIELDS[key]}",
                    )
                else:
                    report([*p, key], f"unknown field; known fields here: {known}")
            continue
        if err.validator == "required":
            report(p, f"{err.message}; add it (see missions/demo/mission.yml)")
            continue
        hint = HINTS.get(leaf, "")
        report(p, f"{err.message}" + (f"; {hint}" if hint else ""))
    problems.raise_if_any(MissionError)

    nets: dict[str, ipaddress.IPv4Network] = {}
    for key in ("management", "mesh"):
        try:
            nets[key] = ipaddress.IPv4Network(data["networks"][key])
        except ValueError as exc:
            report(["networks", key], f"{exc}; give a network address like 10.42.0.0/24")
    if len(nets) == 2 and nets["management"].overlaps(nets["mesh"]):
        report(
            ["networks", "mesh"],
            f"overlaps the management network {nets['management']}; give the mesh its own range",
        )
    ground: list[ipaddress.IPv4Network] = []
    try:
        ground_net = ipaddress.IPv4Network(data["networks"].get("ground", DEFAULT_GROUND))
        ground = list(ground_net.subnets(new_prefix=24)) if ground_net.prefixlen <= 24 else []
        if not ground:
            report(["networks", "ground"], f"{ground_net} holds no /24; give a /16 or so")
    except ValueError as exc:
        report(["networks", "ground"], f"{exc}; give a network address like 10.43.0.0/16")
    seen_ap: dict[ipaddress.IPv4Network, str] = {}

    target = data["target"]
    if data.get("version", 1) == 1:
        v2 = [
            k
            for k in (
                "radio",
                "access_point",
                "gateways",
                "services",
                "registry",
                "secrets",
                "flight",
            )
            if k in data
        ]
        for key in v2:
            report([key], "is a version 2 field; add version: 2 at the top of the bundle")
    roles = _swarm_roles(data["drones"])
    seen_names: dict[str, int] = {}
    seen_addr: dict[str, str] = {}
    seen_ids: dict[int, tuple[int, bool]] = {}  # system id -> (drone index, given explicitly)
    drones: list[DronePlan] = []
    for i, raw in enumerate(data["drones"]):
        name = raw["name"]
        if name in seen_names:
            report(
                ["drones", i, "name"],
                f"{name} is already the name of drones[{seen_names[name]}]; "
                "give every drone its own name",
            )
        seen_names.setdefault(name, i)
        addrs: dict[str, ipaddress.IPv4Address] = {}
        for key, net_key in (("mesh_address", "mesh"), ("management_address", "management")):
            value = raw[key]
            if key == "management_address" and target == "ssh":
                try:
                    ipaddress.IPv4Address(value)
                except ValueError:
                    continue  # a host name such as drone-1.local: fine for ssh
            try:
                addr = ipaddress.IPv4Address(value)
            except ValueError:
                report(["drones", i, key], f"{value!r} is not an IPv4 address")
                continue
            net = nets.get(net_key)
            if net is not None:
                reserved = {net.network_address, net.broadcast_address}
                if target == "sim":
                    reserved.add(net.broadcast_address - 1)
                if addr not in net or addr in reserved:
                    extra = (
                        f" ({net.broadcast_address - 1} is the controller's)"
                        if target == "sim"
                        else ""
                    )
                    report(
                        ["drones", i, key],
                        f"{addr} is not a usable host address in {net}"
                        f"{extra}; pick one inside networks.{net_key}",
                    )
                    continue
                other = seen_addr.get(str(addr))
                if other:
                    report(
                        ["drones", i, key],
                        f"{addr} is already used by {other}; pick another address in {net}",
                    )
                    continue
                seen_addr[str(addr)] = name
            addrs[key] = addr
        ap_subnet = _ap_subnet(raw, i, ground, nets, seen_ap, report)
        explicit = "system_id" in raw
        system_id = raw["system_id"] if explicit else i + 1
        if system_id in seen_ids:
            other, other_explicit = seen_ids[system_id]
            origin = "its system_id" if other_explicit else "its position in the list"
            given = "" if explicit else f" (drones[{i}] has it by its position)"
            free = next(n for n in range(1, 256) if n not in seen_ids and n != system_id)
            report(
                ["drones", i, "system_id"],
                f"system id {system_id} is already drones[{other}]'s ({origin}){given}; "
                f"give every drone its own system_id, e.g. {free}",
            )
        seen_ids.setdefault(system_id, (i, explicit))
        drones.append(
            DronePlan(
                name=name,
                management_address=str(raw["management_address"]),
                mesh_address=addrs.get("mesh_address", ipaddress.IPv4Address(0)),
                # (a problem was reported where there is none: the load fails below)
                ap_subnet=ap_subnet or ipaddress.IPv4Network("0.0.0.0/32"),
                model=raw.get("model", "pi2"),
                system_id=system_id,
                swarm_role=roles[i],
                labels=tuple(sorted((str(k), str(v)) for k, v in raw.get("labels", {}).items())),
            )
        )
    managers = [d.name for d in drones if d.swarm_role == "manager"]
    if len(managers) % 2 == 0:
        report(
            ["drones"],
            f"{len(managers)} drones manage the swarm ({', '.join(managers) or 'none'}): it "
            "needs an odd number to keep a majority when one is lost; set swarm_role "
            "(manager or worker) so that 1, 3 or 5 manage",
        )
    names = [d.name for d in drones]
    radio = _radio(data.get("radio") or {}, names, target, report)
    access_point = _access_point(data.get("access_point") or {}, radio, report)
    drones = _gateways(data.get("gateways") or [], drones, report)
    registry = RegistryPlan(**data["registry"]) if "registry" in data else None
    archives = _archives(bundle, report)
    secrets_file = _secrets_file(bundle, data.get("secrets"), report)
    flight = _flight(data.get("flight") or {}, nets.get("management"), report)
    # names the fleet itself answers, which no service may take
    reserved_dns = (
        {LANDING_PAGE_NAME: "the landing page's name (access_point.landing_page)"}
        if access_point.landing_page
        else {}
    )
    services = _services(
        data.get("services") or [], bundle, drones, registry, archives, reserved_dns, report
    )
    problems.raise_if_any(MissionError)

    default_key = "~/.ssh/cloudrone_sim_ed25519" if target == "sim" else "~/.ssh/id_ed25519"
    return Mission(
        bundle=bundle.resolve(),
        name=data["mission"],
        description=data.get("description", ""),
        target=target,
        admin_user=data.get("admin_user", "cloudrone"),
        ssh_key=Path(data.get("ssh_key", default_key)).expanduser(),
        management=nets["management"],
        mesh=nets["mesh"],
        drones=tuple(drones),
        version=data.get("version", 1),
        radio=radio,
        access_point=access_point,
        services=tuple(services),
        registry=registry,
        archives=tuple(archives),
        secrets_file=secrets_file,
        flight=flight,
    )


Report = Callable[[list[str | int], str], None]


def _swarm_roles(raw_drones: list[dict[str, Any]]) -> list[str]:
    """Each drone's part, as the swarm role decides it: an explicit swarm_role,
    else the first three drones manage (one, if only two are unassigned... the
    largest odd number up to three that the fleet allows)."""
    default_managers = min(3, (len(raw_drones) - 1) // 2 * 2 + 1)
    return [
        raw.get("swarm_role") or ("manager" if i < default_managers else "worker")
        for i, raw in enumerate(raw_drones)
    ]


def reach(names: list[str], pairs: Iterable[frozenset[str]]) -> dict[str, tuple[int, int]]:
    """Each drone's (group, hops from its group's first drone): a group is the
    drones that hear each other, directly or through others; groups are
    numbered, and drones met, in the order of ``names``."""
    pairs = list(pairs)
    out: dict[str, tuple[int, int]] = {}
    for start in names:
        if start in out:
            continue
        group = max((g for g, _ in out.values()), default=-1) + 1
        out[start] = (group, 0)
        todo = deque([start])
        while todo:
            here = todo.popleft()
            for pair in pairs:
                if here in pair:
                    (other,) = pair - {here}
                    if other not in out:
                        out[other] = (group, out[here][1] + 1)
                        todo.append(other)
    return out


def _connected(names: list[str], pairs: dict[frozenset[str], int]) -> list[list[str]]:
    """The groups of drones that hear each other, directly or through others."""
    found = reach(names, pairs)
    groups = sorted({g for g, _ in found.values()})
    return [[n for n in names if found[n][0] == g] for g in groups]


def _radio(raw: dict[str, Any], names: list[str], target: str, report: Report) -> RadioPlan:
    country = raw.get("country", "GB")
    channel = raw.get("channel", 1)
    if channel not in channels_allowed(country):
        report(
            ["radio", "channel"],
            f"channel {channel} is not one a drone may use in {country} (without radar "
            f"detection): pick one of {_channel_list(country)}",
        )
    if "ssid" in raw and not 1 <= len(str(raw["ssid"]).encode()) <= 32:
        report(["radio", "ssid"], "an SSID is 1 to 32 bytes; shorten it")
    in_range: dict[frozenset[str], int] | None = None
    if "range" in raw:
        if target != "sim":
            report(
                ["radio", "range"],
                "range is for simulated fleets; real radios hear whom they hear: "
                "remove it, or use target: sim",
            )
        in_range = {}
        for i, pair in enumerate(raw["range"]):
            a, b = pair["between"]
            unknown = [n for n in (a, b) if n not in names]
            if unknown:
                report(
                    ["radio", "range", i, "between"],
                    f"no drone named {', '.join(unknown)}; known drones: {', '.join(names)}",
                )
                continue
            if a == b:
                report(["radio", "range", i, "between"], "name two different drones")
                continue
            key = frozenset((a, b))
            if key in in_range:
                report(
                    ["radio", "range", i, "between"],
                    f"{a} and {b} are already listed; give each pair once (range is "
                    "the same both ways)",
                )
                continue
            in_range[key] = pair.get("loss", 0)
        groups = _connected(names, in_range)
        if len(groups) > 1 and not raw.get("partitioned", False):
            split = " | ".join(", ".join(g) for g in groups)
            report(
                ["radio", "range"],
                f"the drones fall into {len(groups)} groups that never hear each other "
                f"({split}); add a pair that joins them, or say partitioned: true",
            )
    return RadioPlan(
        ssid=raw.get("ssid", "cloudrone-mesh"),
        channel=channel,
        country=country,
        profile=raw.get("profile", "rfc"),
        link_quality=raw.get("link_quality", "etx"),
        passphrase_env=raw.get("passphrase_env"),
        in_range=in_range,
        partitioned=raw.get("partitioned", False),
    )


def _flight(
    raw: dict[str, Any], management: ipaddress.IPv4Network | None, report: Report
) -> FlightPlan:
    station = None
    if "ground_station" in raw:
        text = str(raw["ground_station"])
        host, _, port = text.partition(":")
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError as exc:
            report(["flight", "ground_station"], f"{exc}; give ADDRESS or ADDRESS:PORT")
            return FlightPlan(signing=raw.get("signing", True))
        number = int(port) if port else MAVLINK_GROUND_PORT
        if not 1 <= number <= 65535:
            report(["flight", "ground_station"], f"port {number} is not 1-65535; give 14550")
        if management is not None and (
            address not in management
            or address in (management.network_address, management.broadcast_address)
        ):
            report(
                ["flight", "ground_station"],
                f"{address} is not a host of the management network {management}: the "
                "flight port is reached on the management link alone, never across the "
                f"mesh; give the ground station's address there (e.g. "
                f"{management.broadcast_address - 1})",
            )
        station = (address, number)
    return FlightPlan(signing=raw.get("signing", True), ground_station=station)


def _channel_list(country: str) -> str:
    channels = channels_allowed(country)
    low = [c for c in channels if c <= 14]
    high = [c for c in channels if c > 14]
    return f"{low[0]}-{low[-1]} (2.4 GHz), " + ", ".join(map(str, high)) + " (5 GHz)"


def _access_point(raw: dict[str, Any], radio: RadioPlan, report: Report) -> AccessPointPlan:
    channel = raw.get("channel", 6)
    if channel not in channels_allowed(radio.country):
        report(
            ["access_point", "channel"],
            f"channel {channel} is not one a drone may use in {radio.country} (radio.country):"
            f" pick one of {_channel_list(radio.country)}",
        )
    if "ssid" in raw and not 1 <= len(str(raw["ssid"]).encode()) <= 32:
        report(["access_point", "ssid"], "an SSID is 1 to 32 bytes; shorten it")
    return AccessPointPlan(
        ssid=raw.get("ssid", "cloudrone"),
        channel=channel,
        security=raw.get("security", "open"),
        passphrase_env=raw.get("passphrase_env", "CLOUDRONE_AP_PASSPHRASE"),
        domain=raw.get("domain", "cloudrone.internal"),
        client_isolation=raw.get("client_isolation", False),
        landing_page=raw.get("landing_page", False),
    )


def _gateways(
    raw: list[dict[str, Any]], drones: list[DronePlan], report: Report
) -> list[DronePlan]:
    names = [d.name for d in drones]
    metrics: dict[str, int] = {}
    seen_metric: dict[int, str] = {}
    for i, gw in enumerate(raw):
        name, metric = gw["drone"], gw.get("metric", 3)
        if name not in names:
            report(["gateways", i, "drone"], f"no drone named {name}; known: {', '.join(names)}")
        elif name in metrics:
            report(["gateways", i, "drone"], f"{name} is already a gateway; list it once")
        elif metric in seen_metric:
            report(
                ["gateways", i, "metric"],
                f"metric {metric} is already {seen_metric[metric]}'s; give each gateway its "
                "own (1 preferred, 2, 3), or a drone would take whichever it hears first",
            )
        else:
            metrics[name] = metric
            seen_metric[metric] = name
    return [dataclasses.replace(d, gateway_metric=metrics.get(d.name)) for d in drones]


def _archives(bundle: Path, report: Report) -> list[tuple[Path, tuple[str, ...]]]:
    """The bundle's images/*.tar and the tags each holds."""
    folder = bundle / "images"
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.tar")):
        try:
            tags = tuple(t.split(" ", 1)[1] for t in docker_archive_images(str(path)))
        except ValueError as exc:
            report(["services"], f"{exc}; replace it with a docker save archive, or remove it")
            continue
        out.append((path.resolve(), tags))
    return out


def _map_source(bundle: Path, content: str | None, where: list, report: Report) -> Path | None:
    """The offline map's source file, checked as the recipe will read it."""
    from cloudrone.camp import maps  # the tiling libraries load only for a map

    if content is None:
        report(where, "offline-map needs its map: give a .pmtiles or .geojson file of the bundle")
        return None
    path = (bundle / content).resolve()
    if not path.is_relative_to(bundle.resolve()) or not path.is_file():
        report(where, f"{content} is not a file inside the bundle; give one, like maps/camp.json")
        return None
    try:
        if path.suffix == ".pmtiles":
            maps.describe(path)
        elif path.suffix in (".geojson", ".json"):
            maps.check_geojson(maps.load_geojson(path), content)
        else:
            report(where, f"{content}: give a .pmtiles archive or a .geojson file")
            return None
    except maps.MapError as exc:
        report(where, str(exc).replace(str(path), content))
        return None
    return path


def _services(
    raw: list[dict[str, Any]],
    bundle: Path,
    drones: list[DronePlan],
    registry: RegistryPlan | None,
    archives: list[tuple[Path, tuple[str, ...]]],
    reserved_dns: dict[str, str],
    report: Report,
) -> list[ServicePlan]:
    names = [d.name for d in drones]
    held = {tag for _, tags in archives for tag in tags}
    seen: dict[str, int] = {}
    seen_dns: dict[str, str] = {}
    out: list[ServicePlan] = []
    for i, s in enumerate(raw):
        where: list[str | int] = ["services", i]
        name = s["name"]
        if name in seen:
            report([*where, "name"], f"services[{seen[name]}] is already {name}; rename one")
        seen.setdefault(name, i)
        dns = s.get("dns", name)
        if dns in reserved_dns:
            report(
                [*where, "dns"], f"{dns} is {reserved_dns[dns]}; give this service another dns name"
            )
        if dns in seen_dns and seen_dns[dns] != name:
            report([*where, "dns"], f"{dns} is already {seen_dns[dns]}'s name; give each its own")
        seen_dns.setdefault(dns, name)
        image, build = s.get("image"), None
        if ("image" in s) == ("build" in s):
            report(
                where,
                "give either image (from images/ or the registry) or build (made here), "
                "not " + ("both" if image else "neither"),
            )
        elif image is not None:
            under_registry = registry is not None and image.startswith(registry.address + "/")
            if image not in held and not under_registry:
                have = ", ".join(sorted(held)) or "none"
                report(
                    [*where, "image"],
                    f"{image} is in no archive of {bundle / 'images'} (they hold: {have})"
                    + (f" nor under the registry {registry.address}" if registry else "")
                    + "; add its docker save archive there (docker save -o images/NAME.tar "
                    f"{image}). Drones never pull from the Internet",
                )
        else:
            recipe, content = s["build"]["recipe"], s["build"].get("content")
            folder = None
            if recipe == "offline-map":
                folder = _map_source(bundle, content, [*where, "build", "content"], report)
            elif recipe == "board":
                if content is not None:
                    report(
                        [*where, "build", "content"],
                        "the board starts empty and takes no content; drop content",
                    )
                if not any(p.get("protocol", "tcp") == "tcp" for p in s.get("ports", [])):
                    report(
                        [*where, "ports"],
                        "the board needs a published TCP port, for phones and for its "
                        "replicas to reach each other: ports: [{target: 8080, published: 80}]",
                    )
            elif content is not None:
                folder = (bundle / content).resolve()
                if not folder.is_relative_to(bundle.resolve()) or not folder.is_dir():
                    report(
                        [*where, "build", "content"],
                        f"{content} is not a folder inside the bundle; give a folder of "
                        "the bundle, like site",
                    )
            build = (recipe, folder)
        placement = s.get("placement", "spread")
        only = tuple(s.get("drones", ()))
        unknown = [n for n in only if n not in names]
        if unknown:
            known = ", ".join(names)
            report([*where, "drones"], f"no drone named {', '.join(unknown)}; known: {known}")
        if only and placement == "binpack":
            report(
                [*where, "drones"],
                "binpack chooses the drones itself; use placement: spread with drones, "
                "or drop drones",
            )
        memory_text = s.get("memory")
        try:
            memory = memory_bytes(memory_text or 0)
        except ValueError as exc:
            report([*where, "memory"], str(exc))
            memory = 0
        if "memory_limit" in s:
            try:
                limit = memory_bytes(s["memory_limit"])
                if limit < memory:
                    report(
                        [*where, "memory_limit"],
                        f"{s['memory_limit']} is below the reservation {memory_text}; raise it",
                    )
            except ValueError as exc:
                report([*where, "memory_limit"], str(exc))
        ports = []
        for j, p in enumerate(s.get("ports", [])):
            port = Port(p["target"], p.get("published", p["target"]), p.get("protocol", "tcp"))
            taken = RESERVED_PORTS.get((port.protocol, port.published))
            if taken:
                report(
                    [*where, "ports", j, "published"],
                    f"{port.protocol} {port.published} is {taken} on every drone; publish "
                    "another port (8080, say)",
                )
            ports.append(port)
        replicas = s.get("replicas", 1)
        eligible = [n for n in names if not only or n in only]
        if ports and placement == "spread" and replicas > len(eligible):
            report(
                [*where, "replicas"],
                f"{replicas} replicas publishing a port need {replicas} drones (one each, "
                f"host mode) and {len(eligible)} may run it; lower replicas or add drones",
            )
        out.append(
            ServicePlan(
                name=name,
                image=image,
                build=build,
                replicas=replicas,
                placement=placement,
                drones=only,
                memory=memory_text,
                memory_bytes=memory,
                cpus=float(s.get("cpus", 0)),
                memory_limit=s.get("memory_limit"),
                ports=tuple(ports),
                dns=dns,
                command=tuple(s["command"]) if "command" in s else None,
                environment=tuple(sorted((k, str(v)) for k, v in s.get("environment", {}).items())),
            )
        )
    _ports_apart(out, report)
    _fits(out, drones, report)
    return out


def _ports_apart(services: list[ServicePlan], report: Report) -> None:
    """Two services publishing one port must never meet on a drone (host mode)."""
    owner: dict[tuple[str, int], tuple[int, ServicePlan]] = {}
    for i, s in enumerate(services):
        for j, port in enumerate(s.ports):
            key = (port.protocol, port.published)
            if key in owner:
                k, other = owner[key]
                if not s.drones or not other.drones or set(s.drones) & set(other.drones):
                    report(
                        ["services", i, "ports", j, "published"],
                        f"{port.protocol} {port.published} is already published by "
                        f"{other.name} (services[{k}]), and both may run on one drone; "
                        "publish another port",
                    )
                continue
            owner[key] = (i, s)


def _fits(services: list[ServicePlan], drones: list[DronePlan], report: Report) -> None:
    """Every replica fits somewhere, by the drones' models, all services together."""
    free = {d.name: (MODEL_MEMORY_MB[d.model] - SYSTEM_RESERVE_MB) * 2**20 for d in drones}
    replicas = [(i, s) for i, s in enumerate(services) for _ in range(s.replicas)]
    replicas.sort(key=lambda item: -item[1].memory_bytes)
    for i, s in replicas:
        spots = [d.name for d in drones if not s.drones or d.name in s.drones]
        spot = next((n for n in spots if free[n] >= s.memory_bytes), None)
        if spot is None:
            left = max((free[n] for n in spots), default=0) // 2**20
            report(
                ["services", i, "memory"],
                f"a replica of {s.name} reserving {s.memory} fits on no drone beside the "
                f"others (at most {left} MiB left on a drone that may run it; a "
                f"drone keeps {SYSTEM_RESERVE_MB} MiB for its system): lower memory or "
                "replicas, or add a drone",
            )
            return
        free[spot] -= s.memory_bytes


VAULT_HEADER = "$ANSIBLE_VAULT;"
VAULT_PASSWORD_VARS = ("CLOUDRONE_VAULT_PASSWORD_FILE", "ANSIBLE_VAULT_PASSWORD_FILE")


def _secrets_file(bundle: Path, name: str | None, report: Report) -> Path | None:
    if name is None:
        return None
    path = (bundle / name).resolve()
    if not path.is_relative_to(bundle.resolve()) or not path.is_file():
        report(["secrets"], f"{name} is not a file of the bundle; make it with ansible-vault "
                            f"create {name} in the bundle's folder")  # fmt: skip
        return None
    try:
        head = path.read_bytes()[: len(VAULT_HEADER)].decode("ascii", "replace")
    except OSError as exc:
        report(["secrets"], f"{name} cannot be read ({exc.strerror}); fix its mode")
        return None
    if head != VAULT_HEADER:
        report(
            ["secrets"],
            f"{name} is not encrypted: secrets never lie in the bundle in clear; "
            f"run ansible-vault encrypt {name}",
        )
        return None
    return path


def vault_password_file() -> Path | None:
    for var in VAULT_PASSWORD_VARS:
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    return None


def read_vault(mission: Mission) -> tuple[dict[str, Any], str | None]:
    """The bundle's secrets by name, decrypted with the vault password; or the reason not."""
    if mission.secrets_file is None:
        return {}, None
    from ansible.parsing.vault import VaultLib, VaultSecret

    file = mission.bundle / "mission.yml"
    where = f"{file} secrets"
    password_file = vault_password_file()
    if password_file is None:
        return {}, (f"{where}: {mission.secrets_file.name} is encrypted and no vault password "
                    "is given; export CLOUDRONE_VAULT_PASSWORD_FILE=FILE (the file holding "
                    "the password)")  # fmt: skip
    try:
        password = password_file.read_bytes().strip()
        plain = VaultLib([("default", VaultSecret(password))]).decrypt(
            mission.secrets_file.read_bytes()
        )
    except OSError as exc:
        return {}, f"{where}: the vault password file {password_file}: {exc.strerror}"
    except Exception:  # ansible raises AnsibleError for a wrong password or a bad file
        return {}, (f"{where}: {mission.secrets_file.name} does not open with the password in "
                    f"{password_file}; check the password (ansible-vault view "
                    f"{mission.secrets_file.name})")  # fmt: skip
    try:
        data = yaml.safe_load(plain)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        return {}, (f"{where}: {mission.secrets_file.name} must hold a mapping of names to "
                    "secrets, like CLOUDRONE_AP_PASSPHRASE: ...; edit it with ansible-vault "
                    "edit")  # fmt: skip
    return {str(k): v for k, v in data.items()}, None


def missing_secrets(mission: Mission) -> list[str]:
    """The secrets a run needs that neither the bundle's vault nor the environment
    holds, each with its fix."""
    file = mission.bundle / "mission.yml"
    vault, problem = read_vault(mission)
    out = [problem] if problem else []
    wanted = []
    if mission.access_point.security != "open":
        wanted.append(("access_point.passphrase_env", mission.access_point.passphrase_env))
    if mission.radio.passphrase_env:
        wanted.append(("radio.passphrase_env", mission.radio.passphrase_env))
    if mission.registry is not None:
        wanted.append(("registry.password_env", mission.registry.password_env))
    for field, name in wanted:
        value = str(vault.get(name) or os.environ.get(name, ""))
        if field.endswith("passphrase_env") and not 8 <= len(value) <= 63:
            state = "is not set" if not value else f"holds {len(value)} characters"
            out.append(
                f"{file} {field}: ${name} {state}; export it with the WPA passphrase "
                "(8 to 63 characters), or put it in the bundle's vault, before mission up"
            )
        elif not value:
            out.append(
                f"{file} {field}: ${name} is not set; export it, or put it in the bundle's "
                "vault, before mission up"
            )
    return out
