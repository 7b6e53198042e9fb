"""The simulated drone, defined once.

A simulated drone is a container that boots systemd like a Pi boots Raspberry
Pi OS, keeps its own ``/var/lib/docker`` on a volume (so an engine inside it
gets overlay2), and is joined to the other drones by radio links modelled as
Docker networks with explicit subnets. Molecule's create and destroy
playbooks and ``cloudrone_cli mission up`` on the sim target all come here.

Run as a module for molecule and scripts::

    python -m cloudrone.fleet.sim up --file fleet.yml [--authorized-key KEY.pub]
    python -m cloudrone.fleet.sim down --fleet NAME
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import ipaddress
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import yaml
from docker.models.containers import Container

LABEL_FLEET = "io.cloudrone.fleet"
LABEL_DRONE = "io.cloudrone.drone"
LABEL_SPEC = "io.cloudrone.spec"
LABEL_PHONE = "io.cloudrone.phone"

# Every capability a systemd node needs, minus SYS_RESOURCE: that one is missing
# from the bounding set of some hosts, where --privileged then fails with
# "unable to apply caps". Names that Engine 20.10 rejects (BPF, PERFMON,
# CHECKPOINT_RESTORE) are left out on purpose.
CAPABILITIES: tuple[str, ...] = (
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
)

# Real-time budget handed to each drone, per second, out of the engine's
# --cpu-rt-runtime (950 ms): enough for a 50 Hz flight loop, and room for
# nine drones. Where the kernel has no RT group scheduling, or the pool is
# spent, a drone runs without one and its flight bridge reports no FIFO.
RT_RUNTIME_US = 100_000

# The password a simulated drone's first boot gives the operator's account, as
# the imager does with the one typed in its settings. Public on purpose: it
# is a leftover the base role must lock, and tests prove it no longer works.
IMAGER_PASSWORD = "raspberry"


class FleetError(RuntimeError):
    """Something the operator must fix before the fleet can come up."""


@dataclass(frozen=True)
class Link:
    """A radio link (or the management link) between drones: one network."""

    name: str
    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        # The controller sits on every link at the subnet's last address, so
        # drones can take low addresses and the controller is easy to find.
        return self.subnet.broadcast_address - 1


@dataclass(frozen=True)
class Drone:
    name: str
    addresses: dict[str, ipaddress.IPv4Address]
    memory: str | None = None
    cpus: float | None = None
    # another Debian release of the drone image (the recipe's other_suites)
    suite: str | None = None


@dataclass(frozen=True)
class Radio:
    """Who hears whom on the shared mesh segment, as on one IBSS channel.

    Every drone keeps one mesh interface and one mesh address; a pair that is
    not in ``in_range`` does not hear each other at all, and a pair in range
    may lose a share of its frames (``loss``, percent, each way).
    """

    link: str
    in_range: dict[frozenset[str], int]

    def loss(self, a: str, b: str) -> int | None:
        """Percent of frames lost between a and b; None when out of range."""
        return self.in_range.get(frozenset((a, b)))


@dataclass(frozen=True)
class FleetSpec:
    fleet: str
    links: tuple[Link, ...]
    drones: tuple[Drone, ...]
    admin_user: str = "cloudrone"
    image: str | None = None
    # None: every drone hears every other on every link (a wired lab)
    radio: Radio | None = None

    def network_name(self, link: str) -> str:
        return f"cloudrone-{self.fleet}-{link}"

    def container_name(self, drone: str) -> str:
        return f"cloudrone-{self.fleet}-{drone}"

    def volume_name(self, drone: str) -> str:
        return f"cloudrone-{self.fleet}-{drone}-docker"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "fleet spec") -> FleetSpec:
        def fail(where: str, msg: str) -> FleetError:
            return FleetError(f"{source}: {where}: {msg}")

        fleet = str(data.get("fleet", ""))
        if not fleet or not fleet.replace("-", "").isalnum():
            raise fail("fleet", f"{fleet!r} must be letters, digits and dashes")
        links = []
        for i, raw in enumerate(data.get("links", [])):
            try:
                subnet = ipaddress.IPv4Network(str(raw["subnet"]))
            except (KeyError, ValueError) as exc:
                raise fail(
                    f"links[{i}].subnet", f"{exc}; give a network like 10.42.0.0/24"
                ) from None
            links.append(Link(name=str(raw["name"]), subnet=subnet))
        by_name = {link.name: link for link in links}
        drones = []
        for i, raw in enumerate(data.get("drones", [])):
            addresses = {}
            for link_name, addr in (raw.get("links") or {}).items():
                if link_name not in by_name:
                    raise fail(
                        f"drones[{i}].links.{link_name}",
                        f"no such link; known links: {', '.join(by_name)}",
                    )
                ip = ipaddress.IPv4Address(str(addr))
                link = by_name[link_name]
                if ip not in link.subnet or ip in (
                    link.subnet.network_address,
                    link.subnet.broadcast_address,
                    link.gateway,
                ):
                    raise fail(
                        f"drones[{i}].links.{link_name}",
                        f"{ip} is not a host address of {link.subnet} "
                        f"(and {link.gateway} is the controller's)",
                    )
                addresses[link_name] = ip
            drones.append(
                Drone(
                    name=str(raw["name"]),
                    addresses=addresses,
                    memory=raw.get("memory"),
                    cpus=raw.get("cpus"),
                    suite=raw.get("suite"),
                )
            )
        return cls(
            fleet=fleet,
            links=tuple(links),
            drones=tuple(drones),
            admin_user=str(data.get("admin_user", "cloudrone")),
            image=data.get("image"),
            radio=_radio(data.get("radio"), by_name, {d.name for d in drones}, fail),
        )


def _radio(
    raw: Any, links: dict[str, Link], drones: set[str], fail: Callable[[str, str], FleetError]
) -> Radio | None:
    """``{link: mesh, range: [{between: [a, b], loss: 40}, ...]}`` -> Radio."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("link") not in links:
        raise fail("radio.link", f"name the mesh link, one of: {', '.join(links)}")
    in_range: dict[frozenset[str], int] = {}
    for i, pair in enumerate(raw.get("range") or []):
        between = pair.get("between") if isinstance(pair, dict) else None
        if not isinstance(between, list) or len(set(between)) != 2:
            raise fail(f"radio.range[{i}].between", "name two different drones, e.g. [a, b]")
        unknown = [d for d in between if d not in drones]
        if unknown:
            raise fail(f"radio.range[{i}].between", f"no drone named {', '.join(unknown)}")
        loss = pair.get("loss", 0)
        if not isinstance(loss, int) or isinstance(loss, bool) or not 0 <= loss < 100:
            raise fail(f"radio.range[{i}].loss", f"{loss!r}: give a whole percent, 0 to 99")
        in_range[frozenset(between)] = loss
    return Radio(link=str(raw["link"]), in_range=in_range)


