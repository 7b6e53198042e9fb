"""The daemon's YAML configuration: defaults, validation and messages a user can act on.

Every problem is reported as ``FILE:LINE KEY: what is wrong; how to fix it`` by
:mod:`cloudrone.problems` (the way every Cloudrone configuration reports), and a
config with any problem is refused as a whole.

The timers come from a named profile (``profile: rfc`` or ``fast``, defined once in
:data:`cloudrone.olsr.constants.PROFILES`); a timer key in the file overrides it.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cloudrone.olsr import constants as C
from cloudrone.olsr.protocol import Timers
from cloudrone.problems import ConfigProblems, Problems, parse_yaml, read_yaml

DEFAULT_PATH = "/etc/cloudrone/olsrd.yml"
LOG_LEVELS = ("debug", "info", "warning", "error")
LINK_QUALITY = {
    "none": "route by hop count with RFC 3626 HELLO and TC (olsrd's LinkQualityLevel 0)",
    "etx": "route by ETX with LQ_HELLO and LQ_TC (olsrd's default, etx_ff)",
}


class ConfigError(ConfigProblems):
    """A refused configuration; ``problems`` holds one line per problem."""


@dataclass(frozen=True, slots=True)
class FromProfile:
    """A default taken from the configured timer profile."""

    name: str


@dataclass(slots=True)
class Config:
    interfaces: list[str]
    main_address: str | None = None
    willingness: int = C.WILL_DEFAULT
    timers: Timers = field(default_factory=Timers)
    tc_redundancy: int = C.TC_REDUNDANCY_ALL_NEIGHBORS
    hna_networks: list[tuple[str, int]] = field(default_factory=list)
    hna_accept: list[tuple[str, int]] = field(default_factory=list)
    hna_gateways: list[str] = field(default_factory=list)
    fleet: list[str] = field(default_factory=list)
    max_jitter: float = C.HELLO_INTERVAL / 4
    route_table: int = 254
    route_protocol: int = 100
    route_metric: int = 2
    route_check_interval: float = 5.0
    status_address: str = "127.0.0.1"
    status_port: int = 9090
    log_level: str = "info"
    port: int = C.OLSR_PORT
    profile: str = C.DEFAULT_PROFILE
    link_quality: str = "none"
    source: str = ""


# key -> (default, kind); a dict as default means a nested section
SCHEMA: dict[str, Any] = {
    "interfaces": (None, "interfaces"),
    "profile": (C.DEFAULT_PROFILE, "profile"),
    "link_quality": ("none", "link_quality"),
    "main_address": (None, "ipv4_or_null"),
    "willingness": (C.WILL_DEFAULT, "willingness"),
    "port": (C.OLSR_PORT, "port"),
    "hello": {
        "interval": (FromProfile("hello_interval"), "seconds"),
        "validity": (FromProfile("hello_validity"), "seconds"),
    },
    "tc": {
        "interval": (FromProfile("tc_interval"), "seconds"),
        "validity": (FromProfile("tc_validity"), "seconds"),
        "redundancy": (C.TC_REDUNDANCY_ALL_NEIGHBORS, "redundancy"),
    },
    "mid": {
        "interval": (FromProfile("mid_interval"), "seconds"),
        "validity": (FromProfile("mid_validity"), "seconds"),
    },
    "hna": {
        "interval": (FromProfile("hna_interval"), "seconds"),
        "validity": (FromProfile("hna_validity"), "seconds"),
        "networks": ([], "networks"),
        # believed from others: inside these networks only (empty: anything) ...
        "accept": ([], "networks"),
        # ... except from these nodes, which may announce any network (gateways)
        "gateways": ([], "addresses"),
        # the mission's nodes (main addresses); others' announcements are refused
        # and the nodes reported (empty: everyone is one of us)
        "fleet": ([], "addresses"),
    },
    "duplicate_hold": (C.DUP_HOLD_TIME, "seconds"),
    "max_jitter": (FromProfile("max_jitter"), "jitter"),
    "routes": {
        "table": (254, "table"),
        "protocol": (100, "protocol"),
        "metric": (2, "metric"),
        "check_interval": (5.0, "seconds"),
    },
    "status": {
        "address": ("127.0.0.1", "ipv4"),
        "port": (9090, "port_or_zero"),
    },
    "log": {"level": ("info", "log_level")},
}


def host_interfaces() -> list[str]:
    return sorted(name for _i, name in socket.if_nameindex())


Path_ = tuple[str | int, ...]
PROFILE_HOLDS = ", ".join(f"{p['hello_validity']:g} s ({n})" for n, p in C.PROFILES.items())


class _Checker:
    def __init__(self, problems: Problems, interfaces: Callable[[], list[str]]) -> None:
        self.problems = problems
        self.interfaces = interfaces
        self.profile: dict[str, float] = C.PROFILES[C.DEFAULT_PROFILE]
        self.profile_name = C.DEFAULT_PROFILE
        self.from_profile: set[str] = set()  # timers left to the profile

    def fail(self, key: Path_, problem: str) -> None:
        self.problems.add(key, problem)

    def number(self, key: Path_, value: Any, *, integer: bool = False) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "a whole number" if integer else "a number"
            self.fail(key, f"{value!r} is not {kind}; write it like {'9090' if integer else '2.0'}")
            return None
        if integer and not isinstance(value, int):
            self.fail(key, f"{value!r} is not a whole number; drop the fraction")
            return None
        if not math.isfinite(value):
            self.fail(key, f"{value!r} is not a finite number")
            return None
        return value

    def check(self, key: Path_, value: Any, kind: str) -> Any:
        if kind == "profile":
            if not isinstance(value, str) or value not in C.PROFILES:
                self.fail(
                    key,
                    f"{value!r} is not a timer profile; use one of: {', '.join(C.PROFILES)} "
                    f"(a lost neighbour is noticed after {PROFILE_HOLDS})",
                )
                return None
            return value
        if kind == "link_quality":
            if not isinstance(value, str) or value not in LINK_QUALITY:
                choices = "; ".join(f"{k} ({v})" for k, v in LINK_QUALITY.items())
                self.fail(key, f"{value!r} is not a link quality mode; use {choices}")
                return None
            return value
        if kind == "seconds":
            v = self.number(key, value)
            if v is not None and not 0.0625 <= v <= 3968:
                self.fail(key, f"{v} s is outside 0.0625..3968 s, the range OLSR can encode")
                return None
            return v
        if kind == "jitter":
            v = self.number(key, value)
            if v is not None and v < 0:
                self.fail(key, f"{v} is negative; use 0 to send without jitter")
                return None
            return v
        if kind in ("willingness", "redundancy", "table", "protocol", "metric"):
            bounds = {
                "willingness": (0, 7, "0 (never relay) .. 7 (always relay); 3 is the default"),
                "redundancy": (0, 2, "0 (MPR selectors), 1 (+ MPRs) or 2 (all neighbours)"),
                "table": (1, 0xFFFFFFFF, "a routing table number such as 254 (main)"),
                "protocol": (5, 255, "a route protocol number 5..255 not used by others"),
                "metric": (0, 0xFFFFFFFF, "a route priority such as 2"),
            }[kind]
            v = self.number(key, value, integer=True)
            if v is not None and not bounds[0] <= v <= bounds[1]:
                self.fail(key, f"{v} is outside {bounds[0]}..{bounds[1]}; use {bounds[2]}")
                return None
            return v
        if kind in ("port", "port_or_zero"):
            v = self.number(key, value, integer=True)
            low = 0 if kind == "port_or_zero" else 1
            if v is not None and not low <= v <= 65535:
                self.fail(key, f"{v} is not a port; use {low}..65535")
                return None
            return v
        if kind in ("ipv4", "ipv4_or_null"):
            if value is None and kind == "ipv4_or_null":
                return None
            try:
                return str(ipaddress.IPv4Address(value))
            except (ValueError, TypeError):
                self.fail(key, f"{value!r} is not an IPv4 address; write it like 10.42.0.1")
                return None
        if kind == "log_level":
            if value not in LOG_LEVELS:
                self.fail(key, f"{value!r} is not a log level; use one of: {', '.join(LOG_LEVELS)}")
                return None
            return value
        if kind == "networks":
            return self.networks(key, value)
        if kind == "addresses":
            if not isinstance(value, list):
                self.fail(key, f"{value!r} is not a list; write [10.42.0.11, 10.42.0.12]")
                return None
            out = []
            for i, item in enumerate(value):
                try:
                    out.append(str(ipaddress.IPv4Address(str(item))))
                except ValueError:
                    self.fail((*key, i), f"{item!r} is not an IPv4 address; write 10.42.0.11")
            return out
        if kind == "interfaces":
            return self.interface_list(key, value)
        raise AssertionError(kind)

    def networks(self, key: Path_, value: Any) -> list[tuple[str, int]] | None:
        if not isinstance(value, list):
            self.fail(key, f"{value!r} is not a list; write networks: [10.42.1.0/24]")
            return None
        out = []
        for i, item in enumerate(value):
            k = (*key, i)
            try:
                net = ipaddress.IPv4Network(str(item), strict=False)
            except ValueError:
                self.fail(k, f"{item!r} is not an IPv4 network; write it like 10.42.1.0/24")
                continue
            if "/" not in str(item):
                self.fail(
                    k, f"{item!r} has no prefix length; write it like {net.network_address}/24"
                )
                continue
            if str(net) != str(item):
                self.fail(k, f"{item!r} is not a network address (host bits set); use {net}")
                continue
            out.append((str(net.network_address), net.prefixlen))
        return out

    def interface_list(self, key: Path_, value: Any) -> list[str] | None:
        example = "interfaces: [{name: wlan0}]"
        if not isinstance(value, list) or not value:
            self.fail(key, f"needs a non-empty list of interfaces; write {example}")
            return None
        names: list[str] = []
        present = self.interfaces()
        for i, item in enumerate(value):
            k = (*key, i)
            if not isinstance(item, dict):
                self.fail(k, f"{item!r} is not a mapping; write {example}")
                continue
            for extra in sorted(set(item) - {"name"}, key=str):
                self.fail((*k, str(extra)), "unknown key; an interface has only: name")
            name = item.get("name")
            if not isinstance(name, str) or not name:
                self.fail((*k, "name"), f"{name!r} is not an interface name; write {example}")
                continue
            if name not in present:
                self.fail(
                    (*k, "name"),
                    f"{name!r} does not exist on this host; use one of: {', '.join(present)}",
                )
                continue
            if name in names:
                self.fail((*k, "name"), f"{name!r} is listed twice; list each interface once")
                continue
            names.append(name)
        return names

    def section(self, prefix: Path_, schema: dict[str, Any], data: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.fail(prefix, f"expected a mapping of keys, got {type(data).__name__}")
            data = {}
        for key in data:
            if key not in schema:
                known = ", ".join(schema)
                self.fail((*prefix, str(key)), f"unknown key; known keys here: {known}")
        if not prefix and "profile" in data:  # the profile first: it gives the timers
            name = self.check(("profile",), data["profile"], "profile")
            if name is not None:
                self.profile, self.profile_name = C.PROFILES[name], name
        for key, spec in schema.items():
            if isinstance(spec, dict):
                out[key] = self.section((*prefix, key), spec, data.get(key))
                continue
            default, kind = spec
            if key not in data:
                if default is None and kind == "interfaces":
                    self.fail(("interfaces",), "is required; write interfaces: [{name: wlan0}]")
                if isinstance(default, FromProfile):
                    self.from_profile.add(default.name)
                    default = self.profile[default.name]
                out[key] = default
                continue
            if kind == "profile":
                out[key] = self.profile_name
                continue
            out[key] = self.check((*prefix, key), data[key], kind)
        return out

    def hold_times(self, raw: dict[str, Any]) -> None:
        for section in ("hello", "tc", "mid", "hna"):
            interval, validity = raw[section]["interval"], raw[section]["validity"]
            if interval is not None and validity is not None and validity < interval:
                given = f"{section}_validity" in self.from_profile
                self.fail(
                    (section, "validity"),
                    f"{validity} s{f' (profile {self.profile_name})' if given else ''} "
                    f"is shorter than {section}.interval {interval} s; "
                    f"make it at least the interval (RFC 3626 uses 3 x interval: {3 * interval})",
                )


def _validate(
    data: dict[str, Any], problems: Problems, interfaces: Callable[[], list[str]], source: str
) -> Config:
    checker = _Checker(problems, interfaces)
    raw = checker.section((), SCHEMA, data)
    checker.hold_times(raw)
    problems.raise_if_any(ConfigError)
    timers = Timers(
        hello_interval=raw["hello"]["interval"],
        neighb_hold=raw["hello"]["validity"],
        tc_interval=raw["tc"]["interval"],
        top_hold=raw["tc"]["validity"],
        mid_interval=raw["mid"]["interval"],
        mid_hold=raw["mid"]["validity"],
        hna_interval=raw["hna"]["interval"],
        hna_hold=raw["hna"]["validity"],
        dup_hold=raw["duplicate_hold"],
    )
    return Config(
        interfaces=raw["interfaces"],
        main_address=raw["main_address"],
        willingness=raw["willingness"],
        timers=timers,
        tc_redundancy=raw["tc"]["redundancy"],
        hna_networks=raw["hna"]["networks"],
        hna_accept=raw["hna"]["accept"],
        hna_gateways=raw["hna"]["gateways"],
        fleet=raw["hna"]["fleet"],
        max_jitter=raw["max_jitter"],
        route_table=raw["routes"]["table"],
        route_protocol=raw["routes"]["protocol"],
        route_metric=raw["routes"]["metric"],
        route_check_interval=raw["routes"]["check_interval"],
        status_address=raw["status"]["address"],
        status_port=raw["status"]["port"],
        log_level=raw["log"]["level"],
        port=raw["port"],
        profile=raw["profile"],
        link_quality=raw["link_quality"],
        source=source,
    )


def parse(
    text: str,
    source: str = DEFAULT_PATH,
    interfaces: Callable[[], list[str]] = host_interfaces,
) -> Config:
    """Validate YAML ``text``; ``source`` names the file in messages. Raises ConfigError."""
    data, problems = parse_yaml(
        text, source or "olsrd.yml", kind="routing configuration", error=ConfigError
    )
    return _validate(data, problems, interfaces, source)


def load(path: str, interfaces: Callable[[], list[str]] = host_interfaces) -> Config:
    """Read and validate the config file at ``path``. Raises ConfigError.

    A file that cannot be read (missing, a folder, not UTF-8, too large, not YAML,
    not a mapping) is one line naming it, never a traceback.
    """
    data, problems = read_yaml(
        path,
        kind="routing configuration",
        error=ConfigError,
        missing_fix="create it (see docs/olsr.md) or pass --config",
    )
    return _validate(data, problems, interfaces, path)
