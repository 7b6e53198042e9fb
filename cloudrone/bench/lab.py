"""A lab of drones: real cloudrone-olsrd daemons in network namespaces joined by veth links.

Used by the integration tests (tests/integration/olsr, fast test timers) and the
benchmark (:mod:`cloudrone.bench.olsr`, the daemon's timer profiles). Needs root and
``ip netns``. Every namespace a lab makes is named ``cdo-<pid>-<n>-<node>`` and
removed by :meth:`Lab.close`; those of a process that died are removed by
:func:`remove_leftovers`. Traffic stays inside these namespaces: addresses are
10.99.x.y and exist nowhere else.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pyroute2 import NetNS

from cloudrone.fleet.sim import Radio, radio_ruleset

PROTO = 100
# Timers for tests: five times the RFC's pace, so that a test converges in seconds.
FAST = {
    "hello": {"interval": 0.5, "validity": 1.5},
    "tc": {"interval": 1.0, "validity": 3.0},
    "mid": {"interval": 1.0, "validity": 3.0},
    "hna": {"interval": 1.0, "validity": 3.0},
    "duplicate_hold": 6.0,
    "max_jitter": 0.1,
    "routes": {"check_interval": 1.0},
    "log": {"level": "info"},
}
# The daemon's own timers (its profile's, by leaving them out), with quiet logs: for
# the benchmark, with Lab(profile=...) naming the profile (rfc when none is named).
RFC = {"log": {"level": "warning"}}
_counter = itertools.count()


def netns_problem() -> str | None:
    """Why this machine cannot run a lab, or None when it can."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    name = f"cdo-{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns is unavailable: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def run(*cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return result


def daemon_command() -> list[str]:
    script = Path(sys.executable).with_name("cloudrone-olsrd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "cloudrone.olsr.daemon"]


def wait_until(predicate: Callable[[], Any], timeout: float, step: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something true; return it, or the last value."""
    end = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < end:
        time.sleep(step)
        value = predicate()
    return value


class Lab:
    """A set of namespaces (drones), veth links between them and one daemon per drone."""

    def __init__(
        self, workdir: Path, defaults: dict[str, Any] = FAST, profile: str | None = None
    ) -> None:
        self.prefix = f"cdo-{os.getpid()}-{next(_counter)}"
        self.workdir = workdir
        # the config every daemon starts from; a timer profile (rfc, fast) sets its timers
        # where the defaults leave them out (the FAST test timers set them all)
        self.defaults = dict(defaults, profile=profile) if profile else defaults
        self.namespaces: dict[str, str] = {}  # short name -> namespace name
        self.addresses: dict[str, dict[str, str]] = {}  # node -> ifname -> address
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.configs: dict[str, Path] = {}
        self._links = itertools.count()

    # namespaces and links
    def ns(self, node: str) -> str:
        return self.namespaces[node]

    def add_node(self, node: str) -> str:
        name = f"{self.prefix}-{node}"
        run("ip", "netns", "add", name)
        self.namespaces[node] = name
        self.addresses[node] = {}
        run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
        run("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0")
        # as the mesh role (and olsrd) do: a relay on a shared channel must not send the
        # sender off onto a lossy direct link with an ICMP redirect
        for key in ("send_redirects", "accept_redirects"):
            for scope in ("all", "default"):
                run("ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv4.conf.{scope}.{key}=0")
        return name

    def link(self, a: str, b: str, subnet: str, host_a: int, host_b: int) -> tuple[str, str]:
        """A veth between nodes a and b in ``subnet`` (like "10.99.3"); returns if names."""
        n = next(self._links)
        if_a, if_b = f"v{n}a", f"v{n}b"
        run(
            "ip", "link", "add", if_a, "netns", self.ns(a),
            "type", "veth", "peer", "name", if_b, "netns", self.ns(b),
        )  # fmt: skip
        for node, ifname, host in ((a, if_a, host_a), (b, if_b, host_b)):
            addr = f"{subnet}.{host}"
            run("ip", "-n", self.ns(node), "addr", "add", f"{addr}/24", "brd", "+", "dev", ifname)
            run("ip", "-n", self.ns(node), "link", "set", ifname, "up")
            self.addresses[node][ifname] = addr
        return if_a, if_b

    def air(self, nodes: list[str], subnet: str = "10.99.0") -> dict[str, str]:
        """One radio channel shared by ``nodes``: a Linux bridge in a namespace of its
        own, each node on it with interface ``air0`` at ``subnet.<position>``. Everyone
        hears everyone until :meth:`set_radio` says otherwise. Returns node -> address."""
        hub = self.add_node("air")
        run("ip", "-n", hub, "link", "add", "air", "type", "bridge")
        run("ip", "-n", hub, "link", "set", "air", "up")
        self.ports: dict[str, str] = {}
        out = {}
        for i, node in enumerate(nodes, start=1):
            port = f"p{i}"
            run(
                "ip", "link", "add", "air0", "netns", self.ns(node),
                "type", "veth", "peer", "name", port, "netns", hub,
            )  # fmt: skip
            run("ip", "-n", hub, "link", "set", port, "master", "air", "up")
            addr = f"{subnet}.{i}"
            run("ip", "-n", self.ns(node), "addr", "add", f"{addr}/24", "brd", "+", "dev", "air0")
            run("ip", "-n", self.ns(node), "link", "set", "air0", "up")
            self.addresses[node]["air0"] = addr
            self.ports[node] = port
            out[node] = addr
        del self.addresses["air"]
        # every link address known for good: what is measured is routing, not ARP
        # retrying over a lossy link (a radio's own retransmissions hide most of that)
        macs = {
            node: json.loads(run("ip", "-n", self.ns(node), "-j", "link", "show", "air0").stdout)[
                0
            ]["address"]
            for node in nodes
        }
        for node in nodes:
            for other in nodes:
                if other != node:
                    run(
                        "ip", "-n", self.ns(node), "neigh", "replace", out[other],
                        "lladdr", macs[other], "dev", "air0", "nud", "permanent",
                    )  # fmt: skip
        return out

    def set_radio(self, in_range: dict[frozenset[str], int]) -> None:
        """Who hears whom on the channel: pairs in ``in_range`` with their loss percent
        (0 clean), every other pair out of range. Takes effect at once, both ways."""
        script = radio_ruleset(self.prefix, self.ports, Radio("air", in_range))
        subprocess.run(
            ["ip", "netns", "exec", self.ns("air"), "nft", "-f", "-"],
            input=script, text=True, check=True, capture_output=True,
        )  # fmt: skip

    # daemons
    def write_config(self, node: str, **extra: Any) -> Path:
        cfg: dict[str, Any] = json.loads(json.dumps(self.defaults))
        ifaces = extra.pop("interfaces", None) or list(self.addresses[node])
        cfg["interfaces"] = [{"name": i} for i in ifaces]
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key].update(value)
            else:
                cfg[key] = value
        path = self.workdir / f"{node}.yml"
        path.write_text(yaml.safe_dump(cfg))
        self.configs[node] = path
        return path

    def start(
        self,
        node: str,
        env: dict[str, str] | None = None,
        profile: str | None = None,
        **extra: Any,
    ) -> None:
        """Run the daemon on ``node``; ``profile`` (rfc, fast) and ``extra`` keys go
        into its config on top of the lab's defaults."""
        if profile:
            extra["profile"] = profile
        path = self.write_config(node, **extra)
        log = open(self.workdir / f"{node}.log", "ab")  # noqa: SIM115
        self.procs[node] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(node), *daemon_command(), "--config", str(path)],
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
        )
        log.close()

    def stop(self, node: str, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        proc = self.procs.pop(node, None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def log(self, node: str) -> str:
        path = self.workdir / f"{node}.log"
        return path.read_text() if path.exists() else ""

    def alive(self, node: str) -> bool:
        return node in self.procs and self.procs[node].poll() is None

    # looking at a drone
    def routes(self, node: str, proto: int = PROTO) -> dict[str, dict[str, Any]]:
        """The kernel's routes of ``proto`` in the main table, as dest/len -> fields."""
        out = {}
        with contextlib.closing(NetNS(self.ns(node))) as nsr:
            for msg in nsr.route("dump", table=254):
                if proto is not None and msg["proto"] != proto:
                    continue
                dest = f"{msg.get('dst') or '0.0.0.0'}/{msg['dst_len']}"
                out[dest] = {"gateway": msg.get("gateway"), "oif": msg.get("oif")}
        return out

    def status(self, node: str, path: str = "all", port: int = 9090) -> dict[str, Any]:
        code = (
            "import sys,urllib.request;"
            f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{port}/{path}',"
            "timeout=5).read().decode())"
        )
        result = run("ip", "netns", "exec", self.ns(node), sys.executable, "-S", "-c", code)
        return json.loads(result.stdout)

    def ready(self, node: str, timeout: float = 15) -> bool:
        """Wait until the daemon on ``node`` answers on its status port."""

        def answers() -> bool:
            try:
                return bool(self.status(node, "mpr"))
            except RuntimeError:
                return False

        return bool(wait_until(answers, timeout, step=0.3))

    def ping(self, node: str, addr: str, ttl: int | None = None, count: int = 1) -> bool:
        cmd = ["ip", "netns", "exec", self.ns(node), "ping", "-n", "-q", "-c", str(count)]
        cmd += ["-W", "2", "-i", "0.2"]
        if ttl is not None:
            cmd += ["-t", str(ttl)]
        return run(*cmd, addr, check=False).returncode == 0

    def all_addresses(self, nodes: list[str] | None = None) -> set[str]:
        wanted = nodes or list(self.addresses)
        return {a for n in wanted for a in self.addresses[n].values()}

    def remove_node(self, node: str) -> None:
        """The drone falls silent: its daemon dies unannounced and its radios go quiet.

        Its links go down on its own side only: the neighbours keep their interfaces
        and must notice the loss the OLSR way, by HELLOs that stop coming.
        """
        self.stop(node, signal.SIGKILL)
        for ifname in self.addresses[node]:
            run("ip", "-n", self.ns(node), "link", "set", ifname, "down")

    def unplug(self, node: str) -> None:
        """The drone's namespace and with it both ends of its links disappear."""
        self.stop(node, signal.SIGKILL)
        run("ip", "netns", "del", self.namespaces.pop(node))

    def close(self) -> None:
        for node in list(self.procs):
            self.stop(node, signal.SIGTERM, timeout=5)
        for name in self.namespaces.values():
            run("ip", "netns", "del", name, check=False)
        self.namespaces.clear()

    def dump_logs(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in self.addresses)


def remove_leftovers() -> None:
    """Remove namespaces of earlier labs whose process is gone."""
    listed = run("ip", "netns", "list", check=False).stdout.split()
    for name in listed:
        parts = name.split("-")
        if (
            len(parts) >= 3
            and parts[0] == "cdo"
            and parts[1].isdigit()
            and not Path(f"/proc/{parts[1]}").exists()
        ):
            run("ip", "netns", "del", name, check=False)


def build_line(lab: Lab, n: int) -> list[str]:
    """Drones d1..dn in a line; the link between d<i> and d<i+1> is 10.99.<i>.0/24."""
    names = [f"d{i}" for i in range(1, n + 1)]
    for name in names:
        lab.add_node(name)
    for i in range(1, n):
        lab.link(names[i - 1], names[i], f"10.99.{i}", i, i + 1)
    return names


def build_grid(lab: Lab, size: int, diagonals: bool = False) -> list[list[str]]:
    """A size x size grid, with ``diagonals`` also the diagonal neighbours linked (up to 8
    neighbours, denser radio cover); each edge is its own /24 in 10.99.<edge>.0."""
    grid = [[f"r{r}c{c}" for c in range(size)] for r in range(size)]
    for row in grid:
        for name in row:
            lab.add_node(name)
    edge = 0
    for r in range(size):
        for c in range(size):
            steps = [(r, c + 1), (r + 1, c)]
            if diagonals:
                steps += [(r + 1, c + 1), (r + 1, c - 1)]
            for rr, cc in steps:
                if rr < size and 0 <= cc < size:
                    edge += 1
                    a, b = r * size + c + 1, rr * size + cc + 1  # host numbers
                    lab.link(grid[r][c], grid[rr][cc], f"10.99.{edge}", a, b)
    return grid


def coverage(lab: Lab, nodes: list[str]) -> float:
    """The fraction of (drone, address of another drone) pairs with a route."""
    everyone = lab.all_addresses(nodes)
    want = have = 0
    for node in nodes:
        wanted = everyone - set(lab.addresses[node].values())
        want += len(wanted)
        have += len(wanted & {d.split("/")[0] for d in lab.routes(node)})
    return have / want if want else 1.0


def converged(lab: Lab, nodes: list[str]) -> bool:
    """Every drone in ``nodes`` has a route to every address of the others."""
    everyone = lab.all_addresses(nodes)
    for node in nodes:
        want = everyone - set(lab.addresses[node].values())
        have = {d.split("/")[0] for d in lab.routes(node)}
        if not want <= have:
            return False
    return True
