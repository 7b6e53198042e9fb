"""Shared fixtures: where the project is, and the real parts the tests need."""

from __future__ import annotations

import os
import shutil
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
def strategy_plugin():
    """plugins/strategy/mitogen_linear.py, loaded as Ansible loads it (from its file)."""
    import importlib.util

    path = ROOT / "plugins" / "strategy" / "mitogen_linear.py"
    spec = importlib.util.spec_from_file_location("cloudrone_mitogen_linear", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """The real Docker engine; the suite's setup (./run.sh test) starts one."""
    import docker

    try:
        docker.from_env().ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"no Docker engine answers ({exc}); ./run.sh setup starts one")


@pytest.fixture(scope="session")
def drone_image(docker_engine) -> str:
    from cloudrone.fleet import image

    return image.ensure(log=lambda _msg: None)


# Two workers (./run.sh test runs pytest -n 2): the molecule scenarios one
# after another on one, everything else in its usual order on the other. Each
# half keeps its module fixtures (a fleet per module) on one worker, and no two
# molecule scenarios share the engine's CPU at once.
MOLECULE_TESTS = "tests/integration/test_molecule.py"


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class TwoHalves(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "molecule" if nodeid.startswith(MOLECULE_TESTS) else "main"

    return TwoHalves(config, log)


# A skipped test proves nothing. On a developer's machine a missing part (no
# root, no namespaces, no engine, no tshark) may skip a test with its reason;
# in CI (CI=true) the same skip fails the run, so a machine that lacks what
# the suite needs cannot pass it silently. A skip whose reason starts with
# "not applicable" says the feature itself does not exist on this kind of
# machine (a kernel without RT group scheduling, say): it stays a skip.
NOT_APPLICABLE = "not applicable"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if reason.startswith(NOT_APPLICABLE):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"CI runs every test, and this one was skipped: {reason}. "
        "Install what it needs in scripts/setup.sh, or say 'not applicable: ...' "
        "if the feature cannot exist on this kind of machine."
    )