def radio_ruleset(name: str, ports: dict[str, str], radio: Radio) -> str:
    """The nft script that makes the mesh segment's bridge a radio channel.

    ``ports`` maps each drone to its host-side interface on the mesh link's
    bridge. Frames between two drones out of range are dropped; between two
    in range, ``loss`` percent of them at random. The controller's own
    traffic on the bridge (input and output, not forward) is left alone.
    """
    table = f"cloudrone_radio_{name.replace('-', '_')}"
    rules = []
    names = sorted(ports)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            loss = radio.loss(a, b)
            if loss == 0:
                continue
            for src, dst in ((a, b), (b, a)):
                match = f'iifname "{ports[src]}" oifname "{ports[dst]}"'
                if loss is None:
                    rules.append(f'\t\t{match} drop comment "{src} -/- {dst}"')
                else:
                    rules.append(
                        f"\t\t{match} numgen random mod 100 < {loss} drop "
                        f'comment "{src} -> {dst} {loss}% lost"'
                    )
    body = "\n".join(rules)
    return (
        f"table bridge {table}\n"
        f"delete table bridge {table}\n"
        f"table bridge {table} {{\n"
        f"\tchain forward {{\n"
        f"\t\ttype filter hook forward priority filter; policy accept;\n"
        f"{body}\n"
        f"\t}}\n"
        f"}}\n"
    )


def spec_from_platforms(fleet: str, platforms: list[dict[str, Any]]) -> FleetSpec:
    """A fleet from molecule's ``platforms``: each names its links and address on each.

    ``{name: drone-1, links: [{name: mgmt, subnet: 10.251.0.0/24, address: 10.251.0.11}]}``
    """
    links: dict[str, str] = {}
    drones = []
    pairs: dict[frozenset[str], int] = {}
    for p in platforms:
        # hears: [other, ...] or {other: loss percent}; symmetric, like a radio
        hears = p.get("hears")
        if hears is not None:
            items = hears.items() if isinstance(hears, dict) else ((h, 0) for h in hears)
            for other, loss in items:
                pairs[frozenset((p["name"], other))] = loss
    for i, p in enumerate(platforms):
        addresses = {}
        for j, link in enumerate(p.get("links") or []):
            where = f"platforms[{i}].links[{j}]"
            try:
                name, subnet, address = link["name"], link["subnet"], link["address"]
            except KeyError as exc:
                raise FleetError(
                    f"molecule.yml: {where}: missing {exc}; give name, subnet, address"
                ) from None
            if links.setdefault(name, subnet) != subnet:
                raise FleetError(
                    f"molecule.yml: {where}.subnet: {subnet} differs from {links[name]} "
                    f"given for link {name} elsewhere; one link, one subnet"
                )
            addresses[name] = address
        drones.append(
            {
                "name": p["name"],
                "links": addresses,
                "memory": p.get("memory"),
                "suite": p.get("suite"),
            }
        )
    radio = None
    if any("hears" in p for p in platforms):
        radio = {
            "link": "mesh",
            "range": [{"between": sorted(k), "loss": v} for k, v in pairs.items()],
        }
    return FleetSpec.from_dict(
        {
            "fleet": fleet,
            "links": [{"name": n, "subnet": s} for n, s in links.items()],
            "drones": drones,
            "radio": radio,
        },
        source="molecule.yml",
    )


