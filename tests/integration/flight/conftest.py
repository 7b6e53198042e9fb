"""Fly a real bridge process over real UDP on loopback.

``bridge`` starts ``python -m cloudrone.flight.bridge`` with a config of the
test's choosing (sim backend recording frames to a CSV file). ``ground``
is a pymavlink ground station listening where the bridge sends first, with a
pilot thread that streams MANUAL_CONTROL at 25 Hz until told to go silent.
Both come from :mod:`cloudrone.bench.flightlab`, the lab the benchmark flies
too. Tests wait on conditions (its ``wait_until``), never for fixed times;
exact timing is checked on a fake clock in tests/unit/flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudrone.bench.flightlab import BridgeProcess, GroundStation


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    started: list[BridgeProcess] = []

    def start(
        prefix: list[str] | None = None, args: list[str] | None = None, **overrides: Any
    ) -> BridgeProcess:
        b = BridgeProcess(tmp_path / f"b{len(started)}", overrides, prefix or (), args or ())
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def ground() -> Iterator[Callable[..., GroundStation]]:
    stations: list[GroundStation] = []

    def connect(b: BridgeProcess, **options: Any) -> GroundStation:
        gs = GroundStation(b.gs_port, **options)
        stations.append(gs)
        gs.start()
        return gs

    yield connect
    for gs in stations:
        gs.close()
