"""From a validated mission to what the fleet code and Ansible need."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
import yaml

from cloudrone.fleet.sim import FleetSpec
from cloudrone.mission import flightkey
from cloudrone.mission.model import MODEL_MEMORY_MB, SYSTEM_RESERVE_MB, Mission, ServicePlan
from cloudrone.mission.placement import Node, binpack
from cloudrone.mission.placement import Service as PlacedService
from cloudrone.paths import mission_state_dir, project_root


def fleet_spec(mission: Mission) -> FleetSpec:
    """The simulated fleet for a sim mission: one container per drone on the
    management and mesh links, and each drone's access point as a link of
    its own, where phones join."""
    return FleetSpec.from_dict(
        {
            "fleet": mission.name,
            "admin_user": mission.admin_user,
            "links": [
                {"name": "mgmt", "subnet": str(mission.management)},
                {"name": "mesh", "subnet": str(mission.mesh)},
                *({"name": f"ground-{d.name}", "subnet": str(d.ap_subnet)} for d in mission.drones),
            ],
            "drones": [
                {
                    "name": d.name,
                    "links": {
                        "mgmt": d.management_address,
                        "mesh": str(d.mesh_address),
                        f"ground-{d.name}": str(d.ap_address),
                    },
                    **d.resources,
                }
                for d in mission.drones
            ],
            **(
                {
                    "radio": {
                        "link": "mesh",
                        "range": [
                            {"between": sorted(pair), "loss": loss}
                            for pair, loss in sorted(
                                mission.radio.in_range.items(), key=lambda kv: sorted(kv[0])
                            )
                        ],
                    }
                }
                if mission.radio.in_range is not None
                else {}
            ),
        },
        source=str(mission.bundle / "mission.yml"),
    )


def display_key(path: Path) -> str:
    """A key path as the inventory shows it: under ~ when it is in the home folder."""
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def built_archive(mission: Mission, service: ServicePlan) -> Path:
    """Where ``mission up`` keeps the archive of an image it built for ``service``."""
    return mission_state_dir(mission.name) / "images" / f"{service.name}.tar"


def _image_of(mission: Mission, service: ServicePlan) -> str:
    if service.image is not None:
        return service.image
    # built at mission up: the tag is the archive's, read when Ansible needs it
    path = display_key(built_archive(mission, service))
    return f'{{{{ "{path}" | docker_archive_images | first | split(" ") | last }}}}'


def swarm_services(mission: Mission) -> list[dict[str, Any]]:
    """The services as the services role takes them (cloudrone_swarm_services)."""
    out = []
    for s in mission.services:
        entry: dict[str, Any] = {
            "name": s.name,
            "image": _image_of(mission, s),
            "replicas": s.replicas,
            "placement": s.placement,
        }
        if s.memory:
            entry["memory"] = s.memory
        if s.cpus:
            entry["cpus"] = s.cpus
        if s.memory_limit:
            entry["memory_limit"] = s.memory_limit
        if s.ports:
            entry["ports"] = [
                {"target": p.target, "published": p.published, "protocol": p.protocol}
                for p in s.ports
            ]
        if s.command is not None:
            entry["command"] = list(s.command)
        environment = dict(s.environment)
        if s.build is not None and s.build[0] == "board":
            # each replica pulls from the others over the mesh, by their drones'
            # mesh addresses and the published port; its posts live in a volume
            port = next(p for p in s.ports if p.protocol == "tcp")  # the model requires one
            peers = [
                f"{d.name}={d.mesh_address}:{port.published}" for d in mission.service_drones(s)
            ]
            environment = {"BOARD_PEERS": ",".join(peers), "BOARD_PORT": str(port.target),
                           **environment}  # fmt: skip
            entry["volumes"] = [f"{s.name}-data:/data"]
            entry["hostname_from_node"] = True  # a replica names itself by its drone
        if environment:
            entry["environment"] = environment
        if s.drones:
            entry["constraints"] = [f"node.labels.{s.label}==true"]
        out.append(entry)
    return out


def service_names(mission: Mission) -> list[dict[str, Any]]:
    """What phones resolve (cloudrone_services): each published port of each
    service at the mesh address of every drone that may run it."""
    out = []
    for s in mission.services:
        for drone in mission.service_drones(s):
            for p in s.ports:
                out.append(
                    {
                        "name": s.dns,
                        "address": str(drone.mesh_address),
                        "port": p.published,
                        "protocol": p.protocol,
                        "drone": drone.name,
                    }
                )
    return out


def node_labels(mission: Mission) -> dict[str, dict[str, str]]:
    """Each drone's swarm labels: its own, and one per service pinned to it."""
    labels = {d.name: dict(d.labels) for d in mission.drones}
    for s in mission.services:
        for name in s.drones:
            labels[name][s.label] = "true"
    return labels