def engine_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise FleetError(
            f"no Docker engine answers ({exc}); run scripts/setup.sh, which starts one"
        ) from exc
    return client


@functools.cache
def privileged_works(image: str) -> bool:
    """Whether this host lets a container run --privileged (some hosts refuse)."""
    client = engine_client()
    name = f"cloudrone-probe-{os.getpid()}"
    try:
        client.containers.run(image, "true", privileged=True, name=name)
    except docker.errors.APIError:
        return False
    finally:
        # a container that failed to start is not removed by run(remove=True)
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
    return True


def container_kwargs(spec: FleetSpec, drone: Drone, image: str, privileged: bool) -> dict:
    """Everything ``docker run`` needs for one drone, in docker SDK terms."""
    kwargs: dict[str, Any] = {
        "image": image,
        "command": "/sbin/init",
        "name": spec.container_name(drone.name),
        "hostname": drone.name,
        "environment": {"container": "docker"},
        "stop_signal": "SIGRTMIN+3",
        "tmpfs": {"/run": "rw,exec", "/run/lock": "rw"},
        "cgroupns": "host",
        "volumes": {
            "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
            spec.volume_name(drone.name): {"bind": "/var/lib/docker", "mode": "rw"},
        },
        # seccomp off for systemd; /proc/sys writable so the drone's own
        # (namespaced) net.* sysctls can be set like on a Pi.
        "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
        # (the CLI's --security-opt systempaths=unconfined, in API terms)
        "unmask_system_paths": True,
        "labels": {LABEL_FLEET: spec.fleet, LABEL_DRONE: drone.name},
        "restart_policy": {"Name": "unless-stopped"},
    }
    if privileged:
        kwargs["privileged"] = True
    else:
        kwargs["cap_drop"] = ["ALL"]
        kwargs["cap_add"] = list(CAPABILITIES)
    if drone.memory:
        kwargs["mem_limit"] = drone.memory
    if drone.cpus:
        kwargs["nano_cpus"] = int(drone.cpus * 1e9)
    return kwargs


# container_kwargs() keys that go into the host config as they are
HOST_CONFIG_KEYS = (
    "cgroupns", "security_opt", "cap_add", "cap_drop", "privileged", "tmpfs",
    "restart_policy", "mem_limit", "nano_cpus",
)  # fmt: skip


