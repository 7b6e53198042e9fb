"""The flight bridge's configuration: load, validate, explain.

A bad file never half-applies: :func:`load_config` either returns a complete
:class:`FlightConfig` or raises :class:`ConfigError` listing every problem as
``FILE:LINE KEY: what is wrong; how to fix it``, the way every Cloudrone
configuration reports (:mod:`cloudrone.problems`).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cloudrone.problems import ConfigProblems, Problems, parse_yaml, read_yaml

DEFAULT_CONFIG_PATH = Path("/etc/cloudrone/flight.yml")

# Pulse widths a KK2 (or any RC input) can be fed at all. Endpoints must lie inside.
PULSE_FLOOR_US = 800
PULSE_CEILING_US = 2200

AXES = ("aileron", "elevator", "throttle", "rudder")
BACKENDS = ("sim", "pca9685", "pigpio")


KIND = "flight bridge configuration"


class ConfigError(ConfigProblems):
    """A refused configuration; ``problems`` holds one line per problem."""


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class ChannelConfig:
    output: int  # PCA9685 channel or GPIO number (BCM) of this KK2 input
    rc: int  # RC_CHANNELS_OVERRIDE channel (1-based) that drives it
    min_us: int = 1000
    max_us: int = 2000
    trim_us: int = 0
    reversed: bool = False
    expo: float = 0.0


@dataclass(frozen=True)
class MavlinkConfig:
    listen: tuple[str, int] = ("0.0.0.0", 14555)
    ground_station: tuple[str, int] = ("127.0.0.1", 14550)
    system_id: int = 1
    # Who may fly: control from any other source address is refused and counted.
    # None = the ground station's address alone.
    allowed_senders: tuple[ipaddress.IPv4Network, ...] | None = None
    # MAVLink 2 signing: a file holding the mission's 32-byte key as 64 hex digits.
    signing_key_file: str | None = None
    signing_link_id: int = 0
    # A signed frame whose timestamp leads the drone's clock by more than this is
    # refused and counted (its sender is told): the drone's clock must agree
    # with the ground station's to this.
    signing_max_ahead_s: float = 60.0
    # The key itself, read from signing_key_file (never printed).
    signing_key: bytes | None = field(default=None, repr=False)

    @property
    def senders(self) -> tuple[ipaddress.IPv4Network, ...]:
        if self.allowed_senders is not None:
            return self.allowed_senders
        return (ipaddress.IPv4Network(self.ground_station[0]),)


@dataclass(frozen=True)
class SimBackendConfig:
    record_file: str | None = None
    max_frames: int = 180_000  # one hour at 50 Hz, then the file rotates


@dataclass(frozen=True)
class Pca9685Config:
    bus: int = 1
    address: int = 0x40
    oscillator_hz: int = 25_000_000


@dataclass(frozen=True)
class PigpioConfig:
    host: str = "127.0.0.1"
    port: int = 8888


@dataclass(frozen=True)
class BackendConfig:
    type: str = "sim"
    sim: SimBackendConfig = field(default_factory=SimBackendConfig)
    pca9685: Pca9685Config = field(default_factory=Pca9685Config)
    pigpio: PigpioConfig = field(default_factory=PigpioConfig)


@dataclass(frozen=True)
class Kk2Config:
    throttle_zero_us: int = 1150  # the KK2 reads throttle as zero below this
    gesture_hold_s: float = 1.2  # how long the arm/disarm stick gesture is held
    gesture_guard: float = 0.8  # |yaw| limit while armed and throttle is at zero


@dataclass(frozen=True)
class FailsafeConfig:
    hold_s: float = 0.5
    descent_us: int = 1400
    ramp_s: float = 1.0
    descent_s: float = 10.0
    idle_s: float = 2.0


@dataclass(frozen=True)
class Ina219Config:
    bus: int = 1
    # 0x41 (A0 bridged): the pulse board's PCA9685 answers at 0x40 on the same bus
    address: int = 0x41
    shunt_ohms: float = 0.1


@dataclass(frozen=True)
class SimBatteryConfig:
    voltage: float = 12.4
    drain_v_per_min: float = 0.0


@dataclass(frozen=True)
class BatteryConfig:
    source: str = "sim"
    cells: int = 3
    low_voltage: float = 10.5
    low_delay_s: float = 3.0
    resume_voltage: float = 11.1
    ina219: Ina219Config = field(default_factory=Ina219Config)
    sim: SimBatteryConfig = field(default_factory=SimBatteryConfig)


@dataclass(frozen=True)
class SimGpsConfig:
    lat: float = 52.2109
    lon: float = 0.0917
    alt_m: float = 20.0


@dataclass(frozen=True)
class GpsConfig:
    source: str = "sim"
    gpsd: tuple[str, int] = ("127.0.0.1", 2947)
    sim: SimGpsConfig = field(default_factory=SimGpsConfig)


@dataclass(frozen=True)
class RealtimeConfig:
    fifo_priority: int = 50  # 0 = do not ask for SCHED_FIFO
    lock_memory: bool = True
    cpu_core: int | None = None  # None = leave the affinity to systemd's CPUAffinity


@dataclass(frozen=True)
class FlightConfig:
    mavlink: MavlinkConfig = field(default_factory=MavlinkConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    channels: Mapping[str, ChannelConfig] = field(
        default_factory=lambda: {
            "aileron": ChannelConfig(output=0, rc=1),
            "elevator": ChannelConfig(output=1, rc=2),
            "throttle": ChannelConfig(output=2, rc=3),
            "rudder": ChannelConfig(output=3, rc=4),
        }
    )
    kk2: Kk2Config = field(default_factory=Kk2Config)
    failsafe: FailsafeConfig = field(default_factory=FailsafeConfig)
    battery: BatteryConfig = field(default_factory=BatteryConfig)
    gps: GpsConfig = field(default_factory=GpsConfig)
    attitude_source: str = "sim"
    rate_hz: float = 50.0
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)
    status_file: str | None = "/run/cloudrone/flight-status.json"
    source: str = "<defaults>"


# --------------------------------------------------------------------------- checkers
# A checker turns a raw YAML value into a typed one or returns an error text
# ("problem; fix"). Errors are strings so that every one can be reported.

Checker = Callable[[Any], tuple[Any, str | None]]


def _number(lo: float, hi: float, unit: str = "", integer: bool = False) -> Checker:
    def check(value: Any) -> tuple[Any, str | None]:
        kind = "a whole number" if integer else "a number"
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type:
            return None, f"{value!r} is not {kind}; give {kind} from {lo} to {hi}{unit}"
        if isinstance(value, float) and not math.isfinite(value):
            return None, f"{value!r} is not finite; give a number from {lo} to {hi}{unit}"
        if not lo <= value <= hi:
            return None, f"{value!r} is out of range; give a value from {lo} to {hi}{unit}"
        return (int(value) if integer else float(value)), None

    return check


def _bool(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, bool):
        return value, None
    return None, f"{value!r} is not a boolean; write true or false (unquoted)"


def _choice(*choices: str) -> Checker:
    def check(value: Any) -> tuple[Any, str | None]:
        if value in choices:
            return value, None
        return None, f"{value!r} is not one of {', '.join(choices)}; pick one of them"

    return check


def _optional(inner: Checker) -> Checker:
    def check(value: Any) -> tuple[Any, str | None]:
        if value is None:
            return None, None
        return inner(value)

    return check


def _path(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, str) and value.startswith("/"):
        return value, None
    return None, f"{value!r} is not an absolute path; give a path such as /run/cloudrone/x"


def _host(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, str) and value:
        return value, None
    return None, f"{value!r} is not a host name or address; give e.g. 127.0.0.1"


def _endpoint(value: Any) -> tuple[Any, str | None]:
    fix = "write ADDRESS:PORT, e.g. 10.42.0.254:14550"
    if not isinstance(value, str) or value.count(":") != 1:
        return None, f"{value!r} is not ADDRESS:PORT; {fix}"
    host, _, port_text = value.partition(":")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return None, f"{host!r} is not an IPv4 address; {fix}"
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        return None, f"port {port_text!r} is not 1-65535; {fix}"
    return (host, int(port_text)), None


def _senders(value: Any) -> tuple[Any, str | None]:
    fix = "give a list of IPv4 addresses or networks, e.g. [10.42.0.254, 10.250.0.0/24]"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return None, f"{value!r} is not a list of addresses; {fix}"
    nets = []
    for item in value:
        try:
            nets.append(ipaddress.IPv4Network(str(item), strict=False))
        except ValueError:
            return None, f"{item!r} is not an IPv4 address or network; {fix}"
        if nets[-1].prefixlen == 0:
            return None, f"{item!r} would let anyone fly the drone; {fix}"
    return tuple(nets), None


SIGNING_KEY_BYTES = 32


def read_signing_key(path: str) -> tuple[bytes | None, str | None]:
    """The key in ``path`` (64 hex digits), or why it cannot be used and how to fix it."""
    fix = (
        f"write the mission's {SIGNING_KEY_BYTES}-byte key as 64 hex digits "
        "(e.g. from `openssl rand -hex 32`), owned by the bridge's user, mode 0600"
    )
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, f"{path}: no such file; {fix}, or remove the key to fly unsigned"
    except OSError as exc:
        return None, f"{path}: cannot read it ({exc.strerror}); {fix}"
    if not stat.S_ISREG(st.st_mode):
        return None, f"{path} is not a regular file; {fix}"
    if st.st_mode & 0o077:
        mode = stat.S_IMODE(st.st_mode)
        return None, f"{path} has mode {mode:04o}, others may read the key; chmod 600 it"
    try:
        text = Path(path).read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except OSError as exc:
        return None, f"{path}: cannot read it ({exc.strerror}); {fix}"
    except (UnicodeDecodeError, ValueError):
        return None, f"{path} does not hold hex digits; {fix}"
    if len(key) != SIGNING_KEY_BYTES:
        return None, f"{path} holds {len(key)} bytes, not {SIGNING_KEY_BYTES}; {fix}"
    return key, None


def _key_file(value: Any) -> tuple[Any, str | None]:
    path, error = _path(value)
    if error:
        return None, error
    _, error = read_signing_key(path)
    return (None, error) if error else (path, None)


# --------------------------------------------------------------------------- schema

_CHANNEL_SCHEMA: dict[str, Checker] = {
    "output": _number(0, 31, integer=True),
    "rc": _number(1, 8, integer=True),
    "min_us": _number(PULSE_FLOOR_US, PULSE_CEILING_US, " us", integer=True),
    "max_us": _number(PULSE_FLOOR_US, PULSE_CEILING_US, " us", integer=True),
    "trim_us": _number(-200, 200, " us", integer=True),
    "reversed": _bool,
    "expo": _number(0.0, 1.0),
}

_SCHEMA: dict[str, Any] = {
    "mavlink": {
        "listen": _endpoint,
        "ground_station": _endpoint,
        "system_id": _number(1, 255, integer=True),
        "allowed_senders": _senders,
        "signing_key_file": _optional(_key_file),
        "signing_link_id": _number(0, 255, integer=True),
        "signing_max_ahead_s": _number(1.0, 86_400.0, " s"),
    },
    "backend": {
        "type": _choice(*BACKENDS),
        "sim": {
            "record_file": _optional(_path),
            "max_frames": _number(100, 10_000_000, integer=True),
        },
        "pca9685": {
            "bus": _number(0, 255, integer=True),
            "address": _number(0x03, 0x77, integer=True),
            "oscillator_hz": _number(20_000_000, 30_000_000, " Hz", integer=True),
        },
        "pigpio": {"host": _host, "port": _number(1, 65535, integer=True)},
    },
    "channels": {axis: dict(_CHANNEL_SCHEMA) for axis in AXES},
    "kk2": {
        "throttle_zero_us": _number(1000, 1300, " us", integer=True),
        "gesture_hold_s": _number(0.5, 5.0, " s"),
        "gesture_guard": _number(0.5, 0.95),
    },
    "failsafe": {
        "hold_s": _number(0.1, 5.0, " s"),
        "descent_us": _number(1000, 2000, " us", integer=True),
        "ramp_s": _number(0.0, 10.0, " s"),
        "descent_s": _number(0.0, 120.0, " s"),
        "idle_s": _number(0.0, 30.0, " s"),
    },
    "battery": {
        "source": _choice("sim", "ina219", "none"),
        "cells": _number(1, 12, integer=True),
        "low_voltage": _number(0.0, 60.0, " V"),
        "low_delay_s": _number(0.0, 60.0, " s"),
        "resume_voltage": _number(0.0, 60.0, " V"),
        "ina219": {
            "bus": _number(0, 255, integer=True),
            "address": _number(0x40, 0x4F, integer=True),
            "shunt_ohms": _number(0.001, 10.0, " ohm"),
        },
        "sim": {
            "voltage": _number(0.0, 60.0, " V"),
            "drain_v_per_min": _number(0.0, 10.0, " V/min"),
        },
    },
    "gps": {
        "source": _choice("sim", "gpsd", "none"),
        "gpsd": _endpoint,
        "sim": {
            "lat": _number(-90.0, 90.0),
            "lon": _number(-180.0, 180.0),
            "alt_m": _number(-500.0, 10_000.0, " m"),
        },
    },
    "attitude": {"source": _choice("sim", "none")},
    "loop": {"rate_hz": _number(10.0, 400.0, " Hz")},
    "realtime": {
        "fifo_priority": _number(0, 99, integer=True),
        "lock_memory": _bool,
        "cpu_core": _optional(_number(0, 1023, integer=True)),
    },
    "status_file": _optional(_path),
}


# --------------------------------------------------------------------------- loading


def _validate(
    raw: Mapping[str, Any], schema: Mapping[str, Any], at: tuple[str, ...], problems: Problems
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    prefix = "".join(f"{part}." for part in at)
    for key, value in raw.items():
        path = (*at, str(key))
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f"did you mean {prefix}{close[0]}?" if close else "remove it"
            known = ", ".join(schema)
            problems.add(path, f"unknown key; {hint} (known here: {known})")
            continue
        rule = schema[key]
        if isinstance(rule, dict):
            if not isinstance(value, Mapping):
                problems.add(path, f"{value!r} must be a mapping of {', '.join(rule)}")
                continue
            out[key] = _validate(value, rule, path, problems)
        else:
            checked, error = rule(value)
            if error:
                problems.add(path, error)
            else:
                out[key] = checked
    return out


def _build(data: Mapping[str, Any], source: str, problems: Problems) -> FlightConfig:
    d = FlightConfig()

    def sub(section: str) -> Mapping[str, Any]:
        return data.get(section, {})

    def merged(dc: Any, values: Mapping[str, Any]) -> Any:
        kwargs = {k: v for k, v in values.items() if not isinstance(v, Mapping)}
        return type(dc)(**{**dc.__dict__, **kwargs})

    mav = merged(d.mavlink, sub("mavlink"))
    b = sub("backend")
    backend = BackendConfig(
        type=b.get("type", d.backend.type),
        sim=merged(d.backend.sim, b.get("sim", {})),
        pca9685=merged(d.backend.pca9685, b.get("pca9685", {})),
        pigpio=merged(d.backend.pigpio, b.get("pigpio", {})),
    )
    channels = {axis: merged(d.channels[axis], sub("channels").get(axis, {})) for axis in AXES}
    bat = sub("battery")
    battery = merged(d.battery, bat)
    battery = BatteryConfig(
        **{
            **battery.__dict__,
            "ina219": merged(d.battery.ina219, bat.get("ina219", {})),
            "sim": merged(d.battery.sim, bat.get("sim", {})),
        }
    )
    g = sub("gps")
    gps = GpsConfig(
        source=g.get("source", d.gps.source),
        gpsd=g.get("gpsd", d.gps.gpsd),
        sim=merged(d.gps.sim, g.get("sim", {})),
    )
    config = FlightConfig(
        mavlink=mav,
        backend=backend,
        channels=channels,
        kk2=merged(d.kk2, sub("kk2")),
        failsafe=merged(d.failsafe, sub("failsafe")),
        battery=battery,
        gps=gps,
        attitude_source=sub("attitude").get("source", d.attitude_source),
        rate_hz=sub("loop").get("rate_hz", d.rate_hz),
        realtime=merged(d.realtime, sub("realtime")),
        status_file=data.get("status_file", d.status_file),
        source=source,
    )
    _cross_check(config, problems)
    return config


def _cross_check(c: FlightConfig, problems: Problems) -> None:
    """Rules that tie several keys together."""

    def fail(key: str, what: str) -> None:
        problems.add(key.split("."), what)

    for axis, ch in c.channels.items():
        key = f"channels.{axis}"
        if not ch.min_us < 1500 + ch.trim_us < ch.max_us:
            fail(
                f"{key}.trim_us",
                f"centre {1500 + ch.trim_us} us is not between min_us {ch.min_us} and "
                f"max_us {ch.max_us}; keep min_us < 1500 + trim_us < max_us",
            )
    thr = c.channels["throttle"]
    if thr.reversed:
        fail(
            "channels.throttle.reversed",
            "the KK2 reads a low pulse as zero throttle, so throttle cannot be reversed; "
            "set it to false",
        )
    if thr.min_us >= c.kk2.throttle_zero_us:
        fail(
            "channels.throttle.min_us",
            f"{thr.min_us} us is not below kk2.throttle_zero_us "
            f"({c.kk2.throttle_zero_us} us), so the KK2 would never see zero throttle "
            "and could neither arm nor disarm; lower it (1000 is usual)",
        )
    if not thr.min_us <= c.failsafe.descent_us <= thr.max_us:
        fail(
            "failsafe.descent_us",
            f"{c.failsafe.descent_us} us lies outside the throttle endpoints "
            f"{thr.min_us}-{thr.max_us} us; pick a value a little below hover",
        )
    pwm, ina = c.backend.pca9685, c.battery.ina219
    if (
        c.backend.type == "pca9685"
        and c.battery.source == "ina219"
        and (pwm.bus, pwm.address) == (ina.bus, ina.address)
    ):
        free = next(a for a in range(0x40, 0x50) if a != pwm.address)
        fail(
            "battery.ina219.address",
            f"{ina.address} is the pulse board's (backend.pca9685.address) on bus {ina.bus}; "
            f"give the battery monitor its own address ({free}, say: the INA219's A0/A1 "
            "jumpers choose 64-79)",
        )
    if c.backend.type == "pca9685":
        for axis, ch in c.channels.items():
            if ch.output > 15:
                fail(
                    f"channels.{axis}.output",
                    f"{ch.output} is not a PCA9685 channel; use 0-15",
                )
    rcs = [ch.rc for ch in c.channels.values()]
    if len(set(rcs)) != len(rcs):
        fail("channels", f"two axes share one rc channel ({rcs}); give each its own")
    outputs = [ch.output for ch in c.channels.values()]
    if len(set(outputs)) != len(outputs):
        fail("channels", f"two axes share one output ({outputs}); give each its own pin")
    if c.battery.resume_voltage < c.battery.low_voltage:
        fail(
            "battery.resume_voltage",
            f"{c.battery.resume_voltage} V is below battery.low_voltage "
            f"{c.battery.low_voltage} V; set it at or above the low voltage",
        )


def _check(data: Mapping[str, Any], problems: Problems, source: str) -> FlightConfig:
    checked = _validate(data, _SCHEMA, (), problems)
    problems.raise_if_any(ConfigError)
    config = _build(checked, source, problems)
    problems.raise_if_any(ConfigError)
    if config.mavlink.signing_key_file is not None:
        key, _ = read_signing_key(config.mavlink.signing_key_file)
        mav = replace(config.mavlink, signing_key=key)
        config = replace(config, mavlink=mav)
    return config


def parse_config(text: str, source: str = "<string>") -> FlightConfig:
    """Validate YAML text; raise :class:`ConfigError` naming ``source`` on any problem."""
    data, problems = parse_yaml(text, source, kind=KIND, error=ConfigError)
    return _check(data, problems, source)


def load_config(path: Path | str) -> FlightConfig:
    """Read and validate a configuration file; raise :class:`ConfigError` on any problem.

    A file that cannot be read (missing, a folder, not UTF-8, too large, not YAML,
    not a mapping) is one line naming it, never a traceback.
    """
    data, problems = read_yaml(
        path,
        kind=KIND,
        error=ConfigError,
        missing_fix="create it (see docs/flight.md) or pass --config",
    )
    return _check(data, problems, str(path))
