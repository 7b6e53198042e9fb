"""How mission status asks a drone and words its flight bridge, battery and mesh."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cloudrone.mission.model import load
from cloudrone.mission.status import (
    PART_SECONDS,
    PARTS,
    SEPARATOR,
    describe_battery,
    describe_flight,
    describe_mesh,
    split_parts,
    ssh_command,
    status_command,
)
from tests.conftest import ROOT

FLIGHT = {
    "running": True,
    "mode": "failsafe",
    "battery": {"voltage": 10.34, "low": True},
    "loop": {"period_jitter_p99_ms": 0.064, "missed_frames": 0},
    "realtime": {"fifo": False},
}


def test_flight_line_says_mode_realtime_and_loop_health():
    assert describe_flight(FLIGHT) == "failsafe, no FIFO, p99 0.064 ms, 0 missed"
    assert describe_flight({**FLIGHT, "running": False}) == "bridge stopped"
    assert describe_flight(None) == "-"


def test_battery_line_flags_a_low_battery():
    assert describe_battery(FLIGHT) == "10.3 V LOW"
    assert describe_battery({"battery": {"voltage": 12.4, "low": False}}) == "12.4 V"
    assert describe_battery(None) == "-"


def test_status_reads_over_ssh_as_the_admin_user(tmp_path: Path):
    mission = load(ROOT / "missions" / "demo")
    cmd = ssh_command(mission, mission.drones[0], "cat /x")
    assert cmd[-2:] == ["cloudrone@10.250.0.11", "cat /x"]
    assert "BatchMode=yes" in cmd
    assert "StrictHostKeyChecking=no" in cmd  # simulated: new host keys per container
    text = (
        (ROOT / "missions" / "demo" / "mission.yml")
        .read_text()
        .replace("target: sim", "target: ssh")
    )
    text = text[: text.index("  range:")] + text[text.index("# The WiFi phones") :]
    shutil.copytree(ROOT / "missions" / "demo" / "site", tmp_path / "site")
    (tmp_path / "mission.yml").write_text(text)
    real = load(tmp_path)
    assert "StrictHostKeyChecking=no" not in ssh_command(real, real.drones[0], "cat /x")


def test_mesh_neighbours_by_name_relays_marked():
    names = {"10.42.0.11": "drone-1", "10.42.0.12": "drone-2", "10.42.0.13": "drone-3"}
    mesh = {
        "neighbors": [
            {"ipAddress": "10.42.0.13", "symmetric": True, "isMultiPointRelay": False},
            {"ipAddress": "10.42.0.12", "symmetric": True, "isMultiPointRelay": True},
            {"ipAddress": "10.42.0.99", "symmetric": True, "isMultiPointRelay": False},
            {"ipAddress": "10.42.0.11", "symmetric": False, "isMultiPointRelay": False},
        ]
    }
    assert describe_mesh(mesh, names) == "10.42.0.99, drone-2*, drone-3"
    assert describe_mesh({"neighbors": []}, names) == "none"
    assert describe_mesh(None, names) == "-"


def test_a_stuck_part_empties_itself_and_leaves_the_others():
    """The line status runs on a drone, run by a real shell here: the part that
    hangs (an engine without quorum, say) is cut at its bound, the parts after
    it still answer."""
    parts = (
        ("flight", 'echo \'{"mode": "manual"}\''),
        ("nodes", "sleep 60"),
        ("leases", "printf 'a\\nb\\n'"),
    )
    result = subprocess.run(
        ["sh", "-c", status_command(parts, seconds=1)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    answers = split_parts(result.stdout, ("flight", "nodes", "leases"))
    assert answers == {"flight": '{"mode": "manual"}\n', "nodes": "", "leases": "a\nb\n"}


def test_the_drone_status_line_bounds_every_part():
    line = status_command()
    assert line.count(SEPARATOR) == len(PARTS)
    assert line.count(f"timeout {PART_SECONDS} ") == len(PARTS)
    # an output cut short leaves the missing parts empty, not absent
    assert split_parts(f"{SEPARATOR}\nx\n", ("a", "b")) == {"a": "x\n", "b": ""}
