"""Benchmark of cloudrone-olsrd on a grid of drones in network namespaces.

    python -m cloudrone.bench.olsr [--size 5] [--steady 60] [--out docs/bench]
    python -m cloudrone.bench.olsr --profiles rfc,fast

Needs root and ``ip netns``. Builds a size x size grid in the lab the integration
tests use (:mod:`cloudrone.bench.lab`: one namespace per drone, one veth per edge,
addresses 10.99.<edge>.<node>/24 that exist only inside the grid), runs one daemon
per drone with the RFC 3626 default timers and prints:

* time to full convergence from a cold start (every drone routes to every address);
* time to re-converge after the centre drone is lost (routes go around it), and
  until no drone routes to it any more;
* control traffic in bytes/s per drone and transmissions per flooded message against
  pure flooding, the fraction of drones selected as MPR;
* the daemon's CPU seconds per minute per drone.

Results go to ``<out>/olsr-results.json`` and ``<out>/olsr-convergence.png``. With
``--profiles rfc,fast`` it builds the grid once per timer profile, back to back in the
same run, and writes ``<out>/olsr-profiles.json`` and ``<out>/olsr-profiles.png`` (routes
in place over time after the loss, every profile on one axis).
Everything it creates is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cloudrone.bench import lab as lab_mod
from cloudrone.bench.lab import Lab
from cloudrone.olsr import constants as C

Point = tuple[float, float]  # seconds, fraction of routes in place


def watch(lab: Lab, nodes: list[str], timeout: float) -> tuple[float | None, list[Point]]:
    """Poll every half second until every drone routes to every address: (time, series)."""
    start = time.monotonic()
    series = []
    while True:
        t = time.monotonic() - start
        frac = lab_mod.coverage(lab, nodes)
        series.append((round(t, 2), round(frac, 4)))
        if frac >= 1.0:
            return t, series
        if t > timeout:
            return None, series
        time.sleep(0.5)


def snapshot(lab: Lab, nodes: list[str]) -> dict[str, dict[str, Any]]:
    return {n: lab.status(n, "stats/mpr") for n in nodes}


def traffic(before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, Any]:
    nodes = list(after)
    sent = [after[n]["stats"]["sentBytes"] - before[n]["stats"]["sentBytes"] for n in nodes]
    cpu = [after[n]["stats"]["cpuSeconds"] - before[n]["stats"]["cpuSeconds"] for n in nodes]

    def counter(key: str) -> int:
        return sum(
            after[n]["stats"]["counters"].get(key, 0) - before[n]["stats"]["counters"].get(key, 0)
            for n in nodes
        )

    originated = counter("originated_tc") + counter("originated_mid") + counter("originated_hna")
    forwarded = counter("forwarded")
    mprs = {m for n in nodes for m in after[n]["mpr"]["mprs"]}
    mains = {after[n]["mainAddress"]: n for n in nodes}
    return {
        "window_s": round(seconds, 1),
        "bytes_per_s_per_node_mean": round(sum(sent) / len(nodes) / seconds, 1),
        "bytes_per_s_per_node_max": round(max(sent) / seconds, 1),
        "flooded_messages_originated": originated,
        "flooded_messages_forwarded": forwarded,
        "transmitting_nodes_per_flood": round(1 + forwarded / originated, 2)
        if originated
        else None,
        "pure_flooding_nodes_per_flood": len(nodes),
        "mpr_fraction": round(len({mains.get(m, m) for m in mprs}) / len(nodes), 3),
        "cpu_s_per_min_per_node_mean": round(sum(cpu) / len(nodes) / seconds * 60, 3),
        "cpu_s_per_min_per_node_max": round(max(cpu) / seconds * 60, 3),
        "cpu_percent_of_one_core_max": round(max(cpu) / seconds * 100, 3),
    }


def expectations(size: int) -> dict[str, Any]:
    """What the RFC's default timers predict for this grid."""
    diameter = 2 * (size - 1)
    return {
        "cold_start_s": (
            f"links turn symmetric and 2-hop sets fill within about 2 x HELLO_INTERVAL "
            f"({2 * C.HELLO_INTERVAL:.0f} s); TC, MID and HNA go out at once when the "
            f"neighbourhood changes, but those sent before the relays are chosen reach only "
            f"part of the mesh and the rest arrives with the next periodic round "
            f"(TC_INTERVAL = MID_INTERVAL = {C.TC_INTERVAL:.0f} s): "
            f"{2 * C.HELLO_INTERVAL:.0f}..{2 * C.HELLO_INTERVAL + 2 * C.TC_INTERVAL:.0f} s, "
            f"plus up to {C.HELLO_INTERVAL / 4} s of forwarding jitter per hop on a "
            f"{diameter}-hop diameter"
        ),
        "node_lost_s": (
            f"neighbours notice after NEIGHB_HOLD_TIME ({C.NEIGHB_HOLD_TIME:.0f} s) at most, "
            f"then a TC with a new ANSN floods at once: <= {C.NEIGHB_HOLD_TIME:.0f} s + "
            f"jitter; the lost drone's own TC entries age out within TOP_HOLD_TIME "
            f"({C.TOP_HOLD_TIME:.0f} s)"
        ),
        "pure_flooding_nodes_per_flood": size * size,
        "cpu_budget_s_per_min": 1.2,
    }