def spec_digest(kwargs: dict, addresses: dict[str, str]) -> str:
    blob = json.dumps({"run": kwargs, "addresses": addresses}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# separates the exit code from the output when SimFleet.sh reads a command's spool
SPOOL_MARK = "--- cloudrone-sh-output ---"


# The operator's key for user $u ($key), added once: shared by the first boot
# and by a key made anew for drones already there.
AUTHORIZE_KEY_SH = """\
home=$(getent passwd "$u" | cut -d: -f6)
[ -n "$home" ] || exit 3
install -d -m 700 -o "$u" -g "$u" "$home/.ssh"
keys="$home/.ssh/authorized_keys"
grep -qxF "$key" "$keys" 2>/dev/null || echo "$key" >>"$keys"
chown "$u:$u" "$keys"; chmod 600 "$keys"
"""


class SimFleet:
    """Bring a simulated fleet up, describe it, and take it down again."""

    def __init__(self, spec: FleetSpec, log: Callable[[str], None] = print) -> None:
        self.spec = spec
        self.log = log
        self.client = engine_client()

    # -- links -------------------------------------------------------------
    def ensure_link(self, link: Link) -> None:
        name = self.spec.network_name(link.name)
        try:
            net = self.client.networks.get(name)
            configs = net.attrs.get("IPAM", {}).get("Config") or [{}]
            if configs[0].get("Subnet") != str(link.subnet):
                raise FleetError(
                    f"network {name} exists with subnet {configs[0].get('Subnet')}, "
                    f"not {link.subnet}; take the fleet down first "
                    f"(python -m cloudrone.fleet.sim down --fleet {self.spec.fleet})"
                )
            return
        except docker.errors.NotFound:
            pass
        pool = docker.types.IPAMPool(subnet=str(link.subnet), gateway=str(link.gateway))
        try:
            # internal: no route to the outside world, as in the field. The
            # controller (the base camp) is still reachable at the gateway.
            self.client.networks.create(
                name,
                driver="bridge",
                internal=True,
                ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                labels={LABEL_FLEET: self.spec.fleet},
            )
        except docker.errors.APIError as exc:
            if "overlap" in str(exc).lower():
                raise FleetError(
                    f"link {link.name}: subnet {link.subnet} overlaps a network that "
                    f"already exists on this engine; pick another subnet "
                    f"(docker network ls shows what is taken)"
                ) from exc
            raise
        self.log(f"    link {link.name}: network {name} {link.subnet}")

    # -- drones ------------------------------------------------------------
    def _find(self, drone: Drone) -> Container | None:
        try:
            return self.client.containers.get(self.spec.container_name(drone.name))
        except docker.errors.NotFound:
            return None

    def ensure_drone(self, drone: Drone, image: str) -> Container:
        existing = self._find(drone)
        # an existing drone shows which mode its host allowed; only a new one
        # needs the probe (a throwaway container)
        if existing is not None:
            privileged = bool(existing.attrs["HostConfig"].get("Privileged"))
        else:
            privileged = privileged_works(image)
        kwargs = container_kwargs(self.spec, drone, image, privileged)
        addresses = {k: str(v) for k, v in drone.addresses.items()}
        digest = spec_digest(kwargs, addresses)
        if existing is not None:
            if existing.labels.get(LABEL_SPEC) == digest:
                if existing.status != "running":
                    existing.start()
                    self.log(f"    drone {drone.name}: started again")
                return existing
            self.log(f"    drone {drone.name}: definition changed, recreating")
            existing.remove(force=True)
        kwargs["labels"][LABEL_SPEC] = digest
        links = list(drone.addresses.items())
        if links:
            kwargs["network"] = self.spec.network_name(links[0][0])
        try:
            container = self._create_and_start(kwargs, links, with_rt=rt_budget_available())
        except docker.errors.APIError as exc:
            if "rt_runtime" not in str(exc):
                raise
            self.log(
                f"    drone {drone.name}: the engine's real-time pool is spent; "
                "starting it without (its flight bridge will report no FIFO)"
            )
            self._find(drone).remove(force=True)
            container = self._create_and_start(kwargs, links, with_rt=False)
        mode = "privileged" if privileged else "explicit capabilities"
        self.log(f"    drone {drone.name}: container {container.name} ({mode})")
        return container

    def _create_and_start(
        self, kwargs: dict, links: list[tuple[str, Any]], with_rt: bool
    ) -> Container:
        """Create the drone on its first link, join it to the others, start it."""
        container = self._create(kwargs, links[0][1] if links else None, with_rt)
        for link_name, ip in links[1:]:
            self.client.networks.get(self.spec.network_name(link_name)).connect(
                container, ipv4_address=str(ip)
            )
        container.start()
        return container

    def _create(self, kwargs: dict, first_ip: Any, with_rt: bool) -> Container:
        """Create (not start) the container, with its address on its first link.

        The low-level API, because the SDK's create() neither takes an address
        nor unmasks /proc/sys (the CLI's --security-opt systempaths=unconfined).
        """
        api = self.client.api
        network = kwargs.get("network")
        binds = kwargs["volumes"]
        host_config = api.create_host_config(
            binds=binds,
            network_mode=network,
            **{k: kwargs[k] for k in HOST_CONFIG_KEYS if k in kwargs},
            **({"cpu_rt_runtime": RT_RUNTIME_US} if with_rt else {}),
        )
        if kwargs.get("unmask_system_paths"):
            host_config["MaskedPaths"] = []
            host_config["ReadonlyPaths"] = []
        networking = None
        if network:
            networking = api.create_networking_config(
                {network: api.create_endpoint_config(ipv4_address=str(first_ip))}
            )
        resp = api.create_container(
            kwargs["image"],
            command=kwargs["command"],
            name=kwargs["name"],
            hostname=kwargs["hostname"],
            environment=kwargs["environment"],
            stop_signal=kwargs["stop_signal"],
            labels=kwargs["labels"],
            volumes=[v["bind"] for v in binds.values()],
            host_config=host_config,
            networking_config=networking,
            detach=True,
        )
        return self.client.containers.get(resp["Id"])

    def wait_ready(self, container: Container, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            _, out = container.exec_run(["systemctl", "is-system-running"])
            state = out.decode().strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.5)
        _, failed = container.exec_run(["systemctl", "--failed", "--no-legend"])
        raise FleetError(
            f"{container.name} did not finish booting in {timeout:.0f} s (systemd says "
            f"{state!r}); failed units: {failed.decode().strip() or 'none'}"
        )

    def bootstrap_user(self, container: Container, user: str, public_key: str) -> None:
        """What Raspberry Pi Imager (or a cloud image's first boot) leaves on a drone.

        The user the operator named, with the operator's key, and also what a
        flashed image really carries and the base role must undo: a password
        on that account, a password-less sudoers file per image kind, and an
        sshd drop-in that turns password logins on. Done once per drone, on
        its first boot, as the imager does: a provisioned drone is not
        flashed again by a second ``up``.
        """
        script = f"""
set -e
marker=/var/lib/cloudrone-sim/first-boot-done
[ -e "$marker" ] && exit 0
u={shlex.quote(user)}
id -u "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash -G sudo "$u"
key={shlex.quote(public_key.strip())}
{AUTHORIZE_KEY_SH}
# The imager asks for a password and sets it; it also allows sudo without one.
echo "$u:{IMAGER_PASSWORD}" | chpasswd
echo "$u ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/010_$u-nopasswd
chmod 440 /etc/sudoers.d/010_$u-nopasswd
# Cloud images (cloud-init) leave the same grant under another name, and an
# sshd drop-in that allows passwords.
echo "$u ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/90-cloud-init-users
chmod 440 /etc/sudoers.d/90-cloud-init-users
install -d /etc/ssh/sshd_config.d
echo "PasswordAuthentication yes" >/etc/ssh/sshd_config.d/50-cloud-init.conf
install -d /var/lib/cloudrone-sim
touch "$marker"
"""
        rc, out = container.exec_run(["/bin/sh", "-c", script])
        if rc != 0:
            raise FleetError(f"{container.name}: first-boot user setup failed: {out.decode()}")

    def authorize_key(self, public_key: str) -> None:
        """Let ``public_key`` log in as the admin user on every drone already made.

        For an operator whose simulated fleet's key was made anew (a new home,
        a key deleted) while the drones stayed: a real Pi would need the key
        put there by hand; a simulated one takes it from the engine.
        """
        script = (
            f"set -e\nu={shlex.quote(self.spec.admin_user)}\n"
            f"key={shlex.quote(public_key.strip())}\n{AUTHORIZE_KEY_SH}"
        )
        for drone in self.spec.drones:
            rc, out = self.sh(drone.name, script)
            if rc != 0:
                raise FleetError(
                    f"drone {drone.name}: the new key could not be given to "
                    f"{self.spec.admin_user} (exit {rc}): {out.strip()}; take the fleet "
                    "down (mission down --purge) and bring it up again"
                )

    def up(self, image: str, public_key: str | None = None) -> list[dict[str, Any]]:
        """Create or reuse every link and drone; ``image`` serves drones of no other suite."""
        from cloudrone.fleet import image as image_mod

        for link in self.spec.links:
            self.ensure_link(link)
        suites = {d.suite for d in self.spec.drones if d.suite}
        images = {s: image_mod.ensure(log=self.log, suite=s) for s in sorted(suites)}
        containers = [
            self.ensure_drone(d, images.get(d.suite or "", image)) for d in self.spec.drones
        ]
        for container in containers:
            self.wait_ready(container)
            if public_key:
                self.bootstrap_user(container, self.spec.admin_user, public_key)
        self.apply_radio()
        self.allow_routed_traffic()
        return self.describe()

    # -- routed traffic on the links ------------------------------------------
    def bridge_of(self, link: Link) -> str:
        net = self.client.networks.get(self.spec.network_name(link.name))
        return net.attrs.get("Options", {}).get("com.docker.network.bridge.name") or (
            "br-" + net.id[:12]
        )

    def allow_routed_traffic(self) -> None:
        """Let every frame cross each link's bridge, whatever its addresses.

        The engine's isolation rules for internal networks drop frames whose
        source or destination lies outside the network's subnet, which is all
        of routed traffic (a phone's packet relayed across the mesh) and a
        DHCP client's broadcast from 0.0.0.0. A radio carries them; so must the
        link. The rules sit in DOCKER-USER, the chain the engine keeps for its
        users, and leave with the fleet.
        """
        for link in self.spec.links:
            bridge = self.bridge_of(link)
            rule = ["DOCKER-USER", "-i", bridge, "-o", bridge, "-j", "ACCEPT",
                    "-m", "comment", "--comment", _routed_comment(self.spec.fleet)]  # fmt: skip
            try:
                present = subprocess.run(["iptables", "-C", *rule], capture_output=True)
                if present.returncode != 0:
                    subprocess.run(["iptables", "-I", *rule], capture_output=True, text=True,
                                   check=True)  # fmt: skip
            except FileNotFoundError:
                raise FleetError("iptables not found: the Docker engine's host needs it") from None
            except subprocess.CalledProcessError as exc:
                raise FleetError(f"iptables refused a rule for link {link.name}: "
                                 f"{exc.stderr.strip()}") from None  # fmt: skip

    # -- radio range ---------------------------------------------------------
    def mesh_port(self, drone: str) -> str:
        """The host-side interface of a drone's mesh interface (its veth peer)."""
        assert self.spec.radio is not None
        spec_drone = next(d for d in self.spec.drones if d.name == drone)
        address = str(spec_drone.addresses[self.spec.radio.link])
        container = self.client.containers.get(self.spec.container_name(drone))
        if container.status != "running":
            raise FleetError(
                f"drone {drone}: its container is {container.status}; start it (or bring "
                "the fleet up again) before changing the radio range"
            )
        # asked a few times: on a busy machine an exec may fail for a moment
        for attempt in range(5):
            rc, out = container.exec_run(
                ["sh", "-c", f"ip -o -4 addr show | awk '$4 ~ /^{address}\\//{{print $2}}'"]
            )
            inner = out.decode().strip()
            rc2, peer = container.exec_run(["cat", f"/sys/class/net/{inner}/iflink"])
            # the engine may lose an exec's output and still say it succeeded
            index = peer.decode().strip()
            if rc == 0 and rc2 == 0 and inner and index.isdigit():
                return socket.if_indextoname(int(index))
            time.sleep(0.5 * (attempt + 1))
        raise FleetError(f"drone {drone}: no interface holds its mesh address {address}")

    def apply_radio(self, radio: Radio | None = None) -> None:
        """Make the mesh segment hear as ``radio`` says (the spec's by default), now.

        The whole table is replaced in one transaction; call it again after a
        drone's container restarted (its host-side interface is new).
        """
        radio = radio or self.spec.radio
        if radio is None:
            return
        ports = {d.name: self.mesh_port(d.name) for d in self.spec.drones}
        script = radio_ruleset(self.spec.fleet, ports, radio)
        try:
            subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True,
                           capture_output=True)  # fmt: skip
        except FileNotFoundError:
            raise FleetError(
                "nft not found: radio range needs nftables on this machine "
                "(apt-get install nftables, or run scripts/setup.sh)"
            ) from None
        except subprocess.CalledProcessError as exc:
            raise FleetError(f"nft refused the radio rules: {exc.stderr.strip()}") from None

    def set_range(self, a: str, b: str, loss: int | None) -> Radio:
        """Put a and b in range (with ``loss`` percent lost) or, with None, out of it."""
        assert self.spec.radio is not None, "this fleet has no radio section"
        pairs = dict(self.spec.radio.in_range)
        if loss is None:
            pairs.pop(frozenset((a, b)), None)
        else:
            pairs[frozenset((a, b))] = loss
        radio = Radio(link=self.spec.radio.link, in_range=pairs)
        self.apply_radio(radio)
        # the fleet's range changes only once the segment hears that way: a
        # range that failed to apply must not ride along with the next change
        self.spec = dataclasses.replace(self.spec, radio=radio)
        return radio

    def sh(self, drone: str, command: str) -> tuple[int, str]:
        """Run a shell command on a drone as root: (exit code, output).

        The engine now and then loses a short exec's output while reporting
        its exit code (moby/moby#27289, docker/docker-py#2042). So the
        command's output and exit code go to a file on the drone, read back by
        a second exec that can be repeated without running the command again.
        """
        container = self.client.containers.get(self.spec.container_name(drone))
        spool = f"/run/cloudrone-sh.{secrets.token_hex(6)}"
        ran = container.exec_run(["sh", "-c", f"( {command}\n) >{spool} 2>&1; echo $? >{spool}.rc"])
        for _ in range(5):
            read = container.exec_run(
                ["sh", "-c", f"cat {spool}.rc; echo {SPOOL_MARK}; cat {spool}"]
            )
            head, mark, body = (
                (read.output or b"").decode(errors="replace").partition(SPOOL_MARK + "\n")
            )
            if mark and head.strip().isdigit():
                container.exec_run(["rm", "-f", spool, f"{spool}.rc"], detach=True)
                return int(head.strip()), body
            time.sleep(0.2)
        # the spool could not be read back: what the exec itself said
        return ran.exit_code, (ran.output or b"").decode(errors="replace")

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for drone in self.spec.drones:
            c = self._find(drone)
            out.append(
                {
                    "drone": drone.name,
                    "container": self.spec.container_name(drone.name),
                    "state": c.status if c else "absent",
                    "addresses": {k: str(v) for k, v in drone.addresses.items()},
                }
            )
        return out


