"""Telemetry sources: battery, attitude, position.

Real sensors where the drone has them (an INA219 battery monitor over I2C,
gpsd), simulated ones otherwise. Every ``read`` is cheap and never blocks:
the 50 Hz loop calls them.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
from dataclasses import dataclass
from typing import Any

from cloudrone.flight.backends import BackendError, i2c_bus_factory
from cloudrone.flight.config import FlightConfig
from cloudrone.flight.mapping import Sticks


@dataclass(frozen=True)
class BatteryReading:
    voltage: float
    current_a: float | None = None


def remaining_percent(voltage: float, cells: int) -> int:
    """Rough LiPo charge from resting voltage: 3.3 V/cell empty, 4.2 V/cell full."""
    per_cell = voltage / cells
    return int(max(0.0, min(100.0, (per_cell - 3.3) / (4.2 - 3.3) * 100.0)))


class SimBattery:
    """A battery that drains linearly; its voltage can be set (PARAM_SET SIM_BATT_VOLT)."""

    name = "sim"

    def __init__(self, voltage: float, drain_v_per_min: float, start: float) -> None:
        self.voltage = voltage
        self.drain = drain_v_per_min / 60.0
        self.since = start

    def set_voltage(self, now: float, voltage: float) -> None:
        self.voltage = voltage
        self.since = now

    def start(self) -> None:
        return None

    def read(self, now: float) -> BatteryReading:
        v = max(0.0, self.voltage - self.drain * (now - self.since))
        return BatteryReading(voltage=v, current_a=None)


INA219_SHUNT = 0x01
INA219_BUS = 0x02


class Ina219Battery:
    """INA219 bus voltage (4 mV LSB) and shunt voltage (10 uV LSB) over I2C."""

    name = "ina219"

    def __init__(self, bus: int, address: int, shunt_ohms: float, smbus_factory: Any = None):
        self.bus_number = bus
        self.address = address
        self.shunt_ohms = shunt_ohms
        self._factory = smbus_factory
        self.bus: Any = None

    @staticmethod
    def _swap(word: int) -> int:
        # SMBus reads words little-endian; the INA219 sends the high byte first.
        return ((word & 0xFF) << 8) | (word >> 8)

    def start(self) -> None:
        device = f"/dev/i2c-{self.bus_number}"
        factory = i2c_bus_factory(
            device,
            self._factory,
            f"ina219 battery monitor: {device} does not exist: enable I2C or fix "
            "battery.ina219.bus; or set battery.source: sim (or none)",
        )
        try:
            self.bus = factory(self.bus_number)
            self.read(0.0)
        except OSError as exc:
            raise BackendError(
                f"ina219 battery monitor: no answer at {self.address:#04x} on {device} "
                f"({exc.strerror or exc}); check wiring and battery.ina219.address"
            ) from None

    def read(self, now: float) -> BatteryReading:
        raw_bus = self._swap(self.bus.read_word_data(self.address, INA219_BUS))
        voltage = (raw_bus >> 3) * 0.004
        raw_shunt = self._swap(self.bus.read_word_data(self.address, INA219_SHUNT))
        if raw_shunt & 0x8000:
            raw_shunt -= 0x10000
        current = raw_shunt * 10e-6 / self.shunt_ohms
        return BatteryReading(voltage=voltage, current_a=current)


@dataclass(frozen=True)
class Attitude:
    roll: float  # radians
    pitch: float
    yaw: float
    rollspeed: float = 0.0
    pitchspeed: float = 0.0
    yawspeed: float = 0.0


class SimAttitude:
    """Leans the way the sticks push (up to 30 degrees), with a first-order lag."""

    MAX_TILT = math.radians(30.0)
    YAW_RATE = math.radians(90.0)
    TAU = 0.25

    def __init__(self) -> None:
        self.state = Attitude(0.0, 0.0, 0.0)
        self.last: float | None = None

    def update(self, now: float, sticks: Sticks, flying: bool) -> Attitude:
        dt = 0.0 if self.last is None else min(0.1, now - self.last)
        self.last = now
        s = self.state
        a = dt / (self.TAU + dt) if dt > 0 else 0.0
        target_roll = sticks.roll * self.MAX_TILT if flying else 0.0
        target_pitch = -sticks.pitch * self.MAX_TILT if flying else 0.0
        roll = s.roll + (target_roll - s.roll) * a
        pitch = s.pitch + (target_pitch - s.pitch) * a
        yawspeed = sticks.yaw * self.YAW_RATE if flying else 0.0
        yaw = (s.yaw + yawspeed * dt + math.pi) % (2 * math.pi) - math.pi
        rs = (roll - s.roll) / dt if dt else 0.0
        ps = (pitch - s.pitch) / dt if dt else 0.0
        self.state = Attitude(roll, pitch, yaw, rs, ps, yawspeed)
        return self.state


@dataclass(frozen=True)
class Fix:
    fix_type: int  # GPS_FIX_TYPE: 0 none, 1 no fix, 2 2D, 3 3D
    lat: float = 0.0
    lon: float = 0.0
    alt_m: float = 0.0
    speed_ms: float = 0.0
    track_deg: float = 0.0
    satellites: int = 255  # 255 = unknown
    eph_m: float | None = None  # estimated horizontal error, metres
    hdop: float | None = None  # horizontal dilution of precision (unitless)


class SimGps:
    name = "sim"

    def __init__(self, lat: float, lon: float, alt_m: float) -> None:
        self.fix = Fix(3, lat, lon, alt_m, 0.0, 0.0, 10, eph_m=1.2, hdop=0.9)

    def start(self) -> None:
        return None

    def read(self, now: float) -> Fix:
        return self.fix

    def close(self) -> None:
        return None


class GpsdSource:
    """gpsd's JSON stream (TPV and SKY reports) on a non-blocking TCP socket."""

    name = "gpsd"
    RETRY_S = 5.0

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.fix = Fix(0)
        self.satellites = 255
        self.hdop: float | None = None
        self.next_retry = 0.0

    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=1.0)
        sock.sendall(b'?WATCH={"enable":true,"json":true};\n')
        sock.setblocking(False)
        self.sock = sock
        self.buffer = b""

    def start(self) -> None:
        try:
            self._connect()
        except OSError as exc:
            raise BackendError(
                f"gps: cannot reach gpsd at {self.host}:{self.port} ({exc.strerror or exc}); "
                "start gpsd, fix gps.gpsd, or set gps.source: sim (or none)"
            ) from None

    def feed(self, line: bytes) -> None:
        try:
            report = json.loads(line)
        except ValueError:
            return
        if not isinstance(report, dict):
            return
        if report.get("class") == "SKY":
            used = [s for s in report.get("satellites", []) if s.get("used")]
            self.satellites = report.get("uSat", len(used))
            hdop = report.get("hdop")
            self.hdop = float(hdop) if isinstance(hdop, int | float) else None
        elif report.get("class") == "TPV":
            mode = int(report.get("mode", 0))
            if mode < 2 or "lat" not in report or "lon" not in report:
                self.fix = Fix(1 if mode == 1 else 0, satellites=self.satellites)
                return
            self.fix = Fix(
                fix_type=3 if mode == 3 else 2,
                lat=float(report["lat"]),
                lon=float(report["lon"]),
                alt_m=float(report.get("altMSL", report.get("alt", 0.0))),
                speed_ms=float(report.get("speed", 0.0)),
                track_deg=float(report.get("track", 0.0)),
                satellites=self.satellites,
                eph_m=report.get("eph"),
                hdop=self.hdop,
            )

    def read(self, now: float) -> Fix:
        if self.sock is None:
            if now >= self.next_retry:
                self.next_retry = now + self.RETRY_S
                with contextlib.suppress(OSError):
                    self._connect()
            return self.fix
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("gpsd closed the connection")
                self.buffer += chunk
                if len(self.buffer) > 1 << 20:
                    self.buffer = b""
        except BlockingIOError:
            pass
        except OSError:
            self.close()
            self.fix = Fix(0)
            return self.fix
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.feed(line)
        return self.fix

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def open_battery(config: FlightConfig, now: float) -> SimBattery | Ina219Battery | None:
    b = config.battery
    if b.source == "sim":
        return SimBattery(b.sim.voltage, b.sim.drain_v_per_min, now)
    if b.source == "ina219":
        return Ina219Battery(b.ina219.bus, b.ina219.address, b.ina219.shunt_ohms)
    return None


def open_gps(config: FlightConfig) -> SimGps | GpsdSource | None:
    g = config.gps
    if g.source == "sim":
        return SimGps(g.sim.lat, g.sim.lon, g.sim.alt_m)
    if g.source == "gpsd":
        return GpsdSource(*g.gpsd)
    return None
