"""What the drones say about themselves, read over SSH (never changed from here)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cloudrone.mission.model import DronePlan, Mission

FLIGHT_STATUS = "/run/cloudrone/flight-status.json"
# cloudrone-olsrd's JSON status, on the drone's loopback (mesh role)
OLSR_STATUS = "http://127.0.0.1:9090/neighbors/links/mpr/routes"
LEASES = "/var/lib/misc/dnsmasq.leases"
SEPARATOR = "--- cloudrone-status ---"
# Each part is bounded on its own: an engine stuck on a manager without quorum
# (a drone just back from a split) empties its own parts, never the flight
# bridge's, the mesh's or the phones'.
PART_SECONDS = 6
# What one login asks, each answer after a separator; a part that fails is empty.
PARTS: tuple[tuple[str, str], ...] = (
    ("flight", f"cat {FLIGHT_STATUS}"),
    ("mesh", f"curl -sf --max-time 3 {OLSR_STATUS}"),
    ("swarm", "sudo -n docker info --format '{{json .Swarm}}'"),
    # the next two answer on managers only
    ("nodes", "sudo -n docker node ls --format '{{json .}}'"),
    ("services", "sudo -n docker service ls --format '{{json .}}'"),
    (
        "tasks",
        "sudo -n docker ps --filter label=com.docker.swarm.service.name"
        " --format '{{.Label \"com.docker.swarm.service.name\"}}'",
    ),
    ("leases", f"cat {LEASES}"),
)
# The whole login's bound: every part that can be slow (all but the file reads)
# at its own bound, and the login itself.
LOGIN_SECONDS = PART_SECONDS * sum(not command.startswith("cat ") for _, command in PARTS) + 10


def status_command(
    parts: tuple[tuple[str, str], ...] = PARTS, seconds: float = PART_SECONDS
) -> str:
    """One shell line that runs every part, each within ``seconds``, after its separator."""
    return " ; ".join(
        f"echo '{SEPARATOR}'; timeout {seconds} {command} 2>/dev/null" for _, command in parts
    )


def split_parts(stdout: str, names: tuple[str, ...]) -> dict[str, str]:
    """Each part's answer by name; a part the output does not reach is empty."""
    chunks = stdout.split(SEPARATOR + "\n")[1:]
    return dict(zip(names, chunks + [""] * (len(names) - len(chunks)), strict=False))


COMMAND = status_command()


@dataclass(frozen=True)
class DroneStatus:
    name: str
    ssh: bool
    flight: dict[str, Any] | None
    mesh: dict[str, Any] | None = None
    # docker info's Swarm section; None when the engine is silent
    swarm: dict[str, Any] | None = None
    # on a manager: the swarm's nodes and services as docker lists them
    nodes: tuple[dict[str, Any], ...] = ()
    services: tuple[dict[str, Any], ...] = ()
    # the mission's services running here (Swarm service names)
    running: tuple[str, ...] = ()
    phones: int | None = None


def ssh_answers(address: str, port: int = 22, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def ssh_command(mission: Mission, drone: DronePlan, command: str) -> list[str]:
    options = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
    if mission.target == "sim":
        # a new container has new host keys; the simulated inventory says the same
        options += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "LogLevel=ERROR"]  # fmt: skip
    target = f"{mission.admin_user}@{drone.management_address}"
    return ["ssh", "-i", str(mission.ssh_key), *options, target, command]


