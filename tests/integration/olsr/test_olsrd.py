"""cloudrone-olsrd next to olsrd itself, in both dialects, at both timer profiles.

olsrd is not packaged in Debian; this module runs only where ``CLOUDRONE_OLSRD`` names
an olsrd binary (built from its public source: ``make`` at the top of an olsrd checkout
gives ``./olsrd``). Each scenario is run ``CLOUDRONE_OLSRD_RUNS`` times (3 by default):
a mixed mesh must converge every time, not now and then. docs/olsr.md says which olsrd
was checked and how.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cloudrone.bench import lab as lab_mod

OLSRD = os.environ.get("CLOUDRONE_OLSRD", "")
RUNS = int(os.environ.get("CLOUDRONE_OLSRD_RUNS", "3"))
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not (OLSRD and os.access(OLSRD, os.X_OK)),
        reason="set CLOUDRONE_OLSRD to an olsrd binary to check interoperability",
    ),
]

# olsrd's interface timers set to what the daemon's profiles use (olsrd's own defaults
# hold links 20 s and topology 300 s, far from RFC 3626's 6 s and 15 s)
TIMERS = {
    "rfc": {"Hello": (2.0, 6.0), "Tc": (5.0, 15.0), "Mid": (5.0, 15.0), "Hna": (5.0, 15.0)},
    "fast": {"Hello": (0.5, 1.5), "Tc": (5.0, 15.0), "Mid": (10.0, 30.0), "Hna": (10.0, 30.0)},
}
LQ_LEVEL = {"none": 0, "etx": 2}
# (name, kind) along a line: o = olsrd, c = cloudrone-olsrd
TOPOLOGIES = {"pair": "oc", "o-c-o": "oco", "c-o-c": "coc", "o-o-o": "ooo"}  # o-o-o: olsrd alone


def olsrd_conf(lab: lab_mod.Lab, node: str, level: int, profile: str) -> Path:
    blocks = []
    for ifname in lab.addresses[node]:
        timers = "\n".join(
            f"    {kind}Interval {interval}\n    {kind}ValidityTime {validity}"
            for kind, (interval, validity) in TIMERS[profile].items()
        )
        blocks.append(f'Interface "{ifname}"\n{{\n{timers}\n}}\n')
    path = lab.workdir / f"{node}-olsrd.conf"
    path.write_text(
        "DebugLevel 0\nIpVersion 4\nAllowNoInt yes\n"
        f"LinkQualityLevel {level}\n"  # 2: olsrd's default (etx_ff)
        f'LockFile "{lab.workdir / node}.lock"\n' + "".join(blocks)
    )
    return path


def start_olsrd(lab: lab_mod.Lab, node: str, level: int, profile: str) -> None:
    conf = olsrd_conf(lab, node, level, profile)
    log = open(lab.workdir / f"{node}.log", "ab")  # noqa: SIM115
    lab.procs[node] = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns(node), OLSRD, "-f", str(conf), "-nofork"],
        stdout=log,
        stderr=log,
    )
    log.close()


def routes_to_all(lab: lab_mod.Lab, kinds: dict[str, str]) -> bool:
    everyone = lab.all_addresses(list(kinds))
    for node, kind in kinds.items():
        routes = lab.routes(node, proto=100 if kind == "c" else None)
        have = {d.split("/")[0] for d, _r in routes.items() if d.endswith("/32")}
        if not everyone - set(lab.addresses[node].values()) <= have:
            return False
    return True


def converges(workdir: Path, mode: str, profile: str, topology: str) -> tuple[bool, str]:
    """Build the line, start everyone, and say whether every node routes to every
    address in time (with the routes seen, for a message)."""
    timeout = 30 if profile == "rfc" else 15
    lab = lab_mod.Lab(workdir, defaults=lab_mod.RFC)
    workdir.mkdir()
    try:
        names = lab_mod.build_line(lab, len(TOPOLOGIES[topology]))
        kinds = dict(zip(names, TOPOLOGIES[topology], strict=True))
        for node, kind in kinds.items():
            if kind == "o":
                start_olsrd(lab, node, LQ_LEVEL[mode], profile)
            else:
                lab.start(node, profile=profile, link_quality=mode)
        ok = bool(lab_mod.wait_until(lambda: routes_to_all(lab, kinds), timeout, step=0.5))
        seen = "\n".join(
            f"{n} ({k}): {sorted(lab.routes(n, proto=None))}" for n, k in kinds.items()
        )
        for node, kind in kinds.items():
            if kind == "c":
                assert lab.status(node, "warnings")["warnings"] == []
        return ok, seen
    finally:
        lab.close()


# Without link quality (LinkQualityLevel 0) an olsrd line of three often never
# converges (olsrd's SPF back-off, docs/olsr.md): mixed lines are held to doing at least
# as well as olsrd alone. A pair, and everything with link quality, converge every time.
EVERY_TIME = [("none", "pair")] + [("etx", t) for t in TOPOLOGIES]


@pytest.mark.parametrize("profile", ["rfc", "fast"])
@pytest.mark.parametrize(("mode", "topology"), EVERY_TIME)
def test_a_mixed_mesh_converges_every_time(tmp_path: Path, mode, profile, topology) -> None:
    for run in range(RUNS):
        ok, seen = converges(tmp_path / f"run{run}", mode, profile, topology)
        assert ok, f"run {run} of {topology}, link quality {mode}, {profile}:\n{seen}"


@pytest.mark.parametrize("profile", ["rfc", "fast"])
def test_lines_without_link_quality_do_as_well_with_drones_as_olsrd_alone(
    tmp_path: Path, profile
) -> None:
    done = {
        topology: sum(
            converges(tmp_path / f"{topology}{r}", "none", profile, topology)[0]
            for r in range(RUNS)
        )
        for topology in ("o-o-o", "o-c-o", "c-o-c")
    }
    print(f"{profile}: converged out of {RUNS}: {done}")
    assert done["o-c-o"] >= done["o-o-o"] and done["c-o-c"] >= done["o-o-o"], done


def test_olsrd_with_link_quality_and_a_drone_without_do_not_pair_and_the_drone_says_so(
    tmp_path: Path,
) -> None:
    lab = lab_mod.Lab(tmp_path, defaults=lab_mod.RFC)
    try:
        lab_mod.build_line(lab, 2)
        start_olsrd(lab, "d1", 2, "fast")
        lab.start("d2", profile="fast", link_quality="none")

        def warned() -> list:
            try:
                return lab.status("d2", "warnings")["warnings"]
            except RuntimeError:
                return []

        rows = lab_mod.wait_until(warned, 15)
        assert rows and rows[0]["kind"] == "link_quality" and rows[0]["address"] == "10.99.1.1"
        assert lab.status("d2", "neighbors")["neighbors"] == []
    finally:
        lab.close()
