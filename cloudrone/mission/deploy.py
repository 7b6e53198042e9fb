"""The parts of ``mission up`` around the playbook: images built here, phones, the proof.

Before provisioning, the images a bundle asks to build are built on the
controller and saved as the archives every drone loads. For a simulated
fleet, a phone joins each drone's access point. After provisioning, every
service is asked for from every phone, by the name phones use, until it
answers: a mission is up when a phone on the ground gets its page.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from cloudrone.fleet import pyservice, sim, tinyweb
from cloudrone.mission.model import Mission, ServicePlan
from cloudrone.mission.plan import built_archive, fleet_spec
from cloudrone.paths import mission_state_dir, project_root
from cloudrone.rules import docker_archive_images

Log = Callable[[str], None]


def build_images(mission: Mission, log: Log) -> dict[str, str]:
    """Build each ``build:`` service's image and save its archive; {service: tag}.

    An archive that already holds the built tag is kept as it is, so a second
    ``up`` neither rebuilds nor rewrites anything.
    """
    tags = {}
    for service in mission.services:
        if service.build is None:
            continue
        recipe, content = service.build
        if recipe == "board":
            tag = pyservice.ensure("board", log=log)
        elif recipe == "offline-map":
            tag = tinyweb.ensure(www=_map_site(mission, service, content, log), log=log)
        elif recipe == "tinyweb":
            tag = tinyweb.ensure(www=content, log=log)
        else:
            raise sim.FleetError(f"service {service.name}: no recipe {recipe}")
        archive = built_archive(mission, service)
        if not _holds(archive, tag):
            archive.parent.mkdir(parents=True, exist_ok=True)
            partial = archive.with_suffix(".partial")
            tinyweb.save(tag, partial)
            partial.replace(archive)
            log(f"    saved {tag} for {service.name} to {archive}")
        tags[service.name] = tag
    return tags


def _map_site(mission: Mission, service: ServicePlan, source: Path | None, log: Log) -> Path:
    """The web root of an offline-map service: its page, libraries and archive."""
    from cloudrone.camp import maps  # the tiling libraries load only for a map

    assert source is not None  # the model requires the map
    site = mission_state_dir(mission.name) / "sites" / service.name
    try:
        info = maps.build_site(source, site, project_root() / maps.VENDOR_CACHE, log)
    except maps.MapError as exc:
        raise sim.FleetError(f"service {service.name}: {exc}") from None
    log(
        f"    {service.name}: {source.name} as {info['tiles']} tiles "
        f"(zoom {info['min_zoom']}-{info['max_zoom']}, {info['bytes'] // 1024} KiB)"
    )
    return site


def _holds(archive: Path, tag: str) -> bool:
    try:
        return any(line.endswith(" " + tag) for line in docker_archive_images(str(archive)))
    except ValueError:
        return False


def phone_name(drone: str) -> str:
    return f"phone-{drone}"


def ensure_phones(mission: Mission, image: str, log: Log) -> dict[str, sim.Phone]:
    """A phone on every drone's access point, each holding a lease from its drone.

    A phone already there with its lease is kept (a second ``up`` changes nothing).
    """
    spec = fleet_spec(mission)
    client = sim.engine_client()
    phones: dict[str, sim.Phone] = {}
    for drone in mission.drones:
        name = phone_name(drone.name)
        try:
            container = client.containers.get(spec.container_name(name))
            if container.status != "running":
                container.start()
            phones[drone.name] = sim.Phone(container)
        except docker.errors.NotFound:
            phones[drone.name] = sim.add_phone(spec, f"ground-{drone.name}", name, image)
            log(f"    phone {name} on {drone.name}'s access point")
    return phones


def ensure_lease(phone: sim.Phone, mission: Mission, drone: str, log: Log) -> None:
    """The phone holds a lease from its drone's access point, asking for one if not."""
    if lease_of(phone, str(mission.drone(drone).ap_subnet)) is None:
        address = phone.join()
        log(f"    {phone.name} joined {drone}'s access point: lease {address}")


