"""The scenario's fleet, as the simulated fleet code knows it."""

from __future__ import annotations

import json

import pytest

from cloudrone.fleet import sim


@pytest.fixture(scope="session")
def fleet() -> sim.SimFleet:
    return sim.molecule_fleet("molecule-swarm")


@pytest.fixture(scope="session")
def on_drone(fleet):
    """Run a shell command on a drone, as root: (exit code, output)."""
    return fleet.sh


@pytest.fixture(scope="session")
def docker_json(on_drone):
    """A docker command's JSON output (one document per line) on a drone."""

    def run(drone: str, command: str) -> list:
        code, out = on_drone(drone, command)
        assert code == 0, out
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    return run
