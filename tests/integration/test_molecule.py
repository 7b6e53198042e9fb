"""Molecule scenarios, run for real: create, check, converge, idempotence, verify, destroy."""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess

import pytest

from tests.conftest import BIN, ROOT, tool

pytestmark = [pytest.mark.integration, pytest.mark.molecule]

SCENARIOS = sorted(p.name for p in (ROOT / "molecule").iterdir() if (p / "molecule.yml").is_file())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario, drone_image):
    # the base camp's registry password (molecule/swarm): given here, so that the
    # output can be searched for it
    password = secrets.token_urlsafe(18)
    result = subprocess.run(
        [tool("molecule"), "test", "--scenario-name", scenario],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        # molecule calls ansible-config, ansible-playbook... by name
        env={
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "NO_COLOR": "1",
            "ANSIBLE_NOCOLOR": "1",
            "CLOUDRONE_REGISTRY_PASSWORD": password,
        },
    )
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    assert result.returncode == 0, output[-20000:]
    assert "idempotence: Executed: Successful" in output
    assert "verify: Executed: Successful" in output
    # swarm join tokens never reach the output (no_log)
    assert "SWMTKN" not in output
    # nor does the registry's password, in clear or as drones send it (base64)
    assert password not in output
    assert base64.b64encode(f"cloudrone:{password}".encode()).decode() not in output
