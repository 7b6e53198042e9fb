"""Benchmark: routing by hop count against routing by ETX on a lossy 5x5 grid of drones.

    sudo .venv/bin/python -m cloudrone.bench.etx [--size 5] [--seconds 60] [--out docs/bench]

Needs root, ``ip netns`` and nftables. The drones share one radio channel (the lab's
:meth:`~cloudrone.bench.lab.Lab.air`: a Linux bridge whose nftables rules decide who
hears whom, as the simulated fleet's radio does). On a grid with 100 m between
neighbours, a drone hears:

* its four grid neighbours, each link losing 0..20% of frames (drawn at random);
* its diagonal neighbours (141 m), losing 30..50%;
* the drones two steps away in a straight line (200 m), losing 50..70%.

Hop count takes the long lossy links (a far corner is 4 hops away through them, 8
through clean ones); ETX should take the clean ones. The same drawn losses serve both
modes, one after the other in the same run. For each mode the daemons (``fast``
timers) run ``--warmup`` seconds (the ETX window is 32 s), then for ``--seconds``:

* two probe streams between far corners (r0c0 to r4c4, r0c4 to r4c0), 20 UDP
  datagrams a second each, counted where they land: the delivery ratio;
* kernel route changes per drone per minute (the daemon's ``routeChanges``), flapping;
* control bytes sent per drone per second, and daemon CPU per drone.

Results: ``<out>/etx.json`` and ``<out>/etx.png``. Everything made is removed at the
end, also on Ctrl-C. Traffic stays inside the namespaces it creates.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cloudrone.bench import lab as lab_mod
from cloudrone.bench.lab import Lab

RATE = 20  # probe datagrams per second per stream
PORT = 9998
LOSS = {"grid": (0, 20), "diagonal": (30, 50), "skip": (50, 70)}
RECEIVER = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.settimeout(0.2)
end, got = time.monotonic() + float(sys.argv[2]), set()
while time.monotonic() < end:
    try:
        got.add(int(s.recv(64)))
    except OSError:
        pass
print(len(got))
"""
SENDER = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n, rate, start = int(sys.argv[3]), float(sys.argv[4]), time.monotonic()
for i in range(n):
    time.sleep(max(0.0, start + i / rate - time.monotonic()))
    try:
        s.sendto(str(i).encode(), (sys.argv[1], int(sys.argv[2])))
    except OSError:  # no route for a moment: that datagram is lost
        pass
"""


def radio(size: int, seed: int) -> dict[frozenset[str], int]:
    """Who hears whom on the grid, with each pair's loss percent (drawn once)."""
    rng = random.Random(seed)
    pairs: dict[frozenset[str], int] = {}
    for r in range(size):
        for c in range(size):
            for dr, dc, kind in (
                (0, 1, "grid"), (1, 0, "grid"), (1, 1, "diagonal"), (1, -1, "diagonal"),
                (0, 2, "skip"), (2, 0, "skip"),
            ):  # fmt: skip
                rr, cc = r + dr, c + dc
                if 0 <= rr < size and 0 <= cc < size:
                    low, high = LOSS[kind]
                    pairs[frozenset((f"r{r}c{c}", f"r{rr}c{cc}"))] = rng.randint(low, high)
    return pairs


def snapshot(lab: Lab, nodes: list[str]) -> dict[str, dict[str, Any]]:
    return {n: lab.status(n, "stats")["stats"] for n in nodes}


