"""Plot a swarm failover as a phone saw it: every request, who answered, how long it took.

``python -m cloudrone.bench.failover [--figures .cache/failover.json] --out docs/bench``

The figures come from molecule's ``swarm`` scenario
(molecule/swarm/tests/test_failover.py writes them to the project's
.cache/failover.json): the leader's drone is killed while a client sends 20
requests a second to each service, trying the drones in turn. This command
prints a summary per service, copies the figures to OUT/failover-run.json and
draws OUT/failover-timeline.png: each request's time to an answer against the
time since the loss, coloured by the drone that answered, with the moments a
new leader and the lost tasks appeared.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cloudrone.flight.rt import percentile
from cloudrone.paths import project_root

SLOW_MS = 250.0  # longer than a page load a person would not notice


def summary(log: list[list[Any]]) -> dict[str, Any]:
    """One service's requests (``[t_since_loss_s, drone or None, ms]``), summed up."""
    if not log:
        raise ValueError("no requests in the log")
    took = sorted(row[2] for row in log)
    after = [row for row in log if row[0] >= 0]
    by: dict[str, int] = {}
    for _t, drone, _ms in log:
        key = drone or "none"
        by[key] = by.get(key, 0) + 1
    return {
        "requests": len(log),
        "failed": by.get("none", 0),
        "answered_by": dict(sorted(by.items())),
        "ms_p50": round(percentile(took, 50), 1),
        "ms_p99": round(percentile(took, 99), 1),
        "ms_max": round(took[-1], 1),
        "slow_after_loss": sum(1 for row in after if row[2] > SLOW_MS),
        "last_slow_s": max((row[0] for row in after if row[2] > SLOW_MS), default=None),
    }


def plot(figures: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = figures["requests_log"]
    fig, axes = plt.subplots(len(logs), 1, figsize=(9, 3.2 * len(logs)), sharex=True, squeeze=False)
    drones = sorted({row[1] for log in logs.values() for row in log if row[1]})
    colours = {d: f"C{i}" for i, d in enumerate(drones)}
    for ax, (service, log) in zip(axes[:, 0], sorted(logs.items()), strict=True):
        for drone in drones:
            rows = [r for r in log if r[1] == drone]
            ax.scatter([r[0] for r in rows], [max(r[2], 0.1) for r in rows], s=6,
                       color=colours[drone], label=f"answered by {drone}")  # fmt: skip
        failed = [r for r in log if r[1] is None]
        if failed:
            ax.scatter([r[0] for r in failed], [max(r[2], 0.1) for r in failed], s=20,
                       marker="x", color="red", label="no drone answered")  # fmt: skip
        ax.axvline(0, color="black", linestyle="-", linewidth=1, label=f"{figures['leader']} lost")
        if figures.get("new_leader_s") is not None:
            ax.axvline(figures["new_leader_s"], color="grey", linestyle="--", label="new leader")
        moved = (figures.get("tasks_elsewhere_s") or {}).get(service)
        if moved is not None and (figures.get("replicas_on_leader") or {}).get(service):
            ax.axvline(moved, color="grey", linestyle=":", label="lost task running elsewhere")
        ax.set_yscale("log")
        ax.set_ylabel("time to answer (ms)")
        ax.set_title(f"service {service}: {len(log)} requests, {len(failed)} failed", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds since the leader's drone was lost")
    fig.suptitle("Swarm failover, as a phone trying the drones in turn sees it")
    fig.tight_layout()
    path = out / "failover-timeline.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cloudrone.bench.failover",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--figures", type=Path, default=project_root() / ".cache" / "failover.json",
        help="what molecule's swarm scenario wrote (default: .cache/failover.json)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="write failover-run.json and the plot here")
    args = parser.parse_args(argv)
    try:
        figures = json.loads(args.figures.read_text())
    except (OSError, ValueError) as exc:
        print(f"{args.figures}: {exc}; run molecule test -s swarm first", file=sys.stderr)
        return 2
    if "requests_log" not in figures:
        print(f"{args.figures}: no requests_log; it is from an older run of the scenario; "
              "run molecule test -s swarm again", file=sys.stderr)  # fmt: skip
        return 2
    print(f"leader lost: {figures['leader']}; new leader after {figures['new_leader_s']} s; "
          f"lost tasks elsewhere after {figures['tasks_elsewhere_s']} s")  # fmt: skip
    for service, log in sorted(figures["requests_log"].items()):
        print(f"  {service}: {json.dumps(summary(log))}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "failover-run.json").write_text(json.dumps(figures) + "\n")
        print(f"wrote {args.out / 'failover-run.json'}")
        print(f"wrote {plot(figures, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