# What a phone's DHCP client does with its lease, as busybox udhcpc hands it
# over (ip, mask, router, dns, domain in the environment; options it has no
# name for as optNNN, in hex: the captive portal's URI of RFC 8910 is opt114).
PHONE_DHCP_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    : > /etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
    for s in $dns; do echo "nameserver $s" >> /etc/resolv.conf; done
    if [ -n "$opt114" ]; then echo "$opt114" > /run/phone-captive; else rm -f /run/phone-captive; fi
    echo "$ip" > /run/phone-lease ;;
esac
"""
PHONE_BUSYBOX = "/bin/busybox"  # static; the host setup installs busybox-static
# One HTTP request as a phone's operating system makes its Internet check: no
# redirect followed. Prints {"status", "location", "body"} as JSON.
PHONE_HTTP = r"""
import json, sys, urllib.error, urllib.request
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None
method, url = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method)
try:
    r = urllib.request.build_opener(Stay).open(req, timeout=10)
    out = {"status": r.status, "location": r.headers.get("Location", ""), "body": r.read().decode()}
except urllib.error.HTTPError as e:
    out = {"status": e.code, "location": e.headers.get("Location", ""), "body": ""}
print(json.dumps(out))
"""


class Phone:
    """A phone on a drone's access point: a plain container with a DHCP client.

    It stands on the link that plays the drone's radio, drops the address
    Docker gave it, and takes whatever the drone's DHCP server hands out,
    as a phone joining the WiFi would. The drone image lends it Python (to
    resolve names and fetch pages through the C library, as apps do) and the
    host's static busybox its udhcpc, nslookup and nc.
    """

    def __init__(self, container: Container) -> None:
        self.container = container

    @property
    def name(self) -> str:
        return self.container.name

    def sh(self, command: str, timeout: float = 60) -> tuple[int, str]:
        """Run ``command`` in the phone; (exit code, output)."""
        result = self.container.exec_run(
            ["timeout", str(int(timeout)), "sh", "-c", command], demux=False
        )
        return result.exit_code, (result.output or b"").decode(errors="replace")

    def join(self, interface: str = "eth0", timeout: int = 20) -> str:
        """Drop Docker's address and ask for a lease; returns the leased address."""
        script, hook = shlex.quote(PHONE_DHCP_SCRIPT), "/usr/local/sbin/phone-dhcp"
        code, out = self.sh(
            f"printf %s {script} > {hook} && chmod +x {hook}"
            f" && ip -4 addr flush dev {interface} && rm -f /run/phone-lease"
            f" && busybox udhcpc -i {interface} -s {hook} -f -q -n -O 114"
            f" -t {timeout} -T 1 && cat /run/phone-lease",
            timeout=timeout + 10,
        )
        if code != 0:
            raise FleetError(f"phone {self.name} got no lease: {out.strip()}")
        return out.strip().splitlines()[-1]

    def http(self, url: str, method: str = "GET") -> tuple[int, str, str]:
        """(status, Location, body) of one request from the phone, redirects not followed."""
        code, out = self.sh(f"python3 -c {shlex.quote(PHONE_HTTP)} {method} {shlex.quote(url)}")
        if code != 0:
            raise FleetError(f"phone {self.name}: {method} {url} failed: {out.strip()}")
        answer = json.loads(out.strip().splitlines()[-1])
        return answer["status"], answer["location"], answer["body"]

    def captive_portal(self) -> str | None:
        """The captive portal's URI the last lease carried (DHCP option 114), if any."""
        code, out = self.sh("cat /run/phone-captive")
        return bytes.fromhex(out.strip()).decode() if code == 0 and out.strip() else None

    def browser(self, folder: Path, browser: str = "/usr/bin/chromium") -> Path:
        """A launcher for ``browser`` that runs it as this phone: in the phone's
        network namespace (its leased address, its route, its drone's access
        point) and resolving by the phone's resolv.conf (its drone's DNS), so a
        browser on this machine sees the fleet as the phone does. Give its path
        to a browser driver as the executable (Playwright talks to it by pipes).
        Needs root, as the fleet does."""
        self.container.reload()
        pid = self.container.attrs["State"]["Pid"]
        if not pid:
            raise FleetError(f"phone {self.name} is not running")
        code, resolv = self.sh("cat /etc/resolv.conf")
        if code != 0 or "nameserver" not in resolv:
            raise FleetError(f"phone {self.name} has no resolver yet: join a drone first")
        resolv_conf = folder / f"resolv-{self.name}.conf"
        resolv_conf.write_text(resolv)
        script = folder / f"browser-{self.name}"
        script.write_text(
            "#!/bin/sh\n"
            f"# {browser} as {self.name} sees the network\n"
            f"exec nsenter --net=/proc/{pid}/ns/net -- unshare --mount --propagation private -- "
            f'sh -c \'mount --bind "$0" /etc/resolv.conf && exec {shlex.quote(browser)} "$@"\' '
            f'{shlex.quote(str(resolv_conf))} "$@"\n'
        )
        script.chmod(0o755)
        return script

    def remove(self) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True)