def probe(lab: Lab, streams: list[tuple[str, str, str]], seconds: float) -> list[float]:
    """Run every (source, destination, address) stream at once; delivery ratio of each."""
    count = int(seconds * RATE)

    def in_ns(node: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", lab.ns(node), sys.executable, "-c", *cmd]

    receivers = [
        subprocess.Popen(
            in_ns(dst, RECEIVER, str(PORT), str(seconds + 3)), stdout=subprocess.PIPE, text=True
        )
        for _src, dst, _addr in streams
    ]
    time.sleep(0.5)
    senders = [
        subprocess.Popen(in_ns(src, SENDER, addr, str(PORT), str(count), str(RATE)))
        for src, _dst, addr in streams
    ]
    for proc in senders:
        proc.wait(seconds + 30)
    return [int(r.communicate(timeout=30)[0]) / count for r in receivers]


def run_mode(
    workdir: Path, size: int, pairs: dict[frozenset[str], int], mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    lab = Lab(workdir / mode, defaults=lab_mod.RFC, profile="fast")
    (workdir / mode).mkdir()
    try:
        names = [f"r{r}c{c}" for r in range(size) for c in range(size)]
        for name in names:
            lab.add_node(name)
        addr = lab.air(names)
        lab.set_radio(pairs)
        for name in names:
            lab.start(name, link_quality=mode)
        if not all(lab.ready(n) for n in names):
            raise RuntimeError(f"a daemon did not start:\n{lab.dump_logs()}")
        print(f"  {mode}: warming up {args.warmup:g} s ...", flush=True)
        time.sleep(args.warmup)
        far = f"r{size - 1}c{size - 1}"
        corner = f"r0c{size - 1}", f"r{size - 1}c0"
        streams = [("r0c0", far, addr[far]), (corner[0], corner[1], addr[corner[1]])]
        hops = {f"{s}->{d}": lab.status(s, "routes")["routes"] for s, d, _a in streams}
        before = snapshot(lab, names)
        start = time.monotonic()
        print(f"  {mode}: probing for {args.seconds:g} s ...", flush=True)
        ratios = probe(lab, streams, args.seconds)
        elapsed = time.monotonic() - start
        after = snapshot(lab, names)
        minutes = elapsed / 60
        changes = [after[n]["routeChanges"] - before[n]["routeChanges"] for n in names]
        sent = [after[n]["sentBytes"] - before[n]["sentBytes"] for n in names]
        cpu = [after[n]["cpuSeconds"] - before[n]["cpuSeconds"] for n in names]
        paths = {}
        for (_s, _d, a), (key, routes) in zip(streams, hops.items(), strict=True):
            row = next((r for r in routes if r["destination"] == a), None)
            paths[key] = {
                "hops": row["metric"] if row else None,
                "cost": row["rtpMetricCost"] if row else None,
            }
        return {
            "mode": mode,
            "delivery": {
                f"{s}->{d}": round(x, 4) for (s, d, _a), x in zip(streams, ratios, strict=True)
            },
            "delivery_mean": round(sum(ratios) / len(ratios), 4),
            "paths_at_start": paths,
            "route_changes_per_drone_per_min_mean": round(sum(changes) / len(names) / minutes, 2),
            "route_changes_per_drone_per_min_max": round(max(changes) / minutes, 2),
            "control_bytes_per_s_per_drone_mean": round(sum(sent) / len(names) / elapsed, 1),
            "control_bytes_per_s_per_drone_max": round(max(sent) / elapsed, 1),
            "cpu_s_per_min_per_drone_mean": round(sum(cpu) / len(names) / minutes, 3),
            "cpu_s_per_min_per_drone_max": round(max(cpu) / minutes, 3),
            "probe_window_s": round(elapsed, 1),
        }
    finally:
        lab.close()


def plot(path: Path, results: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = (
        ("delivery_mean", "corner-to-corner delivery (%)", 100),
        ("route_changes_per_drone_per_min_mean", "route changes / drone / min", 1),
        ("control_bytes_per_s_per_drone_mean", "control bytes / s / drone", 1),
        ("cpu_s_per_min_per_drone_mean", "daemon CPU s / min / drone", 1),
    )
    fig, axes = plt.subplots(1, len(figures), figsize=(13, 3.4))
    labels = ["hop count" if r["mode"] == "none" else "ETX" for r in results]
    for ax, (key, title, scale) in zip(axes, figures, strict=True):
        values = [r[key] * scale for r in results]
        bars = ax.bar(labels, values, color=["#b0b0b0", "#3a7bd5"][: len(values)])
        ax.bar_label(bars, fmt="%.4g")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("5x5 drones on one lossy radio channel: hop count against ETX", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cloudrone.bench.etx", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0, help="probe window per mode")
    parser.add_argument("--warmup", type=float, default=40.0, help="seconds before probing")
    parser.add_argument("--seed", type=int, default=7, help="draws the losses")
    parser.add_argument("--modes", default="none,etx")
    parser.add_argument("--out", default="docs/bench")
    args = parser.parse_args(argv)
    problem = lab_mod.netns_problem()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lab_mod.remove_leftovers()
    pairs = radio(args.size, args.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="cloudrone-etx-") as tmp:
        for mode in args.modes.split(","):
            print(f"{args.size}x{args.size} grid, link_quality {mode} ...", flush=True)
            results.append(run_mode(Path(tmp), args.size, pairs, mode, args))
            print(json.dumps(results[-1], indent=1), flush=True)
    report = {
        "grid": f"{args.size}x{args.size}, one shared radio channel",
        "in_range": {k: f"{lo}..{hi}% loss" for k, (lo, hi) in LOSS.items()},
        "pairs_in_range": len(pairs),
        "seed": args.seed,
        "timers": "profile fast (HELLO 0.5 s / 1.5 s, TC 5 s / 15 s)",
        "warmup_s": args.warmup,
        "probe": f"{RATE} UDP datagrams/s per stream, two streams between far corners",
        "results": results,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    (out / "etx.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(out / "etx.png", results)
    print(f"wrote {out / 'etx.json'} and {out / 'etx.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
