"""Benchmark the flight core under a busy cloud: the bridge's 50 Hz loop on a simulated
drone whose engine runs CPU-heavy containers, with the services slice and without it.

``python -m cloudrone.bench.flightload [--duration 60] [--out docs/bench]``

One simulated drone is provisioned by the real roles (base packages, firewall and
drone package; docker_engine; flight_bridge), so the bridge runs as the drone's own
systemd service (sim backend, recording every frame) and the containers run under
the drone's own engine. A pymavlink ground station on the controller arms the bridge
and streams MANUAL_CONTROL at 25 Hz, signed, over the drone's management network.

Each loaded scenario starts two busy-loop containers per core; then the bridge is
restarted so its statistics cover only the window. Scenarios:

* ``idle``: the role's defaults, no containers (the baseline);
* ``slice``: the role's defaults: containers in cloudrone-services.slice, kept off
  the bridge's core and capped at 70% of the machine; the bridge on SCHED_FIFO;
* ``slice-nofifo``: the same slice, the bridge at normal priority;
* ``noslice-nofifo``: no reserved core and no cap (docker_engine_reserved_cpus: [],
  docker_engine_cpu_share_percent: 100), the bridge at normal priority;
* ``noslice``: no reserved core and no cap, the bridge on SCHED_FIFO.

Goal (issue: the flight core holds under a busy cloud): with the slice, p99 period
jitter under 0.5 ms and no missed frame.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudrone.bench import density
from cloudrone.bench.flight import ARM, jitter_figures, plot
from cloudrone.bench.flightlab import GroundStation, wait_until
from cloudrone.fleet import sim, tinyweb
from cloudrone.flight.backends import read_frames

FLEET = "bench-flightload"
DRONE = "drone-f1"
SUBNET = "10.242.0.0/24"
ADDRESS = "10.242.0.11"
GS_PORT = 14550
STATUS = "/run/cloudrone/flight-status.json"
FRAMES = "/run/cloudrone/flight-frames.csv"
SERVICE = "cloudrone-flight-bridge"
GOAL_P99_MS = 0.5
BURN = "while :; do :; done"

PLAYBOOK = """\
- name: Flight-under-load bench | base, the engine, the flight bridge
  hosts: drones
  gather_facts: true
  tasks:
    - name: Flight-under-load bench | The base role's settings for Debian
      ansible.builtin.include_vars: {roles}/base/vars/Debian.yml
    - name: Flight-under-load bench | Packages (through the base camp's apt cache)
      ansible.builtin.include_role: {{name: base, tasks_from: packages.yml}}
    - name: Flight-under-load bench | The firewall later roles add to
      ansible.builtin.include_role: {{name: base, tasks_from: firewall.yml}}
    - name: Flight-under-load bench | The drone package (the bridge)
      ansible.builtin.include_role: {{name: base, tasks_from: drone_package.yml}}
    - name: Flight-under-load bench | The engine
      ansible.builtin.include_role: {{name: docker_engine}}
    - name: Flight-under-load bench | The flight bridge
      ansible.builtin.include_role: {{name: flight_bridge}}
"""

NO_SLICE = {"docker_engine_reserved_cpus": [], "docker_engine_cpu_share_percent": 100}
NO_FIFO = {"flight_bridge_fifo_priority": 0}


@dataclass
class Scenario:
    name: str
    title: str
    burners_per_core: int
    variables: dict[str, Any] = field(default_factory=dict)

    @property
    def slice(self) -> bool:
        return self.variables.get("docker_engine_reserved_cpus") != []

    @property
    def fifo(self) -> bool:
        return self.variables.get("flight_bridge_fifo_priority", 1) != 0


SCENARIOS = [
    Scenario("idle", "idle (slice, FIFO)", 0),
    Scenario("slice", "busy containers, slice, FIFO", 2),
    Scenario("slice-nofifo", "busy containers, slice, no FIFO", 2, dict(NO_FIFO)),
    Scenario("noslice-nofifo", "busy containers, no slice, no FIFO", 2, NO_SLICE | NO_FIFO),
    Scenario("noslice", "busy containers, no slice, FIFO", 2, dict(NO_SLICE)),
]


# --- pure helpers (tests/unit/test_flightload.py) ----------------------------------
def cpu_times(proc_stat: str) -> dict[int, tuple[int, int]]:
    """Per core (busy, total) jiffies from /proc/stat's text."""
    out = {}
    for line in proc_stat.splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(v) for v in values]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        out[int(name[3:])] = (sum(ticks[:8]) - idle, sum(ticks[:8]))
    return out