def add_phone(spec: FleetSpec, link: str, name: str, image: str) -> Phone:
    """A phone on ``link`` (a drone's access point network), replacing any of that name."""
    client = engine_client()
    if link not in {lk.name for lk in spec.links}:
        raise FleetError(f"no link {link} in fleet {spec.fleet}; known: "
                         f"{', '.join(lk.name for lk in spec.links)}")  # fmt: skip
    if not Path(PHONE_BUSYBOX).exists():
        raise FleetError(f"{PHONE_BUSYBOX} not found: run scripts/setup.sh (busybox-static)")
    container_name = spec.container_name(name)
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(container_name).remove(force=True)
    container = client.containers.run(
        image,
        ["sleep", "infinity"],
        name=container_name,
        hostname=name,
        network=spec.network_name(link),
        cap_drop=["ALL"],
        cap_add=["NET_ADMIN", "NET_RAW"],
        volumes={PHONE_BUSYBOX: {"bind": "/usr/local/bin/busybox", "mode": "ro"}},
        labels={LABEL_FLEET: spec.fleet, LABEL_PHONE: name},
        detach=True,
    )
    return Phone(container)


def down(fleet: str, log: Callable[[str], None] = print) -> int:
    """Remove every container, volume and network of a fleet. Returns how many."""
    client = engine_client()
    removed = 0
    selector = {"label": f"{LABEL_FLEET}={fleet}"}
    for c in client.containers.list(all=True, filters=selector):
        c.remove(force=True, v=False)
        log(f"    removed container {c.name}")
        removed += 1
    for v in client.volumes.list(filters={"name": f"cloudrone-{fleet}-"}):
        if v.name.startswith(f"cloudrone-{fleet}-") and v.name.endswith("-docker"):
            v.remove(force=True)
            removed += 1
    for n in client.networks.list(filters=selector):
        n.remove()
        log(f"    removed network {n.name}")
        removed += 1
    _remove_routed_rules(fleet, log)
    table = f"cloudrone_radio_{fleet.replace('-', '_')}"
    with contextlib.suppress(FileNotFoundError):
        if subprocess.run(["nft", "delete", "table", "bridge", table],
                          capture_output=True, check=False).returncode == 0:  # fmt: skip
            log(f"    removed radio range {table}")
    return removed


