"""A lost drone: the leader's drone stops, the swarm carries on, it comes back.

Leaves the cluster whole for the tests after it. While the
leader's drone is down, a steady stream of HTTP requests (20 a second, to the
test's own drones only) goes to the two-replica service, as a phone would: it
tries the drones in order, the last one that answered first, and a request
fails only when none answers. The figures go to the project's
.cache/failover.json, and are printed.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

DRONES = ["drone-s1", "drone-s2", "drone-s3", "drone-s4"]
MESH = {d: f"10.247.1.{11 + i}" for i, d in enumerate(DRONES)}


RATE = 20  # requests a second
SERVICES = {"web": 8080, "pair": 8081}


class Prober(threading.Thread):
    """Requests at a steady rate to one port on every drone; counts failures."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.order = list(DRONES)
        self.sent = self.failed = 0
        self.failures: list[float] = []
        # every request: (when it started, the drone that answered or None, seconds it took)
        self.log: list[tuple[float, str | None, float]] = []
        self.stop = threading.Event()

    def fetch(self, drone: str) -> bool:
        try:
            with socket.create_connection((MESH[drone], self.port), timeout=0.3) as s:
                s.settimeout(1.0)
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            self.sent += 1
            started = time.monotonic()
            for drone in list(self.order):
                if self.fetch(drone):
                    # the one that answered goes first next time
                    self.order.remove(drone)
                    self.order.insert(0, drone)
                    self.log.append((started, drone, time.monotonic() - started))
                    break
            else:
                self.failed += 1
                self.failures.append(time.monotonic())
                self.log.append((started, None, time.monotonic() - started))
            next_at += 1 / RATE
            time.sleep(max(0.0, next_at - time.monotonic()))


def cluster(on_drone, manager: str) -> dict:
    """{hostname: (role, status, leader?)} as a live manager sees it."""
    code, out = on_drone(
        manager,
        "docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}'",
    )
    if code != 0:
        return {}
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            rows[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return rows


def running_on(on_drone, manager: str, service: str) -> list[str]:
    code, out = on_drone(
        manager,
        f"docker service ps swarm-test_{service} --filter desired-state=running "
        "--format '{{.Node}} {{.CurrentState}}'",
    )
    return [line.split()[0] for line in out.splitlines() if " Running" in line] if code == 0 else []


def wait_for(predicate, timeout: float, step: float = 0.25):
    """Seconds until ``predicate()`` is true, or None after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


def test_leader_lost_and_back(fleet, on_drone):
    before = cluster(on_drone, "drone-s2")
    (leader,) = [h for h, (_s, m) in before.items() if m == "Leader"]
    survivor = next(d for d in ("drone-s1", "drone-s2", "drone-s3") if d != leader)
    replicas_before = {s: running_on(on_drone, survivor, s) for s in SERVICES}
    probes = {s: Prober(port) for s, port in SERVICES.items()}
    for p in probes.values():
        p.start()
    time.sleep(3)  # a steady stream before the fault

    container = fleet.client.containers.get(fleet.spec.container_name(leader))
    lost_at = time.monotonic()
    container.kill()  # a drone lost: no goodbye to the swarm

    # one loop watches everything, so that every time counts from the loss
    new_leader = None
    moved: dict[str, float | None] = dict.fromkeys(SERVICES)
    while time.monotonic() - lost_at < 90 and (new_leader is None or None in moved.values()):
        now = time.monotonic() - lost_at
        if new_leader is None and any(
            m == "Leader" and h != leader for h, (_s, m) in cluster(on_drone, survivor).items()
        ):
            new_leader = now
        for service, hosts in replicas_before.items():
            live = [h for h in running_on(on_drone, survivor, service) if h != leader]
            if moved[service] is None and len(live) == len(hosts):
                moved[service] = now
        time.sleep(0.25)
    time.sleep(3)
    for p in probes.values():
        p.stop.set()
        p.join()
    elapsed = time.monotonic() - lost_at

    container.start()
    rejoined = wait_for(
        lambda: (
            (rows := cluster(on_drone, survivor)).get(leader, ("", ""))[0] == "Ready"
            and sum(m in ("Leader", "Reachable") for _s, m in rows.values()) == 3
        ),
        timeout=180,
        step=1,
    )
    # and every node Ready again: a worker whose manager was the lost leader has to
    # find another one, which can take longer than the lost drone's own return
    whole = wait_for(
        lambda: (
            sorted(rows := cluster(on_drone, survivor)) == sorted(before)
            and all(s == "Ready" for s, _m in rows.values())
        ),
        timeout=180,
        step=1,
    )

    figures = {
        "leader": leader,
        "replicas_on_leader": {s: leader in h for s, h in replicas_before.items()},
        "new_leader_s": new_leader and round(new_leader, 2),
        "tasks_elsewhere_s": {s: t and round(t, 2) for s, t in moved.items()},
        "requests": {s: p.sent for s, p in probes.items()},
        "failed": {s: p.failed for s, p in probes.items()},
        "failed_pct": {s: round(100 * p.failed / max(p.sent, 1), 2) for s, p in probes.items()},
        "last_failure_after_s": {
            s: round(max(p.failures) - lost_at, 2) if p.failures else None
            for s, p in probes.items()
        },
        "window_s": round(elapsed, 1),
        "rejoined_s": rejoined,
        "whole_after_rejoined_s": whole,
    }
    print(json.dumps(figures, indent=2))
    # each request, for the plot (python -m cloudrone.bench.failover)
    figures["requests_log"] = {
        s: [[round(t - lost_at, 3), drone, round(took * 1000, 1)] for t, drone, took in p.log]
        for s, p in probes.items()
    }
    # kept beyond the scenario (its own folder goes with destroy)
    out = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], ".cache", "failover.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(figures, f, indent=2)

    assert new_leader is not None, "no new leader within 90 s"
    assert all(t is not None for t in moved.values()), moved
    # the pair keeps answering from its survivor: a phone that tries the next drone sees no gap
    assert probes["pair"].failed <= probes["pair"].sent // 100, figures
    assert probes["web"].failed <= probes["web"].sent // 100, figures
    assert rejoined is not None, "the drone did not rejoin as a reachable manager within 180 s"
    assert whole is not None, f"not every node Ready within 180 s: {cluster(on_drone, survivor)}"