def busy_percent(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> dict[int, float]:
    """Each core's busy share between two :func:`cpu_times` samples, in percent."""
    out = {}
    for core, (busy1, total1) in after.items():
        busy0, total0 = before.get(core, (0, 0))
        span = total1 - total0
        out[core] = round(100.0 * (busy1 - busy0) / span, 1) if span > 0 else 0.0
    return out


def goal_met(result: dict[str, Any]) -> bool:
    return result["jitter_p99_ms"] < GOAL_P99_MS and result["missed_frames"] == 0


def plan(scenarios: list[Scenario]) -> list[tuple[Scenario, dict[str, Any] | None]]:
    """Each scenario with the variables to provision before it, or None where the
    drone already has them (provisioning is what takes minutes)."""
    out: list[tuple[Scenario, dict[str, Any] | None]] = []
    current: dict[str, Any] | None = None
    for sc in scenarios:
        out.append((sc, None if sc.variables == current else sc.variables))
        current = sc.variables
    return out


# --- the drone ---------------------------------------------------------------------
class FlightDrone(density.Drone):
    """The density bench's drone, provisioned with the flight bridge as well."""

    def __init__(self, workdir: Path, log=print) -> None:
        super().__init__(
            workdir, log, fleet=FLEET, drone=DRONE, subnet=SUBNET, address=ADDRESS,
            memory="1g", playbook=PLAYBOOK,
        )  # fmt: skip
        self.gateway = self.spec.links[0].gateway
        self.key = secrets.token_bytes(32)

    def variables(self, extra: dict[str, Any]) -> dict[str, Any]:
        return {
            **density.INNER,
            "flight_bridge_ground_station": f"{self.gateway}:{GS_PORT}",
            "flight_bridge_signing_key": self.key.hex(),
            **extra,
        }

    def status(self) -> dict[str, Any]:
        return json.loads(self.sh(f"cat {STATUS}"))

    def frame_lines(self) -> int:
        return int(self.sh(f"wc -l < {FRAMES}").strip())

    def frames(self) -> list[tuple[float, str, tuple[int, int, int, int]]]:
        path = self.workdir / "frames.csv"
        path.write_text(self.sh(f"cat {FRAMES}"))
        return read_frames(path)

    def restart_bridge(self) -> dict[str, Any]:
        self.sh(f"rm -f {STATUS}; systemctl restart {SERVICE}")

        def running() -> dict[str, Any] | None:
            try:
                s = self.status()
            except (RuntimeError, ValueError):
                return None
            return s if s.get("running") and s["loop"]["frames"] > 10 else None

        return wait_until(running, 30, "the restarted bridge's status")

    def burners(self, tag: str, count: int) -> list[str]:
        """``count`` busy-loop containers; each one's allowed CPUs."""
        allowed = []
        for i in range(count):
            self.sh(
                f"docker run -d --name burn-{i} --network none --entrypoint /bin/busybox "
                f"{tag} sh -c '{BURN}' >/dev/null"
            )
            pid = self.sh(f"docker inspect -f '{{{{.State.Pid}}}}' burn-{i}").strip()
            allowed.append(self.sh(f"grep Cpus_allowed_list /proc/{pid}/status").split()[-1])
        return allowed

    def stop_burners(self) -> None:
        self.sh("docker ps -aq --filter name=burn- | xargs -r docker rm -f >/dev/null")


def run_scenario(drone: FlightDrone, sc: Scenario, tag: str, duration: float) -> dict[str, Any]:
    cores = sorted(os.sched_getaffinity(0))
    allowed = drone.burners(tag, sc.burners_per_core * len(cores))
    gs: GroundStation | None = None
    try:
        time.sleep(1.0)  # the load runs before the bridge starts
        drone.restart_bridge()
        gs = GroundStation(GS_PORT, signing_key=drone.key, address=drone.gateway)
        gs.start(timeout=20)
        gs.fly(x=100, y=-100, z=0, r=50)
        wait_until(lambda: drone.status()["pilot_link"], 20, "the pilot's stream")
        gs.command(ARM, 1)
        first_line = drone.frame_lines()
        before = drone.status()
        with open("/proc/stat") as f:
            cpu0 = cpu_times(f.read())
        time.sleep(duration)
        with open("/proc/stat") as f:
            cpu1 = cpu_times(f.read())
        after = drone.status()
        frames = drone.frames()[max(first_line - 1, 0) :]
    finally:
        if gs is not None:
            gs.close()
        drone.stop_burners()
    realtime = after["realtime"]
    return {
        "name": sc.name,
        "title": sc.title,
        "slice": sc.slice,
        "fifo_requested": sc.fifo,
        "fifo": realtime["fifo"],
        "fifo_error": realtime["fifo_error"],
        "bridge_cpu": realtime["cpu_affinity"],
        "containers": len(allowed),
        "containers_allowed_cpus": sorted(set(allowed)),
        "busy_percent_by_core": busy_percent(cpu0, cpu1),
        "pilot_messages": len(gs.sent) if gs is not None else 0,
        "missed_frames": after["loop"]["missed_frames"] - before["loop"]["missed_frames"],
        "late_p99_ms": after["loop"]["late_p99_ms"],
        "late_max_ms": after["loop"]["late_max_ms"],
        "mode_at_end": after["mode"],
        **jitter_figures([f[0] for f in frames]),
    }


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| scenario | slice | FIFO | containers (CPUs) | busy % by core | "
        "jitter p50 / p99 / max (ms) | late p99 (ms) | missed frames | frames |"
    )
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        busy = " / ".join(f"{v:g}" for _, v in sorted(r["busy_percent_by_core"].items()))
        cpus = ",".join(r["containers_allowed_cpus"]) or "-"
        lines.append(
            f"| {r['title']} | {'yes' if r['slice'] else 'no'} | "
            f"{'yes' if r['fifo'] else 'no'} | {r['containers']} ({cpus}) | {busy} | "
            f"{r['jitter_p50_ms']} / {r['jitter_p99_ms']} / {r['jitter_max_ms']} | "
            f"{r['late_p99_ms']} | {r['missed_frames']} | {r['frames']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cloudrone.bench.flightload",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per scenario")
    parser.add_argument("--out", type=Path, help="write flightload.json and PNG plots here")
    parser.add_argument(
        "--only", help="comma-separated scenario names: " + ",".join(s.name for s in SCENARIOS)
    )
    parser.add_argument("--keep", action="store_true", help="leave the drone up at the end")
    args = parser.parse_args(argv)
    scenarios = SCENARIOS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {s.name for s in SCENARIOS}
        if unknown:
            parser.error(f"--only: no scenario {', '.join(sorted(unknown))}")
        scenarios = [s for s in SCENARIOS if s.name in wanted]
    began = time.monotonic()
    results: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="flightload-") as tmp:
        drone = FlightDrone(Path(tmp))
        try:
            print(f"fleet {FLEET}: one drone, {args.duration:.0f} s per scenario", flush=True)
            sim.down(FLEET, log=lambda _m: None)
            drone.up()
            tag = tinyweb.ensure()
            archive = tinyweb.save(tag, Path(tmp) / "tinyweb.tar")
            for sc, variables in plan(scenarios):
                if variables is not None or not results:
                    took = drone.provision("dense", drone.variables(sc.variables), log=sc.name)
                    print(f"  provisioned for {sc.name} in {took:.0f} s", flush=True)
                if not results:
                    drone.sh("docker load -q", stdin=archive)
                    meta["engine"] = drone.engine()
                    meta["roles"] = drone.source
                print(f"  running: {sc.title} ...", flush=True)
                r = run_scenario(drone, sc, tag, args.duration)
                results.append(r)
                print(
                    f"    FIFO {'granted' if r['fifo'] else 'off: ' + str(r['fifo_error'])}; "
                    f"containers on CPUs {r['containers_allowed_cpus']}, busy % "
                    f"{r['busy_percent_by_core']}; jitter p50 {r['jitter_p50_ms']} p99 "
                    f"{r['jitter_p99_ms']} max {r['jitter_max_ms']} ms; missed "
                    f"{r['missed_frames']} of {r['frames']} frames",
                    flush=True,
                )
        finally:
            drone.close(args.keep)
    wall = time.monotonic() - began
    print()
    print(table(results))
    for r in results:
        if r["name"] == "slice":
            print(
                f"\ngoal (busy containers, slice: p99 jitter < {GOAL_P99_MS} ms, no missed "
                f"frame): {'MET' if goal_met(r) else 'NOT MET'}"
            )
    print(f"this run took {wall / 60:.1f} min")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = {
            "command": "python -m cloudrone.bench.flightload " + " ".join(argv or sys.argv[1:]),
            "duration_s": args.duration,
            "cpus": sorted(os.sched_getaffinity(0)),
            "kernel": os.uname().release,
            "wall_s": round(wall, 1),
            **meta,
            "results": [{k: v for k, v in r.items() if not k.startswith("_")} for r in results],
        }
        (args.out / "flightload.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out / 'flightload.json'}")
        for p in plot(
            results, args.out, "flightload", GOAL_P99_MS, "Flight bridge beside busy containers"
        ):
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
