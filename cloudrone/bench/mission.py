"""How long ``mission up`` takes, and where the time goes, as a fleet grows.

``sudo .venv/bin/python -m cloudrone.bench.mission [--drones 3 9] [--again 3] [--out docs/bench]``

For each fleet size N: a bundle like the demo (N simulated Pi 2 drones in a
line, the tiny page on the last one, a phone on every access point) is
brought up on new drones (the controller's caches warm: drone image, package
cache, the page's image), then brought up again AGAIN times (the idempotent
run, which must change nothing; the run of median time is the one reported,
every time is kept), then taken down. Each run's Ansible time is split by
role from ansible-runner's events. Writes OUT/mission.json and
OUT/mission.png and prints a table. The bundles and the run state live in a
temporary folder; the fleets use 10.248.0.0/16.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cloudrone.fleet import sim
from cloudrone.paths import project_root

NAME = "bench-up"


def bundle_text(drones: int, key: Path) -> str:
    names = [f"drone-{i}" for i in range(1, drones + 1)]
    lines = [
        "version: 2",
        f"mission: {NAME}",
        "target: sim",
        f"ssh_key: {key}",
        "networks: {management: 10.248.0.0/24, mesh: 10.248.1.0/24, ground: 10.248.64.0/18}",
        "radio:",
        "  profile: fast",
        "  range:",
        *(f"    - between: [{a}, {b}]" for a, b in itertools.pairwise(names)),
        "drones:",
        *(
            f"  - {{name: {n}, management_address: 10.248.0.{10 + i}, "
            f"mesh_address: 10.248.1.{10 + i}, model: pi2}}"
            for i, n in enumerate(names, start=1)
        ),
        "services:",
        "  - name: news",
        "    build: {recipe: tinyweb, content: site}",
        f"    drones: [{names[-1]}]",
        "    memory: 16M",
        "    ports: [{target: 8080, published: 80}]",
    ]
    return "\n".join(lines) + "\n"


def role_times(events: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds per role (the time from each task's start to the next's), from
    ansible-runner's events of one run in order."""

    def at(e: dict) -> float:
        return datetime.datetime.fromisoformat(e["created"]).timestamp()

    starts = [e for e in events if e["event"] == "playbook_on_task_start"]
    out: Counter[str] = Counter()
    for i, e in enumerate(starts):
        end = at(starts[i + 1]) if i + 1 < len(starts) else at(events[-1])
        out[e["event_data"].get("role") or "(plays)"] += end - at(e)
    return {k: round(v, 1) for k, v in out.most_common()}


def run_up(folder: Path, env: dict[str, str], state: Path) -> dict[str, Any]:
    cli = Path(sys.executable).parent / "cloudrone_cli"
    start = time.monotonic()
    result = subprocess.run(
        [str(cli), "mission", "up", str(folder)],
        capture_output=True, text=True, env=env, check=False, timeout=3600,
    )  # fmt: skip
    wall = time.monotonic() - start
    out = " ".join(result.stdout.split())
    if result.returncode != 0:
        raise RuntimeError(f"mission up failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    match = re.search(r"Fleet ready: (\d+) task\(s\) changed in \d+ s \(Ansible (\d+) s", out)
    artifacts = state / "missions" / NAME / "runner" / "artifacts"
    latest = max(artifacts.iterdir(), key=lambda p: p.stat().st_mtime)
    events = sorted(
        (json.loads(p.read_text()) for p in (latest / "job_events").glob("*.json")),
        key=lambda e: e["counter"],
    )
    tasks = sum(e["event"] == "playbook_on_task_start" for e in events)
    return {
        "wall_s": round(wall, 1),
        "ansible_s": int(match.group(2)) if match else None,
        "changed": int(match.group(1)) if match else None,
        "tasks": tasks,
        "phones_ok": out.count(" ok cloudrone-"),
        "roles": role_times(events),
    }


def measure(drones: int, again: int = 3, log=print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cloudrone-bench-") as tmp:
        folder = Path(tmp) / "bundle"
        folder.mkdir()
        shutil.copytree(project_root() / "missions" / "demo" / "site", folder / "site")
        (folder / "mission.yml").write_text(bundle_text(drones, Path(tmp) / "key"))
        state = Path(tmp) / "state"
        env = {**os.environ, "CLOUDRONE_STATE_DIR": str(state), "COLUMNS": "200"}
        sim.down(NAME, log=lambda _m: None)
        try:
            log(f"{drones} drones: first up (new drones)")
            first = run_up(folder, env, state)
            log(f"    {first['wall_s']} s, {first['changed']} changed")
            runs = []
            for i in range(1, again + 1):
                log(f"{drones} drones: up again (idempotent), {i} of {again}")
                runs.append(run_up(folder, env, state))
                log(f"    {runs[-1]['wall_s']} s, {runs[-1]['changed']} changed")
        finally:
            sim.down(NAME, log=lambda _m: None)
    # the machine's other work moves single runs by several seconds: the median
    second = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
    return {"drones": drones, "first": first, "second": second,
            "again_wall_s": [r["wall_s"] for r in runs]}  # fmt: skip


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roles = sorted({r for res in results for run in ("first", "second")
                    for r in res[run]["roles"]})  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=False)
    again = len(results[0].get("again_wall_s", [1])) if results else 1
    second_title = "up again (changes nothing)" + (f", median of {again}" if again > 1 else "")
    for ax, run, title in ((axes[0], "first", "first up (new drones)"),
                           (axes[1], "second", second_title)):  # fmt: skip
        bottom = [0.0] * len(results)
        labels = [f"{res['drones']} drones" for res in results]
        for role in roles:
            values = [res[run]["roles"].get(role, 0.0) for res in results]
            ax.bar(labels, values, bottom=bottom, label=role)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for i, res in enumerate(results):
            ax.annotate(f"{res[run]['wall_s']:.0f} s wall", (i, bottom[i]), ha="center",
                        va="bottom", fontsize=8)  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("Ansible seconds by role")
    if results and results[0]["second"]:
        # the goals for a run that changes nothing (docs/bench/mission.md), captioned at the
        # right edge, clear of the bars' own labels
        for drones, goal in ((3, 30), (9, 60)):
            axes[1].axhline(goal, color="grey", ls="--", lw=0.8)
            axes[1].annotate(
                f"goal, {drones} drones: {goal} s", (1, goal), xycoords=("axes fraction", "data"),
                ha="right", va="bottom", fontsize=7, bbox={"fc": "white", "ec": "none", "pad": 1},
            )  # fmt: skip
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle("cloudrone_cli mission up on simulated Pi 2 drones, 2-core controller")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudrone.bench.mission")
    parser.add_argument("--drones", type=int, nargs="+", default=[3, 9])
    parser.add_argument("--again", type=int, default=3, help="idempotent runs per fleet size")
    parser.add_argument("--out", type=Path, default=project_root() / "docs" / "bench")
    args = parser.parse_args(argv)
    if args.again < 1:
        parser.error("--again must be 1 or more")
    results = [measure(n, args.again) for n in args.drones]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mission.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "mission.png")
    print(f"{'drones':>6} {'first s':>8} {'changed':>8} {'again s (median)':>17} {'changed':>8} "
          f"tasks  every idempotent run")  # fmt: skip
    for r in results:
        f, s = r["first"], r["second"]
        print(f"{r['drones']:>6} {f['wall_s']:>8} {f['changed']:>8} {s['wall_s']:>17} "
              f"{s['changed']:>8} {s['tasks']:>5}  {r['again_wall_s']}")  # fmt: skip
    print(f"wrote {args.out / 'mission.json'} and {args.out / 'mission.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
