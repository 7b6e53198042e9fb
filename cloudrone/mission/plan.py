"""From a validated mission to what the fleet code and Ansible need."""

from __future__ import annotations

from pathlib import Path

import jinja2

from cloudrone.fleet.sim import FleetSpec
from cloudrone.mission.model import Mission
from cloudrone.paths import project_root


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
        },
        source=str(mission.bundle / "mission.yml"),
    )


def display_key(path: Path) -> str:
    """A key path as the inventory shows it: under ~ when it is in the home folder."""
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def render_inventory(mission: Mission) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(project_root() / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    text = env.get_template("inventory.yml.j2").render(
        mission=mission, ssh_key=display_key(mission.ssh_key)
    )
    return text.rstrip("\n") + "\n"