def _routed_comment(fleet: str) -> str:
    """What marks a fleet's DOCKER-USER rules, for ``down`` to find them."""
    return f"cloudrone-{fleet}"


def _remove_routed_rules(fleet: str, log: Callable[[str], None]) -> None:
    """Take the fleet's DOCKER-USER rules (SimFleet.allow_routed_traffic) away."""
    try:
        listing = subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True,
                                 text=True, check=False).stdout  # fmt: skip
    except FileNotFoundError:
        return
    for line in listing.splitlines():
        if f"--comment {_routed_comment(fleet)} " in line + " " and line.startswith("-A "):
            args = shlex.split(line)[1:]
            subprocess.run(["iptables", "-D", *args], capture_output=True, check=False)
            log(f"    removed routed-traffic rule {' '.join(args)}")


def rt_budget_available() -> bool:
    return Path("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists()


def molecule_fleet(fleet: str) -> SimFleet:
    """A molecule scenario's fleet, from the platforms its create step wrote."""
    folder = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    platforms = json.loads((folder / "platforms.json").read_text())
    return SimFleet(spec_from_platforms(fleet, platforms), log=lambda _m: None)


def load_spec(path: Path) -> FleetSpec:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FleetError(f"{path}: {exc}") from exc
    return FleetSpec.from_dict(data or {}, source=str(path))


def _main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudrone.fleet.sim")
    sub = parser.add_subparsers(dest="action", required=True)
    p_up = sub.add_parser("up", help="create or reuse the fleet in FILE; print it as JSON")
    p_up.add_argument("--file", type=Path, help="fleet spec (YAML)")
    p_up.add_argument("--molecule-platforms", type=Path, help="molecule platforms (JSON)")
    p_up.add_argument("--fleet", help="fleet name, with --molecule-platforms")
    p_up.add_argument("--authorized-key", type=Path, help="public key for the admin user")
    p_up.add_argument("--image", help="drone image (default: build or reuse the recipe's)")
    p_down = sub.add_parser("down", help="remove the fleet's containers, volumes, networks")
    p_down.add_argument("--fleet", required=True)
    args = parser.parse_args(list(argv) if argv is not None else None)
    log = functools.partial(print, file=sys.stderr)
    try:
        if args.action == "down":
            down(args.fleet, log=log)
            return 0
        if args.molecule_platforms:
            platforms = json.loads(args.molecule_platforms.read_text())
            spec = spec_from_platforms(args.fleet, platforms)
        elif args.file:
            spec = load_spec(args.file)
        else:
            parser.error("up needs --file or --molecule-platforms")
        from cloudrone.fleet import image as image_mod

        image = args.image or spec.image or image_mod.ensure(log=log)
        key = args.authorized_key.read_text() if args.authorized_key else None
        print(json.dumps(SimFleet(spec, log=log).up(image, key), indent=2))
    except FleetError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
