"""The paper's stress test (its Figure 4), on a simulated fleet: many phones, one web container.

``sudo .venv/bin/python -m cloudrone.bench.load [BUNDLE] [--users 10 50 100 150 200 250]
[--requests 10000] [--out docs/bench]``

The mission (the demo by default) is brought up with ``cloudrone_cli mission
up`` if its drones are not running. Then, for each number of concurrent users,
Apache's ``ab`` sends the requests to the first web service, by the name
phones use, from two phones:

- the phone on the access point of the drone that runs the service (the
  paper's setup: users on the ground under the drone);
- the phone on the drone farthest from it, so every request crosses the mesh
  (in the demo, two radio hops).

``ab`` runs in the phone container's own network namespace (``nsenter -n``):
its packets leave from the phone's leased address on the access point, as a
phone's would. While it runs, the serving drone's CPU time (its cgroup: the
drone and the containers its engine runs, limited like a Pi 2 to one core)
and the web container's own CPU time and memory are sampled, with the
machine's load average. The load average is the shared kernel's, not the
drone's: simulated drones have no load average of their own.

Writes OUT/load.json and OUT/load.png (response-time CDFs, CPU utilisation,
load average) and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from cloudrone.fleet import sim
from cloudrone.mission import deploy
from cloudrone.mission.model import Mission, ServicePlan, load, reach
from cloudrone.mission.plan import fleet_spec
from cloudrone.paths import project_root

CGROUP = Path("/sys/fs/cgroup")
# ab's limit on one request; past it ab abandons the whole run
TIMEOUT_S = 30


class Abandoned(RuntimeError):
    """ab stopped a run: one request waited longer than TIMEOUT_S."""


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Sampler:
    """CPU time of a drone and of one container inside it, and the load average, once a second."""

    def __init__(self, drone_id: str, period: float = 1.0, web: str | None = None) -> None:
        self.drone = CGROUP / "cpuacct" / "docker" / drone_id
        scopes = sorted(self.drone.rglob(f"docker-{web or ''}*.scope"))
        self.web = scopes[0] if scopes else None
        self.memory = (
            CGROUP / "memory" / self.web.relative_to(CGROUP / "cpuacct") if self.web else None
        )
        self.period = period
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> dict[str, float]:
        sample = {
            "t": time.monotonic(),
            "drone_ns": _read_int(self.drone / "cpuacct.usage") or 0,
            "load1": os.getloadavg()[0],
        }
        if self.web is not None:
            sample["web_ns"] = _read_int(self.web / "cpuacct.usage") or 0
        if self.memory is not None:
            sample["web_bytes"] = _read_int(self.memory / "memory.usage_in_bytes") or 0
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._sample())
            self._stop.wait(self.period)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self._sample())

    def summary(self) -> dict[str, float]:
        first, last = self.samples[0], self.samples[-1]
        wall = last["t"] - first["t"]
        out = {
            # of the drone's one core (a Pi 2's share here): 100 % is the whole allowance
            "drone_cpu_percent": round(
                100 * (last["drone_ns"] - first["drone_ns"]) / 1e9 / wall, 1
            ),
            "load1_mean": round(statistics.fmean(s["load1"] for s in self.samples), 2),
            "load1_max": round(max(s["load1"] for s in self.samples), 2),
        }
        if "web_ns" in last:
            out["web_cpu_percent"] = round(100 * (last["web_ns"] - first["web_ns"]) / 1e9 / wall, 1)
        if "web_bytes" in last:
            out["web_memory_mib_max"] = round(max(s["web_bytes"] for s in self.samples) / 2**20, 1)
        return out


@dataclass(frozen=True)
class Ask:
    """What each request asks for: a path, and a byte range of it (a map tile)."""

    path: str = "/"
    range: str | None = None  # "START-END"

    def flags(self) -> list[str]:
        return ["-H", f"Range: bytes={self.range}"] if self.range else []


def ab(pid: int, address: str, host: str, port: int, users: int, requests: int,
       ask: Ask = Ask()) -> dict[str, Any]:  # fmt: skip
    """One ``ab`` run from a phone's network namespace; per-request times from its TSV."""
    with tempfile.NamedTemporaryFile(suffix=".tsv") as tsv:
        proc = subprocess.run(
            ["nsenter", "-t", str(pid), "-n", "ab", "-q", "-r", "-s", str(TIMEOUT_S),
             "-n", str(requests), "-c", str(users), "-g", tsv.name, "-H", f"Host: {host}",
             *ask.flags(), f"http://{address}:{port}{ask.path}"],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        if proc.returncode != 0 and "timeout specified has expired" in proc.stderr:
            raise Abandoned(f"a request waited more than {TIMEOUT_S} s; ab gave the run up")
        if proc.returncode != 0:
            raise RuntimeError(f"ab failed (exit {proc.returncode}): {proc.stderr.strip()}")
        # starttime, seconds, ctime, dtime, ttime, wait (ms)
        rows = [line.split("\t") for line in Path(tsv.name).read_text().splitlines()[1:]]
    times = sorted(int(r[4]) for r in rows if len(r) >= 6)
    fields = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    complete = int(fields.get("Complete requests", "0"))
    # a status other than 2xx (a 404 for a wrong path, say) counts as failed
    failed = int(fields.get("Failed requests", "0")) + int(fields.get("Non-2xx responses", "0"))
    if complete == 0 or failed >= complete:
        raise RuntimeError(f"ab: no request to http://{address}:{port}{ask.path} was answered "
                           f"({failed} failed); is the service up?")  # fmt: skip
    return {
        "complete": complete,
        "failed": failed,
        "requests_per_s": float(fields.get("Requests per second", "0 ").split()[0]),
        "bytes_per_response": int(fields.get("Document Length", "0 ").split()[0]),
        "ms": times,
    }


def retransmitted(pid: int) -> int:
    """TCP segments the phone has sent again (its own network namespace's counters)."""
    text = subprocess.run(["nsenter", "-t", str(pid), "-n", "cat", "/proc/net/snmp"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    tcp = [line.split() for line in text.splitlines() if line.startswith("Tcp:")]
    return int(dict(zip(tcp[0], tcp[1], strict=True))["RetransSegs"])


def listen_drops(scope: Path | None) -> int | None:
    """Connections the web container's kernel dropped because its accept queue was full."""
    if scope is None:
        return None
    try:
        pid = (scope / "cgroup.procs").read_text().split()[0]
        text = Path(f"/proc/{pid}/net/netstat").read_text()
    except (OSError, IndexError):
        return None
    ext = [line.split() for line in text.splitlines() if line.startswith("TcpExt:")]
    return int(dict(zip(ext[0], ext[1], strict=True))["ListenOverflows"])


def _quantile(values: list[int], q: float) -> float:
    return float(values[min(len(values) - 1, int(q * len(values)))]) if values else 0.0


def _fleet_up(mission: Mission, bundle: Path) -> None:
    if all(d["state"] == "running" for d in sim.SimFleet(fleet_spec(mission)).describe()):
        return
    print(f"==> cloudrone_cli mission up {bundle} (the fleet is not running)")
    cli = Path(sys.executable).with_name("cloudrone_cli")
    subprocess.run([str(cli), "mission", "up", str(bundle)], check=True)


def _farthest(mission: Mission, drone: str) -> tuple[str, int]:
    """The drone most radio hops from ``drone`` (in its part of the mesh), and the hops."""
    names = [drone, *(d.name for d in mission.drones if d.name != drone)]
    in_range = mission.radio.in_range
    if in_range is None:  # every drone hears every other
        in_range = {frozenset((drone, n)): 0 for n in names[1:]}
    found = reach(names, in_range)
    ours = [n for n in names if found[n][0] == 0]
    far = max(ours, key=lambda n: found[n][1])
    return far, found[far][1]


def _service(mission: Mission, bundle: Path, name: str | None) -> ServicePlan:
    tcp = [s for s in mission.services if any(p.protocol == "tcp" for p in s.ports)]
    chosen = next((s for s in tcp if name in (None, s.name)), None)
    if chosen is None:
        have = ", ".join(s.name for s in tcp) or "none"
        raise SystemExit(f"{bundle}: no TCP service {name or ''} to load (it has: {have})")
    return chosen


def _web_container(drone: Any, mission: Mission, service: ServicePlan) -> str | None:
    """The id of the service's container in the drone's own engine."""
    label = f"com.docker.swarm.service.name={mission.name}_{service.name}"
    code, out = drone.exec_run(["docker", "ps", "-q", "--no-trunc", "--filter", f"label={label}"])
    ids = out.decode().split() if code == 0 else []
    return ids[0] if ids else None


RESOLVE = (
    "import socket, sys; print(' '.join(dict.fromkeys(a[4][0] for a in "
    "socket.getaddrinfo(sys.argv[1], 80, socket.AF_INET, socket.SOCK_STREAM))))"
)


def resolved(phone: sim.Phone, host: str) -> list[str]:
    """The addresses a phone's resolver gives for ``host``, in its order."""
    code, out = phone.sh(f'python3 -c "{RESOLVE}" {host}')
    return out.split() if code == 0 else []


def _about(mission: Mission, service: ServicePlan, host: str, ask: Ask, requests: int,
           serving: list[str]) -> dict[str, Any]:  # fmt: skip
    """What a result file says it measured, before its series."""
    return {
        "date": datetime.date.today().isoformat(),
        "mission": mission.name,
        "service": service.name,
        "name": host,
        "path": ask.path,
        "range": ask.range,
        "serving_drone": " and ".join(serving),
        "model": "/".join(sorted({mission.drone(n).model for n in serving})),
        "requests": requests,
        "cpus": os.cpu_count(),
    }


def _run_record(u: int, result: dict[str, Any], times: list[int], summary: dict) -> dict:
    return {
        "users": u,
        **result,
        "mean_ms": round(statistics.fmean(times), 1) if times else 0.0,
        "p50_ms": _quantile(times, 0.50),
        "p90_ms": _quantile(times, 0.90),
        "p99_ms": _quantile(times, 0.99),
        "max_ms": float(times[-1]) if times else 0.0,
        # the CDF at 200 points
        "cdf_ms": [_quantile(times, i / 200) for i in range(201)],
        **summary,
    }


def measure_spread(
    bundle: Path, users: list[int], requests: int, name: str | None, ask: Ask
) -> dict[str, Any]:
    """Every phone at once, each to the replica its own resolver gives first: how
    a crowd spread over the camp shares a service of several replicas by name."""
    mission = load(bundle)
    _fleet_up(mission, bundle)
    service = _service(mission, bundle, name)
    spec = fleet_spec(mission)
    client = docker.from_env()
    serving = [d.name for d in mission.service_drones(service)]
    drones = {n: client.containers.get(spec.container_name(n)) for n in serving}
    image = next(iter(drones.values())).image.tags[0]
    phones = deploy.ensure_phones(mission, image, print)
    port = next(p for p in service.ports if p.protocol == "tcp").published
    host = f"{service.dns}.{mission.access_point.domain}"
    given: dict[str, tuple[str, int]] = {}
    for on, phone in phones.items():
        deploy.ensure_lease(phone, mission, on, print)
        addresses = resolved(phone, host)
        if not addresses:
            raise SystemExit(f"{phone.name} cannot resolve {host}")
        phone.container.reload()
        given[on] = (addresses[0], phone.container.attrs["State"]["Pid"])
        ab(given[on][1], given[on][0], host, port, 4, 200, ask)  # warm-up
    print(f"  each phone's first address for {host}: "
          + ", ".join(f"{on} -> {a}" for on, (a, _) in given.items()))  # fmt: skip
    by_address = {str(d.mesh_address): d.name for d in mission.drones}
    runs = []
    for u in users:
        share = max(1, round(u / len(phones)))
        results: dict[str, Any] = {}
        samplers = {
            n: Sampler(c.id, web=_web_container(c, mission, service)) for n, c in drones.items()
        }

        def one(on: str, address: str, pid: int, share: int, results: dict) -> None:
            try:
                results[on] = ab(pid, address, host, port, share, requests // len(phones), ask)
            except (Abandoned, RuntimeError) as exc:
                results[on] = {"abandoned": str(exc)}

        threads = [
            threading.Thread(target=one, args=(on, a, pid, share, results))
            for on, (a, pid) in given.items()
        ]
        with contextlib.ExitStack() as sampling:
            for sampler in samplers.values():
                sampling.enter_context(sampler)
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.monotonic() - started
        done = {on: r for on, r in results.items() if "abandoned" not in r}
        times = sorted(t for r in done.values() for t in r["ms"])
        complete = sum(r["complete"] for r in done.values())
        per_replica: dict[str, int] = {}
        for on, r in done.items():
            drone = by_address.get(given[on][0], given[on][0])
            per_replica[drone] = per_replica.get(drone, 0) + r["complete"]
        result = {
            "complete": complete,
            "failed": sum(r["failed"] for r in done.values()),
            "abandoned_phones": sorted(set(results) - set(done)),
            "requests_per_s": round(complete / wall, 1),
            "per_replica": per_replica,
        }
        each = {n: smp.summary() for n, smp in samplers.items()}
        summary = {
            "replicas_cpu": each,  # per serving drone: its CPU, its container's CPU and memory
            "drone_cpu_percent": max(e["drone_cpu_percent"] for e in each.values()),
            "load1_mean": max(e["load1_mean"] for e in each.values()),
        }
        run = _run_record(u, result, times, summary)
        runs.append(run)
        print(f"  {'all phones':16} {u:>4} users: {run['requests_per_s']:>7.0f} req/s, "
              f"median {run['p50_ms']:>5.0f} ms, p99 {run['p99_ms']:>5.0f} ms, "
              f"failed {run['failed']}, by replica {per_replica}, "
              f"busiest drone CPU {run['drone_cpu_percent']:>5.1f} %")  # fmt: skip
        time.sleep(2)
    return {
        **_about(mission, service, host, ask, requests, serving),
        "series": [{"where": "every phone at once, by name", "phones": sorted(given),
                    "given": {on: a for on, (a, _) in given.items()}, "mesh_hops": None,
                    "runs": runs}],
    }  # fmt: skip


def measure(
    bundle: Path, users: list[int], requests: int, name: str | None = None, ask: Ask = Ask()
) -> dict[str, Any]:
    mission = load(bundle)
    _fleet_up(mission, bundle)
    service = _service(mission, bundle, name)
    serving = mission.service_drones(service)[0].name
    far, hops = _farthest(mission, serving)
    drone = docker.from_env().containers.get(fleet_spec(mission).container_name(serving))
    phones = deploy.ensure_phones(mission, drone.image.tags[0], print)
    port = next(p for p in service.ports if p.protocol == "tcp").published
    host = f"{service.dns}.{mission.access_point.domain}"
    series = []
    for where, on, radio_hops in (
        ("under the drone", serving, 0),
        ("across the mesh", far, hops),
    ):
        phone = phones[on]
        deploy.ensure_lease(phone, mission, on, print)
        found = deploy.fetch(phone, mission, on, service)
        if not found.ok:
            raise SystemExit(f"{phone.name} cannot reach {host}: {found.line()}")
        address = found.detail["addresses"][0]
        phone.container.reload()
        pid = phone.container.attrs["State"]["Pid"]
        ab(pid, address, host, port, 10, 500, ask)  # warm-up
        web = _web_container(drone, mission, service)
        runs = []
        for u in users:
            before = retransmitted(pid)
            sampler = Sampler(drone.id, web=web)
            dropped = listen_drops(sampler.web)
            try:
                with sampler:
                    result = ab(pid, address, host, port, u, requests, ask)
            except Abandoned as exc:
                resent = retransmitted(pid) - before
                runs.append({"users": u, "abandoned": str(exc),
                             "phone_retransmitted_segments": resent})  # fmt: skip
                print(f"  {where:16} {u:>4} users: {exc}")
                time.sleep(5)
                continue
            result["phone_retransmitted_segments"] = retransmitted(pid) - before
            after = listen_drops(sampler.web)
            if dropped is not None and after is not None:
                result["web_listen_overflows"] = after - dropped
            times = result.pop("ms")
            run = _run_record(u, result, times, sampler.summary())
            runs.append(run)
            print(f"  {where:16} {u:>4} users: {run['requests_per_s']:>7.0f} req/s, "
                  f"median {run['p50_ms']:>5.0f} ms, p99 {run['p99_ms']:>5.0f} ms, "
                  f"failed {run['failed']}, resent {run['phone_retransmitted_segments']}, "
                  f"accept queue full {run.get('web_listen_overflows', '?')} times, "
                  f"drone CPU {run['drone_cpu_percent']:>5.1f} %, "
                  f"load {run['load1_mean']:.2f}")  # fmt: skip
            time.sleep(2)
        series.append({"where": where, "phone_on": on, "mesh_hops": radio_hops,
                       "address": address, "runs": runs})  # fmt: skip
    return {
        **_about(mission, service, host, ask, requests, [serving]),
        "series": series,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    styles = {0: "-", 1: "--"}
    for i, s in enumerate(result["series"]):
        done = [r for r in s["runs"] if "abandoned" not in r]
        for run in done:
            cdf = run["cdf_ms"]
            axes[0].plot(cdf, [j / 200 for j in range(len(cdf))], styles[i % 2],
                         label=f"{run['users']} users, {s['where']}", lw=1)  # fmt: skip
        users = [r["users"] for r in done]
        # one drone, or (a service of several replicas) each serving drone
        per_drone = sorted(done[0].get("replicas_cpu", {"": None})) if done else []
        for j, drone in enumerate(per_drone):
            cpu = [r["replicas_cpu"][drone] if drone else r for r in done]
            style = styles[(i + j) % 2]
            named = f"{drone}, " if drone else ""
            axes[1].plot(users, [c["drone_cpu_percent"] for c in cpu], "o" + style,
                         label=f"{named}drone, {s['where']}")  # fmt: skip
            axes[1].plot(users, [c.get("web_cpu_percent", 0) for c in cpu],
                         "x" + style, label=f"{named}web container, {s['where']}")  # fmt: skip
        axes[2].plot(users, [r["load1_mean"] for r in done], "o" + styles[i % 2],
                     label=s["where"])  # fmt: skip
    axes[0].set_xscale("log")
    axes[0].set_xlabel("response time (ms, log)")
    axes[0].set_ylabel("CDF")
    axes[0].set_title("(a) response time", fontsize=10)
    axes[0].legend(fontsize=6, ncol=2)
    axes[1].set_xlabel("concurrent users")
    axes[1].set_ylabel("CPU (% of the drone's one core)")
    axes[1].set_title("(b) CPU utilisation of the serving drone(s)", fontsize=10)
    axes[1].legend(fontsize=7)
    axes[2].set_xlabel("concurrent users")
    axes[2].set_ylabel("1-minute load average (whole machine)")
    axes[2].set_title("(c) load", fontsize=10)
    axes[2].legend(fontsize=7)
    fig.suptitle(
        f"ab, {result['requests']} requests per run, against {result['name']} on a simulated "
        f"{result['model']} ({result['cpus']}-core machine)"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudrone.bench.load")
    parser.add_argument("bundle", nargs="?", type=Path,
                        default=project_root() / "missions" / "demo")  # fmt: skip
    parser.add_argument("--users", type=int, nargs="+", default=[10, 50, 100, 150, 200, 250])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--out", type=Path, default=project_root() / "docs" / "bench")
    parser.add_argument("--service", help="the service to load (default: the first TCP one)")
    parser.add_argument("--path", default="/", help="what each request asks for (default /)")
    parser.add_argument("--range", help="START-END: ask for these bytes of it (a map tile)")
    parser.add_argument(
        "--spread", action="store_true", help="every phone at once, each to its first replica"
    )
    parser.add_argument("--label", default="load", help="the files' name: LABEL.json, LABEL.png")
    args = parser.parse_args(argv)
    ask = Ask(args.path, args.range)
    if args.spread:
        result = measure_spread(args.bundle, args.users, args.requests, args.service, ask)
    else:
        result = measure(args.bundle, args.users, args.requests, args.service, ask)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.label}.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out / f"{args.label}.png")
    print(f"wrote {args.out / args.label}.json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
