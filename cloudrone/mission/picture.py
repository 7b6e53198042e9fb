"""The mesh as a picture: who hears whom, how well, and who relays (PNG or SVG).

Drawn from ``mission status --json``'s object, so a script can draw a saved
status too. Drones are placed by hops from the first one (a line stays a
line), each link is drawn once with its ETX cost, relays (MPRs) in bold, a
silent drone in red, the swarm's leader ringed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloudrone.mission.model import reach

FORMATS = (".png", ".svg")


def layers(names: list[str], edges: set[frozenset[str]]) -> dict[str, tuple[float, float]]:
    """(x, y) per drone: x = hops from the first drone (drones it never hears
    after, group by group), y spread within a column."""
    found = reach(names, edges)
    base, start = {}, 0
    for group in sorted({g for g, _ in found.values()}):
        base[group] = start
        start += max(h for g, h in found.values() if g == group) + 1
    column = {n: base[g] + h for n, (g, h) in found.items()}
    out: dict[str, tuple[float, float]] = {}
    for x in sorted(set(column.values())):
        same = [n for n in names if column[n] == x]
        for i, name in enumerate(same):
            out[name] = (float(x), (len(same) - 1) / 2 - i)
    return out


def draw(status: dict[str, Any], path: Path) -> Path:
    """Write the picture of ``status`` (as ``mission status --json`` prints it) to ``path``."""
    if path.suffix not in FORMATS:
        raise ValueError(f"{path}: give a .png or .svg file name")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drones = status["drones"]
    names = [d["name"] for d in drones]
    edges: dict[frozenset[str], dict[str, Any]] = {}
    for d in drones:
        mesh = d.get("mesh") or {}
        relays = {n["drone"] for n in mesh.get("neighbors", []) if n.get("mpr")}
        for link in mesh.get("links", []):
            other = link.get("drone")
            if other not in names or link.get("status") != "SYMMETRIC":
                continue
            edge = edges.setdefault(frozenset((d["name"], other)), {"costs": [], "mpr": False})
            edge["costs"].append(link.get("cost"))
            edge["mpr"] |= other in relays
    where = layers(names, set(edges))
    fig, ax = plt.subplots(figsize=(2.2 + 2.2 * max(x for x, _ in where.values()), 3.6))
    for edge, info in edges.items():
        a, b = sorted(edge)
        (xa, ya), (xb, yb) = where[a], where[b]
        ax.plot([xa, xb], [ya, yb], color="#333", lw=3.0 if info["mpr"] else 1.2, zorder=1)
        costs = [c for c in info["costs"] if isinstance(c, (int, float))]
        if costs:
            ax.annotate(f"ETX {max(costs):.2f}", ((xa + xb) / 2, (ya + yb) / 2 + 0.08),
                        ha="center", fontsize=8, color="#333")  # fmt: skip
    leader = (status.get("swarm") or {}).get("leader")
    services = status.get("services") or {}
    for d in drones:
        x, y = where[d["name"]]
        colour = "#2e7d32" if d.get("reachable") else "#c62828"
        ax.scatter([x], [y], s=900, color=colour, zorder=2,
                   edgecolors="#f9a825" if d["name"] == leader else "white",
                   linewidths=4 if d["name"] == leader else 1)  # fmt: skip
        ax.annotate(d["name"], (x, y), ha="center", va="center", color="white", fontsize=7,
                    zorder=3)  # fmt: skip
        runs = [n.split("_", 1)[-1] for n, s in services.items() if d["name"] in s["drones"]]
        below = ("silent" if not d.get("reachable") else ", ".join(runs)) or ""
        ax.annotate(below, (x, y - 0.28), ha="center", fontsize=8)
    ax.set_title(
        f"Mission {status.get('mission')}: who hears whom (bold: relay, ringed: swarm leader)",
        fontsize=9,
    )
    ax.set_xlim(-0.6, max(x for x, _ in where.values()) + 0.6)
    ax.set_ylim(min(y for _, y in where.values()) - 0.6, max(y for _, y in where.values()) + 0.5)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
