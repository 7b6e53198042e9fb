"""A 4x4 grid of drones: every drone reaches every other, and only MPRs relay TCs."""

from __future__ import annotations

import pytest

from cloudrone.bench import lab as lab_mod

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_grid_four_by_four(lab) -> None:
    grid = lab_mod.build_grid(lab, 4)
    names = [n for row in grid for n in row]
    for name in names:
        lab.start(name)
    assert lab_mod.wait_until(lambda: lab_mod.converged(lab, names), 60, step=1.0), lab.dump_logs()

    # corner to corner (6 hops) both ways, and across the middle
    far = lab.addresses["r3c3"]
    assert lab.ping("r0c0", next(iter(far.values())))
    assert lab.ping("r3c3", next(iter(lab.addresses["r0c0"].values())))
    assert lab.ping("r3c0", next(iter(lab.addresses["r0c3"].values())))
    assert not lab.ping("r0c0", next(iter(far.values())), ttl=5)

    # MPR flooding: some drones never relay a TC, and every relay is someone's MPR
    forwarded = {}
    for name in names:
        st = lab.status(name, "stats")
        forwarded[name] = st["stats"]["counters"].get("forwarded", 0)
    relays = {n for n, f in forwarded.items() if f > 0}
    assert relays, forwarded
    assert len(relays) < len(names), forwarded

    # once converged, the corners are nobody's MPR: each corner's two neighbours
    # reach each other through the inner drone as well. Routes can settle a HELLO
    # before the MPR sets do, and a selector tuple lives a HELLO validity (1.5 s
    # here) after its neighbour chose otherwise: give it a few validities.
    corners = {"r0c0", "r0c3", "r3c0", "r3c3"}

    def selectors() -> dict[str, list[str]]:
        return {n: lab.status(n, "mpr")["mpr"]["mprSelectors"] for n in names}

    def corners_unselected() -> bool:
        return all(not sel for n, sel in selectors().items() if n in corners)

    assert lab_mod.wait_until(corners_unselected, 10, step=0.5), selectors()
