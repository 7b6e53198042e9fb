"""What the drones say about themselves, read over SSH (never changed from here)."""

from __future__ import annotations

import json
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cloudrone.mission.model import DronePlan, Mission

FLIGHT_STATUS = "/run/cloudrone/flight-status.json"
# cloudrone-olsrd's JSON status, on the drone's loopback (mesh role)
OLSR_NEIGHBORS = "http://127.0.0.1:9090/neighbors"
SEPARATOR = "--- cloudrone-status ---"


@dataclass(frozen=True)
class DroneStatus:
    name: str
    ssh: bool
    flight: dict[str, Any] | None
    mesh: dict[str, Any] | None = None


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


def read_drone_status(
    mission: Mission, drone: DronePlan
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The flight bridge's status file and the routing daemon's neighbours, in one login.

    Either is None when the drone, or that daemon, is silent.
    """
    command = (
        f"cat {FLIGHT_STATUS} 2>/dev/null; echo '{SEPARATOR}'; "
        f"curl -sf --max-time 3 {OLSR_NEIGHBORS} 2>/dev/null"
    )
    try:
        result = subprocess.run(
            ssh_command(mission, drone, command),
            capture_output=True, text=True, timeout=15, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None, None
    flight_text, _, mesh_text = result.stdout.partition(SEPARATOR)
    return _json(flight_text), _json(mesh_text)


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
            return DroneStatus(drone.name, False, None, None)
        flight, mesh = read_drone_status(mission, drone)
        return DroneStatus(drone.name, True, flight, mesh)

    with ThreadPoolExecutor(max_workers=min(16, len(mission.drones))) as pool:
        return list(pool.map(one, mission.drones))


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
