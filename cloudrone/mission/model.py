"""A mission bundle: load ``mission.yml``, validate it, and say exactly what is wrong.

Every problem is reported as ``FILE:LINE FIELD: what is wrong; what to do``,
and nothing is created or changed while any problem remains.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from cloudrone.problems import ConfigProblems, read_yaml

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["mission", "target", "networks", "drones"],
    "properties": {
        "mission": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"},
        "description": {"type": "string"},
        "target": {"enum": ["sim", "ssh"]},
        "admin_user": {"type": "string", "pattern": "^[a-z_][a-z0-9_-]{0,31}$"},
        "ssh_key": {"type": "string", "minLength": 1},
        "networks": {
            "type": "object",
            "additionalProperties": False,
            "required": ["management", "mesh"],
            "properties": {
                "management": {"type": "string"},
                "mesh": {"type": "string"},
                # where each drone's access point subnet (a /24) comes from
                "ground": {"type": "string"},
            },
        },
        "drones": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "management_address", "mesh_address"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"},
                    "management_address": {"type": "string"},
                    "mesh_address": {"type": "string"},
                    # the drone's network for phones; by default the drone's
                    # own /24 of networks.ground, by its position in this list
                    "ap_subnet": {"type": "string"},
                    "model": {"enum": sorted(["pi2", "pi3", "pi4", "pi5"])},
                    # MAVLink system id of the drone's flight bridge: unique in the
                    # fleet; by default the drone's 1-based position in this list.
                    "system_id": {"type": "integer", "minimum": 1, "maximum": 255},
                },
            },
        },
    },
}

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

    @property
    def ap_address(self) -> ipaddress.IPv4Address:
        return self.ap_subnet.network_address + 1

    @property
    def resources(self) -> dict[str, Any]:
        return MODELS[self.model]


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

    @property
    def controller_address(self) -> ipaddress.IPv4Address:
        """On the simulated fleet, the controller's own address on the management link."""
        return self.management.broadcast_address - 1


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
            )
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
    )
