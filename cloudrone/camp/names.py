"""Names that follow the services: each drone's DNS answers a service's name with
the replicas that answer now, not with every drone that might run one.

The mission says where each service may run (its candidates: a drone's mesh
address and the port published there). Every couple of seconds this daemon
asks the mesh's routing daemon which drones it can reach and at what cost
(its ``/routes`` status: ETX cost, or hops), knocks on each reachable
candidate's port (a TCP connect: a replica publishes its port on its own
drone only), and writes what answered to a hosts file in dnsmasq's
``hostsdir``, which dnsmasq reads again by itself when the file changes. With
dnsmasq's ``local-ttl`` short, a phone stops being given a lost drone's
address within seconds: a drone out of range loses its route, a stopped
replica stops answering its port.

One knock that goes unanswered is not enough to drop a replica that answered
before: a busy drone or a lost packet can miss a 1-second connect. A routed
replica is dropped after ``MISSES`` unanswered knocks in a row (one more round,
2 s by default), and at once when its drone's route goes. A replica that has
never answered is not given until it does.

Each name lists every live replica, nearest first in the file (the order the
phones get is dnsmasq's own). A name with no live replica is left out, so a
phone is told at once there is none rather than sent to a dead address. UDP
services cannot be knocked on: they are kept while their drone is routed.
The state (what answered, at what cost) is also written as JSON beside it.

    python -m cloudrone.camp.names --config /etc/cloudrone/names.json [--once]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudrone.camp import read_json_object

# unanswered knocks in a row that drop a routed replica that answered before
MISSES = 2


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Candidate:
    service: str
    drone: str
    address: str
    port: int
    protocol: str


@dataclass(frozen=True)
class Config:
    domain: str
    own_address: str
    routes_url: str | None
    hosts_file: Path
    state_file: Path | None
    interval: float
    timeout: float
    candidates: tuple[Candidate, ...]


def load_config(path: Path) -> Config:
    raw = read_json_object(path, ConfigError, "domain, hosts_file and services")

    def need(key: str, kind: type | tuple[type, ...]):
        if not isinstance(raw.get(key), kind):
            raise ConfigError(
                f"{path}: {key} is missing or not a {getattr(kind, '__name__', kind)}"
            )
        return raw[key]

    candidates = []
    for n, s in enumerate(need("services", list)):
        where = f"{path}: services[{n}]"
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            raise ConfigError(f"{where}: give name, address, port (and drone, protocol)")
        try:
            port = int(s["port"])
            address = str(s["address"])
            socket.inet_aton(address)
        except (KeyError, TypeError, ValueError, OSError):
            raise ConfigError(
                f"{where}: address must be an IPv4 address and port a number"
            ) from None
        protocol = s.get("protocol", "tcp")
        if protocol not in ("tcp", "udp"):
            raise ConfigError(f"{where}.protocol: {protocol!r}; use tcp or udp")
        candidates.append(Candidate(s["name"], s.get("drone", address), address, port, protocol))
    hosts_file = Path(need("hosts_file", str))
    state = raw.get("state_file")
    return Config(
        domain=need("domain", str),
        own_address=raw.get("own_address") or "",
        routes_url=raw.get("routes_url") or None,
        hosts_file=hosts_file,
        state_file=Path(state) if state else None,
        interval=float(raw.get("interval", 2.0)),
        timeout=float(raw.get("timeout", 1.0)),
        candidates=tuple(candidates),
    )


def mesh_costs(routes_url: str | None, timeout: float) -> dict[str, float] | None:
    """{destination: cost} the mesh routes now, or None when it cannot say."""
    if not routes_url:
        return None
    try:
        with urllib.request.urlopen(routes_url, timeout=timeout) as reply:
            routes = json.loads(reply.read()).get("routes", [])
    except (OSError, urllib.error.URLError, ValueError, AttributeError):
        return None
    costs = {}
    for r in routes:
        if isinstance(r, dict) and "destination" in r:
            cost = r.get("rtpMetricCost", r.get("metric", 1))
            costs[str(r["destination"])] = float(cost) if cost is not None else 1.0
    return costs


def knock(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def live(
    config: Config,
    costs: dict[str, float] | None,
    probe=knock,
    misses: dict[Candidate, int] | None = None,
) -> list[tuple[Candidate, float]]:
    """(candidate, cost) for every candidate that is routed and answers, nearest first.

    The drone's own address costs 0. Without a routing answer every candidate
    is taken as reachable at cost 1 and only the knock decides. ``misses``, kept
    by the caller from round to round, counts each TCP candidate's unanswered
    knocks in a row: one that answered before stays until it reaches
    ``MISSES``. Without it each round stands alone.
    """
    routed = []
    for c in config.candidates:
        if c.address == config.own_address:
            routed.append((c, 0.0))
        elif costs is None:
            routed.append((c, 1.0))
        elif c.address in costs:
            routed.append((c, costs[c.address]))
    tcp = [(c, cost) for c, cost in routed if c.protocol == "tcp"]
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(tcp)))) as pool:
        answers = list(
            pool.map(lambda item: probe(item[0].address, item[0].port, config.timeout), tcp)
        )
    if misses is None:
        misses = {}
    routed_now = {c for c, _ in tcp}
    for c in config.candidates:
        if c not in routed_now:
            misses[c] = MISSES  # no route: gone at once, and it must answer to come back
    for (c, _), ok in zip(tcp, answers, strict=True):
        misses[c] = 0 if ok else min(MISSES, misses.get(c, MISSES) + 1)
    out = [(c, cost) for c, cost in routed if c.protocol == "udp" or misses[c] < MISSES]
    return sorted(out, key=lambda item: (item[1], item[0].address, item[0].service))


def hosts_text(config: Config, answering: list[tuple[Candidate, float]]) -> str:
    """A hosts file: one line per service and live address, nearest first."""
    lines = ["# written by cloudrone-names: the services' replicas that answer now"]
    seen = set()
    for c, cost in answering:
        if (c.service, c.address) in seen:
            continue
        seen.add((c.service, c.address))
        lines.append(
            f"{c.address} {c.service}.{config.domain} {c.service}  # {c.drone}, cost {cost:g}"
        )
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".names-")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # dnsmasq sees one whole new file, never half of one
    return True


def cycle(
    config: Config, probe=knock, misses: dict[Candidate, int] | None = None
) -> tuple[bool, list[dict[str, Any]]]:
    costs = mesh_costs(config.routes_url, config.timeout)
    answering = live(config, costs, probe, misses)
    changed = write_if_changed(config.hosts_file, hosts_text(config, answering))
    state = [
        {"service": c.service, "drone": c.drone, "address": c.address, "port": c.port, "cost": cost}
        for c, cost in answering
    ]
    if config.state_file is not None:
        write_if_changed(config.state_file, json.dumps({"live": state}, indent=1) + "\n")
    return changed, state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudrone-names")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--once", action="store_true", help="one round, then exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"cloudrone-names: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(
        f"cloudrone-names: {len(config.candidates)} candidate(s) into {config.hosts_file}",
        file=sys.stderr,
    )
    run(config, stop, once=args.once)
    return 0


def run(config: Config, stop: threading.Event, once: bool = False) -> None:
    """Rounds every ``config.interval`` seconds until ``stop`` is set."""
    misses: dict[Candidate, int] = {}
    while True:
        started = time.monotonic()
        changed, state = cycle(config, misses=misses)
        if changed:
            names = sorted({f"{s['service']}@{s['drone']}" for s in state})
            print(f"cloudrone-names: answering {', '.join(names) or 'nothing'}", file=sys.stderr)
        if once or stop.wait(max(0.1, config.interval - (time.monotonic() - started))):
            return


if __name__ == "__main__":
    sys.exit(main())
