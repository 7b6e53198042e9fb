"""cloudrone-olsrd next to olsrd itself, in both dialects, at both timer profiles.

    sudo .venv/bin/python -m cloudrone.bench.interop --olsrd PATH [--runs 3]

olsrd is not packaged in Debian, so this is a command for whoever has an olsrd binary
(built from its public source: ``make`` at the top of an olsrd checkout gives
``./olsrd``), not part of the test suite. It builds lines of two and three nodes in the
lab's namespaces (o = olsrd, c = cloudrone-olsrd), afresh for every run, and prints
how often each converged: every node with a host route to every address of the others
within 30 s (``rfc``) or 15 s (``fast``), and no drone reporting a warning. It exits 1
when a pair, or any line with link quality, failed once, or when a line without link
quality converged less often with drones than with olsrd alone. docs/olsr.md has the
figures and what they mean. Traffic stays inside the namespaces it creates.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from cloudrone.bench import lab as lab_mod

# olsrd's interface timers set to what the daemon's profiles use (olsrd's own defaults
# hold links 20 s and topology 300 s, far from RFC 3626's 6 s and 15 s)
TIMERS = {
    "rfc": {"Hello": (2.0, 6.0), "Tc": (5.0, 15.0), "Mid": (5.0, 15.0), "Hna": (5.0, 15.0)},
    "fast": {"Hello": (0.5, 1.5), "Tc": (5.0, 15.0), "Mid": (10.0, 30.0), "Hna": (10.0, 30.0)},
}
LQ_LEVEL = {"none": 0, "etx": 2}
# (name, kind) along a line: o = olsrd, c = cloudrone-olsrd
TOPOLOGIES = {"pair": "oc", "o-c-o": "oco", "c-o-c": "coc", "o-o-o": "ooo"}  # o-o-o: olsrd alone


OLSRD = ""  # the binary, set by main()


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
            if kind == "c" and lab.status(node, "warnings")["warnings"]:
                return False, f"{seen}\n{node} reports warnings"
        return ok, seen
    finally:
        lab.close()


def main(argv: list[str] | None = None) -> int:
    global OLSRD
    parser = argparse.ArgumentParser(prog="python -m cloudrone.bench.interop")
    parser.add_argument("--olsrd", required=True, help="an olsrd binary")
    parser.add_argument("--runs", type=int, default=3, help="runs per line and setting")
    args = parser.parse_args(argv)
    problem = lab_mod.netns_problem()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    OLSRD = args.olsrd
    lab_mod.remove_leftovers()
    failures = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="cloudrone-interop-") as tmp:
        for topology in TOPOLOGIES:
            cells = []
            for mode in ("etx", "none"):
                for profile in ("rfc", "fast"):
                    done = 0
                    for run in range(args.runs):
                        work = Path(tmp) / f"{topology}-{mode}-{profile}-{run}"
                        ok, seen = converges(work, mode, profile, topology)
                        done += ok
                        if not ok:
                            print(f"{topology}, {mode}, {profile}, run {run}:\n{seen}")
                    cells.append(done)
                    print(f"{topology:6} {mode:4} {profile:4} {done}/{args.runs}", flush=True)
                    must = mode == "etx" or topology == "pair"
                    if must and done < args.runs:
                        failures.append(f"{topology} {mode} {profile}: {done}/{args.runs}")
            rows.append((topology, cells))
        alone = dict(rows)["o-o-o"]
        for topology, cells in rows:
            if topology in ("o-c-o", "c-o-c"):
                for i in (2, 3):  # the two settings without link quality
                    if cells[i] < alone[i]:
                        failures.append(f"{topology} without link quality: {cells[i]} < alone")
        pair_ok = not mixed_pair_problems(Path(tmp) / "warn")
        if not pair_ok:
            failures.append("a drone without link quality did not report olsrd with it")
    print("\n| line | etx rfc | etx fast | none rfc | none fast |\n| --- | --- | --- | --- | --- |")
    for topology, cells in rows:
        print(f"| {topology} | " + " | ".join(f"{c}/{args.runs}" for c in cells) + " |")
    for line in failures:
        print(f"FAILED: {line}")
    return 1 if failures else 0


def mixed_pair_problems(workdir: Path) -> list[str]:
    """olsrd with link quality next to a drone without: the drone reports it; returns
    what went wrong (nothing when it did)."""
    lab = lab_mod.Lab(workdir, defaults=lab_mod.RFC)
    workdir.mkdir()
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
        if not (rows and rows[0]["kind"] == "link_quality" and rows[0]["address"] == "10.99.1.1"):
            return [f"no warning: {rows}"]
        if lab.status("d2", "neighbors")["neighbors"] != []:
            return ["they became neighbours"]
        return []
    finally:
        lab.close()


if __name__ == "__main__":
    sys.exit(main())
