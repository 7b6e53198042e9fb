"""Density benchmark: how many tiny web servers one Pi 2 drone (1 GiB) holds.

    python -m cloudrone.bench.density [--profiles dense,standard] [--out docs/bench] [--max N]

The Cloudrone paper (its Figure 3) started nano web servers on a Raspberry Pi 2
until memory ran out: 2408 containers, 2.79 s mean creation. This command does
the same on ONE simulated drone (fleet ``bench-density``, ``memory: 1g``),
provisioned by the real roles with ``ansible-playbook`` (as last committed):
base's packages and firewall, then docker_engine with ``-e
docker_engine_profile=...``. Each profile gets a freshly made drone: a drone
whose memory ran out thrashes, and removing its containers takes minutes.

For each profile it starts ``cloudrone/tinyweb`` (busybox httpd, 2 MB) with
``docker run -d --network host`` inside the drone, each server on its own port
(the paper ran its servers with net=host too), one after the other, timing each
``docker run`` inside the drone. After every container it reads the drone's
memory cgroup (usage, and usage less inactive page cache: the working set) and
its CPU time from the host; every ``--checkpoint`` containers it also waits a
moment for the idle CPU, and splits the memory by the drone's cgroups
(containerd.service, where the shims live; docker.service; the services slice,
where the servers run) and by process (RSS and PSS of every containerd shim
and web server). It stops when a ``docker run`` fails or does not return
within 120 s, the drone's cgroup reports an OOM kill, ``--slow-runs`` runs
have taken ``--slow`` seconds or more (the drone thrashes), or at ``--max``.

It prints the figures and writes ``<out>/density.json`` and the plots
``<out>/density-memory.png``, ``-cpu.png``, ``-creation.png``, ``-cumulative.png``.
Before the first fill, on the fresh drone, two runs show what a lighter
service would cost: one container running ``--bundle`` servers (one shim for
all), and ``--grouped`` containers started on containerd directly, once with a
shim each and once sharing one shim (containerd's group annotation, which
Docker 20.10 cannot set). ``--profiles ""`` runs only these and writes
``<out>/density-lighter.json``.
The fleet is taken down at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudrone.bench.lab import run
from cloudrone.fleet import sim, tinyweb
from cloudrone.flight.rt import percentile
from cloudrone.paths import project_root

FLEET = "bench-density"
DRONE = "drone-d1"
MGMT = "10.248.0.0/24"
ADDRESS = "10.248.0.11"
MEMORY = "1g"
SLICE = "cloudrone-services.slice"
# The inner engine keeps clear of every network on the host.
INNER = {
    "docker_engine_bip": "172.31.254.1/24",
    "docker_engine_address_pools": [{"base": "172.30.0.0/16", "size": 24}],
}
FIRST_PORT = 20000
MIB = 1024 * 1024
SAMPLE_COLUMNS = ["containers", "t_s", "usage_bytes", "working_set_bytes",
                  "cpu_percent_while_creating", "creation_s", "unreclaimable_bytes",
                  "page_cache_bytes"]  # fmt: skip
# Below this share of the limit the kernel has not started reclaiming page cache:
# the working set grows by what a container really adds.
NO_PRESSURE = 0.8
PAPER = {"containers": 2408, "creation_mean_s": 2.79, "board": "Raspberry Pi 2 (1 GiB)"}

PLAYBOOK = """\
- name: Density bench | base packages and firewall, then the engine
  hosts: drones
  gather_facts: true
  tasks:
    - name: Density bench | The base role's settings for Debian
      ansible.builtin.include_vars: {roles}/base/vars/Debian.yml
    - name: Density bench | Packages (through the base camp's apt cache)
      ansible.builtin.include_role: {{name: base, tasks_from: packages.yml}}
    - name: Density bench | The firewall later roles add to
      ansible.builtin.include_role: {{name: base, tasks_from: firewall.yml}}
    - name: Density bench | The engine
      ansible.builtin.include_role: {{name: docker_engine}}
"""

# One container's creation, timed inside the drone; one line back per run.
RUN_ONE = (
    "s=$(date +%s%N); "
    "o=$(timeout 120 docker run -d --network host --name dn-{i} {image} -p {port} 2>&1); "
    'r=$?; e=$(date +%s%N); echo "R {i} $r $s $e $(echo "$o" | tr "\\n" " " | cut -c1-300)"\n'
)


# --- pure helpers (tested in tests/unit/test_density.py) ---------------------------
def creation_stats(seconds: list[float]) -> dict[str, float]:
    """Mean, min, max, median, p95 and the cumulative sum of creation times (s)."""
    if not seconds:
        return {"mean_s": 0.0, "min_s": 0.0, "max_s": 0.0, "p50_s": 0.0, "p95_s": 0.0,
                "cumulative_s": 0.0}  # fmt: skip
    ordered = sorted(seconds)
    return {
        "mean_s": round(sum(seconds) / len(seconds), 3),
        "min_s": round(ordered[0], 3),
        "max_s": round(ordered[-1], 3),
        "p50_s": round(percentile(ordered, 50), 3),
        "p95_s": round(percentile(ordered, 95), 3),
        "cumulative_s": round(sum(seconds), 1),
    }


def slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line through (xs, ys): (slope, intercept)."""
    n = len(xs)
    if n < 2:
        raise ValueError("a line needs two points")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("the points share one x")
    k = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return k, my - k * mx


def predicted_limit(limit: float, baseline: float, per_container: float) -> int:
    """How many containers fit in ``limit`` when ``baseline`` is taken and each adds
    ``per_container`` (same unit)."""
    if per_container <= 0:
        raise ValueError("a container must cost something")
    return max(0, int((limit - baseline) // per_container))


def parse_run_line(line: str) -> dict[str, Any] | None:
    """``R <i> <rc> <start ns> <end ns> <output>`` -> fields; None for other lines."""
    parts = line.strip().split(" ", 5)
    if len(parts) < 5 or parts[0] != "R":
        return None
    i, rc, start, end = (int(p) for p in parts[1:5])
    return {"i": i, "rc": rc, "seconds": (end - start) / 1e9,
            "output": parts[5].strip() if len(parts) > 5 else ""}  # fmt: skip


def smaps_rollup(text: str) -> dict[str, int]:
    """Rss, Pss and private memory in bytes from /proc/PID/smaps_rollup."""
    found = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty") and rest.strip():
            found[key] = int(rest.split()[0]) * 1024
    found["Private"] = found.pop("Private_Clean", 0) + found.pop("Private_Dirty", 0)
    return found


# --- the drone's cgroups, read from the host ---------------------------------------
@dataclass
class Cgroups:
    """The drone container's memory and CPU cgroups (cgroup v1) and those inside it."""

    memory: Path
    cpu: Path
    engine_slice: str = SLICE
    _slice: Path | None = field(default=None, repr=False)

    @classmethod
    def of(cls, container_id: str) -> Cgroups:
        root = Path("/sys/fs/cgroup")
        memory = root / "memory" / "docker" / container_id
        cpu = next(
            (p for p in (root / "cpu,cpuacct" / "docker" / container_id,
                         root / "cpuacct" / "docker" / container_id) if p.exists()),
            root / "cpuacct" / "docker" / container_id,
        )  # fmt: skip
        if not memory.exists():
            raise sim.FleetError(f"no memory cgroup {memory}: this benchmark needs cgroup v1")
        return cls(memory, cpu)

    @staticmethod
    def stat(path: Path) -> dict[str, int]:
        pairs = (line.split() for line in (path / "memory.stat").read_text().splitlines())
        return {k: int(v) for k, v in pairs}

    def read(self, name: str, where: Path | None = None) -> int:
        return int(((where or self.memory) / name).read_text().split()[0])

    def oom_kills(self) -> int:
        for line in (self.memory / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def cpu_ns(self) -> int:
        return int((self.cpu / "cpuacct.usage").read_text())

    def memory_now(self) -> dict[str, int]:
        usage = self.read("memory.usage_in_bytes")
        st = self.stat(self.memory)
        return {
            "usage": usage,
            "working_set": usage - st.get("total_inactive_file", 0),
            "rss": st.get("total_rss", 0),
            "cache": st.get("total_cache", 0),
            "kmem": self.read("memory.kmem.usage_in_bytes"),
            # what reclaim cannot free (no swap): process memory, tmpfs, the kernel's
            "unreclaimable": st.get("total_rss", 0)
            + st.get("total_shmem", 0)
            + self.read("memory.kmem.usage_in_bytes"),
        }

    def services_slice(self) -> Path | None:
        if self._slice is None:
            found = sorted(self.memory.rglob(self.engine_slice))
            self._slice = found[0] if found else None
        return self._slice

    def parts(self) -> dict[str, dict[str, int]]:
        """Memory of the cgroups inside the drone that grow with the containers."""
        places = {
            "containerd.service (shims)": self.memory / "system.slice" / "containerd.service",
            "docker.service (dockerd)": self.memory / "system.slice" / "docker.service",
            f"{self.engine_slice} (web servers)": self.services_slice(),
        }
        out = {}
        for name, path in places.items():
            if path is None or not path.exists():
                continue
            st = self.stat(path)
            usage = self.read("memory.usage_in_bytes", path)
            out[name] = {
                "usage": usage,
                "working_set": usage - st.get("total_inactive_file", 0),
                "rss": st.get("total_rss", 0),
                "kmem": self.read("memory.kmem.usage_in_bytes", path),
            }
        return out

    def processes(self) -> dict[str, dict[str, float]]:
        """RSS and PSS of the containerd shims and the web servers (host /proc)."""
        groups: dict[str, list[dict[str, int]]] = {"containerd-shim": [], "httpd": []}
        for procs in self.memory.rglob("cgroup.procs"):
            for pid in procs.read_text().split():
                try:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    key = (
                        "containerd-shim"
                        if comm.startswith("containerd-shim")
                        else "httpd"
                        if b"httpd" in cmdline[:2] or comm == "httpd"
                        else None
                    )
                    if key is None:
                        continue
                    groups[key].append(smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text()))
                except (OSError, ValueError):
                    continue  # the process ended while we looked
        out = {}
        for key, rows in groups.items():
            if rows:
                out[key] = {
                    "count": len(rows),
                    "rss_mib_mean": round(sum(r["Rss"] for r in rows) / len(rows) / MIB, 3),
                    "pss_mib_mean": round(sum(r["Pss"] for r in rows) / len(rows) / MIB, 3),
                    "private_mib_mean": round(sum(r["Private"] for r in rows) / len(rows) / MIB, 3),
                    "pss_mib_total": round(sum(r["Pss"] for r in rows) / MIB, 1),
                }
        return out


# --- the drone ---------------------------------------------------------------------
class Drone:
    """The one simulated drone: provisioned, with a shell that starts containers."""

    def __init__(
        self,
        workdir: Path,
        log=print,
        *,
        fleet: str = FLEET,
        drone: str = DRONE,
        subnet: str = MGMT,
        address: str = ADDRESS,
        memory: str = MEMORY,
        playbook: str = PLAYBOOK,
    ) -> None:
        self.workdir = workdir
        self.log = log
        self.drone, self.address, self.playbook = drone, address, playbook
        link = {"name": "mgmt", "subnet": subnet, "address": address}
        platforms = [{"name": drone, "memory": memory, "links": [link]}]
        self.spec = sim.spec_from_platforms(fleet, platforms)
        self.fleet = sim.SimFleet(self.spec, log=log)
        self.name = self.spec.container_name(drone)
        self.shell: subprocess.Popen[str] | None = None
        self.cg: Cgroups | None = None
        self.source = ""

    def up(self) -> None:
        from cloudrone.fleet import image as image_mod

        self.fleet.up(image_mod.ensure(log=self.log))
        cid = self.fleet.client.containers.get(self.name).id
        self.cg = Cgroups.of(cid)

    def close(self, keep: bool = False) -> None:
        """Take the drone's fleet down, or leave it up (``keep``), saying which."""
        fleet = self.spec.fleet
        if keep:
            print(f"  fleet {fleet} left up (--keep)")
        else:
            sim.down(fleet, log=lambda _m: None)
            print(f"  fleet {fleet} taken down", flush=True)

    def sh(self, command: str, timeout: float = 300, stdin: Path | None = None) -> str:
        """Run ``command`` in the drone (``stdin`` from a file); its output."""
        if stdin is None:
            return run("docker", "exec", self.name, "sh", "-c", command, timeout=timeout).stdout
        cmd = ["docker", "exec", "-i", self.name, "sh", "-c", command]
        with stdin.open("rb") as f:
            done = subprocess.run(cmd, stdin=f, capture_output=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed: {done.stderr.decode().strip()}")
        return done.stdout.decode()

    def roles(self) -> Path:
        """The roles and filters as last committed (a clean snapshot, so that edits in
        progress in the working tree do not change what is measured), or the working
        tree when this is no git checkout. Records which in ``self.source``."""
        root, tree = project_root(), self.workdir / "tree"
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True)  # fmt: skip
        if commit.returncode != 0:
            self.source = "working tree"
            return root
        if not tree.exists():
            tree.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(root), "archive", "HEAD", "roles", "plugins"],
                capture_output=True, check=True,
            )  # fmt: skip
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        self.source = f"commit {commit.stdout.strip()}"
        return tree

    def provision(self, profile: str, extra: dict[str, Any] | None = None, log: str = "") -> float:
        """The real roles with ansible-playbook (``extra``: more variables, as -e);
        returns how long it took."""
        root = self.roles()
        gateway = self.spec.links[0].gateway
        inventory = {
            "drones": {
                "hosts": {
                    self.drone: {
                        "ansible_connection": "community.docker.docker",
                        "ansible_host": self.name,
                        "ansible_user": "root",
                        "ansible_python_interpreter": "/usr/bin/python3",
                        "cloudrone_simulated": True,
                        "cloudrone_management_address": self.address,
                        "base_apt_proxy": f"http://{gateway}:3142",
                        **INNER,
                    }
                }
            }
        }
        (self.workdir / "inventory.json").write_text(json.dumps(inventory))
        (self.workdir / "bench.yml").write_text(self.playbook.format(roles=root / "roles"))
        (self.workdir / "extra.json").write_text(
            json.dumps({"docker_engine_profile": profile, **(extra or {})})
        )
        env = {
            **os.environ,
            "ANSIBLE_ROLES_PATH": str(root / "roles"),
            "ANSIBLE_FILTER_PLUGINS": str(root / "plugins" / "filter"),
            "ANSIBLE_ACTION_PLUGINS": str(root / "plugins" / "action"),
            "ANSIBLE_HOST_KEY_CHECKING": "false",
        }
        playbook = Path(sys.executable).with_name("ansible-playbook")
        start = time.monotonic()
        done = subprocess.run(
            [str(playbook), "-i", "inventory.json", "bench.yml", "-e", "@extra.json"],
            cwd=self.workdir, env=env, capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        (self.workdir / f"provision-{log or profile}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(
                f"provisioning ({log or profile}) failed:\n{(done.stdout + done.stderr)[-4000:]}"
            )
        return time.monotonic() - start

    def engine(self) -> dict[str, str]:
        fmt = "{{.ServerVersion}} {{.CgroupDriver}} {{.LoggingDriver}} {{.Driver}}"
        version, driver, logs, storage = self.sh(f"docker info --format '{fmt}'").split()
        shim = self.sh("containerd-shim-runc-v2 -v 2>/dev/null | head -1 || true").strip()
        runc = self.sh("runc --version | head -1").strip()
        return {"engine": version, "cgroup_driver": driver, "log_driver": logs,
                "storage_driver": storage, "shim": shim, "runc": runc}  # fmt: skip

    def remove_all(self) -> None:
        self.sh("docker ps -aq | xargs -r -n 50 docker rm -f >/dev/null", timeout=900)
        left = self.sh("docker ps -aq | wc -l").strip()
        if left != "0":
            raise RuntimeError(f"{left} containers are left after removing them all")

    def open_shell(self) -> subprocess.Popen[str]:
        self.shell = subprocess.Popen(
            ["docker", "exec", "-i", self.name, "sh"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1,
        )  # fmt: skip
        return self.shell

    def close_shell(self) -> None:
        if self.shell is not None:
            with contextlib.suppress(OSError):
                self.shell.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.shell.wait(10)
            if self.shell.poll() is None:
                self.shell.kill()
            self.shell = None


# --- one profile -------------------------------------------------------------------
def idle_cpu(cg: Cgroups, seconds: float) -> float:
    """The drone's CPU use over ``seconds`` of doing nothing, in percent of one core."""
    c0, t0 = cg.cpu_ns(), time.monotonic()
    time.sleep(seconds)
    return round((cg.cpu_ns() - c0) / 1e9 / (time.monotonic() - t0) * 100, 2)


def checkpoint(drone: Drone, count: int, idle: float) -> dict[str, Any]:
    cg = drone.cg
    assert cg is not None
    cpu = idle_cpu(cg, idle)
    free = drone.sh("free -b | awk '/^Mem:/{print $2, $3, $7}'").split()
    return {
        "containers": count,
        "idle_cpu_percent": cpu,
        "memory": cg.memory_now(),
        "parts": cg.parts(),
        "processes": cg.processes(),
        # without lxcfs, free inside a container reports the host's memory
        "free_inside": dict(zip(("total", "used", "available"), map(int, free), strict=False)),
    }


def fill(
    drone: Drone, image: str, maximum: int, every: int, idle: float, slow: tuple[float, int]
) -> dict[str, Any]:
    """Start containers until one fails, memory runs out, or ``maximum``.

    Memory has run out when the cgroup OOM-kills, or when ``slow[1]`` runs have
    taken ``slow[0]`` seconds or more each: by then the kernel is evicting the
    engine's own code from the page cache (the drone thrashes) and every further
    run takes longer. One slow run alone can be a passing spike.
    """
    slow_s, slow_runs = slow
    slowed = 0
    cg = drone.cg
    assert cg is not None
    time.sleep(idle)  # the engine settles after its restart
    base = checkpoint(drone, 0, idle)
    limit = cg.read("memory.limit_in_bytes")
    oom0 = cg.oom_kills()
    shell = drone.open_shell()
    samples: list[list[float]] = []  # count, t, usage, working set, cpu %, seconds
    runs: list[float] = []
    checkpoints = [base]
    stop = f"--max {maximum} reached"
    failure = ""
    start = time.monotonic()
    cpu_prev, t_prev = cg.cpu_ns(), start
    try:
        for i in range(1, maximum + 1):
            assert shell.stdin is not None and shell.stdout is not None
            shell.stdin.write(RUN_ONE.format(i=i, image=image, port=FIRST_PORT + i))
            shell.stdin.flush()
            line = _readline(shell)
            result = parse_run_line(line)
            now = time.monotonic()
            cpu_now = cg.cpu_ns()
            mem = cg.memory_now()
            ooms = cg.oom_kills() - oom0
            if result is None:
                stop, failure = "the drone's shell stopped answering", line.strip()
                break
            cpu = (cpu_now - cpu_prev) / 1e9 / (now - t_prev) * 100
            cpu_prev, t_prev = cpu_now, now
            if result["rc"] != 0:
                stop, failure = f"docker run #{i} failed", result["output"]
                break
            runs.append(result["seconds"])
            samples.append([i, round(now - start, 2), mem["usage"], mem["working_set"],
                            round(cpu, 1), round(result["seconds"], 3), mem["unreclaimable"],
                            mem["cache"]])  # fmt: skip
            if ooms:
                stop = f"memory ran out: the drone's cgroup OOM-killed {ooms} process(es)"
                break
            slowed += result["seconds"] >= slow_s
            if slowed >= slow_runs:
                stop = (
                    f"memory ran out: thrashing, {slowed} runs took {slow_s:g} s or more, "
                    f"#{i} {result['seconds']:.1f} s with {mem['cache'] / MIB:.0f} MiB "
                    "of page cache left"
                )
                break
            if i % 25 == 0:
                print(f"    {i} containers, working set {mem['working_set'] / MIB:.0f} MiB, "
                      f"last run {result['seconds']:.2f} s", flush=True)  # fmt: skip
            if i % every == 0:
                checkpoints.append(checkpoint(drone, i, idle))
    finally:
        drone.close_shell()
    reached = len(runs)
    with contextlib.suppress(Exception):
        if reached and checkpoints[-1]["containers"] != reached:
            checkpoints.append(checkpoint(drone, reached, idle))
    answering = _answering(drone, reached)
    return {
        "reached": reached,
        "stop": stop,
        "failure": failure,
        "oom_kills": cg.oom_kills() - oom0,
        "limit_bytes": limit,
        "wall_s": round(time.monotonic() - start, 1),
        "creation": creation_stats(runs),
        "answering": answering,
        "checkpoints": checkpoints,
        "samples": samples,
    }


def _readline(shell: subprocess.Popen[str]) -> str:
    """The next line that reports a run, or EOF when the shell died (each run is bounded
    by ``timeout`` in the drone, so this read is too)."""
    assert shell.stdout is not None
    while True:
        line = shell.stdout.readline()
        if not line:
            return "EOF"
        if line.startswith("R "):
            return line


def _answering(drone: Drone, reached: int) -> dict[str, int]:
    """Ask a spread of the started servers for their page, on the drone's loopback."""
    if not reached:
        return {"asked": 0, "answered": 0}
    picks = sorted({1, reached, *range(1, reached + 1, max(1, reached // 8))})
    script = "; ".join(
        f"curl -sf -m 3 -o /dev/null http://127.0.0.1:{FIRST_PORT + i}/ && echo ok" for i in picks
    )
    with contextlib.suppress(Exception):
        out = drone.sh(script, timeout=120)
        return {"asked": len(picks), "answered": out.split().count("ok")}
    return {"asked": len(picks), "answered": 0}


def summarise(profile: str, r: dict[str, Any]) -> dict[str, Any]:
    """Per-container cost, the ceiling it sets, and where the memory goes.

    The ceiling is where the memory nothing can reclaim (process memory, tmpfs, the
    kernel's own) would fill the drone: the count if the page cache could shrink to
    nothing. It cannot (the engine's code runs from it), so a run stops a little below.
    """
    rows, limit = r["samples"], r["limit_bytes"]
    first, last = r["checkpoints"][0], r["checkpoints"][-1]
    n = last["containers"]
    out: dict[str, Any] = {"profile": profile, "reached": r["reached"], "stop": r["stop"]}
    if len(rows) >= 10:
        calm = [row for row in rows if row[2] < NO_PRESSURE * limit] or rows
        per_ws, _ = slope([row[0] for row in calm], [row[3] for row in calm])
        per_hard, _ = slope([row[0] for row in rows], [row[6] for row in rows])
        base_hard = first["memory"]["unreclaimable"]
        ceiling = predicted_limit(limit, base_hard, per_hard)
        out.update(
            {
                "limit_mib": round(limit / MIB),
                "mib_per_container_working_set": round(per_ws / MIB, 3),
                "mib_per_container_unreclaimable": round(per_hard / MIB, 3),
                "baseline_working_set_mib": round(first["memory"]["working_set"] / MIB, 1),
                "baseline_unreclaimable_mib": round(base_hard / MIB, 1),
                "ceiling": ceiling,
                "reached_of_ceiling": round(r["reached"] / ceiling, 3) if ceiling else None,
                "unreclaimable_at_end_mib": round(rows[-1][6] / MIB, 1),
                "page_cache_at_end_mib": round(rows[-1][7] / MIB, 1),
            }
        )
    if n:
        split = {}
        for name, part in last["parts"].items():
            before = first["parts"].get(name, {})
            grown = part["rss"] + part["kmem"] - before.get("rss", 0) - before.get("kmem", 0)
            split[name] = round(grown / n / MIB, 3)
        grown = last["memory"]["unreclaimable"] - first["memory"]["unreclaimable"]
        split["elsewhere in the drone (kernel: mounts, namespaces, cgroups)"] = round(
            grown / n / MIB - sum(split.values()), 3
        )
        out["unreclaimable_mib_per_container_by_cgroup"] = split
        out["processes_at_end"] = last["processes"]
    out["creation"] = r["creation"]
    return out


# --- the bundle: many servers in one container -------------------------------------
def bundle(drone: Drone, image: str, servers: int, idle: float) -> dict[str, Any]:
    """One container, one shim, ``servers`` web servers: the cost of a service then."""
    cg = drone.cg
    assert cg is not None
    drone.remove_all()
    time.sleep(idle)
    before = cg.memory_now()
    ports = " ".join(str(FIRST_PORT + i) for i in range(1, servers + 1))
    script = (
        f"for p in {ports}; do /bin/busybox httpd -p $p -h /www; done; "
        "exec /bin/busybox sleep 1000000"
    )
    drone.sh(
        f"docker run -d --network host --name bundle --entrypoint /bin/busybox {image} "
        f"sh -c '{script}' >/dev/null"
    )
    time.sleep(idle)
    after = cg.memory_now()
    procs = cg.processes()
    answered = drone.sh(
        f"for p in {FIRST_PORT + 1} {FIRST_PORT + servers}; do "
        "curl -sf -m 3 -o /dev/null http://127.0.0.1:$p/ && echo ok; done"
    ).split()
    drone.remove_all()
    return {
        "servers": servers,
        "mib_per_server_unreclaimable": round(
            (after["unreclaimable"] - before["unreclaimable"]) / servers / MIB, 3
        ),
        "mib_per_server_working_set": round(
            (after["working_set"] - before["working_set"]) / servers / MIB, 3
        ),
        "processes": procs,
        "answered_of_2": answered.count("ok"),
    }


# --- one shim for many containers (containerd's shim grouping) --------------------
GROUP = "io.containerd.runc.v2.group"


def grouped(drone: Drone, archive: Path, count: int, idle: float) -> dict[str, Any]:
    """``count`` servers as containers of their own, straight on containerd (``ctr``),
    once with a shim each and once sharing one shim through the ``GROUP`` annotation.

    Docker 20.10 cannot set OCI annotations (``docker run --annotation`` came with
    Engine 24), so this goes around the engine; the containers run under the
    services slice like the engine's. Their root file systems come from the native
    snapshotter (the drone's /var/lib/containerd lies on the drone's own overlay,
    where another overlay cannot be mounted).
    """
    cg = drone.cg
    assert cg is not None
    drone.remove_all()
    ns = "density"
    drone.sh("cat > /tmp/tinyweb.tar", stdin=archive)
    ref = drone.sh(
        f"ctr -n {ns} image import --snapshotter native /tmp/tinyweb.tar"
        " | awk '{print $2}' | head -1"
    )
    ref = ref.strip() or drone.sh(f"ctr -n {ns} image ls -q | head -1").strip()
    out: dict[str, Any] = {"containers": count, "image": ref}
    for mode, annotation in (("shim each", ""), ("one shared shim", f"--annotation {GROUP}=web")):
        time.sleep(idle)
        before, parts_before = cg.memory_now(), cg.parts()
        runs = []
        for i in range(1, count + 1):
            t0 = time.monotonic()
            drone.sh(
                f"ctr -n {ns} run -d --snapshotter native --net-host --runc-systemd-cgroup "
                f"--cgroup {SLICE}:density:g{i} {annotation} {ref} g{i} "
                f"/bin/busybox httpd -f -p {FIRST_PORT + i} -h /www >/dev/null"
            )
            runs.append(time.monotonic() - t0)
        time.sleep(idle)
        after, parts_after = cg.memory_now(), cg.parts()
        shims = cg.processes().get("containerd-shim", {})
        answered = drone.sh(
            f"for p in {FIRST_PORT + 1} {FIRST_PORT + count}; do "
            "curl -sf -m 3 -o /dev/null http://127.0.0.1:$p/ && echo ok; done"
        ).split()
        key = "containerd.service (shims)"
        containerd = (
            parts_after[key]["rss"] + parts_after[key]["kmem"]
            - parts_before[key]["rss"] - parts_before[key]["kmem"]
        )  # fmt: skip
        out[mode] = {
            "shims": shims.get("count", 0),
            "shim_pss_mib_mean": shims.get("pss_mib_mean"),
            "mib_per_container_unreclaimable": round(
                (after["unreclaimable"] - before["unreclaimable"]) / count / MIB, 3
            ),
            "mib_per_container_working_set": round(
                (after["working_set"] - before["working_set"]) / count / MIB, 3
            ),
            "containerd_service_mib_per_container": round(containerd / count / MIB, 3),
            "creation": creation_stats(runs),
            "answered_of_2": answered.count("ok"),
        }
        print(f"  ctr, {count} containers, {mode}: {out[mode]}", flush=True)
        drone.sh(
            f"for c in $(ctr -n {ns} c ls -q); do ctr -n {ns} t kill -s KILL $c; done; sleep 1; "
            f"for c in $(ctr -n {ns} c ls -q); do ctr -n {ns} t rm -f $c; ctr -n {ns} c rm $c; "
            "done >/dev/null 2>&1; true",
            timeout=600,
        )
    return out


# --- output --------------------------------------------------------------------------
def table(summaries: list[dict[str, Any]]) -> str:
    lines = [
        "| profile | containers reached | stopped because | MiB / container: working set "
        "(before reclaim) / unreclaimable | ceiling | reached / ceiling "
        "| creation mean / min / max (s) | cumulative (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summaries:
        c = s["creation"]
        ratio = s.get("reached_of_ceiling")
        lines.append(
            f"| {s['profile']} | {s['reached']} | {s['stop']} | "
            f"{s.get('mib_per_container_working_set', '-')} / "
            f"{s.get('mib_per_container_unreclaimable', '-')} | {s.get('ceiling', '-')} | "
            f"{f'{ratio:.0%}' if ratio else '-'} | "
            f"{c['mean_s']} / {c['min_s']} / {c['max_s']} | {c['cumulative_s']} |"
        )
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("memory", "drone memory (MiB)", "Memory against containers (1 GiB drone)"),
        ("cpu", "drone CPU (% of one core)", "CPU against containers"),
        ("creation", "docker run (s)", "Creation time per container"),
        ("cumulative", "cumulative creation time (s)", "Cumulative creation time"),
    ]
    paths = []
    for key, ylabel, title in panels:
        fig, ax = plt.subplots(figsize=(7, 4))
        for i, (profile, r) in enumerate(results.items()):
            rows, colour = r["samples"], f"C{i}"
            xs = [row[0] for row in rows]
            if key == "memory":
                ax.plot(xs, [row[2] / MIB for row in rows], color=colour, linestyle=":",
                        label=f"{profile}: usage (with page cache)")  # fmt: skip
                ax.plot(xs, [row[3] / MIB for row in rows], color=colour, linestyle="--",
                        label=f"{profile}: working set")  # fmt: skip
                ax.plot(xs, [row[6] / MIB for row in rows], color=colour,
                        label=f"{profile}: unreclaimable")  # fmt: skip
                ax.axhline(r["limit_bytes"] / MIB, color="grey", linestyle="--")
            elif key == "cpu":
                ax.plot(xs, [row[4] for row in rows], color=colour, linewidth=0.5, alpha=0.5,
                        label=f"{profile}: while creating")  # fmt: skip
                cps = r["checkpoints"]
                ax.plot([c["containers"] for c in cps], [c["idle_cpu_percent"] for c in cps],
                        color=colour, marker="o", label=f"{profile}: idle")  # fmt: skip
            elif key == "creation":
                ax.plot(xs, [row[5] for row in rows], color=colour, linewidth=0.6,
                        label=profile)  # fmt: skip
            else:
                total, sums = 0.0, []
                for row in rows:
                    total += row[5]
                    sums.append(total)
                ax.plot(xs, sums, color=colour, label=profile)
        ax.set_xlabel("containers running")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"density-{key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cloudrone.bench.density",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profiles", default="dense,standard", help="docker_engine profiles")
    parser.add_argument("--out", type=Path, help="write density.json and the PNG plots here")
    parser.add_argument("--max", type=int, default=3000, help="stop at this many containers")
    parser.add_argument("--checkpoint", type=int, default=50, help="breakdown every N containers")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle CPU sampling")
    parser.add_argument("--bundle", type=int, default=50, help="servers in the one-container run")
    parser.add_argument(
        "--grouped", type=int, default=50, help="containers in the shared-shim run (ctr)"
    )
    parser.add_argument(
        "--slow", type=float, default=10.0, help="a docker run this slow counts as thrashing"
    )
    parser.add_argument(
        "--slow-runs", type=int, default=5, help="this many slow runs: memory ran out"
    )
    parser.add_argument("--keep", action="store_true", help="leave the fleet up at the end")
    args = parser.parse_args(argv)
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    began = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    summaries = []
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="density-") as tmp:
        workdir = Path(tmp)
        drone = Drone(workdir)
        try:
            print(f"fleet {FLEET}: one drone, memory {MEMORY}", flush=True)
            sim.down(FLEET, log=lambda _m: None)
            drone.up()
            tag = tinyweb.ensure()
            archive = tinyweb.save(tag, workdir / "tinyweb.tar")
            # Each profile on a freshly made drone: removing the containers of a drone
            # whose memory ran out takes minutes (it thrashes), and neither profile
            # inherits the other's page cache. The lighter experiments come first,
            # while the first drone's memory is free.
            for n, profile in enumerate(profiles or ["dense"]):
                if n:
                    sim.down(FLEET, log=lambda _m: None)
                    drone.up()
                took = drone.provision(profile)
                print(f"  provisioned with docker_engine_profile={profile} in {took:.0f} s",
                      flush=True)  # fmt: skip
                drone.sh("docker load -q", stdin=archive)
                if n == 0:
                    extra["engine"] = drone.engine()
                    extra["roles"] = drone.source
                    print(f"  engine: {extra['engine']}, roles of {drone.source}", flush=True)
                    if args.bundle:
                        extra["bundle"] = bundle(drone, tag, args.bundle, args.idle)
                        print(f"  one container, {args.bundle} servers: {extra['bundle']}",
                              flush=True)  # fmt: skip
                    if args.grouped:
                        extra["grouped"] = grouped(drone, archive, args.grouped, args.idle)
                if not profiles:
                    break
                results[profile] = r = fill(
                    drone, tag, args.max, args.checkpoint, args.idle, (args.slow, args.slow_runs)
                )
                r["provision_s"] = round(took, 1)
                r["daemon_json"] = json.loads(drone.sh("cat /etc/docker/daemon.json"))
                s = summarise(profile, r)
                summaries.append(s)
                print(f"  {profile}: {json.dumps(s, indent=1)}", flush=True)
        finally:
            drone.close(args.keep)
    wall = time.monotonic() - began
    print()
    print(table(summaries))
    print(f"\npaper: {PAPER['containers']} containers, {PAPER['creation_mean_s']} s mean creation"
          f" ({PAPER['board']}); this run took {wall / 60:.1f} min")  # fmt: skip
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = {
            "command": "python -m cloudrone.bench.density " + " ".join(argv or sys.argv[1:]),
            "drone": {"memory": MEMORY, "cpus": os.cpu_count(), "kernel": os.uname().release},
            "network": "host (each server on its own port, from 20001)",
            "paper": PAPER,
            "wall_s": round(wall, 1),
            **extra,
            "summary": summaries,
            "profiles": results,
            "sample_columns": SAMPLE_COLUMNS,
        }
        name = "density.json" if profiles else "density-lighter.json"
        (args.out / name).write_text(json.dumps(meta, indent=1) + "\n")
        print(f"wrote {args.out / name}")
        for p in plot(results, args.out) if profiles else []:
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