def image_archives(mission: Mission) -> list[dict[str, str]]:
    """Every archive the drones load: the bundle's images/ and the built ones."""
    paths = [display_key(p) for p, _ in mission.archives]
    paths += [display_key(built_archive(mission, s)) for s in mission.services if s.build]
    return [{"path": p} for p in paths]


def _secret(name: str, vault: bool) -> str:
    """How the inventory reads a secret: from the bundle's vault if it has one,
    else (or when the vault lacks it) from the environment."""
    env = f"lookup('ansible.builtin.env', '{name}')"
    if not vault:
        return f"{{{{ {env} }}}}"
    return f"{{{{ cloudrone_secrets.get('{name}') or {env} }}}}"


def _flow(value: Any) -> str:
    """A value as one line of YAML (flow style), keys in the order given."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 16, sort_keys=False).strip()


class _IndentedDumper(yaml.SafeDumper):
    """Lists indented under their key, as yamllint (and people) expect."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _block(value: Any, indent: int) -> str:
    """A list as indented block YAML, keys in the order given."""
    text = yaml.dump(
        value, Dumper=_IndentedDumper, default_flow_style=False, width=140, sort_keys=False
    )
    return "\n".join(" " * indent + line for line in text.rstrip("\n").splitlines())


def render_inventory(mission: Mission, offline: dict[str, str] | None = None) -> str:
    """The inventory of ``mission``; ``offline`` (apt_proxy, wheelhouse) for ``up --from``."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(project_root() / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["secret"] = lambda name: _secret(name, mission.secrets_file is not None)
    env.filters["flow"] = _flow
    env.filters["block"] = _block
    text = env.get_template("inventory.yml.j2").render(
        mission=mission,
        ssh_key=display_key(mission.ssh_key),
        labels=node_labels(mission),
        archives=image_archives(mission),
        services=swarm_services(mission),
        names=service_names(mission),
        secrets_path=display_key(mission.secrets_file) if mission.secrets_file else "",
        flight_key_file=display_key(flightkey.folder(mission) / flightkey.KEY_FILE),
        offline=offline,
    )
    return text.rstrip("\n") + "\n"


def placement(mission: Mission) -> dict[str, Counter[str]]:
    """Where each service's replicas are planned: {service: {drone: replicas}}.

    binpack services as the services role plans them (first-fit decreasing by
    the models' memory); spread services evenly over the drones that may run
    them, in fleet order, as Swarm's scheduler does on an idle fleet.
    """
    nodes = [
        Node(d.name, (MODEL_MEMORY_MB[d.model] - SYSTEM_RESERVE_MB) * 2**20, float("inf"))
        for d in mission.drones
    ]
    packed = binpack(
        nodes,
        [
            PlacedService(s.name, s.replicas, s.memory_bytes, s.cpus)
            for s in mission.services
            if s.placement == "binpack"
        ],
    )
    out: dict[str, Counter[str]] = {}
    for s in mission.services:
        if s.placement == "binpack":
            out[s.name] = packed.placed.get(s.name, Counter())
            continue
        drones = [d.name for d in mission.service_drones(s)]
        out[s.name] = Counter(drones[k % len(drones)] for k in range(s.replicas))
    return out