def run_on(
    mission: Mission, drone: DronePlan, command: str, timeout: float = 60
) -> tuple[int, str, str]:
    """Run ``command`` on a drone as the admin user: (exit code, stdout, stderr);
    124 when it did not finish within ``timeout`` seconds."""
    try:
        result = subprocess.run(
            ssh_command(mission, drone, command),
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return 124, "", "timed out"
    return result.returncode, result.stdout, result.stderr


def read_drone_status(mission: Mission, drone: DronePlan) -> DroneStatus:
    """Everything a drone says about itself, in one login; a silent part stays empty."""
    code, stdout, _ = run_on(mission, drone, COMMAND, timeout=LOGIN_SECONDS)
    if code == 124:
        return DroneStatus(drone.name, True, None)
    parts = split_parts(stdout, tuple(name for name, _ in PARTS))
    running = [line.strip() for line in parts["tasks"].splitlines() if line.strip()]
    leases = parts["leases"].strip()
    return DroneStatus(
        name=drone.name,
        ssh=True,
        flight=_json(parts["flight"]),
        mesh=_json(parts["mesh"]),
        swarm=_json(parts["swarm"]),
        nodes=tuple(_json_lines(parts["nodes"])),
        services=tuple(_json_lines(parts["services"])),
        running=tuple(sorted(running)),
        phones=len(leases.splitlines()) if parts["leases"] else None,
    )


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        value = _json(line)
        if value is not None:
            out.append(value)
    return out


def _json(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def collect(mission: Mission) -> list[DroneStatus]:
    """Ask every drone at once; a silent drone costs its timeout, not everyone's."""

    def one(drone: DronePlan) -> DroneStatus:
        if not ssh_answers(drone.management_address):
            return DroneStatus(drone.name, False, None)
        return read_drone_status(mission, drone)

    with ThreadPoolExecutor(max_workers=min(16, len(mission.drones))) as pool:
        return list(pool.map(one, mission.drones))


def swarm_view(reports: list[DroneStatus]) -> dict[str, Any]:
    """The swarm as its managers see it: nodes, leader and services (desired and running)."""
    manager = next((r for r in reports if r.nodes), None)
    if manager is None:
        return {"answered_by": None, "leader": None, "nodes": {}, "services": {}}
    nodes = {
        n.get("Hostname"): {
            "status": n.get("Status", "").lower(),
            "availability": n.get("Availability", "").lower(),
            "manager": (n.get("ManagerStatus") or "").lower() or None,
        }
        for n in manager.nodes
    }
    leader = next((h for h, n in nodes.items() if n["manager"] == "leader"), None)
    where: dict[str, list[str]] = {}
    for r in reports:
        for name in r.running:
            where.setdefault(name, []).append(r.name)
    services = {}
    for s in manager.services:
        # "1/1", or "1/1 (max 2 per node)"
        counts = re.findall(r"\d+", str(s.get("Replicas", "")))[:2]
        running, desired = (int(counts[0]), int(counts[1])) if len(counts) == 2 else (0, 0)
        name = s.get("Name", "")
        services[name] = {
            "running": running,
            "desired": desired,
            "drones": sorted(where.get(name, [])),
        }
    return {"answered_by": manager.name, "leader": leader, "nodes": nodes, "services": services}


def as_json(mission: Mission, reports: list[DroneStatus]) -> dict[str, Any]:
    """What ``mission status --json`` prints: one object a script can read."""
    view = swarm_view(reports)
    names = mission.names_by_mesh_address
    drones = []
    for drone, r in zip(mission.drones, reports, strict=True):
        mesh = r.mesh or {}
        swarm_node = view["nodes"].get(drone.name, {})
        drones.append(
            {
                "name": drone.name,
                "reachable": r.ssh,
                "management_address": drone.management_address,
                "mesh_address": str(drone.mesh_address),
                "mesh": None
                if r.mesh is None
                else {
                    "neighbors": [
                        {
                            "drone": names.get(n.get("ipAddress", ""), n.get("ipAddress")),
                            "address": n.get("ipAddress"),
                            "symmetric": bool(n.get("symmetric")),
                            "mpr": bool(n.get("isMultiPointRelay")),
                        }
                        for n in mesh.get("neighbors", [])
                    ],
                    "links": [
                        {
                            "drone": names.get(link.get("remoteMainIP", ""), link.get("remoteIP")),
                            "status": link.get("currentLinkStatus"),
                            "lq": link.get("linkQuality"),
                            "nlq": link.get("neighborLinkQuality"),
                            "cost": link.get("linkCost"),
                        }
                        for link in mesh.get("links", [])
                    ],
                    "mpr": mesh.get("mpr", {}),
                    "routes": mesh.get("routes", []),
                },
                "swarm": {
                    "state": (r.swarm or {}).get("LocalNodeState"),
                    "role": swarm_role(r),
                    "leader": view["leader"] == drone.name,
                    "status": swarm_node.get("status"),
                },
                "services": list(r.running),
                "access_point": {"subnet": str(drone.ap_subnet), "phones": r.phones},
                "flight": r.flight,
            }
        )
    return {
        "mission": mission.name,
        "target": mission.target,
        "drones": drones,
        "swarm": {"leader": view["leader"], "answered_by": view["answered_by"]},
        "services": view["services"],
    }


def swarm_role(report: DroneStatus) -> str | None:
    """manager or worker, as the drone's engine says; None when it is silent."""
    if not report.swarm:
        return None
    return "manager" if report.swarm.get("ControlAvailable") else "worker"


def describe_swarm(report: DroneStatus, leader: str | None) -> str:
    if not report.swarm:
        return "-"
    state = report.swarm.get("LocalNodeState", "?")
    if state != "active":
        return state
    return "leader" if report.name == leader else str(swarm_role(report))


def describe_flight(flight: dict[str, Any] | None) -> str:
    if flight is None:
        return "-"
    if not flight.get("running"):
        return "bridge stopped"
    loop = flight.get("loop", {})
    rt = "FIFO" if flight.get("realtime", {}).get("fifo") else "no FIFO"
    return (
        f"{flight.get('mode', '?')}, {rt}, p99 {loop.get('period_jitter_p99_ms', '?')} ms, "
        f"{loop.get('missed_frames', '?')} missed"
    )


def describe_battery(flight: dict[str, Any] | None) -> str:
    battery = (flight or {}).get("battery") or {}
    voltage = battery.get("voltage")
    if voltage is None:
        return "-"
    return f"{voltage:.1f} V" + (" LOW" if battery.get("low") else "")


def describe_mesh(mesh: dict[str, Any] | None, names: dict[str, str]) -> str:
    """Symmetric OLSR neighbours by drone name (``names``: mesh address -> name); * = MPR."""
    if mesh is None:
        return "-"
    heard = [
        names.get(n.get("ipAddress", ""), n.get("ipAddress", "?"))
        + ("*" if n.get("isMultiPointRelay") else "")
        for n in mesh.get("neighbors", [])
        if n.get("symmetric")
    ]
    return ", ".join(sorted(heard)) or "none"
