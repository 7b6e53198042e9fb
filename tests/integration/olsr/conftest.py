"""The lab fixture: a fresh lab of drones (cloudrone.bench.lab) per test, torn down
also when the test fails, with the daemons' logs printed on failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudrone.bench.lab import Lab, netns_problem, remove_leftovers

_REASON = netns_problem()


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    if _REASON is not None:
        pytest.skip(_REASON)
    remove_leftovers()
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(lab.dump_logs())
        lab.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep
