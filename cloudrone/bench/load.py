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
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import docker

from cloudrone.fleet import sim
from cloudrone.mission import deploy
from cloudrone.mission.model import Mission, load, reach
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

    def __init__(self, drone_id: str, period: float = 1.0) -> None:
        self.drone = CGROUP / "cpuacct" / "docker" / drone_id
        scopes = sorted(self.drone.rglob("docker-*.scope"))
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


def ab(pid: int, address: str, host: str, port: int, users: int, requests: int) -> dict[str, Any]:
    """One ``ab`` run from a phone's network namespace; per-request times from its TSV."""
    with tempfile.NamedTemporaryFile(suffix=".tsv") as tsv:
        proc = subprocess.run(
            ["nsenter", "-t", str(pid), "-n", "ab", "-q", "-r", "-s", str(TIMEOUT_S),
             "-n", str(requests), "-c", str(users), "-g", tsv.name, "-H", f"Host: {host}",
             f"http://{address}:{port}/"],
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
    failed = int(fields.get("Failed requests", "0"))
    if complete == 0 or failed >= complete:
        raise RuntimeError(f"ab: no request to http://{address}:{port}/ was answered "
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


def measure(bundle: Path, users: list[int], requests: int) -> dict[str, Any]:
    mission = load(bundle)
    _fleet_up(mission, bundle)
    service = next((s for s in mission.services if any(p.protocol == "tcp" for p in s.ports)), None)
    if service is None:
        raise SystemExit(f"{bundle}: no TCP service to load")
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
        ab(pid, address, host, port, 10, 500)  # warm-up
        runs = []
        for u in users:
            before = retransmitted(pid)
            sampler = Sampler(drone.id)
            dropped = listen_drops(sampler.web)
            try:
                with sampler:
                    result = ab(pid, address, host, port, u, requests)
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
            run = {
                "users": u,
                **result,
                "mean_ms": round(statistics.fmean(times), 1) if times else 0.0,
                "p50_ms": _quantile(times, 0.50),
                "p90_ms": _quantile(times, 0.90),
                "p99_ms": _quantile(times, 0.99),
                "max_ms": float(times[-1]) if times else 0.0,
                # the CDF at 200 points
                "cdf_ms": [_quantile(times, i / 200) for i in range(201)],
                **sampler.summary(),
            }
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
        "date": datetime.date.today().isoformat(),
        "mission": mission.name,
        "service": service.name,
        "name": host,
        "serving_drone": serving,
        "model": mission.drone(serving).model,
        "requests": requests,
        "cpus": os.cpu_count(),
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
        axes[1].plot(users, [r["drone_cpu_percent"] for r in done], "o" + styles[i % 2],
                     label=f"drone, {s['where']}")  # fmt: skip
        axes[1].plot(users, [r.get("web_cpu_percent", 0) for r in done],
                     "x" + styles[i % 2], label=f"web container, {s['where']}")  # fmt: skip
        axes[2].plot(users, [r["load1_mean"] for r in done], "o" + styles[i % 2],
                     label=s["where"])  # fmt: skip
    axes[0].set_xscale("log")
    axes[0].set_xlabel("response time (ms, log)")
    axes[0].set_ylabel("CDF")
    axes[0].set_title("(a) response time", fontsize=10)
    axes[0].legend(fontsize=6, ncol=2)
    axes[1].set_xlabel("concurrent users")
    axes[1].set_ylabel("CPU (% of the drone's one core)")
    axes[1].set_title("(b) CPU utilisation of the serving drone", fontsize=10)
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
    args = parser.parse_args(argv)
    result = measure(args.bundle, args.users, args.requests)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out / "load.png")
    print(f"wrote {args.out / 'load.json'} and {args.out / 'load.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
