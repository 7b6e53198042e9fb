"""The mission bundle's JSON Schema: one source for the checker and the reference page.

``python -m cloudrone.mission.schema`` writes ``docs/mission-schema.json`` and
``docs/mission-reference.md`` from it; a unit test keeps both up to date.
The schema says what a field may hold; :mod:`cloudrone.mission.model` checks
what only the whole bundle can tell (unique addresses, a connected radio,
reservations that fit).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
# a Swarm service name that is also a DNS label phones can type
SERVICE_NAME = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
ENV_NAME = r"^[A-Z_][A-Z0-9_]{0,63}$"
MODELS = ["pi2", "pi3", "pi4", "pi5"]
VERSIONS = [1, 2]


def _s(kind: str, description: str, **more: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **more}


PORT = {
    "type": "object",
    "description": "A port the service publishes on the drones that run it (host mode).",
    "additionalProperties": False,
    "required": ["target"],
    "properties": {
        "target": _s("integer", "The port inside the container.", minimum=1, maximum=65535),
        "published": _s(
            "integer",
            "The port phones connect to on the drone (default: target). Ports that "
            "manage or fly the drone are refused.",
            minimum=1,
            maximum=65535,
        ),
        "protocol": {"enum": ["tcp", "udp"], "description": "tcp (default) or udp."},
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://cloudrone.invalid/schemas/mission-2.json",
    "title": "Cloudrone mission bundle (mission.yml)",
    "description": (
        "One description of a whole deployment: the drones, the radio mesh, the access "
        "points phones join, the gateways and the services. Secrets are never written "
        "here: a field ending in _env names the environment variable that holds one."
    ),
    "type": "object",
    "additionalProperties": False,
    "required": ["mission", "target", "networks", "drones"],
    "properties": {
        "version": {
            "enum": VERSIONS,
            "description": (
                "The bundle format: 2 (this page). A bundle without it is read as version "
                "1, the first format, which is version 2 without radio, access_point, "
                "gateways, services, secrets and registry: it loads unchanged."
            ),
        },
        "mission": _s(
            "string",
            "The mission's name: lower-case letters, digits and dashes. It names the "
            "swarm, the stack of services and the simulated fleet's containers.",
            pattern=r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$",
        ),
        "description": _s("string", "A line for people; shown by mission up."),
        "target": {
            "enum": ["sim", "ssh"],
            "description": "sim: containers on this machine play the drones. ssh: real drones.",
        },
        "admin_user": _s(
            "string",
            "The operator's account on every drone (default cloudrone).",
            pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        ),
        "ssh_key": _s(
            "string",
            "The operator's private key (default ~/.ssh/id_ed25519, or for sim a key "
            "made for the simulated fleet).",
            minLength=1,
        ),
        "networks": {
            "type": "object",
            "description": "The mission's IPv4 networks; they must not overlap.",
            "additionalProperties": False,
            "required": ["management", "mesh"],
            "properties": {
                "management": _s("string", "The controller's link to the drones."),
                "mesh": _s("string", "The drones' ad-hoc radio mesh."),
                "ground": _s(
                    "string",
                    "The pool phones' networks are cut from: drone N gets the Nth /24 "
                    "(default 10.43.0.0/16), unless it gives ap_subnet.",
                ),
            },
        },
        "radio": {
            "type": "object",
            "description": "The ad-hoc mesh every drone joins, routed by OLSR.",
            "additionalProperties": False,
            "properties": {
                "ssid": _s("string", "The mesh's name on the air (default cloudrone-mesh)."),
                "channel": _s(
                    "integer",
                    "The mesh's WiFi channel (default 1); it must be legal in country.",
                    minimum=1,
                    maximum=196,
                ),
                "country": _s(
                    "string",
                    "ISO 3166 country: which channels are legal (default GB).",
                    pattern="^[A-Z]{2}$",
                ),
                "profile": {
                    "enum": ["rfc", "fast"],
                    "description": (
                        "OLSR timers: rfc (RFC 3626, a lost neighbour noticed in 6 s) or "
                        "fast (1.5 s; for drones that move). Default rfc."
                    ),
                },
                "link_quality": {
                    "enum": ["etx", "none"],
                    "description": "Routes by link quality (etx, default) or by hop count.",
                },
                "passphrase_env": _s(
                    "string",
                    "The environment variable holding the mesh's WPA2 passphrase; "
                    "without it the mesh is open.",
                    pattern=ENV_NAME,
                ),
                "range": {
                    "type": "array",
                    "description": (
                        "sim only: which drones hear each other, each pair once. Without "
                        "it every drone hears every other."
                    ),
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["between"],
                        "properties": {
                            "between": {
                                "type": "array",
                                "description": "Two drones' names.",
                                "items": {"type": "string"},
                                "minItems": 2,
                                "maxItems": 2,
                            },
                            "loss": _s(
                                "integer",
                                "Percent of frames lost each way (default 0).",
                                minimum=0,
                                maximum=99,
                            ),
                        },
                    },
                },
                "partitioned": _s(
                    "boolean",
                    "sim only: the range splits the drones into groups on purpose "
                    "(by default a split mesh is refused).",
                ),
            },
        },
        "access_point": {
            "type": "object",
            "description": "The WiFi every drone offers phones on the ground.",
            "additionalProperties": False,
            "properties": {
                "ssid": _s("string", "The network phones see (default cloudrone)."),
                "channel": _s(
                    "integer",
                    "The access point's channel (default 6); legal in radio.country.",
                    minimum=1,
                    maximum=196,
                ),
                "security": {
                    "enum": ["open", "wpa2", "wpa3"],
                    "description": (
                        "open (default), wpa2 or wpa3 (SAE; older phones cannot join). "
                        "wpa2 and wpa3 need passphrase_env."
                    ),
                },
                "passphrase_env": _s(
                    "string",
                    "The environment variable holding the WPA passphrase (default "
                    "CLOUDRONE_AP_PASSPHRASE).",
                    pattern=ENV_NAME,
                ),
                "domain": _s(
                    "string",
                    "The local domain of the services' names (default cloudrone.internal).",
                    pattern=r"^[a-z0-9]([a-z0-9.-]{0,62}[a-z0-9])?$",
                ),
                "client_isolation": _s(
                    "boolean", "Keep phones from reaching each other (default false)."
                ),
                "landing_page": _s(
                    "boolean",
                    "Each drone shows joining phones a page of what this network is and "
                    "which services run where; with no gateway, the phones' Internet checks "
                    "open it (default false). Its name is welcome.DOMAIN.",
                ),
            },
        },
        "gateways": {
            "type": "array",
            "description": (
                "Drones nearest an uplink: they announce a default route on the mesh. "
                "With several, metric says which is preferred."
            ),
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["drone"],
                "properties": {
                    "drone": _s("string", "The gateway drone's name."),
                    "metric": _s(
                        "integer",
                        "1 (preferred), 2 or 3 (default 3); each gateway its own.",
                        minimum=1,
                        maximum=3,
                    ),
                },
            },
        },
        "flight": {
            "type": "object",
            "description": (
                "Who may fly the drones. Control is MAVLink 2 signed with the mission's "
                "key: made on the first mission up and kept with the run's state (never "
                "in the bundle), or the passphrase in $CLOUDRONE_FLIGHT_PASSPHRASE (or "
                "the vault) so that several controllers share it. `cloudrone_cli mission "
                "ground-station` says how a ground station gets it."
            ),
            "additionalProperties": False,
            "properties": {
                "signing": _s(
                    "boolean",
                    "true (default): every drone refuses unsigned control. false flies "
                    "unsigned, on purpose: then a sender's address alone decides who "
                    "flies, and an address on a radio can be taken.",
                ),
                "ground_station": _s(
                    "string",
                    "The pilot's ground station, ADDRESS or ADDRESS:PORT (port default "
                    "14550), on the management network: the flight port is reached on "
                    "the management link alone. Default: the management network's last "
                    "host address (the controller's, on a simulated fleet).",
                    pattern=r"^([0-9]{1,3}[.]){3}[0-9]{1,3}(:[0-9]{1,5})?$",
                ),
            },
        },
        "secrets": _s(
            "string",
            "A file of the bundle encrypted with ansible-vault (ansible-vault create "
            "secrets.yml), mapping the names the *_env fields give to their values; a "
            "name it lacks is read from the environment. Its password: the file named "
            "by $CLOUDRONE_VAULT_PASSWORD_FILE (or $ANSIBLE_VAULT_PASSWORD_FILE).",
            minLength=1,
        ),
        "registry": {
            "type": "object",
            "description": (
                "A registry at the base camp the drones pull images from before takeoff "
                "(the alternative to archives in images/)."
            ),
            "additionalProperties": False,
            "required": ["address"],
            "properties": {
                "address": _s("string", "HOST:PORT", pattern=r"^[A-Za-z0-9.-]+:[0-9]{1,5}$"),
                "user": _s("string", "The account (default cloudrone)."),
                "password_env": _s(
                    "string",
                    "The environment variable holding its password (default "
                    "CLOUDRONE_REGISTRY_PASSWORD).",
                    pattern=ENV_NAME,
                ),
            },
        },
        "drones": {
            "type": "array",
            "description": "The drones, in order: the first ones manage the swarm by default.",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "management_address", "mesh_address"],
                "properties": {
                    "name": _s("string", "The drone's host name.", pattern=NAME),
                    "management_address": _s(
                        "string",
                        "Its address on the management network (for ssh also a host name).",
                    ),
                    "mesh_address": _s("string", "Its address on the mesh."),
                    "ap_subnet": _s(
                        "string",
                        "Its network for phones (default: its /24 of networks.ground).",
                    ),
                    "model": {"enum": MODELS, "description": "The Raspberry Pi (default pi2)."},
                    "system_id": _s(
                        "integer",
                        "Its flight bridge's MAVLink system id, unique in the fleet "
                        "(default: its position in this list).",
                        minimum=1,
                        maximum=255,
                    ),
                    "swarm_role": {
                        "enum": ["manager", "worker"],
                        "description": (
                            "Its part in the swarm (default: the first three drones, or "
                            "one or all of fewer, manage). Managers must be an odd number."
                        ),
                    },
                    "labels": {
                        "type": "object",
                        "description": "Swarm node labels (placement constraints use them).",
                        "additionalProperties": {"type": ["string", "number", "boolean"]},
                    },
                },
            },
        },
        "services": {
            "type": "array",
            "description": "What the micro cloud runs, deployed as one Swarm stack.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": _s(
                        "string",
                        "The service's name (letters, digits, dashes; at most 40).",
                        pattern=SERVICE_NAME,
                    ),
                    "image": _s(
                        "string",
                        "NAME:TAG of an image held by an archive in the bundle's images/ "
                        "folder, or under registry.address. Give image or build.",
                    ),
                    "build": {
                        "type": "object",
                        "description": (
                            "An image the controller builds itself, with no registry: "
                            "recipe tinyweb is a static web server (busybox httpd) serving "
                            "the bundle folder named by content; recipe offline-map serves a "
                            "map page (MapLibre) and the map named by content, a PMTiles "
                            "archive of vector tiles or GeoJSON cut into one, read by range "
                            "requests; recipe board is the camp's board (who is safe, "
                            "messages), whose replicas merge their posts over the mesh (a "
                            "CRDT), so each side of a split keeps working and nothing is lost "
                            "when it heals."
                        ),
                        "additionalProperties": False,
                        "required": ["recipe"],
                        "properties": {
                            "recipe": {
                                "enum": ["tinyweb", "offline-map", "board"],
                                "description": "The recipe.",
                            },
                            "content": _s(
                                "string",
                                "tinyweb: a folder of the bundle to serve (default: the "
                                "recipe's page). offline-map: the map, a .pmtiles or .geojson "
                                "file of the bundle (required).",
                            ),
                        },
                    },
                    "replicas": _s("integer", "How many copies run (default 1).", minimum=0),
                    "placement": {
                        "enum": ["spread", "binpack"],
                        "description": (
                            "spread (default: Swarm's scheduler) or binpack (fill one drone "
                            "before the next, as the project plans it)."
                        ),
                    },
                    "drones": {
                        "type": "array",
                        "description": "Only on these drones (default: any).",
                        "items": {"type": "string"},
                        "minItems": 1,
                    },
                    "memory": _s("string", "Memory reserved per replica, like 32M (default 0)."),
                    "cpus": _s("number", "Cores reserved per replica (default 0).", minimum=0),
                    "memory_limit": _s("string", "A hard memory limit per replica, like 64M."),
                    "ports": {"type": "array", "items": PORT, "description": PORT["description"]},
                    "dns": _s(
                        "string",
                        "The name phones use, NAME.DOMAIN (default: the service's name).",
                        pattern=SERVICE_NAME,
                    ),
                    "command": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "The command, instead of the image's.",
                    },
                    "environment": {
                        "type": "object",
                        "description": "Environment variables (never secrets: they show in clear).",
                        "additionalProperties": {"type": ["string", "number", "boolean"]},
                    },
                },
            },
        },
    },
}


def _type_of(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "")
    if kind == "array" and "items" in node:
        item = node["items"]
        inner = "object" if item.get("type") == "object" else _type_of(item)
        return f"list of {inner}"
    return kind if isinstance(kind, str) else " or ".join(kind)


def _rows(node: dict[str, Any], prefix: str, out: list[str]) -> None:
    required = set(node.get("required", []))
    for key, child in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        need = "yes" if key in required else ""
        text = child.get("description", "").replace("|", "\\|")
        out.append(f"| `{path}` | {_type_of(child)} | {need} | {text} |")
        if child.get("type") == "object" and "properties" in child:
            _rows(child, f"{path}.", out)
        items = child.get("items")
        if child.get("type") == "array" and isinstance(items, dict) and "properties" in items:
            _rows(items, f"{path}[].", out)


def reference() -> str:
    """The reference page, in Markdown."""
    out = [
        "# mission.yml reference",
        "",
        "<!-- Written by `python -m cloudrone.mission.schema` from cloudrone/mission/schema.py;",
        "     do not edit: change the schema and run it again. -->",
        "",
        SCHEMA["description"],
        "",
        "The schema itself: [mission-schema.json](mission-schema.json). An annotated "
        "example: [missions/demo/mission.yml](../missions/demo/mission.yml). "
        "`cloudrone_cli mission validate BUNDLE` checks a bundle against it and against "
        "what only the whole bundle can tell (see [the mission guide](missions.md)).",
        "",
        "| field | type | required | meaning |",
        "| --- | --- | --- | --- |",
    ]
    _rows(SCHEMA, "", out)
    return "\n".join(out) + "\n"


def write(docs: Path) -> list[Path]:
    schema_path = docs / "mission-schema.json"
    schema_path.write_text(json.dumps(SCHEMA, indent=2) + "\n")
    ref_path = docs / "mission-reference.md"
    ref_path.write_text(reference())
    return [schema_path, ref_path]


if __name__ == "__main__":
    from cloudrone.paths import project_root

    for path in write(project_root() / "docs"):
        print(f"wrote {path}")
    sys.exit(0)
