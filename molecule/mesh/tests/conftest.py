"""The scenario's fleet, as the simulated fleet code knows it, for the tests
that change the radio range or put a phone on an access point."""

from __future__ import annotations

import pytest

from cloudrone.fleet import sim


@pytest.fixture(scope="session")
def fleet() -> sim.SimFleet:
    return sim.molecule_fleet("molecule-mesh")


@pytest.fixture(scope="session")
def on_drone(fleet):
    """Run a shell command on a drone, as root: (exit code, output)."""
    return fleet.sh
