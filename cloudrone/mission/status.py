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


@dataclass(frozen=True)
class DroneStatus:
    name: str
    ssh: bool
    flight: dict[str, Any] | None


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


def read_flight_status(mission: Mission, drone: DronePlan) -> dict[str, Any] | None:
    """The flight bridge's status file, or None when the drone or the bridge is silent."""
    try:
        result = subprocess.run(
            ssh_command(mission, drone, f"cat {FLIGHT_STATUS}"),
            capture_output=True, text=True, timeout=15, check=False,
        )  # fmt: skip
        return json.loads(result.stdout) if result.returncode == 0 else None
    except (subprocess.TimeoutExpired, json.JSONDecodeError):
        return None


def collect(mission: Mission) -> list[DroneStatus]:
    """Ask every drone at once; a silent drone costs its timeout, not everyone's."""

    def one(drone: DronePlan) -> DroneStatus:
        up = ssh_answers(drone.management_address)
        return DroneStatus(drone.name, up, read_flight_status(mission, drone) if up else None)

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
