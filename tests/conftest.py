"""Shared fixtures: where the project is, and the real parts the tests need."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A command from the project's virtualenv (or PATH)."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found; run ./run.sh setup")
    return found


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """The real Docker engine; the suite's setup (./run.sh test) starts one."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail("no Docker engine answers; ./run.sh setup starts one")


@pytest.fixture(scope="session")
def drone_image(docker_engine) -> str:
    from cloudrone.fleet import image

    return image.ensure(log=lambda _msg: None)