def lease_of(phone: sim.Phone, drone_subnet: str) -> str | None:
    """The phone's address when it holds one of its drone's leases."""
    code, out = phone.sh("cat /run/phone-lease 2>/dev/null")
    address = out.strip()
    try:
        if code != 0 or ipaddress.IPv4Address(address) not in ipaddress.IPv4Network(drone_subnet):
            return None
    except ValueError:
        return None
    code, out = phone.sh(f"ip -4 -o addr show dev eth0 | grep -c ' {address}/'")
    return address if code == 0 and out.strip() != "0" else None


# What a phone's app does: resolve the name (C library, the lease's resolver)
# and fetch the page; a port that speaks no HTTP still counts as answering.
FETCH = r"""
import json, socket, sys, time, urllib.request
host, port = sys.argv[1], int(sys.argv[2])
out = {"name": host, "port": port}
try:
    found = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    out["addresses"] = sorted({a[4][0] for a in found})
except OSError as exc:
    out["error"] = f"name not resolved: {exc}"
    print(json.dumps(out)); sys.exit(1)
start = time.monotonic()
try:
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as r:
        body = r.read(1 << 20)
        out.update(status=r.status, bytes=len(body), text=body[:4096].decode("utf-8", "replace"))
except urllib.error.HTTPError as exc:
    out.update(status=exc.code, bytes=0, text="")
except Exception as exc:
    try:
        socket.create_connection((host, port), timeout=5).close()
        out.update(status=None, bytes=0, text="", note="answers, not HTTP")
    except OSError as exc2:
        out["error"] = f"no answer: {exc2}"
        print(json.dumps(out)); sys.exit(1)
out["seconds"] = round(time.monotonic() - start, 3)
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Fetch:
    phone: str
    drone: str
    service: str
    url: str
    ok: bool
    detail: dict

    def line(self) -> str:
        d = self.detail
        if not self.ok:
            return f"{self.phone}: {self.url}: {d.get('error', 'no answer')}"
        at = ", ".join(d.get("addresses", []))
        what = f"HTTP {d['status']}, {d['bytes']} bytes" if d.get("status") else "answers"
        return f"{self.phone}: {self.url} -> {at}: {what} in {d.get('seconds', 0):.2f} s"


def fetch(phone: sim.Phone, mission: Mission, drone: str, service: ServicePlan) -> Fetch:
    port = next(p for p in service.ports if p.protocol == "tcp")
    host = f"{service.dns}.{mission.access_point.domain}"
    url = f"http://{host}" + ("" if port.published == 80 else f":{port.published}") + "/"
    code, out = phone.sh(
        f"python3 -c {shlex.quote(FETCH)} {shlex.quote(host)} {port.published}", timeout=20
    )
    try:
        detail = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        detail = {"error": out.strip()[-300:] or f"exit {code}"}
    return Fetch(phone.name, drone, service.name, url, code == 0, detail)


def prove_services(
    mission: Mission, phones: dict[str, sim.Phone], log: Log, timeout: float = 120
) -> list[Fetch]:
    """Every TCP service, from every phone, by name: wait until each answers.

    Returns the last attempt of each (phone, service); ``ok`` False for those
    that never answered within ``timeout``.
    """
    wanted = [s for s in mission.services if s.replicas > 0 and any(
        p.protocol == "tcp" for p in s.ports)]  # fmt: skip
    if not wanted:
        return []
    for drone, phone in phones.items():
        ensure_lease(phone, mission, drone, log)
    pending = [(d, p, s) for d, p in phones.items() for s in wanted]
    results: dict[tuple[str, str], Fetch] = {}
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(pending)))) as pool:
        while pending:
            done = list(pool.map(lambda job: fetch(job[1], mission, job[0], job[2]), pending))
            pending = [job for job, res in zip(pending, done, strict=True) if not res.ok]
            for res in done:
                results[(res.phone, res.service)] = res
            if pending and time.monotonic() < deadline:
                time.sleep(2)
            elif pending:
                break
    return list(results.values())
