"""The scenario's fleet, as the simulated fleet code knows it."""

from __future__ import annotations

import json
import os

import pytest

from cloudrone.fleet import sim


@pytest.fixture(scope="session")
def fleet() -> sim.SimFleet:
    folder = os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]
    with open(os.path.join(folder, "platforms.json")) as f:
        platforms = json.load(f)
    return sim.SimFleet(sim.spec_from_platforms("molecule-swarm", platforms), log=lambda _m: None)


@pytest.fixture(scope="session")
def on_drone(fleet):
    """Run a shell command on a drone, as root: (exit code, output)."""

    def run(drone: str, command: str) -> tuple[int, str]:
        container = fleet.client.containers.get(fleet.spec.container_name(drone))
        result = container.exec_run(["sh", "-c", command])
        return result.exit_code, result.output.decode(errors="replace")

    return run


@pytest.fixture(scope="session")
def docker_json(on_drone):
    """A docker command's JSON output (one document per line) on a drone."""

    def run(drone: str, command: str) -> list:
        code, out = on_drone(drone, command)
        assert code == 0, out
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    return run