def plot(path: Path, cold: list[Point], lost: list[Point]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, series, title, marks in (
        (axes[0], cold, "Cold start", [(2 * C.HELLO_INTERVAL, "2 x HELLO_INTERVAL")]),
        (axes[1], lost, "Centre drone lost", [(C.NEIGHB_HOLD_TIME, "NEIGHB_HOLD_TIME")]),
    ):
        ax.plot([t for t, _ in series], [100 * f for _, f in series], marker=".")
        for x, label in marks:
            ax.axvline(x, linestyle="--", color="grey")
            ax.text(x, 5, f" {label}", color="grey", fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("seconds")
        ax.set_ylabel("routes in place, not via the lost drone (%)" if series is lost else
                      "routes in place (%)")  # fmt: skip
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudrone.bench.olsr", description=__doc__)
    parser.add_argument("--size", type=int, default=5, help="grid side (default 5: 25 drones)")
    parser.add_argument("--steady", type=float, default=60.0, help="steady-state window, s")
    parser.add_argument("--out", default="docs/bench", help="folder for results and plot")
    parser.add_argument(
        "--diagonals",
        action="store_true",
        help="link diagonal neighbours too (8 neighbours inside the grid, denser radio cover)",
    )
    parser.add_argument(
        "--profiles",
        help="compare the daemon's timer profiles, back to back in one run (like rfc,fast); "
        "results go to <out>/olsr-profiles.json and .png",
    )
    args = parser.parse_args(argv)
    profiles = [p.strip() for p in args.profiles.split(",")] if args.profiles else []
    unknown = [p for p in profiles if p not in C.PROFILES]
    if unknown:
        parser.error(f"unknown profile {', '.join(unknown)}; use: {', '.join(C.PROFILES)}")
    if os.geteuid() != 0:
        print("the benchmark needs root (network namespaces)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lab_mod.remove_leftovers()
    if profiles:
        return compare(args, profiles, out)
    with tempfile.TemporaryDirectory(prefix="cdo-bench-") as tmp:
        lab = Lab(Path(tmp), defaults=lab_mod.RFC)
        try:
            return run(lab, args, out)
        finally:
            lab.close()


def timers_of(profile: str) -> str:
    p = C.PROFILES[profile]
    return (
        f"{profile}: HELLO {p['hello_interval']:g} s/{p['hello_validity']:g} s, "
        f"TC {p['tc_interval']:g} s/{p['tc_validity']:g} s, "
        f"MID {p['mid_interval']:g} s/{p['mid_validity']:g} s, "
        f"HNA {p['hna_interval']:g} s/{p['hna_validity']:g} s, jitter {p['max_jitter']:g} s"
    )


def measure(lab: Lab, args: argparse.Namespace) -> dict[str, Any]:
    """One grid in ``lab``: cold start, steady traffic and CPU, then the centre drone lost."""
    size = args.size
    names = [n for row in lab_mod.build_grid(lab, size, args.diagonals) for n in row]
    for name in names:
        lab.start(name)
    t_cold, cold = watch(lab, names, timeout=120)
    print(f"  cold start: full convergence after {t_cold and round(t_cold, 1)} s", flush=True)

    time.sleep(5)
    before = snapshot(lab, names)
    t0 = time.monotonic()
    time.sleep(args.steady)
    after = snapshot(lab, names)
    steady = traffic(before, after, time.monotonic() - t0)
    print(f"  steady: {json.dumps(steady)}", flush=True)

    centre = f"r{size // 2}c{size // 2}"
    victim = set(lab.addresses[centre].values())
    rest = [n for n in names if n != centre]
    lab.remove_node(centre)
    start = time.monotonic()
    series: list[Point] = []
    around: dict[str, float] = {}  # drone -> when its routes first all went around
    t_around = t_forgot = None
    everyone = lab.all_addresses(rest)
    rounds: list[float] = []
    while time.monotonic() - start < 90:
        round_start = time.monotonic()
        want = good = 0
        touching_next = touching_any = False
        for name in rest:
            routes = {d.split("/")[0]: r["gateway"] for d, r in lab.routes(name).items()}
            seen = time.monotonic() - start  # when this drone was read
            wanted = everyone - set(lab.addresses[name].values())
            mine = sum(1 for a in wanted if a in routes and routes[a] not in victim)
            via = bool(set(routes.values()) & victim)
            if mine == len(wanted) and not via:
                around.setdefault(name, seen)
            else:
                around.pop(name, None)  # it flapped back: count from the last time
            want += len(wanted)
            good += mine
            touching_next |= via
            touching_any |= bool(set(routes) & victim)
        t = time.monotonic() - start
        rounds.append(time.monotonic() - round_start)
        series.append((round(t, 2), round(good / want, 4)))
        if t_around is None and good == want and not touching_next:
            t_around = max(around.values())
        if t_forgot is None and not touching_any and not touching_next:
            t_forgot = t
        if t_around is not None and t_forgot is not None:
            break
        time.sleep(0.2)
    print(f"  centre lost: routes around it after {t_around and round(t_around, 1)} s, "
          f"no route to it after {t_forgot and round(t_forgot, 1)} s", flush=True)  # fmt: skip
    firsts = sorted(around.values())
    return {
        "cold_start_convergence_s": t_cold and round(t_cold, 1),
        "node_lost_routes_around_s": t_around and round(t_around, 1),
        "node_lost_first_drone_around_s": round(firsts[0], 1) if firsts else None,
        "node_lost_median_drone_around_s": round(firsts[len(firsts) // 2], 1) if firsts else None,
        "node_lost_forgotten_s": t_forgot and round(t_forgot, 1),
        "route_polling_round_s": round(sum(rounds) / len(rounds), 2),
        "steady_state": steady,
        "cold_series": cold,
        "lost_series": series,
    }


def compare(args: argparse.Namespace, profiles: list[str], out: Path) -> int:
    kind = "grid with diagonal links" if args.diagonals else "grid"
    size = args.size
    print(f"{size}x{size} {kind} ({size * size} drones), profiles {', '.join(profiles)}")
    found: dict[str, dict[str, Any]] = {}
    for profile in profiles:
        print(f"profile {timers_of(profile)}", flush=True)
        with tempfile.TemporaryDirectory(prefix="cdo-bench-") as tmp:
            lab = Lab(Path(tmp), defaults=lab_mod.RFC, profile=profile)
            try:
                found[profile] = measure(lab, args)
                links = sum(len(a) for a in lab.addresses.values()) // 2
            finally:
                lab.close()
        found[profile]["timers"] = C.PROFILES[profile]
    target = {"node_lost_routes_around_s": 3.0, "bytes_per_s_per_node_mean": 1000.0}
    summary = {}
    for profile, r in found.items():
        s = r["steady_state"]
        summary[profile] = {
            "cold_start_convergence_s": r["cold_start_convergence_s"],
            "node_lost_routes_around_s": r["node_lost_routes_around_s"],
            "node_lost_forgotten_s": r["node_lost_forgotten_s"],
            "bytes_per_s_per_node_mean": s["bytes_per_s_per_node_mean"],
            "bytes_per_s_per_node_max": s["bytes_per_s_per_node_max"],
            "cpu_s_per_min_per_node_mean": s["cpu_s_per_min_per_node_mean"],
            "cpu_s_per_min_per_node_max": s["cpu_s_per_min_per_node_max"],
            "fast_target_met": bool(
                r["node_lost_routes_around_s"] is not None
                and r["node_lost_routes_around_s"] < target["node_lost_routes_around_s"]
                and s["bytes_per_s_per_node_mean"] < target["bytes_per_s_per_node_mean"]
            ),
        }
    results = {
        "grid": f"{size}x{size} {kind}",
        "links": links,
        "drones": size * size,
        "order": profiles,
        "target_for_fast": target,
        "summary": summary,
        "profiles": found,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    stem = "olsr-diagonal-profiles" if args.diagonals else "olsr-profiles"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    plot_profiles(out / f"{stem}.png", {p: r["lost_series"] for p, r in found.items()}, kind)
    print(json.dumps(summary, indent=1))
    return 0 if all(r["node_lost_routes_around_s"] is not None for r in found.values()) else 1


def plot_profiles(path: Path, lost: dict[str, list[Point]], kind: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, (profile, series) in enumerate(lost.items()):
        colour = f"C{i}"
        hold = C.PROFILES[profile]["hello_validity"]
        ax.plot([t for t, _ in series], [100 * f for _, f in series], marker=".",
                color=colour, label=f"{profile} (neighbour hold {hold:g} s)")  # fmt: skip
        ax.axvline(hold, linestyle="--", color=colour, alpha=0.6)
    ax.set_title(f"Centre drone lost, 5x5 {kind}: routes going around it")
    ax.set_xlabel("seconds since the drone fell silent")
    ax.set_ylabel("routes in place, not via the lost drone (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(lab: Lab, args: argparse.Namespace, out: Path) -> int:
    size = args.size
    kind = "grid with diagonal links" if args.diagonals else "grid"
    stem = "olsr-diagonal" if args.diagonals else "olsr"
    print(f"building a {size}x{size} {kind} ({size * size} drones) ...", flush=True)
    m = measure(lab, args)
    results = {
        "grid": f"{size}x{size} {kind}",
        "links": sum(len(a) for a in lab.addresses.values()) // 2,
        "drones": size * size,
        "timers": "RFC 3626 defaults (HELLO 2 s/6 s, TC 5 s/15 s, MID and HNA 5 s/15 s)",
        **{k: v for k, v in m.items() if not k.endswith("_series")},
        "expected": expectations(size),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    (out / f"{stem}-results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(out / f"{stem}-convergence.png", m["cold_series"], m["lost_series"])
    print(json.dumps(results, indent=1))
    budget_ok = m["steady_state"]["cpu_s_per_min_per_node_max"] <= 1.2
    print(f"CPU budget (2% of one core = 1.2 s/min per drone): {'met' if budget_ok else 'MISSED'}")
    ok = m["cold_start_convergence_s"] is not None and m["node_lost_routes_around_s"] is not None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
